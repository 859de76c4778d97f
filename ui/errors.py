"""Errors tab: a method's most confident mistakes, and the faces the methods disagree on most."""
from __future__ import annotations

import gradio as gr

from dfdet.errors import DataError
from dfdet.viz import plots
from dfdet.viz.errors import where_of
from dfdet.viz.media import image_file
from dfdet.viz.services.errors import PAGE, whole
from dfdet.viz.store import md_escape

from .common import MODEL_KW, PRIVATE, Ctx, for_visitor, friendly, how_to_read, open_dropdown, status_line
from .filters import build_filters, follow_run
from .runs import first_run, run_methods, run_names

HOW = ("the faces a method got most confidently wrong at the threshold, one per video unless you untick it. "
       "Click a face to score it in Compare with every method.")
KINDS = ("fp", "fn", "disagree")
ORDERS = ("most fake first", "most real first")


def next_page(page, step: int):
    """The page a Previous/Next click asks for; a value that is no page number goes on to the service's refusal."""
    try:
        return max(0, whole(page, "page") + step)
    except DataError:
        return page


def threshold_of(s, run_name, method) -> dict:
    """The slider's value and label: the method's validation threshold, else 0.5 (said so)."""
    t = s.errors.validation_threshold(run_name, method) if run_name and method else None
    if t is None:
        return {"value": 0.5, "label": "Threshold on p(fake) (0.5: this checkpoint has no validation threshold)"}
    return {"value": round(t, 2), "label": f"Threshold on p(fake) (the method's validation threshold: {t:.2f})"}


