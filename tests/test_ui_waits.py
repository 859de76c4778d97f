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


def test_the_demo_countdown_rescales_by_the_steps_already_run():
    from dfdet.demo import DEFAULT_ESTIMATE, Countdown, steps
    kinds = [k for k, _ in steps()]  # prepare, 4 x train, evaluate
    c = Countdown(kinds, {"prepare": 1.0, "train": 10.0, "evaluate": 20.0})
    assert c.left(0) == pytest.approx(1 + 40 + 20)
    c.done("prepare", 3.0)  # this machine runs 3x slower than estimated now
    assert c.left(1) == pytest.approx(3 * (40 + 20))
    c.done("train", 15.0)  # a kind measured here counts as measured; the others by the speed over all so far
    assert c.speed() == pytest.approx(18 / 11) and c.left(2) == pytest.approx(3 * 15 + 20 * 18 / 11)
    assert c.timings() == {"prepare": 3.0, "train": 15.0}
    # the first-build estimate is the reference machine's measured build (10.8 s idle), not 162 s
    assert sum(DEFAULT_ESTIMATE[k] for k in kinds) < 15


def test_the_demo_line_never_counts_seconds_already_overrun(tmp_path):
    import time
    from dfdet.viz.startup import DemoProgress
    d = DemoProgress(state="building", step=3, steps=6, name="train LN-tuning", eta_s=20.0, started=time.monotonic())
    assert "about 20 s left" in d.estimate() or "about 19 s left" in d.estimate()
    d.started -= 60  # the step ran a minute past its estimate
    assert d.estimate() == " (longer than estimated: still working)"
    assert DemoProgress(eta_s=None).estimate() == ""  # a step with nothing to estimate (a cached build) says none


def test_a_cached_demo_build_says_it_is_reused_with_no_estimate(tmp_path):
    import json
    from dfdet import demo
    (tmp_path / demo.STAMP).write_text(json.dumps({"version": demo.DEMO_VERSION}))
    seen = []
    demo.ensure_demo(tmp_path, progress=lambda *a: seen.append(a))
    assert seen == [(1, 1, "reuse the demo built earlier", None)]
