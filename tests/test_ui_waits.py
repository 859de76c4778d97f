"""The page's defaults and its waiting (issue 22): the ROC browser starts at each method's own threshold, and an
example clicked while the models load is queued and then scored, never refused. Handlers are called as gradio
calls them; a waiting one is advanced step by step (its known points of progress), never raced against a clock."""
from __future__ import annotations

import gradio as gr
import pytest

from dfdet.viz.session import AppConfig, ModelStatus, Session
from dfdet.viz.store import SAMPLES

from test_app_helpers import make_synthetic_run


@pytest.fixture()
def page(tmp_path, shared):
    from ui.page import build_app
    make_synthetic_run(tmp_path / "runs" / "synth", n=12)
    s = Session(AppConfig(runs=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), demo="off"), load_models=False)
    s.store.load_samples()
    app = build_app(s)
    return s, app, {fn.api_name: fn.fn for fn in app.fns.values()}


def component(app, elem_id):
    return next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_the_roc_tab_starts_with_each_methods_own_threshold_ticked(page):
    _, app, fns = page
    box = component(app, "roc-own")
    assert isinstance(box, gr.Checkbox) and box.value is True
    # moving the slider (by hand or by a link) means one threshold for all: the box is unticked with the view
    out = fns["_roc_thr"]("synth", ["linear_probe", "ln_norm"], ["DS0"], "frame", 0.3, True)
    assert out[-1] is False and set(out[2]["threshold"]) == {0.3}


def test_an_example_clicked_while_the_models_load_is_queued_then_scored(page):
    s, _, fns = page
    s.store.status = ModelStatus("loading", "loading ViT-L-14")
    waiting = fns["_ui_example"](gr.SelectData(None, {"index": 1, "value": None}))
    from ui.compare import example_rows
    src, row, line = next(waiting)
    assert (src, row) == (SAMPLES, example_rows(s)[1])  # the face is chosen at once; its scoring waits
    assert "Queued" in line and "the models have loaded (loading ViT-L-14)" in line
    src, row, line = next(waiting)  # still loading: still queued, not refused
    assert "Queued" in line
    s.store.status = ModelStatus("none", "no CLIP weights here")
    assert next(waiting)[2] == ""  # the wait ends; the chained scorer runs (and says what is missing)
    with pytest.raises(StopIteration):
        next(waiting)
    assert not s.startup.busy() and s.startup.wait_ready(0)


def test_the_example_video_waits_for_a_demo_build_with_its_step(page):
    s, _, fns = page
    s.store.status = ModelStatus("loading", "demo mode is being built")
    s.startup.demo.state, s.startup.demo.steps, s.startup.demo.step = "building", 6, 2
    s.startup.demo.name = "train LN-tuning (6 steps)"
    waiting = fns["_ui_example_video_wait"]()
    assert "demo mode is built (step 2 of 6: train LN-tuning" in next(waiting)
    s.startup.demo.state, s.store.status = "done", ModelStatus("demo", "demo")
    assert next(waiting) == ""
