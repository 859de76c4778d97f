"""dfdet dashboard: the four CLIP deepfake-detection methods side by side.

    python app.py                       # ViT-L/14 openai weights + checkpoints/ + runs/
    python app.py --clip-weights PATH   # local open_clip weights file (also $DFDET_CLIP_WEIGHTS)
    python app.py --demo auto           # no weights: tiny random backbone, every score meaningless

Tabs: Compare, Hypersphere, ROC browser, Errors, About. This file only wires components to
dfdet.viz; everything it shows is computed there (and testable without gradio).
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import signal
import sys
import time

import gradio as gr
import pandas as pd
from gradio.utils import get_upload_folder

from dfdet.config import BackboneConfig
from dfdet.errors import DfdetError
from dfdet.images import check_image_file
from dfdet.uploads import check_payload
from dfdet.methods import PAPER_METHODS
from dfdet.viz import about, plots, roc
from dfdet.viz.compare import TABLE_COLUMNS, Prediction, table_csv
from dfdet.viz.media import IMAGE_EXTS, MAX_UPLOAD_MB, VIDEO_EXTS, check_upload, image_file
from dfdet.viz.session import COLOR_BY, SAMPLES, AppConfig, Session

log = logging.getLogger("dfdet.app")
MODEL_QUEUE = "model"  # one model call at a time: the bank swaps overlays into one shared ViT
DELETE_CACHE = (600, 3600)  # every 10 min, delete uploads/outputs older than 1 h; all of them at shutdown
QUEUE_MAX_SIZE = 64  # requests waiting at once (all events); beyond it a request is refused with a message
VIEW_CONCURRENCY = 4  # non-model events run this many at a time
STATE_SESSIONS = 300  # visitors whose last outputs gradio keeps in memory (~1.5 MB each); older ones are dropped

# Hover thumbnails and click-to-pick on the hypersphere plot. gr.Plot has no hover/click events, so
# this script attaches to the plotly div: hover shows customdata[1] (a data: URI), click writes the
# row (customdata[0]) into the hidden #hs-click textbox, whose change event shows the face large.
HEAD = """
<script>
(function () {
  function tip() {
    let t = document.getElementById('dfdet-tip');
    if (!t) {
      t = document.createElement('img');
      t.id = 'dfdet-tip';
      t.style.cssText = 'position:fixed;display:none;width:96px;height:96px;z-index:10000;pointer-events:none;' +
        'border:2px solid #333;border-radius:4px;background:#fff;image-rendering:auto';
      document.body.appendChild(t);
    }
    return t;
  }
  function hook() {
    document.querySelectorAll('#hs-plot .js-plotly-plot').forEach(function (gd) {
      if (gd.__dfdet || typeof gd.on !== 'function') return;
      gd.__dfdet = true;
      gd.on('plotly_hover', function (ev) {
        const p = ev.points && ev.points[0];
        const cd = p && p.customdata;
        if (!cd || !cd[1]) return;
        const t = tip();
        t.src = cd[1];
        const e = ev.event || {};
        t.style.left = Math.max(4, (e.clientX || 0) - 116) + 'px';
        t.style.top = Math.max(4, (e.clientY || 0) - 48) + 'px';
        t.style.display = 'block';
      });
      gd.on('plotly_unhover', function () { tip().style.display = 'none'; });
      gd.on('plotly_click', function (ev) {
        const p = ev.points && ev.points[0];
        const cd = p && p.customdata;
        if (!cd || cd[0] === undefined || cd[0] === '') return;
        const box = document.querySelector('#hs-click textarea, #hs-click input');
        if (!box) return;
        box.value = String(cd[0]);
        box.dispatchEvent(new Event('input', {bubbles: true}));
        box.dispatchEvent(new Event('change', {bubbles: true}));
      });
    });
  }
  setInterval(hook, 600);
})();
</script>
"""
CSS = """
#banner h3 {margin: 0.2em 0;}
.demo-warning {color: #b00020; font-weight: 600;}
"""


SERVER_PATH = re.compile(r"(?<![\w.~:/])/(?:[^/\s'\"]+/)+")  # the folders of an absolute path


def scrub(message: str) -> str:
    """Files are named by file name only: the server's folders (temp, working, data) are no visitor's business."""
    return SERVER_PATH.sub("", message)


def friendly(fn):
    """Library errors become one readable message in the UI; anything else, a short note, not a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except DfdetError as err:
            raise gr.Error(scrub(str(err)), print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - shown as a message; the traceback goes to the server log
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(err).__name__}: {scrub(str(err))}). The details are in the "
                           "server log.", print_exception=False) from None
    return wrapper


