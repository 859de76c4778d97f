"""Learn tab: what LN-tuning trains, why the hypersphere, SLERP against LERP, alignment/uniformity, two methods
side by side, and the papers' reported numbers. A thin UI over dfdet.learn.LearnService."""
from __future__ import annotations

from html import escape

import gradio as gr

from dfdet.learn import link as learn_link
from dfdet.learn.service import LearnService
from dfdet.methods import METHODS

from .common import PRIVATE, Ctx, display_table, for_visitor, how_to_read, open_dropdown, status_line
from .runs import default_method, first_run, run_methods, run_names

HOW = ("six panels, top to bottom, for a class: each has a two-line *what to notice*. On a demo run every number "
       "is meaningless (random-weight backbone): it shows how to read the panel, not what CLIP does.")
NOTICE = {
    1: "Only the orange boxes (every LayerNorm's γ and β) and the red head train: 0.03% of ViT-L/14.\n"
       "The bars show which LayerNorms a checkpoint moved most: adaptation is spread thin, not a new network.",
    2: "Without Norm, ‖z‖ varies by dataset and class, and the verdict can ride on it (the LN-tuning sweep moves).\n"
       "With Norm, only the direction counts: the boundary is a circle on the sphere and the LN + Norm sweep is flat.",
    3: "LERP (mixup) is a chord: its norm dips below 1, so it leaves the sphere the head was trained on.\n"
       "SLERP stays on the great circle; same-class pairs (as in training) keep p_fake on one side, mixed pairs cross.",
    4: "Lower alignment: each class is tighter. Lower uniformity: features use more of the sphere.\n"
       "GenD's losses push both down; compare where the methods sit, per dataset.",
    5: "The same face in two methods' spheres: click a face in either, it is ringed in both.\n"
       "Faces that change side between the methods are where the method's change matters.",
    6: "Reported numbers are the papers' own, on their data; measured ones are this run's.\n"
       "A table the build could not source is listed with why, never filled in.",
}
STACK_METHODS = [(s.label, n) for n, s in METHODS.items()]

CLICK_JS = """
(...args) => {
  function hook() {
    document.querySelectorAll('#ln-side-a .js-plotly-plot, #ln-side-b .js-plotly-plot').forEach(function (gd) {
      if (gd.__dfdetLearn || typeof gd.on !== 'function') return;
      gd.__dfdetLearn = true;
      gd.on('plotly_click', function (ev) {
        const p = ev.points && ev.points[0];
        if (!p || p.customdata === undefined || p.customdata === null) return;
        const box = document.querySelector('#ln-click textarea, #ln-click input');
        if (!box) return;
        box.value = String(p.customdata);
        box.dispatchEvent(new Event('input', {bubbles: true}));
        box.dispatchEvent(new Event('change', {bubbles: true}));
      });
    });
  }
  if (!window.__dfdetLearnHook) { window.__dfdetLearnHook = setInterval(hook, 700); }
  return args;  // an event's js runs first and hands its inputs on to the server
}
"""


def _copy_js() -> str:
    from .assets import COPY_JS
    return COPY_JS


def notice(i: int) -> gr.Markdown:
    first, second = NOTICE[i].split("\n")
    return gr.Markdown(f"> **What to notice.** {first}<br>{second}", elem_id=f"ln-notice-{i}")


