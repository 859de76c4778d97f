"""The filters a large run needs, shared by the Hypersphere and Errors tabs: dataset, source, truth, each method's
verdict at its own threshold and a p_fake range (dfdet.viz.errors.where_of turns them into filter_mask's keywords)."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .common import OpenCheckboxGroup
from .runs import run_methods


@dataclass
class Filters:
    datasets: gr.CheckboxGroup  # none ticked: every dataset
    sources: gr.CheckboxGroup  # none ticked: every source
    truth: gr.Radio  # all, real or fake
    fake_by: gr.CheckboxGroup  # methods that must call the face fake (at their own threshold)
    real_by: gr.CheckboxGroup  # methods that must call it real
    p_lo: gr.Number  # the shown method's p_fake from ...
    p_hi: gr.Number  # ... to

    def inputs(self) -> list:
        return [self.datasets, self.sources, self.truth, self.fake_by, self.real_by, self.p_lo, self.p_hi]

    def choice_lists(self) -> list:
        return [self.datasets, self.sources, self.fake_by, self.real_by]


def choices(session, run_name: str | None) -> tuple[list, list, list]:
    """(datasets, sources, methods) of a run, for the filter lists."""
    run = session.store.runs.get(run_name) if run_name else None
    if run is None:
        return [], [], []
    p = run.predictions
    return sorted(p["dataset"].astype(str).unique()), sorted(p["source"].astype(str).unique()), \
        run_methods(session, run_name)


def build_filters(session, run_name: str | None, prefix: str) -> Filters:
    """The controls, in a closed accordion: the plain view is one click away from every face."""
    sets, sources, methods = choices(session, run_name)
    with gr.Accordion("Filter: dataset, source, truth, each method's verdict, p_fake range", open=False,
                      elem_id=f"{prefix}-filters"):
        with gr.Row():
            ds = OpenCheckboxGroup(sets, value=[], label="Datasets (none ticked: all)", elem_id=f"{prefix}-f-ds")
            src = OpenCheckboxGroup(sources, value=[], label="Sources (none ticked: all)", elem_id=f"{prefix}-f-src")
            truth = gr.Radio(["all", "real", "fake"], value="all", label="Ground truth", elem_id=f"{prefix}-f-truth")
        with gr.Row():
            fake_by = OpenCheckboxGroup(methods, value=[], elem_id=f"{prefix}-f-fake",
                                        label="Called fake by (each at its own validation threshold)")
            real_by = OpenCheckboxGroup(methods, value=[], elem_id=f"{prefix}-f-real", label="Called real by")
            p_lo = gr.Number(0, minimum=0, maximum=1, step=0.05, label="p(fake) of the method shown: from",
                             elem_id=f"{prefix}-f-lo")
            p_hi = gr.Number(1, minimum=0, maximum=1, step=0.05, label="to", elem_id=f"{prefix}-f-hi")
    return Filters(ds, src, truth, fake_by, real_by, p_lo, p_hi)


def follow_run(session, run_name: str | None) -> tuple:
    """Updates of the four choice lists for a run (ticks cleared: another run's names mean nothing here)."""
    sets, sources, methods = choices(session, run_name)
    return (gr.CheckboxGroup(choices=sets, value=[]), gr.CheckboxGroup(choices=sources, value=[]),
            gr.CheckboxGroup(choices=methods, value=[]), gr.CheckboxGroup(choices=methods, value=[]))
