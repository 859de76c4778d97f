"""ROC browser tab: curves per method and dataset, numbers with n and intervals, counts at a threshold."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from dfdet.viz import roc

from . import explain
from .common import PRIVATE, Ctx, OpenCheckboxGroup, display_table, fit_columns, for_visitor, friendly, how_to_read, \
    open_dropdown, status_line
from .runs import first_run, run_methods, run_names

CONF_WIDTHS = {"method": 16, "dataset": 10, "threshold": 9, "TP": 7, "FP": 7, "TN": 7, "FN": 7, "precision": 12,
               "recall": 12, "F1": 12}  # % of the table's width
METRIC_WIDTHS = {"method": 10, "dataset": 7, "n real": 5, "n fake": 5, "auroc": 5.5, "auroc 95% CI": 10.5,
                 roc.METRIC_COLUMNS[2]: 8, "TPR 95% CI": 10.5, "ap_fake": 6.5, "map_macro": 8, "eer": 5.5, "note": 18.5}
HOW = ("a curve closer to the top-left corner separates real from fake better; the dot on each curve is the "
       "threshold below. Read every number with its n and 95% interval: with few videos, 1.000 can be luck.")


def build(ctx: Ctx) -> gr.Tab:
    s = ctx.session
    r0 = first_run(s)
    m0 = run_methods(s, r0)
    with gr.Tab("ROC browser", id="roc") as tab:
        how_to_read(HOW)
        with gr.Row():
            run = open_dropdown(run_names(s), r0, label="Run", elem_id="roc-run")
            methods = OpenCheckboxGroup(m0, value=[m for _, m in m0], label="Methods", elem_id="roc-methods")
            datasets = OpenCheckboxGroup(s.roc.datasets(r0), value=s.roc.main_dataset(r0), label="Datasets",
                                         elem_id="roc-datasets")
            level = gr.Radio(["frame", "video"], value="frame", label="Level", elem_id="roc-level")
        with gr.Row():
            threshold = gr.Slider(0, 1, value=0.5, step=0.01, label="Threshold on p(fake)", elem_id="roc-thr")
            own = gr.Checkbox(value=True, elem_id="roc-own",
                              label="Each method at its own validation threshold (0.5 where it has none); "
                                    "moving the slider sets one for all")
            btn = gr.Button("Show ROC", variant="primary", elem_id="roc-btn")
        status = status_line("roc-status")
        plot = gr.Plot(label="ROC curves", elem_id="roc-plot")
        # Full width, columns as shares of it: ten counts and rates beside the plot scrolled sideways at 1400 px.
        conf = gr.Dataframe(pd.DataFrame(columns=roc.CONFUSION_COLUMNS), elem_id="roc-conf",
                            label="Counts at the threshold (recomputed from the predictions)", interactive=False,
                            wrap=True, column_widths=fit_columns(roc.CONFUSION_COLUMNS, CONF_WIDTHS))
        metrics = gr.Dataframe(pd.DataFrame(columns=roc.TABLE_COLUMNS), elem_id="roc-metrics", wrap=True,
                               label=f"Threshold-free metrics: n per class, AUROC and TPR at {roc.TARGET_FPR:.0%} FPR "
                                     f"with 95% bootstrap intervals ({roc.N_BOOT} resamples)", interactive=False,
                               column_widths=fit_columns(roc.TABLE_COLUMNS, METRIC_WIDTHS))
        explain.calibration_panel(ctx, run, datasets, level)  # reliability and threshold drift (ui/explain.py)

    def view(run_name, ms, ds, lvl, thr, own_thr=False):
        if not ms and not ds:  # the tab opened before the run's lists arrived: its defaults
            ms, ds = [m for _, m in run_methods(s, run_name)], s.roc.main_dataset(run_name)
        r = s.roc.view(run_name, ms, ds, lvl or "frame", 0.5 if thr is None else thr, own=bool(own_thr))
        return r.figure, display_table(r.metrics), display_table(r.confusion)

    def shared(*args):
        """The slider moved (by hand or by a link): one threshold for all from now on."""
        return (*ui_view(*args[:-1], False), False)

    def on_run(run_name):
        ms = run_methods(s, run_name)
        return (gr.CheckboxGroup(choices=ms, value=[m for _, m in ms]),
                gr.CheckboxGroup(choices=s.roc.datasets(run_name), value=s.roc.main_dataset(run_name)))

    inputs = [run, methods, datasets, level, threshold, own]
    outputs = [plot, metrics, conf]
    ui_view = for_visitor(view, 3)
    run.change(on_run, run, [methods, datasets], api_name="_roc_run", **PRIVATE)
    btn.click(ui_view, inputs, [*outputs, status], api_name="_ui_roc", **PRIVATE)
    # Typing a number or using the arrow keys changes the value without a mouse release: follow every change,
    # the latest one winning, so the counts always belong to the threshold shown.
    threshold.change(shared, inputs, [*outputs, status, own], api_name="_roc_thr", trigger_mode="always_last",
                     show_progress="hidden", **PRIVATE)
    own.input(ui_view, inputs, [*outputs, status], api_name="_roc_own", **PRIVATE)
    level.change(ui_view, inputs, [*outputs, status], api_name="_roc_level", **PRIVATE)
    with tab, gr.Row(visible=False):
        api_btn = gr.Button(visible=False)
    api_btn.click(friendly(view), inputs[:5], outputs, api_name="roc")  # the documented API: one threshold for all

    ctx.run_lists.append(run)
    ctx.url_inputs["roc"] = {"run": run, "methods": methods, "datasets": datasets, "level": level,
                             "threshold": threshold, "own": own}
    tab.first_visit = (view, inputs, outputs)
    return tab