def guard_image_upload(component: gr.Image) -> gr.Image:
    """Gradio opens an uploaded image with Pillow before any handler runs, and its errors name server
    paths. Check the header first (format, size, bomb), so the user reads the library's one message."""
    preprocess = component.preprocess

    def checked(payload):
        if payload is not None and getattr(payload, "path", None):
            try:
                check_image_file(check_upload(payload.path, "image"))
            except DfdetError as err:
                raise gr.Error(scrub(str(err)), print_exception=False) from None
        return preprocess(payload)
    component.preprocess = checked
    return component


def guard_file_inputs(app: gr.Blocks) -> gr.Blocks:
    """Every file a request names, in any input of any event, must be an upload to this server
    (dfdet.uploads), checked on the raw payload before gradio touches it: a payload without gradio's
    `meta` skips gradio's own check, and one with a URL for a path makes gradio fetch it."""
    preprocess_data = app.preprocess_data

    async def checked(block_fn, inputs, *args, **kwargs):
        server = getattr(app, "server_app", None)
        folder = getattr(server, "uploaded_file_dir", None) or get_upload_folder()
        try:
            for i, value in enumerate(inputs or []):
                block = block_fn.inputs[i] if i < len(block_fn.inputs) else None
                check_payload(value, folder, file_input=is_file_input(block))
        except DfdetError as err:
            raise gr.Error(str(err), print_exception=False) from None
        return await preprocess_data(block_fn, inputs, *args, **kwargs)
    app.preprocess_data = checked
    return app


def is_file_input(block) -> bool:
    """A component whose value names server files: its data model has a `path` (image, video, file, gallery...)."""
    return _names_files(getattr(block, "data_model", None))


@functools.lru_cache(maxsize=None)
def _names_files(model) -> bool:
    try:
        return '"path"' in str(model.model_json_schema()).replace("'", '"')
    except Exception:  # noqa: BLE001 - no model, or not a pydantic one: not a file input
        return False


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """NaN is not valid JSON: missing scores travel as empty cells."""
    return df.astype(object).where(df.notna(), None)


