"""Compare tab: a photo, a video or a known face, scored by every method side by side."""
from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import pandas as pd

from dfdet.viz import plots
from dfdet.viz.compare import TABLE_COLUMNS, table_csv
from dfdet.viz.media import IMAGE_EXTS, MAX_UPLOAD_MB, VIDEO_EXTS, image_file
from dfdet.viz.services.compare import CompareResult
from dfdet.viz.store import SAMPLES, md_escape

from . import explain
from .common import (MODEL_KW, PRIVATE, Ctx, display_table, for_visitor, for_visitor_stream, friendly, how_to_read,
                     ok, on_gpu, status_line)
from .guards import guard_image_upload, uploaded

HOW = ("each row is one method's p(fake) for the same input; at or above the method's own threshold (chosen on "
       "validation, dotted in the plot; 0.5 without calibration) it calls the face fake, inside its uncertain band "
       "(also from validation) “uncertain”. With ground truth known, “right?” says whether it agrees. The methods "
       "differ only in what they trained.")
# % of the table's width per column (TABLE_COLUMNS, then "right?" when the truth is known): wrapped to fit, never
# scrolled sideways, the parameter header kept to whole words.
TABLE_WIDTHS = (17, 9, 9, 20, 18, 13, 12)
EXAMPLE_FACES = 8  # clickable sample faces, half real, half fake, from the shared manifest
EXAMPLE_VIDEO = ("videos", "FF", "DF", "519_515.mp4")  # under $DFDET_SHARED
QUEUE_WAIT_S = 600  # an example clicked while the models load waits this long for them, then says why not


def example_rows(session, k: int = EXAMPLE_FACES) -> list[int]:
    """A fixed, varied set of sample rows: real and fake faces from each dataset, one per video."""
    df = session.store.samples
    if df is None or df.empty:
        return []
    firsts = df.reset_index().drop_duplicates("video")
    picks = []
    for _, d in firsts.groupby(["dataset", "label"], sort=True):
        picks.append(int(d["index"].iloc[0]))
    return picks[:k]


def wait_for_models(session):
    """A status line every 2 s while the models load or demo mode is built: an example clicked then waits its
    turn (for at most QUEUE_WAIT_S) instead of being refused; what stays missing after, the scorer says."""
    end = time.monotonic() + QUEUE_WAIT_S
    while session.startup.busy() and time.monotonic() < end:
        yield ok("⏳ Queued: scored as soon as " + md_escape(session.startup.busy_reason()))
        session.startup.wait_ready(2.0)


def params_column(session) -> str:
    """The parameter counts are the loaded backbone's: the header says which (About shows ViT-L/14's)."""
    bank = session.store.bank
    return f"trainable params ({bank.clip.config.model})" if bank is not None else "trainable params"


