"""Hypersphere tab: a run's faces on the sphere, one face by click or row, SLERP paths between two faces."""
from __future__ import annotations

import gradio as gr

from dfdet.errors import DfdetError
from dfdet.viz import about
from dfdet.viz.errors import where_of
from dfdet.viz.media import image_file
from dfdet.viz.store import COLOR_BY, md_escape

from .common import MODEL_KW, PRIVATE, Ctx, for_visitor, friendly, how_to_read, on_gpu, open_dropdown, status_line
from .filters import build_filters, follow_run
from .runs import default_method, first_run, run_methods, run_names

HOW = ("each dot is one face, placed by UMAP from the feature the method's head sees; colour is the ground truth "
       "(or what you pick). Hover for the face, click to pick it. Neighbourhoods matter, distances do not.")


def dims_of(value) -> int:
    return int(str(value)[0]) if value not in (None, "") else 2


def build(ctx: Ctx) -> gr.Tab:
    s = ctx.session
    r0 = first_run(s)
    m0 = run_methods(s, r0)
    with gr.Tab("Hypersphere", id="hypersphere") as tab:
        how_to_read(HOW)
        with gr.Row():
            run = open_dropdown(run_names(s), r0, label="Run", elem_id="hs-run")
            method = open_dropdown(m0, default_method(m0), label="Method", elem_id="hs-method")
            color = gr.Radio(list(COLOR_BY), value="label", label="Colour by")
            dims = gr.Radio(["2-D", "3-D"], value="2-D", label="Projection")
            level = gr.Radio(["faces", "videos"], value="faces", label="Points", elem_id="hs-level")
            show = gr.Button("Show embeddings", variant="primary", elem_id="hs-btn")
        flt = build_filters(s, r0, "hs")
        status = status_line("hs-status")
        with gr.Row():
            with gr.Column(scale=3):
                plot = gr.Plot(label="Embeddings on the hypersphere (UMAP)", elem_id="hs-plot")
            with gr.Column(scale=1):
                image = gr.Image(label="Chosen face", type="pil", height=224, interactive=False)
                info = gr.Markdown("Hover a point to see the face; click it to show it here.", elem_id="hs-info")
                click = gr.Textbox(visible="hidden", elem_id="hs-click")
                hover = gr.Textbox(visible="hidden", elem_id="hs-hover")  # a large run's hovered row (ui/assets.py)
                hover_uri = gr.Textbox(visible="hidden", elem_id="hs-hover-uri")  # "row|data:image/jpeg;..."
                row = gr.Number(label="Row", minimum=0, step=1, elem_id="hs-row")
                with gr.Row():
                    show_row = gr.Button("Show row", size="sm", elem_id="hs-show-row")
                    map_row = gr.Button("Its map", size="sm", elem_id="hs-map")
                    to_a = gr.Button("Use as A", size="sm")
                    to_b = gr.Button("Use as B", size="sm")
        gr.Markdown("### SLERP path between two faces")
        with gr.Row():
            a = gr.Number(label="Face A (row)", minimum=0, step=1, elem_id="sl-a")
            b = gr.Number(label="Face B (row)", minimum=0, step=1, elem_id="sl-b")
            kind = gr.Radio(["different class", "same class"], value="different class", label="Pair")
            rand = gr.Button("Random pair")
            draw = gr.Button("Draw SLERP path", variant="primary", elem_id="sl-btn")
        with gr.Row():
            ends = gr.Gallery(label="A and B", columns=2, height=190, allow_preview=False, elem_id="sl-ends")
            strip = gr.Gallery(label="Nearest real faces along the path (t = 0.25, 0.5, 0.75)", columns=3,
                               height=190, allow_preview=False, elem_id="sl-strip")
        with gr.Row():
            curve = gr.Plot(label="p(fake) along the path")
            text = gr.Markdown(elem_id="sl-text")
        gr.Markdown(about.HYPERSPHERE_TEXT)

    head_path = on_gpu(s.sphere.slerp)

    def pick(run_name, method_name):
        """The method asked for, else the run's default: a tab can open before the run's method list arrives."""
        return method_name or default_method(run_methods(s, run_name))

    def figure(run_name, method_name, color_by, d, points="faces", *filters):
        """A large run draws a stratified sample over a density (the title says n shown of N); videos: one
        point per video; `filters`: the Filter controls (ui/filters.py), only the matching faces drawn."""
        return s.sphere.figure(run_name, pick(run_name, method_name), color_by or "label", dims_of(d),
                               "video" if points == "videos" else "face", where=where_of(*filters) or None)

    def point(run_name, _method, r):
        if r in (None, ""):
            raise gr.Error("click a point in the plot, or type a row number", print_exception=False)
        image_, text_, r = s.sphere.point(run_name, r)
        demo = s.store.run_is_demo(s.store.run(run_name))
        note = "\n\n<span class='demo-warning'>⚠ DEMO: scores are meaningless</span>" if demo else ""
        return image_file(image_), text_ + note, r

    def slerp(run_name, method_name, a_, b_, color_by, d):
        if a_ in (None, "") or b_ in (None, ""):
            raise gr.Error("choose face A and face B first (click points, or Random pair)", print_exception=False)
        return head_path(run_name, pick(run_name, method_name), a_, b_, color_by or "label", dims_of(d))

    def slerp_api(*args):
        r = slerp(*args)
        return r.sphere, r.curve, r.text

    def slerp_ui(*args):
        r = slerp(*args)
        return r.sphere, r.curve, r.text, [(image_file(im), c) for im, c in r.ends], \
            [(image_file(im), c) for im, c in r.strip]

    def cold_note(run_name, method_name, d):
        if s.sphere.cold(run_name, method_name, dims_of(d)):
            return ("<div class='status ok'>This run has no stored projection: fitting a UMAP projection of its "
                    "embeddings here (a small run; first time only, some seconds; then cached on disk). "
                    "`dfdet project RUN_FOLDER` stores one.</div>")
        return ""

    def on_run(run_name, current=None):
        """The run's methods; the method shown stays when the run has it (a link's choice is not reset)."""
        methods = run_methods(s, run_name)
        if current and current in [v for _, v in methods]:
            return gr.Dropdown(choices=methods)
        return gr.Dropdown(choices=methods, value=default_method(methods))

    sphere_in = [run, method, color, dims]
    # no method yet: the run list's own update sets it (a page load), and a reply here could land after a link's
    run.change(lambda r, m: on_run(r, m) if m else gr.skip(), [run, method], method, api_name="_hs_run", **PRIVATE)
    ctx.run_followers.append((on_run, [method]))
    run.change(lambda r: follow_run(s, r), run, flt.choice_lists(), api_name="_hs_filters_run", **PRIVATE)
    ctx.run_followers.append((lambda r: follow_run(s, r), flt.choice_lists()))
    show.click(cold_note, [run, method, dims], status, api_name="_hs_cold", **PRIVATE, show_progress="hidden").then(
        for_visitor(figure, 1), [*sphere_in, level, *flt.inputs()], [plot, status], api_name="_ui_hs", **PRIVATE)
    # a click fills the row too: "Its map", "Use as A" and "Use as B" then act on the face just picked
    click.change(for_visitor(point, 3), [run, method, click], [image, info, row, status], api_name="_hs_click",
                 **PRIVATE)
    def thumb(run_name, r):
        """A large run's figure embeds no faces: the hovered one is fetched here, once (the page caches it).
        A hover is no request a visitor made: a bad row or run shows no face, and no error."""
        try:
            return f"{int(float(r))}|{s.store.thumbnail(run_name, r)}"
        except (DfdetError, TypeError, ValueError):
            return gr.skip()

    hover.change(thumb, [run, hover], hover_uri, api_name="_hs_hover", trigger_mode="always_last",
                 show_progress="hidden", **PRIVATE).then(
        None, hover_uri, None, js="(v) => { if (window.dfdetThumb) window.dfdetThumb(v); }")
    show_row.click(for_visitor(lambda *x: point(*x)[:2], 2), [run, method, row], [image, info, status],
                   api_name="_ui_point", **PRIVATE)

    def face_map(run_name, method_name, r):
        """The row's face under the chosen method's own Grad-CAM map (services/explain.py; cached in the run)."""
        if r in (None, ""):
            raise gr.Error("type a row number (or click a point, then its row) first", print_exception=False)
        _, text_, r = point(run_name, method_name, r)
        m = pick(run_name, method_name)
        face = s.store.face(f"run:{run_name}", r)[0]
        mapped = s.explain.with_map(run_name, m, r, face)  # the face itself when the method has no patch map
        label = md_escape({v: k for k, v in run_methods(s, run_name)}.get(m, m))
        what = (f"Under **{label}**'s Grad-CAM map (bright = evidence for *fake*)." if mapped is not face
                else f"{label} has no saliency map here (text-guided, or not loaded).")
        return image_file(mapped), f"{what}\n\n{text_}"

    map_row.click(for_visitor(face_map, 2), [run, method, row], [image, info, status], api_name="_ui_hs_map",
                  **PRIVATE, **MODEL_KW)
    to_a.click(lambda r: r, row, a, api_name="_to_a", **PRIVATE)
    to_b.click(lambda r: r, row, b, api_name="_to_b", **PRIVATE)
    rand.click(for_visitor(s.sphere.random_pair, 2), [run, kind], [a, b, status], api_name="_ui_pair", **PRIVATE)
    draw.click(for_visitor(slerp_ui, 5), [run, method, a, b, color, dims], [plot, curve, text, ends, strip, status],
               api_name="_ui_slerp", **PRIVATE, **MODEL_KW)

    with tab, gr.Row(visible=False):
        api_btns = [gr.Button(visible=False) for _ in range(4)]
    api_btns[0].click(friendly(figure), sphere_in, plot, api_name="hypersphere")
    api_btns[1].click(friendly(point), [run, method, row], [image, info, row], api_name="point")
    api_btns[2].click(friendly(s.sphere.random_pair), [run, kind], [a, b], api_name="random_pair")
    api_btns[3].click(friendly(slerp_api), [run, method, a, b, color, dims], [plot, curve, text], api_name="slerp_path",
                      **MODEL_KW)

    ctx.run_lists.append(run)
    ctx.url_inputs["hypersphere"] = {"run": run, "method": method, "a": a, "b": b, "dims": dims, "color": color}
    def url_open(run_name, method_name, color_by, d, a_, b_):
        if a_ not in (None, "") and b_ not in (None, ""):
            return slerp_ui(run_name, method_name, a_, b_, color_by, d)
        return figure(run_name, method_name, color_by, d), *[gr.skip()] * 4

    tab.first_visit = (figure, sphere_in, [plot])
    tab.url_view = (url_open, [*sphere_in, a, b], [plot, curve, text, ends, strip])
    return tab