def build_app(session: Session) -> gr.Blocks:
    s = session

    def run_names() -> list[tuple[str, str]]:
        return [(s.run_label(n), n) for n in s.runs]

    def first_run() -> str | None:
        return next(iter(s.runs), None)

    def run_methods(name: str | None) -> list[tuple[str, str]]:
        if not name or name not in s.runs:
            return []
        run = s.runs[name]
        return [(roc.method_label(run, m), m) for m in roc.registry_order(run)]

    def run_datasets(name: str | None) -> list[str]:
        if not name or name not in s.runs:
            return []
        return sorted(s.runs[name].predictions["dataset"].unique())

    def main_dataset(name: str | None) -> list[str]:
        """The ROC browser starts on one dataset (the largest): four curves, one per method."""
        if not name or name not in s.runs:
            return []
        return [s.runs[name].predictions["dataset"].value_counts().idxmax()]

    def demo_tag(is_demo: bool) -> str:
        return f"<span class='demo-warning'>⚠ {plots.DEMO_NOTE}</span>" if is_demo else ""

    def prediction_outputs(pred: Prediction):
        gallery = [(image_file(im), None) for im in pred.crops[:32]]
        note = pred.message + ("\n\n" + demo_tag(True) if pred.demo else "")
        bars = plots.probability_bars(pred.table, pred.demo)
        timeline = (plots.frame_timeline(pred.times, pred.frame_scores, pred.demo) if pred.times is not None
                    else plots.empty_figure("Per-frame scores appear here for a video."))
        csv = table_csv(pred.table, pred.demo)
        return gallery, note, display_table(pred.table), bars, timeline, csv

    # ---- handlers (thin: each calls one Session method and formats) --------------------------
    @friendly
    def predict_image(image_path):
        return prediction_outputs(s.analyse_image(image_path))

    @friendly
    def predict_video(video_path):
        return prediction_outputs(s.analyse_video(video_path))

    @friendly
    def predict_sample(source, row):
        if row is None:
            raise DfdetError("pick a face first (Random face, or a row number)")
        return prediction_outputs(s.analyse_sample(source or SAMPLES, int(row)))

    @friendly
    def random_face(dataset, source, label):
        row = s.random_row(dataset or "any", source or "any", label or "any")
        _, rec = s.face(SAMPLES, row)
        return SAMPLES, row, s.describe(rec)

    @friendly
    def hypersphere(run, method, color_by, dims):
        return s.hypersphere(run, method, color_by, int(dims[0]) if isinstance(dims, str) else int(dims))

    @friendly
    def point(run, method, row):
        if row in (None, ""):
            raise DfdetError("click a point in the plot, or type a row number")
        row = int(float(row))
        image, text = s.point(run, row)
        return image_file(image), text + "\n\n" + demo_tag(s.run_is_demo(s.run(run))), row

    @friendly
    def random_pair(run, kind):
        return s.random_pair(run, kind)

    @friendly
    def slerp_path(run, method, a, b, color_by, dims):
        if a is None or b is None:
            raise DfdetError("choose face A and face B first (click points, or Random pair)")
        return s.slerp_path(run, method, int(a), int(b), color_by, int(str(dims)[0]))

    @friendly
    def roc_view(run, methods, datasets, level, threshold):
        r = s.run(run)
        methods, datasets = list(methods or []), list(datasets or [])
        fig = plots.roc_figure(roc.curves(r, methods, datasets, level), s.run_is_demo(r), threshold)
        return (fig, display_table(roc.metrics_table(r, methods, datasets, level)),
                display_table(roc.confusion_table(r, methods, datasets, level, threshold)))

    @friendly
    def error_view(run, method, dataset, threshold):
        cases = s.error_cases(run, method, dataset or "all", float(threshold))
        out = []
        for kind in ("fp", "fn", "disagree"):
            items = cases[kind]
            out.append([(image_file(im), cap) for im, cap, _ in items])
        rows = {k: [r for _, _, r in v] for k, v in cases.items()}
        note = (f"{len(rows['fp'])} false positives, {len(rows['fn'])} false negatives shown (most confident "
                f"first, threshold {threshold:.2f}). Click a face to open it in Compare. "
                + demo_tag(s.run_is_demo(s.run(run))))
        return *out, rows, note

    def open_in_compare(run, rows, kind, evt: gr.SelectData):
        shown = (rows or {}).get(kind, [])
        if not 0 <= evt.index < len(shown):  # the session's state was dropped (STATE_SESSIONS) or is stale
            raise gr.Error("This gallery is out of date: press “Find mistakes” again, then pick the face.",
                           print_exception=False)
        return gr.Tabs(selected="compare"), f"run:{run}", shown[evt.index]

    def offer_demo() -> bool:
        return s.status.mode == "none" and s.cfg.demo != "off"

    def run_dropdowns():
        return (*[gr.Dropdown(choices=run_names(), value=first_run())] * 3,
                gr.Dropdown(choices=source_choices(), value=SAMPLES))

    @friendly
    def start_demo(progress=gr.Progress()):
        msg = s.enable_demo(progress=lambda m: progress(None, desc=m))
        return (s.banner(), msg, gr.Row(visible=offer_demo()), *run_dropdowns())

    def refresh_status():
        """Page load and, while models load, every few seconds: banner, demo offer, run lists."""
        loading = s.status.mode == "loading"
        return (s.banner(), gr.Row(visible=offer_demo()), gr.Timer(active=loading), *run_dropdowns())

    def poll_status():
        loading = s.status.mode == "loading"
        if loading:
            return s.banner(), gr.Row(), gr.Timer(active=True), *[gr.Dropdown()] * 4
        return refresh_status()

    def source_choices() -> list[tuple[str, str]]:
        return [("sample faces", SAMPLES)] + [(f"run {s.run_label(n)}", f"run:{n}") for n in s.runs]

    def on_run_change(run):
        methods = run_methods(run)
        return gr.Dropdown(choices=methods, value=default_method(methods))

    def on_roc_run(run):
        methods, datasets = run_methods(run), run_datasets(run)
        return (gr.CheckboxGroup(choices=methods, value=[m for _, m in methods]),
                gr.CheckboxGroup(choices=datasets, value=main_dataset(run)))

    def on_err_run(run):
        methods = run_methods(run)
        return (gr.Dropdown(choices=methods, value=methods[0][1] if methods else None),
                gr.Dropdown(choices=["all"] + run_datasets(run), value="all"))

    def default_method(methods: list[tuple[str, str]]) -> str | None:
        """The most complete paper method the run has (LN + Norm + SLERP), else its first."""
        names = [m for _, m in methods]
        return next((m for m in reversed(PAPER_METHODS) if m in names), names[0] if names else None)

    filters = s.sample_filters()
    r0 = first_run()
    m0 = run_methods(r0)

    with gr.Blocks(title="dfdet: CLIP deepfake detection", delete_cache=DELETE_CACHE) as app:
        gr.Markdown("# dfdet: four CLIP methods side by side\nLinear probe, LN-tuning, LN + L2-norm and "
                    "LN + L2-norm + SLERP on the CLIP ViT-L/14 vision encoder (arXiv 2503.19683).")
        banner = gr.Markdown(s.banner(), elem_id="banner", label="Status")
        status_timer = gr.Timer(2.0, active=s.status.mode == "loading")
        with gr.Row(visible=offer_demo()) as demo_row:
            demo_btn = gr.Button("Start demo mode (random weights: scores are meaningless)", variant="secondary")
        demo_msg = gr.Markdown(label="Demo mode")

        with gr.Tabs(selected="compare") as tabs:
            # ---------------------------------------------------------------- Compare
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    with gr.Column(scale=1):
                        gr.Markdown("**A photo or face crop** (" + ", ".join(IMAGE_EXTS) + f"; up to {MAX_UPLOAD_MB} MB)")
                        image_in = gr.Image(label="Photo or face crop", type="filepath", image_mode=None,
                                            sources=["upload", "clipboard"], height=260)
                        guard_image_upload(image_in)
                        image_btn = gr.Button("Analyse photo", variant="primary")
                        gr.Markdown("**A short video** (" + ", ".join(VIDEO_EXTS) + ")")
                        video_in = gr.Video(label="Video", sources=["upload"], height=200)
                        video_btn = gr.Button("Analyse video")
                        gr.Markdown("**A face from a dataset manifest**")
                        with gr.Row():
                            ds_in = gr.Dropdown(["any"] + filters["dataset"], value="any", label="Dataset")
                            src_in = gr.Dropdown(["any"] + filters["source"], value="any", label="Source")
                            lab_in = gr.Radio(["any", "real", "fake"], value="any", label="Label")
                        random_btn = gr.Button("Random face")
                        with gr.Row():
                            face_src = gr.Dropdown(source_choices(), value=SAMPLES, label="From")
                            face_row = gr.Number(label="Row", precision=0, minimum=0)
                        face_info = gr.Markdown(label="Face")
                        row_btn = gr.Button("Analyse this row")
                    with gr.Column(scale=2):
                        crops = gr.Gallery(label="Face(s) scored (aligned crop)", columns=8, height=170,
                                           allow_preview=False, object_fit="contain", fit_columns=False)
                        face_note = gr.Markdown(label="Notes")
                        prob_table = gr.Dataframe(pd.DataFrame(columns=TABLE_COLUMNS), label="Probability per method",
                                                  interactive=False, wrap=True)
                        csv_btn = gr.DownloadButton("Download table (CSV)", size="sm")
                        # Placeholders, not empty plots: the page fetches plotly.js at load, not at the first view.
                        bars = gr.Plot(plots.empty_figure("Scores appear here."), label="p(fake) per method")
                        timeline = gr.Plot(plots.empty_figure("Per-frame scores appear here for a video."),
                                           label="Video: p(fake) per frame")
                compare_out = [crops, face_note, prob_table, bars, timeline, csv_btn]

            # ---------------------------------------------------------------- Hypersphere
            with gr.Tab("Hypersphere", id="hypersphere") as hs_tab:
                with gr.Row():
                    hs_run = gr.Dropdown(run_names(), value=r0, label="Run")
                    hs_method = gr.Dropdown(m0, value=default_method(m0), label="Method")
                    hs_color = gr.Radio(list(COLOR_BY), value="label", label="Colour by")
                    hs_dims = gr.Radio(["2-D", "3-D"], value="2-D", label="Projection")
                    hs_btn = gr.Button("Show embeddings", variant="primary")
                with gr.Row():
                    with gr.Column(scale=3):
                        hs_plot = gr.Plot(label="Embeddings on the hypersphere (UMAP)", elem_id="hs-plot")
                    with gr.Column(scale=1):
                        hs_image = gr.Image(label="Chosen face", type="pil", height=224, interactive=False)
                        hs_info = gr.Markdown("Hover a point to see the face; click it to show it here.", label="Face info")
                        hs_click = gr.Textbox(visible="hidden", elem_id="hs-click")
                        hs_row = gr.Number(label="Row", precision=0, minimum=0, elem_id="hs-row")
                        with gr.Row():
                            hs_show = gr.Button("Show row", size="sm")
                            hs_to_a = gr.Button("Use as A", size="sm")
                            hs_to_b = gr.Button("Use as B", size="sm")
                gr.Markdown("### SLERP path between two faces")
                with gr.Row():
                    sl_a = gr.Number(label="Face A (row)", precision=0, minimum=0)
                    sl_b = gr.Number(label="Face B (row)", precision=0, minimum=0)
                    sl_kind = gr.Radio(["different class", "same class"], value="different class", label="Pair")
                    sl_rand = gr.Button("Random pair")
                    sl_btn = gr.Button("Draw SLERP path", variant="primary")
                with gr.Row():
                    sl_curve = gr.Plot(label="p(fake) along the path")
                    sl_text = gr.Markdown(label="Path summary")
                gr.Markdown(about.HYPERSPHERE_TEXT)

            # ---------------------------------------------------------------- ROC browser
            with gr.Tab("ROC browser", id="roc", render_children=True) as roc_tab:
                with gr.Row():
                    roc_run = gr.Dropdown(run_names(), value=r0, label="Run")
                    roc_methods = gr.CheckboxGroup(m0, value=[m for _, m in m0], label="Methods")
                    roc_ds = gr.CheckboxGroup(run_datasets(r0), value=main_dataset(r0), label="Datasets")
                    roc_level = gr.Radio(["frame", "video"], value="frame", label="Level")
                with gr.Row():
                    roc_thr = gr.Slider(0, 1, value=0.5, step=0.01, label="Threshold on p(fake)")
                    roc_btn = gr.Button("Show ROC", variant="primary")
                with gr.Row():
                    roc_plot = gr.Plot(label="ROC curves", elem_id="roc-plot")
                    with gr.Column():
                        roc_table = gr.Dataframe(pd.DataFrame(columns=["method", "dataset", "n", *roc.METRIC_COLUMNS]),
                                                 label="Metrics (from the run)", interactive=False)
                        roc_conf = gr.Dataframe(pd.DataFrame(columns=["method", "dataset", "TP", "FP", "TN", "FN"]),
                                                label="Confusion counts at the threshold", interactive=False)

            # ---------------------------------------------------------------- Errors
            with gr.Tab("Errors", id="errors", render_children=True) as er_tab:
                with gr.Row():
                    er_run = gr.Dropdown(run_names(), value=r0, label="Run")
                    er_method = gr.Dropdown(m0, value=m0[0][1] if m0 else None, label="Method")
                    er_ds = gr.Dropdown(["all"] + run_datasets(r0), value="all", label="Dataset")
                    er_thr = gr.Slider(0, 1, value=0.5, step=0.01, label="Threshold on p(fake)")
                    er_btn = gr.Button("Find mistakes", variant="primary")
                er_note = gr.Markdown(label="Summary")
                er_rows = gr.State({})
                er_fp = gr.Gallery(label="Most confident false positives (real faces called fake)", columns=8,
                                   height=240, allow_preview=False, elem_id="er-fp")
                er_fn = gr.Gallery(label="Most confident false negatives (fakes called real)", columns=8,
                                   height=240, allow_preview=False, elem_id="er-fn")
                er_dis = gr.Gallery(label="Where the methods disagree most", columns=8, height=240,
                                    allow_preview=False, elem_id="er-dis")

            # ---------------------------------------------------------------- About
            with gr.Tab("About", id="about") as about_tab:
                gr.Markdown(f"### The methods (from the registry)\nReproduces {about.PAPER}. Counts are exact: "
                            "each method's trainable set, counted on the architecture without loading weights.")
                # Counted on first visit: it builds ViT-L/14 on the meta device, which needs open_clip
                # (seconds to import), and the first page should not wait for that.
                about_table = gr.Markdown("Counting the trainable parameters of each method…",
                                          elem_id="about-table")
                gr.Markdown(about.METHODS_TEXT)
                paper = about.paper_results()
                if paper is not None:
                    gr.Markdown("### The paper's reported numbers\nThese are **the paper's** numbers, as printed "
                                "there; nothing here was measured by this app.")
                    gr.Dataframe(paper, interactive=False, label="Reported in the paper (not measured here)")
                else:
                    gr.Markdown("### The paper's reported numbers\nNot bundled with this build: see the tables of "
                                "arXiv 2503.19683. Numbers this app measures are in the ROC browser, per run.")

        # ---- wiring (api_name values are the public API; keep them stable) ---------------------
        model_kw = dict(concurrency_limit=1, concurrency_id=MODEL_QUEUE)
        image_btn.click(predict_image, image_in, compare_out, api_name="predict_image", **model_kw)
        image_in.upload(predict_image, image_in, compare_out, api_name="_on_upload", api_visibility="private",
                        **model_kw)
        video_btn.click(predict_video, video_in, compare_out, api_name="predict_video", **model_kw)
        random_btn.click(random_face, [ds_in, src_in, lab_in], [face_src, face_row, face_info],
                         api_name="random_face").success(
            predict_sample, [face_src, face_row], compare_out, api_name="_after_random", api_visibility="private",
            **model_kw)
        row_btn.click(predict_sample, [face_src, face_row], compare_out, api_name="predict_sample", **model_kw)

        roc_in = [roc_run, roc_methods, roc_ds, roc_level, roc_thr]
        hs_run.change(on_run_change, hs_run, hs_method, api_name="_hs_run", api_visibility="private")
        hs_btn.click(hypersphere, [hs_run, hs_method, hs_color, hs_dims], hs_plot, api_name="hypersphere")
        hs_click.change(point, [hs_run, hs_method, hs_click], [hs_image, hs_info, hs_row], api_name="_hs_click",
                        api_visibility="private")
        hs_show.click(point, [hs_run, hs_method, hs_row], [hs_image, hs_info, hs_row], api_name="point")
        hs_to_a.click(lambda r: r, hs_row, sl_a, api_name="_to_a", api_visibility="private")
        hs_to_b.click(lambda r: r, hs_row, sl_b, api_name="_to_b", api_visibility="private")
        sl_rand.click(random_pair, [hs_run, sl_kind], [sl_a, sl_b], api_name="random_pair")
        sl_btn.click(slerp_path, [hs_run, hs_method, sl_a, sl_b, hs_color, hs_dims], [hs_plot, sl_curve, sl_text],
                     api_name="slerp_path", **model_kw)

        # First visit of a tab fills it (cached projections make this fast); later visits keep what is shown.
        shown = gr.State(set())
        # No progress overlay: on later visits the handler changes nothing and the tab shows at once.
        tab_kw = dict(api_visibility="private", show_progress="hidden")
        hs_tab.select(first_visit("hs", hypersphere), [shown, hs_run, hs_method, hs_color, hs_dims], [hs_plot, shown],
                      api_name="_hs_tab", **tab_kw)
        roc_tab.select(first_visit("roc", roc_view), [shown, *roc_in], [roc_plot, roc_table, roc_conf, shown],
                       api_name="_roc_tab", **tab_kw)
        er_tab.select(first_visit("er", error_view), [shown, er_run, er_method, er_ds, er_thr],
                      [er_fp, er_fn, er_dis, er_rows, er_note, shown], api_name="_er_tab", **tab_kw)

        about_tab.select(first_visit("about", lambda: about.method_markdown("ViT-L-14")), [shown],
                         [about_table, shown], api_name="_about_tab", **tab_kw)

        roc_run.change(on_roc_run, roc_run, [roc_methods, roc_ds], api_name="_roc_run", api_visibility="private")
        roc_btn.click(roc_view, roc_in, [roc_plot, roc_table, roc_conf], api_name="roc")
        roc_thr.release(roc_view, roc_in, [roc_plot, roc_table, roc_conf], api_name="_roc_thr",
                        api_visibility="private")
        roc_level.change(roc_view, roc_in, [roc_plot, roc_table, roc_conf], api_name="_roc_level",
                         api_visibility="private")

        er_run.change(on_err_run, er_run, [er_method, er_ds], api_name="_err_run", api_visibility="private")
        er_btn.click(error_view, [er_run, er_method, er_ds, er_thr], [er_fp, er_fn, er_dis, er_rows, er_note],
                     api_name="errors")
        for gallery, kind in ((er_fp, "fp"), (er_fn, "fn"), (er_dis, "disagree")):
            gallery.select(_selector(open_in_compare, kind), [er_run, er_rows], [tabs, face_src, face_row],
                           api_name=f"_open_{kind}", api_visibility="private").success(
                predict_sample, [face_src, face_row], compare_out, api_name=f"_open_{kind}_predict",
                api_visibility="private", **model_kw)

        run_lists = [hs_run, roc_run, er_run, face_src]
        demo_btn.click(start_demo, None, [banner, demo_msg, demo_row, *run_lists], api_name="start_demo", **model_kw)
        app.load(refresh_status, None, [banner, demo_row, status_timer, *run_lists], api_name="status")
        status_timer.tick(poll_status, None, [banner, demo_row, status_timer, *run_lists], api_name="_poll",
                          api_visibility="private")
    return app