def build(ctx: Ctx) -> gr.Tab:
    s = ctx.session
    filters = s.store.sample_filters()
    rows = example_rows(s)
    with gr.Tab("Compare", id="compare") as tab:
        how_to_read(HOW)
        with gr.Row(elem_id="cmp-layout"):
            with gr.Column(scale=1, min_width=320):
                image_in = gr.Image(label=f"Photo or face crop ({', '.join(IMAGE_EXTS)}; up to {MAX_UPLOAD_MB} MB)",
                                    type="filepath", image_mode=None, sources=["upload", "clipboard"], height=240,
                                    elem_id="cmp-image")
                guard_image_upload(image_in)
                refused = gr.Textbox(visible="hidden", elem_id="cmp-refuse")  # a non-image the browser held back
                as_crop = gr.Checkbox(False, label="No face found? Score the whole image as a face crop",
                                      elem_id="cmp-as-crop")
                image_btn = gr.Button("Analyse photo", variant="primary", elem_id="cmp-image-btn")
                video_in = gr.Video(label=f"Short video ({', '.join(VIDEO_EXTS)})", sources=["upload"], height=180,
                                    elem_id="cmp-video")
                video_btn = gr.Button("Analyse video", elem_id="cmp-video-btn")
                video_example = shared_file(*EXAMPLE_VIDEO)
                # A button, not gr.Examples: the server scores its own file by name, and no copy of it is
                # put in the upload cache (where it would outlive the server).
                example_video_btn = gr.Button("Try the example video (FaceForensics++ Deepfakes: fake)", size="sm",
                                              visible=video_example is not None, elem_id="cmp-example-video")
                gr.Markdown("**Example faces** (click one to score it)")
                # Filled at page load, not at build: files made at build time would outlive the server's cache.
                examples = gr.Gallery(columns=8, height=110, allow_preview=False, show_label=False,
                                      elem_id="cmp-examples")
                with gr.Accordion("A face from the sample manifest", open=False):
                    with gr.Row():
                        ds_in = gr.Dropdown(["any"] + filters["dataset"], value="any", label="Dataset")
                        src_in = gr.Dropdown(["any"] + filters["source"], value="any", label="Source")
                        lab_in = gr.Radio(["any", "real", "fake"], value="any", label="Label")
                    random_btn = gr.Button("Random face")
                    with gr.Row():
                        face_src = gr.Dropdown(source_choices(s), value=SAMPLES, label="From", allow_custom_value=True,
                                               elem_id="cmp-src")
                        face_row = gr.Number(label="Row", minimum=0, step=1, elem_id="cmp-row")
                    face_info = gr.Markdown()
                    row_btn = gr.Button("Analyse this row", elem_id="cmp-row-btn")
            with gr.Column(scale=2):
                status = status_line("cmp-status")
                header = gr.Markdown("Pick an example face, upload a photo or a video.", elem_id="cmp-header")
                prob_table = gr.Dataframe(pd.DataFrame(columns=TABLE_COLUMNS), label="Probability per method",
                                          interactive=False, wrap=True, elem_id="cmp-table",
                                          column_widths=[f"{w}%" for w in TABLE_WIDTHS])
                csv_btn = gr.DownloadButton("Download table (CSV)", size="sm")
                with gr.Row():
                    original = gr.Image(label="Your photo (face boxed)", type="pil", height=220, interactive=False,
                                        elem_id="cmp-original")
                    crops = gr.Gallery(label="Face(s) scored (aligned crop)", columns=4, height=220,
                                       allow_preview=False, object_fit="contain", elem_id="cmp-crops")
                note = gr.Markdown(elem_id="cmp-note")
                # Placeholders, not empty plots: the page fetches plotly.js at load, not at the first view.
                bars = gr.Plot(plots.empty_figure("Scores appear here."), label="p(fake) per method")
                timeline = gr.Plot(plots.empty_figure("Per-frame scores appear here for a video."),
                                   label="Video: p(fake) per frame", elem_id="cmp-timeline")
                xp_out, xp_empty = explain.panel(ctx, image_in, face_src, face_row)  # why and how sure

    api_out = [crops, note, prob_table, bars, timeline, csv_btn]
    score_image, score_video, score_sample = on_gpu(s.compare.image), on_gpu(s.compare.video), on_gpu(s.compare.sample)

    def thresholds() -> dict[str, float]:
        """Each loaded method's verdict threshold by label (chosen on validation; 0.5 without calibration)."""
        from dfdet.calibration import threshold_of
        bank = s.store.bank
        return {e.label: threshold_of(e.meta) for e in bank.entries.values()} if bank is not None else {}

    def outputs(res: CompareResult, visitor: bool = False):
        """The documented outputs. A visitor's table lists the scored methods only; the others are one line
        in the note (and in the status details), not a row of blanks in every table."""
        pred = res.prediction
        table = pred.table
        note_text = md_escape(pred.message)
        if visitor:
            missing = table[table["p_fake"].isna()]["method"].tolist()
            table = table[table["p_fake"].notna()]
            if missing:
                note_text += f"\n\nNot available here: {md_escape(', '.join(missing))} (why: “Details” at the top)."
        table = table.rename(columns={"trainable params": params_column(s)})
        gallery = [(image_file(im), None) for im in pred.crops[:32]]
        if pred.demo:
            note_text += f"\n\n<span class='demo-warning'>⚠ {plots.DEMO_NOTE}</span>"
        timeline_fig = (plots.frame_timeline(pred.times, pred.frame_scores, pred.demo, thresholds()) if pred.times is not None
                        else plots.empty_figure("Per-frame scores appear here for a video."))
        return (gallery, note_text, display_table(table), plots.probability_bars(pred.table, pred.demo, thresholds()),
                timeline_fig, table_csv(pred.table, pred.demo))

    # -- public API: outputs as documented, refusals raise --------------------------------------------------
    def api_image(path):
        return outputs(score_image(uploaded(path)))

    def api_video(path):
        return outputs(score_video(path))

    def api_sample(source, row):
        return outputs(score_sample(source or SAMPLES, row))

    def api_random_face(dataset, source, label):
        row = s.compare.random_row(dataset or "any", source or "any", label or "any")
        _, rec = s.store.face(SAMPLES, row)
        return SAMPLES, row, md_escape(s.store.describe(rec))

    # -- the visitor's events: header, boxed photo, stale inputs cleared, status line --------------------
    ui_out = [header, original, *api_out, *xp_out]

    def shown(res: CompareResult, clear_image, clear_video):
        """A new face's results; the saliency maps and probe of the last face are cleared with them."""
        return (res.header, res.original, *outputs(res, visitor=True), *xp_empty, clear_image, clear_video)

    ui_image = for_visitor(lambda p, crop: shown(score_image(uploaded(p), bool(crop)), gr.skip(), None),
                           len(ui_out) + 2)
    stream_video = on_gpu(s.compare.video_stream)  # per-frame scores as they come (dfdet.video_stream)

    def video_updates(path, what="uploaded video", truth=None):
        """The row is cleared too: "Why and how sure" must not explain an earlier face under a video's results."""
        for res in stream_video(path, what, truth):
            yield *shown(res, None, gr.skip() if what == "uploaded video" else None), None
    ui_video = for_visitor_stream(video_updates, len(ui_out) + 3)
    ui_sample = for_visitor(lambda src, r: shown(score_sample(src or SAMPLES, r), None, None), len(ui_out) + 2)
    visitor_out = [*ui_out, image_in, video_in, status]
    video_out = [*visitor_out[:-1], face_row, status]

    def pick_example(evt: gr.SelectData):
        """An example face is a sample row (so "Why and how sure" explains it), scored once the models are in."""
        row = rows[evt.index] if 0 <= evt.index < len(rows) else None
        for line in wait_for_models(s):
            yield SAMPLES, row, line
        yield SAMPLES, row, ""

    def wait_video():
        yield from wait_for_models(s)
        yield ""

    def refuse(name):
        """The refusal of a file the page held back (ui/assets.py): the server's words, by file name only."""
        from dfdet.errors import DataError
        name = Path(str(name or "").rsplit("|", 1)[0]).name or "upload"
        if Path(name).suffix.lower() not in IMAGE_EXTS:
            raise DataError(f"{name}: not an accepted image format; use one of {', '.join(IMAGE_EXTS)}"
                            + (" (a video goes in “Short video” below)" if Path(name).suffix.lower() in VIDEO_EXTS
                               else ""))
        raise DataError(f"{name}: the browser did not send it as an image; upload a photo")

    refused.change(for_visitor(refuse, 0), refused, status, api_name="_cmp_refused", **PRIVATE,
                   show_progress="hidden")
    image_btn.click(ui_image, [image_in, as_crop], visitor_out, api_name="_ui_image", **PRIVATE, **MODEL_KW)
    image_in.upload(ui_image, [image_in, as_crop], visitor_out, api_name="_on_upload", **PRIVATE, **MODEL_KW)
    video_btn.click(ui_video, video_in, video_out, api_name="_ui_video", **PRIVATE, **MODEL_KW)
    row_btn.click(ui_sample, [face_src, face_row], visitor_out, api_name="_ui_sample", **PRIVATE, **MODEL_KW)
    # an example clicked while the models load waits (outside the one-at-a-time model queue), then is scored
    examples.select(pick_example, None, [face_src, face_row, status], api_name="_ui_example", **PRIVATE,
                    concurrency_limit=None, show_progress="hidden").success(
        ui_sample, [face_src, face_row], visitor_out, api_name="_ui_example_score", **PRIVATE, **MODEL_KW)
    # the example is a FaceForensics++ Deepfakes video (EXAMPLE_VIDEO): its ground truth is known, and said
    ui_example_video = for_visitor_stream(lambda: video_updates(video_example, "example video", "fake"),
                                          len(ui_out) + 3)
    example_video_btn.click(wait_video, None, status, api_name="_ui_example_video_wait", **PRIVATE,
                            concurrency_limit=None, show_progress="hidden").success(
        ui_example_video, None, video_out, api_name="_ui_example_video", **PRIVATE, **MODEL_KW)
    random_btn.click(for_visitor(api_random_face, 3), [ds_in, src_in, lab_in], [face_src, face_row, face_info, status],
                     api_name="_ui_random", **PRIVATE).success(
        ui_sample, [face_src, face_row], visitor_out, api_name="_after_random", **PRIVATE, **MODEL_KW)

    # Hidden triggers that carry the documented endpoints (same inputs and outputs as before the redesign).
    with tab, gr.Row(visible=False):
        api_btns = [gr.Button(visible=False) for _ in range(4)]
    api_btns[0].click(friendly(api_image), image_in, api_out, api_name="predict_image", **MODEL_KW)
    api_btns[1].click(friendly(api_video), video_in, api_out, api_name="predict_video", **MODEL_KW)
    api_btns[2].click(friendly(api_random_face), [ds_in, src_in, lab_in], [face_src, face_row, face_info],
                      api_name="random_face")
    api_btns[3].click(friendly(api_sample), [face_src, face_row], api_out, api_name="predict_sample", **MODEL_KW)

    def example_faces():
        return [(image_file(s.store.face(SAMPLES, r)[0]),
                 s.store.describe(s.store.samples.iloc[r].to_dict()).split(" · ")[1]) for r in rows]
    ctx.on_load.append((example_faces, examples))
    ctx.face_source, ctx.face_row = face_src, face_row
    ctx.compare_open, ctx.compare_outputs = ui_sample, visitor_out
    ctx.url_inputs["compare"] = {"row": face_row}
    tab.url_view = (lambda src, r: ui_sample(SAMPLES, r), [face_src, face_row], visitor_out)
    return tab


def source_choices(session) -> list[tuple[str, str]]:
    store = session.store
    return [("sample faces", SAMPLES)] + [(f"run {store.run_label(n)}", f"run:{n}") for n in store.runs]


def shared_file(*parts: str) -> Path | None:
    from dfdet.data.manifest import shared_dir
    path = shared_dir().joinpath(*parts)
    return path if path.is_file() else None