def build(ctx: Ctx) -> gr.Tab:
    s = ctx.session
    r0 = first_run(s)
    m0 = run_methods(s, r0)
    with gr.Tab("Errors", id="errors") as tab:
        how_to_read(HOW)
        with gr.Row():
            run = open_dropdown(run_names(s), r0, label="Run", elem_id="er-run")
            method = open_dropdown(m0, m0[0][1] if m0 else None, label="Method", elem_id="er-method")
            dataset = open_dropdown(["all"] + s.roc.datasets(r0), "all", label="Dataset", elem_id="er-dataset")
            threshold = gr.Slider(0, 1, step=0.01, **threshold_of(s, r0, m0[0][1] if m0 else None))
            dedup = gr.Checkbox(value=True, label="One face per video")
            with_maps = gr.Checkbox(value=False, label="With saliency maps (Grad-CAM; slower, cached)",
                                    elem_id="er-maps")
            btn = gr.Button("Find mistakes", variant="primary", elem_id="er-btn")
        status = status_line("er-status")
        note = gr.Markdown(elem_id="er-note")
        rows = gr.State({})
        browse_rows = gr.State({})  # {"browse": run rows of the page shown}
        gallery_kw = dict(columns=6, height="auto", allow_preview=False, object_fit="cover")
        fp = gr.Gallery(label="Most confident false positives (real faces called fake)", elem_id="er-fp", **gallery_kw)
        fn = gr.Gallery(label="Most confident false negatives (fakes called real)", elem_id="er-fn", **gallery_kw)
        dis = gr.Gallery(label="Where the methods disagree most", elem_id="er-dis", **gallery_kw)
        gr.Markdown("### Every face, filtered and paged\nAny question over the whole run: e.g. truth *fake*, "
                    "called real by LN + Norm and fake by LN + Norm + SLERP. Ordered by the method above's p(fake).")
        flt = build_filters(s, r0, "er")
        with gr.Row():
            order = gr.Radio(list(ORDERS), value=ORDERS[0], label="Order", elem_id="er-order")
            prev_btn = gr.Button("◀ Previous page", size="sm", elem_id="er-prev")
            page = gr.Number(0, minimum=0, step=1, precision=0, label="Page (from 0)", elem_id="er-page")
            next_btn = gr.Button("Next page ▶", size="sm", elem_id="er-next")
            browse_btn = gr.Button("Browse", variant="primary", elem_id="er-browse-btn")
        browse_note = gr.Markdown(elem_id="er-browse-note")
        browse = gr.Gallery(label="Matching faces", elem_id="er-browse", columns=8, height="auto",
                            allow_preview=False, object_fit="cover")

    def view(run_name, method_name, ds, thr, one_per_video=True, maps=False):
        if not method_name:  # the tab opened before the run's method list arrived: its first method
            ms = run_methods(s, run_name)
            method_name = ms[0][1] if ms else method_name
        cases = s.errors.cases(run_name, method_name, ds or "all", 0.5 if thr is None else thr,
                               one_per_video=bool(one_per_video))
        if maps:  # each mistake with the method's own map over it (services/explain.py)
            cases.items = {k: [(s.explain.with_map(run_name, method_name, r, im), cap, r) for im, cap, r in v]
                           for k, v in cases.items.items()}
        out = [[(image_file(im), cap) for im, cap, _ in cases.items[k]] for k in KINDS]
        found = {k: [r for _, _, r in v] for k, v in cases.items.items()}
        t = float(thr)
        parts = []
        for k, what in (("fp", "false positives"), ("fn", "false negatives")):
            n = cases.totals[k]
            parts.append(f"none at threshold {t:.2f}" if n == 0 else f"{n} {what}, {len(found[k])} shown")
        demo = s.store.run_is_demo(s.store.run(run_name))
        if maps:
            label = {v: k for k, v in run_methods(s, run_name)}.get(method_name, method_name)
            parts.append(f"each face under {md_escape(label)}'s Grad-CAM map (bright = evidence for *fake*)")
        text = ("; ".join(parts) + " (most confident first). Click a face to open it in Compare."
                + (f" <span class='demo-warning'>⚠ {plots.DEMO_NOTE}</span>" if demo else ""))
        return *out, found, text

    def browse_view(run_name, method_name, order_by, page_no, *filters):
        """One page of the faces matching the filters; only that page's faces are read (services/errors.py)."""
        method_name = method_name or next((m for _, m in run_methods(s, run_name)), None)
        p = s.errors.browse(run_name, method_name, where_of(*filters), page_no, most_fake_first=order_by != ORDERS[1])
        if not p.total:
            text = "No face matches these filters."
        else:
            first = p.page * PAGE
            text = (f"{p.total} faces match; page {p.page} of {p.pages - 1} "
                    f"(faces {first + 1}–{first + len(p.items)}). Click a face to open it in Compare.")
        demo = s.store.run_is_demo(s.store.run(run_name))
        text += f" <span class='demo-warning'>⚠ {plots.DEMO_NOTE}</span>" if demo else ""
        return [(image_file(im), cap) for im, cap, _ in p.items], {"browse": [r for *_, r in p.items]}, p.page, text

    def api_view(run_name, method_name, ds, thr):
        fp_, fn_, dis_, _, text = view(run_name, method_name, ds, thr, False)
        return fp_, fn_, dis_, text

    def on_run(run_name, current=None, current_ds=None):
        """The run's methods and datasets; what is shown stays when the run has it (a link's choice is not reset)."""
        ms = run_methods(s, run_name)
        sets = ["all"] + s.roc.datasets(run_name)
        keep = current and current in [v for _, v in ms]
        return (gr.Dropdown(choices=ms) if keep else gr.Dropdown(choices=ms, value=ms[0][1] if ms else None),
                gr.Dropdown(choices=sets) if current_ds in sets else gr.Dropdown(choices=sets, value="all"))

    def opener(kind):
        def open_face(run_name, found, evt: gr.SelectData):
            shown = (found or {}).get(kind, [])
            if not 0 <= evt.index < len(shown):  # the session's state was dropped (STATE_SESSIONS) or is stale
                raise gr.Error("This gallery is out of date: press “Find mistakes” again, then pick the face.",
                               print_exception=False)
            return gr.Tabs(selected="compare"), f"run:{run_name}", shown[evt.index]
        return open_face

    # a method picked by the visitor brings its own validation threshold (a shared link's value is kept)
    method.input(lambda r, m: gr.Slider(**threshold_of(s, r, m)), [run, method], threshold,
                 api_name="_err_method_thr", **PRIVATE)
    inputs = [run, method, dataset, threshold, dedup, with_maps]
    outputs = [fp, fn, dis, rows, note]
    # no method yet: the run list's own update sets it (a page load), and a reply here could land after a link's
    run.change(lambda r, m, d: on_run(r, m, d) if m else (gr.skip(), gr.skip()), [run, method, dataset],
               [method, dataset], api_name="_err_run", **PRIVATE)
    def follow(run_name):
        """The run's lists as the page loads, and the slider at its first method's validation threshold, so the
        first view is at the method's own threshold, not at the 0.5 of a page built before the run existed."""
        ms = run_methods(s, run_name)
        return (*on_run(run_name), gr.Slider(**threshold_of(s, run_name, ms[0][1] if ms else None)))
    ctx.run_followers.append((follow, [method, dataset, threshold]))
    run.change(lambda r: follow_run(s, r), run, flt.choice_lists(), api_name="_er_filters_run", **PRIVATE)
    ctx.run_followers.append((lambda r: follow_run(s, r), flt.choice_lists()))
    browse_in = [run, method, order, page, *flt.inputs()]
    browse_out = [browse, browse_rows, page, browse_note]
    ui_browse = for_visitor(browse_view, len(browse_out))
    browse_btn.click(ui_browse, browse_in, [*browse_out, status], api_name="_er_browse", **PRIVATE)
    for btn_, step in ((prev_btn, -1), (next_btn, 1)):
        btn_.click(lambda r, m, o, p, *x, step=step: ui_browse(r, m, o, next_page(p, step), *x),
                   browse_in, [*browse_out, status], api_name=f"_er_page_{'next' if step > 0 else 'prev'}", **PRIVATE)
    btn.click(for_visitor(view, len(outputs)), inputs, [*outputs, status], api_name="_ui_errors", **PRIVATE)
    for gallery, kind, found_rows in zip((fp, fn, dis, browse), (*KINDS, "browse"), (rows, rows, rows, browse_rows)):
        gallery.select(opener(kind), [run, found_rows], [ctx.tabs, ctx.face_source, ctx.face_row],
                       api_name=f"_open_{kind}", **PRIVATE).success(
            ctx.compare_open, [ctx.face_source, ctx.face_row], ctx.compare_outputs, api_name=f"_open_{kind}_predict",
            **PRIVATE, **MODEL_KW)
    with tab, gr.Row(visible=False):
        api_btn = gr.Button(visible=False)
    api_btn.click(friendly(api_view), inputs[:4], [fp, fn, dis, note], api_name="errors")

    ctx.run_lists.append(run)
    ctx.url_inputs["errors"] = {"run": run, "method": method, "dataset": dataset, "threshold": threshold}
    tab.first_visit = (view, inputs, outputs)
    return tab