def first_visit(key: str, view):
    """A tab.select handler: on the first visit (with a run to show) call `view`, then remember it."""
    def handler(shown, *args):
        n_out = {"hs": 1, "roc": 3, "er": 5, "about": 1}[key]
        if key in shown or (args and not args[0]):
            return *[gr.update()] * n_out, shown
        try:
            out = view(*args)
        except gr.Error:
            return *[gr.update()] * n_out, shown
        out = out if isinstance(out, tuple) else (out,)
        return *out, shown | {key}
    return handler


def _selector(fn, kind: str):
    """A gallery.select handler bound to one gallery kind (gradio reads SelectData from the signature)."""
    def handler(run, rows, evt: gr.SelectData):
        return fn(run, rows, kind, evt)
    return handler


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", default="runs", help="folder of run folders written by `dfdet evaluate`")
    p.add_argument("--checkpoints", default="checkpoints", help="folder holding one checkpoint folder per method")
    p.add_argument("--methods", nargs="*", default=[], help="only these registry methods (default: all)")
    p.add_argument("--model", default="ViT-L-14", help="open_clip model (ViT-L-14; dfdet-tiny-vit, "
                   "dfdet.backbone.TINY_MODEL, for tests)")
    p.add_argument("--pretrained", default="openai", help="open_clip weights tag; 'none' = random init")
    p.add_argument("--clip-weights", default=None, help="local CLIP weights file; also $DFDET_CLIP_WEIGHTS")
    p.add_argument("--manifest", default="", help="sample-face manifest for Compare (default: the shared one)")
    p.add_argument("--data-root", default="", help="folder the manifest's paths are relative to")
    p.add_argument("--cache-dir", default="", help="UMAP/thumbnail cache (default $DFDET_CACHE or ~/.cache/dfdet)")
    p.add_argument("--demo", choices=["offer", "auto", "off"], default="offer",
                   help="without CLIP weights: offer demo mode, start it, or never")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-warm-up", action="store_true", help="skip compiling numba / fitting UMAPs at start")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME"), help="bind address ($GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT")
                                                   or 7860), help="port ($PORT or $GRADIO_SERVER_PORT)")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> AppConfig:
    pretrained = None if str(args.pretrained).lower() in ("none", "random") else args.pretrained
    bb = BackboneConfig(model=args.model, pretrained=pretrained, weights=args.clip_weights)
    return AppConfig(runs=args.runs, checkpoints=args.checkpoints, methods=list(args.methods), backbone=bb, manifest=args.manifest,
                     data_root=args.data_root, cache_dir=args.cache_dir, demo=args.demo, device=args.device,
                     warm_up=not args.no_warm_up)


