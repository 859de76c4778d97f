"""The page: title and links, the one-line status with its details, the tabs, and shareable links.

A link opens a view with its selection through query parameters, e.g.
`/?tab=hypersphere&run=demo&method=ln_norm_slerp&a=3&b=17` draws that SLERP path, and
`/?tab=roc&run=demo&level=video&threshold=0.3` opens the ROC browser there. "Copy link" writes the
link of what is on screen.
"""
from __future__ import annotations

import logging
from urllib.parse import urlencode

import gradio as gr

from dfdet.viz.session import Session
from dfdet.viz.startup import CODE_URL, PAPER_URL

from . import about, compare, errors, hypersphere, learn, roc
from .common import PRIVATE, Ctx
from .runs import first_run, run_names

log = logging.getLogger("dfdet.app")
DELETE_CACHE = (600, 3600)  # every 10 min, delete uploads/outputs older than 1 h; all of them at shutdown
TABS = (compare, hypersphere, roc, errors, learn, about)  # a new tab: a module with build(ctx) -> gr.Tab, added here
TAB_IDS = ("compare", "hypersphere", "roc", "errors", "learn", "about")


def build_app(session: Session) -> gr.Blocks:
    s = session
    ctx = Ctx(session=s)
    with gr.Blocks(title="dfdet: CLIP deepfake detection", delete_cache=DELETE_CACHE) as app:
        gr.Markdown("# dfdet: CLIP deepfake detectors side by side\nThe four methods of *Unlocking the Hidden "
                    f"Potential of CLIP in Generalizable Deepfake Detection* ([paper]({PAPER_URL}), "
                    f"[code]({CODE_URL})) on the CLIP ViT-L/14 vision encoder, and the thesis's text-guided ones.",
                    elem_id="page-title")
        status = gr.HTML(s.startup.status_line(), elem_id="status-line")
        with gr.Accordion("Details: models, what is missing, how to provide it", open=False):
            details = gr.Markdown(s.startup.details(), elem_id="status-details")
            with gr.Row(visible=offer_demo(s)) as demo_row:
                demo_btn = gr.Button("Start demo mode (random weights: scores are meaningless)", size="sm")
            demo_msg = gr.Markdown()
        timer = gr.Timer(2.0, active=s.startup.busy())
        with gr.Row():
            link_btn = gr.Button("Copy link to this view", size="sm", scale=0, elem_id="copy-link")
            link_box = gr.Textbox(show_label=False, container=False, interactive=False, elem_id="link-box",
                                  placeholder="a link that opens this view with its selection")
        note_box = gr.HTML("", elem_id="link-note")  # what a link asked for that could not be used
        current = gr.State("compare")
        url_tab = gr.State("")  # the tab a link named, "" for a plain visit
        with gr.Tabs(selected="compare") as tabs:
            ctx.tabs = tabs
            built = {tid: mod.build(ctx) for tid, mod in zip(TAB_IDS, TABS)}
        hidden_banner = gr.Markdown(visible=False)

        # -- tabs: remember which one is shown; fill a tab on its first visit (cached views are fast) ---------
        shown = gr.State(set())
        for tid, tab in built.items():
            if tab is None:
                continue
            fill = getattr(tab, "first_visit", None)
            if fill is None:
                tab.select(lambda t=tid: t, None, current, api_name=f"_tab_{tid}", **PRIVATE, show_progress="hidden")
                continue
            view, inputs, outputs = fill
            tab.select(first_visit(tid, view, len(outputs)), [shown, *inputs], [*outputs, shown, current],
                       api_name=f"_tab_{tid}", **PRIVATE, show_progress="hidden")

        # -- status: at load, and every 2 s while models load or demo mode is built ------------------------------
        run_lists = [*ctx.run_lists, ctx.face_source, *[o for _, outs in ctx.run_followers for o in outs]]

        def lists():
            from .compare import source_choices
            names, r0 = run_names(s), first_run(s)
            follow = [u for fn, outs in ctx.run_followers for u in (fn(r0) if len(outs) > 1 else (fn(r0),))]
            return (*[gr.Dropdown(choices=names, value=r0)] * len(ctx.run_lists),
                    gr.Dropdown(choices=source_choices(s)), *follow)

        def refresh():
            return (s.startup.status_line(), s.startup.details(), gr.Row(visible=offer_demo(s)),
                    gr.Timer(active=s.startup.busy()), *lists())

        def poll(known):
            if s.startup.busy():
                return s.startup.status_line(), gr.skip(), gr.skip(), gr.Timer(active=True), known, \
                    *[gr.skip()] * len(run_lists)
            now = tuple(s.store.runs)
            if tuple(known or ()) == now:  # nothing new: keep what the visitor selected
                return (*refresh()[:4], known, *[gr.skip()] * len(run_lists))
            return (*refresh()[:4], list(now), *lists())

        known_runs = gr.State(list(s.store.runs))
        status_out = [status, details, demo_row, timer]
        timer.tick(poll, known_runs, [*status_out, known_runs, *run_lists], api_name="_poll", **PRIVATE,
                   show_progress="hidden")

        def start_demo():
            msg = s.startup.request_demo()
            return s.startup.banner(), msg

        demo_btn.click(start_demo, None, [hidden_banner, demo_msg], api_name="_ui_demo", **PRIVATE).then(
            refresh, None, [*status_out, *run_lists], api_name="_after_demo", **PRIVATE)
        with gr.Row(visible=False):
            api_status, api_demo = gr.Button(visible=False), gr.Button(visible=False)
        api_status.click(s.startup.public_status, None, [hidden_banner, details],
                         api_name="status")  # no server folder in it (Startup.public_status)
        api_demo.click(start_demo, None, [hidden_banner, demo_msg], api_name="start_demo")

        # -- shareable links ---------------------------------------------------------------------------------------
        keys = [(tid, k) for tid in TAB_IDS for k in ctx.url_inputs.get(tid, {})]
        comps = [ctx.url_inputs[tid][k] for tid, k in keys]

        def from_url(request: gr.Request, shown_tabs):
            """The link's valid parameters onto the components (dfdet.viz.links: bad ones are clamped or
            ignored, with a plain-text note); the tab it opens counts as visited, so its first-visit view
            never redraws over what the link asked for (a SLERP path)."""
            from dfdet.viz.links import read_link
            try:
                link = read_link(dict(request.query_params) if request is not None else {}, s.store,
                                 {tid: tuple(ctx.url_inputs.get(tid, {})) for tid in TAB_IDS})
            except Exception:  # noqa: BLE001 - a link never takes the page down
                log.exception("reading a link failed")
                link = None
            tab = link.tab if link else None
            values = [link.values[k] if tab == tid and k in link.values else gr.skip() for tid, k in keys]
            shown_now = set(shown_tabs or ()) | ({tab} if tab and tab in ctx.url_inputs else set())
            return (gr.Tabs(selected=tab) if tab else gr.skip(), tab or "compare", tab or "", shown_now,
                    link_note(link.notes if link else []), *values)

        def make_link(tab, *values):
            from dfdet.viz.links import link_query
            return urlencode(link_query(tab, {k: v for (tid, k), v in zip(keys, values) if tid == tab}))

        app.load(refresh, None, [*status_out, *run_lists], api_name="_load", **PRIVATE).then(
            from_url, shown, [tabs, current, url_tab, shown, note_box, *comps], api_name="_from_url", **PRIVATE).then(
            open_from_url(built), [url_tab, *[i for t in built.values() for i in url_view(t)[1]]],
            [o for t in built.values() for o in url_view(t)[2]], api_name="_open_url", **PRIVATE)
        for i, (fn, output) in enumerate(ctx.on_load):
            app.load(fn, None, output, api_name=f"_load_{i}", **PRIVATE, show_progress="hidden")
        link_btn.click(make_link, [current, *comps], link_box, api_name="_link", **PRIVATE).then(
            None, link_box, link_box, js=_copy_js())
    return app


