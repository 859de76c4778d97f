"""Compare's "Why and how sure" panel: per-method saliency maps with their faithfulness curves, the
difference of two methods' maps, and the robustness probe, for the uploaded photo or the chosen row."""
from __future__ import annotations

import gradio as gr

from dfdet.explain.saliency import KINDS
from dfdet.viz import plots

from .common import MODEL_KW, PRIVATE, Ctx, for_visitor, friendly, how_to_read, status_line
from .guards import uploaded

HOW = ("each map shows where one method finds evidence for *fake* on the face it scored (its own LayerNorms "
       "and head), patch by patch. A map is only evidence if deleting its bright patches first lowers p(fake) "
       "faster than deleting random ones: read the curves before the colours. The probe re-scores the face "
       "under JPEG, downscaling, blur and looser crops; a method whose verdict flips is flagged unstable.")


def method_choices(session) -> list[tuple[str, str]]:
    bank = session.store.bank
    if bank is None:
        return []
    return [(bank.entries[n].label, n) for n in bank.ready if bank.entries[n].model is None]


def panel(ctx: Ctx, image_in: gr.Image, face_src: gr.Dropdown, face_row: gr.Number) -> tuple[list, tuple]:
    """Built inside Compare's result column. Which face: the uploaded photo if one is there, else the row.
    Returns its result outputs and their empty values: a new face in Compare clears the last face's maps."""
    s = ctx.session
    with gr.Accordion("Why and how sure: saliency maps and robustness", open=False, elem_id="xp-panel"):
        how_to_read(HOW)
        with gr.Row():
            kind = gr.Radio([(v.split(" (")[0], k) for k, v in KINDS.items()], value="gradcam", label="Map kind",
                            elem_id="xp-kind")
            a = gr.Dropdown(method_choices(s), value=None, label="Difference: method A", allow_custom_value=True,
                            elem_id="xp-diff-a")
            b = gr.Dropdown(method_choices(s), value=None, label="minus method B", allow_custom_value=True,
                            elem_id="xp-diff-b")
        with gr.Row():
            maps_btn = gr.Button("Show maps", variant="primary", elem_id="xp-maps-btn")
            probe_btn = gr.Button("Robustness probe", elem_id="xp-probe-btn")
        status = status_line("xp-status")
        note = gr.Markdown(elem_id="xp-note")
        maps = gr.Gallery(label="Saliency map per method (and the difference)", columns=5, height=260,
                          allow_preview=True, object_fit="contain", elem_id="xp-maps")
        curves = gr.Plot(plots.empty_figure("Deletion / insertion curves appear here."), label="Faithfulness",
                         elem_id="xp-curves")
        with gr.Column(elem_id="xp-probe-block"):
            probe_note = gr.Markdown(elem_id="xp-probe-note")
            probe_plot = gr.Plot(plots.empty_figure("The robustness probe appears here."), label="Robustness probe",
                                 elem_id="xp-probe")

    def show_maps(upload, source, row, k, ma, mb):
        from dfdet.viz.media import image_file
        v = s.explain.maps(source, row, uploaded(upload), k, (ma, mb))
        return [(image_file(im), cap) for im, cap in v.items], v.curves, v.note

    def show_probe(upload, source, row):
        v = s.explain.probe(source, row, uploaded(upload))
        return v.figure, v.note

    inputs = [image_in, face_src, face_row]
    maps_btn.click(for_visitor(show_maps, 3), [*inputs, kind, a, b], [maps, curves, note, status],
                   api_name="_ui_maps", **PRIVATE, **MODEL_KW)
    probe_btn.click(for_visitor(show_probe, 2), inputs, [probe_plot, probe_note, status], api_name="_ui_probe",
                    **PRIVATE, **MODEL_KW)

    def choices():
        c = method_choices(s)
        return gr.Dropdown(choices=c), gr.Dropdown(choices=c)
    ctx.on_load.append((choices, [a, b]))
    with gr.Row(visible=False):
        api_maps, api_probe = gr.Button(visible=False), gr.Button(visible=False)
    api_maps.click(friendly(show_maps), [*inputs, kind, a, b], [maps, curves, note], api_name="explain_maps",
                   **MODEL_KW)
    api_probe.click(friendly(show_probe), inputs, [probe_plot, probe_note], api_name="robustness_probe", **MODEL_KW)
    return [maps, curves, note, probe_plot, probe_note], (
        None, plots.empty_figure("Deletion / insertion curves appear here."), "",
        plots.empty_figure("The robustness probe appears here."), "")


CAL_HOW = ("each method's threshold was chosen on validation; on a test set a well-calibrated method's dots lie on the "
           "diagonal, and a large drift means the validation threshold is wrong there (e.g. tuned on FF++, used on "
           "Celeb-DF).")


CAL_WIDTHS = {"method": 8.5, "dataset": 7, "n": 4, "threshold": 7.5, "rule": 7, "threshold here": 7.5, "drift": 6.5,
              "FPR at threshold": 7.5, "TPR at threshold": 7.5, "TPR @1% FPR": 6.5, "TPR @5% FPR": 6.5, "ECE": 6,
              "ECE (temperature)": 10.5, "uncertain": 7.5}  # % of the table's width (14 columns, full width, 13 px)


def calibration_panel(ctx: Ctx, run, datasets, level) -> None:
    """Built inside the ROC browser: the reliability diagram and the threshold drift per method x test set."""
    import pandas as pd

    from dfdet.viz.services.explain import CALIBRATION_COLUMNS
    from .common import display_table, fit_columns
    s = ctx.session
    with gr.Accordion("Calibration: reliability and threshold drift", open=False, elem_id="cal-panel"):
        how_to_read(CAL_HOW)
        btn = gr.Button("Show calibration", elem_id="cal-btn")
        status = status_line("cal-status")
        note = gr.Markdown(elem_id="cal-note")
        fig = gr.Plot(plots.empty_figure("The reliability diagram appears here."), label="Reliability",
                      elem_id="cal-plot")
        table = gr.Dataframe(pd.DataFrame(columns=CALIBRATION_COLUMNS), interactive=False, wrap=True,
                             label="Validation threshold on each test set", elem_id="cal-table",
                             column_widths=fit_columns(CALIBRATION_COLUMNS, CAL_WIDTHS))

    def view(run_name, ds, lvl):
        v = s.explain.calibration(run_name, ds, lvl)
        return v.figure, display_table(v.table), v.note

    btn.click(for_visitor(view, 3), [run, datasets, level], [fig, table, note, status], api_name="_ui_calibration",
              **PRIVATE)
    with gr.Row(visible=False):
        api_btn = gr.Button(visible=False)
    api_btn.click(friendly(view), [run, datasets, level], [fig, table, note], api_name="calibration")