def launch(app: gr.Blocks, **kw):
    """Launch with the safety limits of a public app: upload size, queue size, model concurrency, and the
    number of visitors' sessions held in memory."""
    guard_file_inputs(app)
    app.queue(default_concurrency_limit=VIEW_CONCURRENCY, max_size=QUEUE_MAX_SIZE)
    return app.launch(max_file_size=f"{MAX_UPLOAD_MB}mb", state_session_capacity=STATE_SESSIONS, head=HEAD, css=CSS,
                      show_error=True, footer_links=["api"], **kw)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    session = Session(config_from_args(args), load_models=False)
    app = build_app(session)
    launch(app, server_name=args.host, server_port=args.port, prevent_thread_lock=True)
    # Slow work starts once the page is served: the banner follows the model loading.
    session.load_models_async()
    if session.cfg.warm_up:
        session.start_warm_up()
    serve_until_stopped(app)


def serve_until_stopped(app: gr.Blocks) -> None:
    """Serve until Ctrl-C or SIGTERM (how Spaces and docker stop a container), then close properly:
    open event streams end and the shutdown deletes every upload and output of the cache."""
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    try:
        while app.is_running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        log.info("stopping: closing the server and deleting its temp files")
    finally:
        app.close()


if __name__ == "__main__":
    main(sys.argv[1:])