def link_note(notes: list[str]) -> str:
    """A link's refused parameters, as escaped text (a link's value is never rendered as HTML)."""
    from html import escape
    return f"<div class='link-note' role='status'>⚠ {escape('; '.join(notes))}</div>" if notes else ""


def url_view(tab) -> tuple:
    """(view, inputs, outputs) a link opens: the tab's url_view, else its first-visit view."""
    return getattr(tab, "url_view", None) or getattr(tab, "first_visit", None) or (None, [], [])


def open_from_url(built: dict):
    """After a link set the inputs: run the view of the tab it names (nothing for a plain visit)."""
    spans, start = {}, 0
    for tid, tab in built.items():
        view, inputs, outputs = url_view(tab)
        spans[tid] = (view, start, len(inputs), len(outputs))
        start += len(inputs)
    n_out = sum(v[3] for v in spans.values())

    def handler(current, *values):
        out, seen = [], False
        for tid, (view, i0, n_in, n_o) in spans.items():
            if view is not None and tid == current and not seen:
                seen = True
                try:
                    res = view(*values[i0:i0 + n_in])
                    out += list(res if isinstance(res, tuple) else (res,))[:n_o]
                    continue
                except Exception:  # noqa: BLE001 - a stale link opens the tab with its plain first view
                    res = fallback(built[tid], values[i0:i0 + n_in], n_o)
                    if res is not None:
                        out += res
                        continue
            out += [gr.skip()] * n_o
        return out if n_out != 1 else out[0]
    return handler


def fallback(tab, values, n_out: int) -> list | None:
    """The tab's first-visit view when its link view failed (a url_view's inputs and outputs begin with the
    first visit's), padded with skips; None when there is none or it fails too."""
    fv = getattr(tab, "first_visit", None)
    if fv is None or fv is getattr(tab, "url_view", None):
        return None
    view, inputs, outputs = fv
    try:
        res = view(*values[:len(inputs)])
    except Exception:  # noqa: BLE001 - the tab's own button shows the reason
        return None
    res = list(res if isinstance(res, tuple) else (res,))[:len(outputs)]
    return res + [gr.skip()] * (n_out - len(res))


def first_visit(key: str, view, n_out: int):
    """A tab.select handler: on the first visit (with a run to show) call `view`, then remember it."""
    def handler(shown, *args):
        if key in shown or (args and args[0] in (None, "")):
            return *[gr.skip()] * n_out, shown, key
        try:
            out = view(*args)
        except Exception:  # noqa: BLE001 - the tab's own button shows the reason
            return *[gr.skip()] * n_out, shown, key
        out = out if isinstance(out, tuple) else (out,)
        return *out, shown | {key}, key
    return handler


def offer_demo(s: Session) -> bool:
    return s.status.mode == "none" and s.cfg.demo != "off" and s.startup.demo.state == "idle"


def _copy_js() -> str:
    from .assets import COPY_JS
    return COPY_JS