def build(ctx: Ctx) -> gr.Tab:
    s = ctx.session
    svc = LearnService(s.store)
    s.learn = svc  # scripts and the bench reach the same service (and its caches)
    r0 = first_run(s)
    m0 = run_methods(s, r0)
    with gr.Tab("Learn", id="learn") as tab:
        how_to_read(HOW)
        status = status_line("ln-status")
        link_note = gr.HTML("", elem_id="ln-link-note")
        with gr.Row():
            share = gr.Button("Link to this selection", size="sm", scale=0, elem_id="ln-link-btn")
            share_box = gr.Textbox(show_label=False, container=False, interactive=False, elem_id="ln-link-box",
                                   placeholder="a link that opens the Learn tab with its run, method, pair, t and rows")
        with gr.Row():
            run = open_dropdown(run_names(s), r0, label="Run", elem_id="ln-run")
            method = open_dropdown(m0, default_method(m0), label="Method", elem_id="ln-method")

        gr.Markdown("## 1. What trains")
        notice(1)
        with gr.Row():
            stack_m = gr.Radio(STACK_METHODS, value="ln_norm_slerp", label="Method", elem_id="ln-stack-method")
        stack_text = gr.Markdown(elem_id="ln-stack-text")
        with gr.Row():
            stack_plot = gr.Plot(label="ViT-L/14, part by part (hover for counts)", elem_id="ln-stack")
            with gr.Column():
                delta_plot = gr.Plot(label="|Δγ| per LayerNorm, each loaded LN checkpoint", elem_id="ln-delta")
                delta_note = gr.Markdown(elem_id="ln-delta-note")
        delta_table = gr.Dataframe(label="Per LayerNorm: mean |Δγ|, mean |Δβ|, relative sizes (same as `dfdet inspect`)",
                                   interactive=False, max_height=260, elem_id="ln-delta-table")

        gr.Markdown("## 2. Why the hypersphere")
        notice(2)
        with gr.Row():
            show2 = gr.Button("Show norms and boundary", variant="primary", elem_id="ln-show2")
            row = gr.Number(label="Face (row) for the norm sweep and the side-by-side mark", minimum=0, step=1,
                            value=0, elem_id="ln-row")
        with gr.Row():
            norm_plot = gr.Plot(label="‖z_cls‖ per class and dataset", elem_id="ln-norms")
            sweep_plot = gr.Plot(label="LN vs LN + Norm: one face, its norm scaled", elem_id="ln-sweep")
        with gr.Row():
            bound_plot = gr.Plot(label="The decision boundary on the sphere", elem_id="ln-boundary")
            bound_text = gr.Markdown(elem_id="ln-boundary-text")

        gr.Markdown("## 3. SLERP against LERP")
        notice(3)
        with gr.Row():
            a = gr.Number(label="Face A (row)", minimum=0, step=1, elem_id="ln-a")
            b = gr.Number(label="Face B (row)", minimum=0, step=1, elem_id="ln-b")
            kind = gr.Radio(["same class", "different class"], value="same class", label="Pair", elem_id="ln-kind")
            rand = gr.Button("Random pair", elem_id="ln-rand")
            draw = gr.Button("Draw both paths", variant="primary", elem_id="ln-draw")
        t = gr.Slider(0, 1, value=0.5, step=0.025, label="t (0 = A, 1 = B)", elem_id="ln-t")
        pair_text = gr.Markdown(elem_id="ln-pair-text")
        with gr.Row():
            pair_plot = gr.Plot(label="Both paths on the unit sphere (the exact plane of A and B)", elem_id="ln-pair")
            with gr.Column():
                pnorm_plot = gr.Plot(label="Norm along t", elem_id="ln-pair-norm")
                pfake_plot = gr.Plot(label="p_fake along t", elem_id="ln-pair-p")

        gr.Markdown("## 4. Alignment and uniformity")
        notice(4)
        show4 = gr.Button("Measure this run", elem_id="ln-show4")
        with gr.Row():
            geo_table = gr.Dataframe(label="Per method and dataset (same as `dfdet geometry`)", interactive=False,
                                     max_height=320, elem_id="ln-geo-table")
            geo_plot = gr.Plot(label="The alignment–uniformity plane", elem_id="ln-geo")

        gr.Markdown("## 5. Two methods side by side")
        notice(5)
        with gr.Row():
            m2 = open_dropdown(m0, "ln_tuning" if any(v == "ln_tuning" for _, v in m0) else None,
                               label="Second method", elem_id="ln-m2")
            show5 = gr.Button("Show side by side", elem_id="ln-show5")
        click = gr.Textbox(visible="hidden", elem_id="ln-click")
        with gr.Row():
            side_a = gr.Plot(label="Method", elem_id="ln-side-a")
            side_b = gr.Plot(label="Second method", elem_id="ln-side-b")

        gr.Markdown("## 6. Reported in the papers, beside measured here")
        notice(6)
        rep_table = gr.Dataframe(label="Reported (the source's number) and measured here (this run)", interactive=False,
                                 elem_id="ln-reported")
        rep_cite = gr.Markdown(elem_id="ln-cite")

    # -- handlers --------------------------------------------------------------------------------------------
    def panel1(m):
        fig, text = svc.what_trains(m or "ln_norm_slerp")
        dfig, df, note = svc.deltas()
        return fig, text, dfig, display_table(df.round(6)) if len(df) else None, note

    def panel2(run_name, method_name, r):
        nf = svc.norms(run_name, method_name)
        bf, bt = svc.boundary(run_name, method_name, r)
        sf, why = svc.sweep(run_name, r if r not in (None, "") else 0)
        return nf, bf, bt + ("\n\n" + why if why else ""), sf

    def pair(run_name, method_name, ra, rb, tt):
        return svc.pair(run_name, method_name, ra, rb, tt if tt is not None else 0.5)

    def random_pair(run_name, k):
        return s.sphere.random_pair(run_name, k)

    def panel4(run_name):
        df, fig = svc.geometry(run_name)
        return display_table(df), fig

    def panel5(run_name, first, second, r):
        if not second:
            raise gr.Error("choose a second method", print_exception=False)
        fa, _ = svc.boundary(run_name, first, r)
        fb, _ = svc.boundary(run_name, second, r)
        return fa, fb

    def panel6(run_name):
        df, cite = svc.reported(run_name)
        return display_table(df), cite

    def on_click(run_name, first, second, value):
        if value in (None, ""):
            return gr.skip(), gr.skip(), gr.skip()
        try:
            r = int(value)
        except (TypeError, ValueError):
            raise gr.Error("a click sends a row number", print_exception=False) from None
        return (r, *panel5(run_name, first, second, r))

    def methods_for(run_name, current, current2):
        ms = run_methods(s, run_name)
        names = [v for _, v in ms]
        keep = current if current in names else default_method(ms)
        keep2 = current2 if current2 in names else ("ln_tuning" if "ln_tuning" in names else keep)
        return gr.Dropdown(choices=ms, value=keep), gr.Dropdown(choices=ms, value=keep2)

    p1_out = [stack_plot, stack_text, delta_plot, delta_table, delta_note]
    stack_m.change(for_visitor(panel1, 5), stack_m, [*p1_out, status], api_name="_ln_stack", **PRIVATE)
    show2.click(for_visitor(panel2, 4), [run, method, row], [norm_plot, bound_plot, bound_text, sweep_plot, status],
                api_name="_ln_sphere", **PRIVATE)
    pair_in = [run, method, a, b, t]
    pair_out = [pair_plot, pnorm_plot, pfake_plot, pair_text]
    draw.click(for_visitor(pair, 4), pair_in, [*pair_out, status], api_name="_ln_pair", **PRIVATE)
    t.release(for_visitor(pair, 4), pair_in, [*pair_out, status], api_name="_ln_t", **PRIVATE,
              show_progress="hidden")
    rand.click(for_visitor(random_pair, 2), [run, kind], [a, b, status], api_name="_ln_rand", **PRIVATE).then(
        for_visitor(pair, 4), pair_in, [*pair_out, status], **PRIVATE)
    show4.click(for_visitor(panel4, 2), run, [geo_table, geo_plot, status], api_name="_ln_geo", **PRIVATE)
    show5.click(for_visitor(panel5, 2), [run, method, m2, row], [side_a, side_b, status], api_name="_ln_side",
                js=CLICK_JS, **PRIVATE)
    click.change(for_visitor(on_click, 3), [run, method, m2, click], [row, side_a, side_b, status],
                api_name="_ln_click", **PRIVATE)
    run.change(methods_for, [run, method, m2], [method, m2], api_name="_ln_run", **PRIVATE).then(
        for_visitor(panel6, 2), run, [rep_table, rep_cite, status], **PRIVATE)
    share.click(learn_link.query, [run, method, m2, a, b, row, t, stack_m], share_box, api_name="_ln_link",
                **PRIVATE).then(None, share_box, share_box, js=_copy_js())
    ctx.run_lists.append(run)  # the demo and Hub runs appear after the page is built
    ctx.run_followers.append((lambda r: methods_for(r, None, None), [method, m2]))

    # -- first visit and deep links ----------------------------------------------------------------------------
    def first(m, run_name):
        out = list(panel1(m))
        try:
            df, cite = panel6(run_name)
        except Exception:  # noqa: BLE001 - a run that cannot be read still shows the reported table
            df, cite = panel6(None)
        return (*out, df, cite)

    tab.first_visit = (first, [stack_m, run], [*p1_out, rep_table, rep_cite])
    tab.select(None, None, None, js=CLICK_JS, **PRIVATE)

    def from_link(request: gr.Request):
        """`?tab=learn&...`: the checked parameters onto the controls, the views they name drawn."""
        q = dict(request.query_params) if request is not None else {}
        n_out = 17 + len(p1_out) + 2
        if q.get("tab") != "learn":
            return [gr.skip()] * n_out
        link = learn_link.read(q, s.store.runs)
        v = link.values
        run_name = v.get("run") or first_run(s)
        ms = run_methods(s, run_name)
        meth = v.get("method") or default_method(ms)
        note = f"<div class='link-note' role='status'>⚠ {escape('; '.join(link.notes))}</div>" if link.notes else ""
        out = [gr.Tabs(selected="learn"), gr.Dropdown(choices=run_names(s), value=run_name),
               gr.Dropdown(choices=ms, value=meth), v.get("stack", gr.skip()), v.get("a", gr.skip()),
               v.get("b", gr.skip()), v.get("t", gr.skip()), v.get("row", gr.skip()),
               gr.Dropdown(choices=ms, value=v["m2"]) if "m2" in v else gr.skip(), note]
        pair_figs = [gr.skip()] * 4
        if run_name and "a" in v and "b" in v:
            try:
                pair_figs = list(svc.pair(run_name, meth, v["a"], v["b"], v.get("t", 0.5)))
            except Exception as err:  # noqa: BLE001 - the panel's button shows the reason again
                out[-1] += f"<div class='link-note'>⚠ {escape(str(err))}</div>"
        side = [gr.skip()] * 2
        if run_name and "m2" in v:
            try:
                side = list(panel5(run_name, meth, v["m2"], v.get("row")))
            except Exception:  # noqa: BLE001
                pass
        try:  # a link selects the tab without a visit event: draw what the first visit would
            first_views = list(first(v.get("stack", "ln_norm_slerp"), run_name))
        except Exception:  # noqa: BLE001 - the panels' own controls still work
            first_views = [gr.skip()] * (len(p1_out) + 2)
        return [*out, *pair_figs, *side, gr.skip(), *first_views]

    link_outs = [ctx.tabs, run, method, stack_m, a, b, t, row, m2, link_note, *pair_out, side_a, side_b, status,
                 *p1_out, rep_table, rep_cite]
    ctx.on_load.append((from_link, link_outs))
    return tab
