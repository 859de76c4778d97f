"""The dashboard's pieces without a server: visitor error handling, demo build, ZeroGPU, import order."""
from __future__ import annotations

import subprocess
import sys
import threading
import types
from pathlib import Path

import pandas as pd
import pytest

from dfdet.errors import DfdetError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the ui package beside app.py


def test_a_visitor_error_keeps_the_results_and_is_escaped_in_the_status_line():
    import gradio as gr

    from dfdet.errors import DataError
    from ui.common import for_visitor

    def fails(x):
        raise DataError("no runs found in runs/: make one with `dfdet evaluate --manifest <manifest.csv>`")
    out = for_visitor(fails, 3)(1)
    assert len(out) == 4 and all(o is gr.skip() or o == gr.skip() for o in out[:3])  # outputs untouched
    assert "&lt;manifest.csv&gt;" in out[3] and "<manifest.csv>" not in out[3] and "status err" in out[3]
    ok = for_visitor(lambda x: (x, x + 1), 2, done="fine")(1)
    assert ok[:2] == (1, 2) and "fine" in ok[2]


def test_zerogpu_wraps_model_calls_only_when_spaces_is_importable(monkeypatch):
    from ui.common import on_gpu

    def f(x):
        return x
    monkeypatch.setitem(sys.modules, "spaces", None)  # not installed
    assert on_gpu(f) is f
    wrapped = []
    fake = types.SimpleNamespace(GPU=lambda fn: wrapped.append(fn) or (lambda *a: ("gpu", fn(*a))))
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert on_gpu(f)(3) == ("gpu", 3) and wrapped == [f]


def test_backbone_does_not_import_the_hub_package():
    code = ("import sys, dfdet.backbone, dfdet.backbone_file; "
            "print(any(m.startswith('dfdet.hub') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
    src = (ROOT / "dfdet" / "backbone.py").read_text()
    assert "from .hub" not in src and "dfdet.hub" not in src  # not even lazily: the cycle is gone


def test_demo_manifest_is_small_balanced_and_split_by_video(tmp_path, shared):
    from dfdet import demo
    df = pd.read_csv(demo.demo_manifest(tmp_path, shared / "datasets", ("DFDC",)), keep_default_na=False)
    used = df[df["split"] != ""]
    for (dataset, split), d in used.groupby(["dataset", "split"]):
        cap = {"train": demo.TRAIN_FACES, "val": demo.VAL_FACES, "test": demo.TEST_FACES}[split]
        assert d.groupby("label").size().max() <= cap, (dataset, split)
        assert split == "test" or dataset == "DFDC"  # the other datasets are cross-dataset tests
    assert set(used[used["dataset"] == "FF"]["path"]) == set(df[df["dataset"] == "FF"]["path"])  # small sets whole
    by_video = used[used["dataset"] == "DFDC"].groupby("video")["split"].nunique()
    assert (by_video == 1).all()  # a video never straddles two splits
    assert len(used) < 700  # was every shared face (2,032)


def test_demo_is_built_once_with_named_steps_whoever_asks(tmp_path, tiny_cfg, monkeypatch):
    """The server builds demo mode in the background; visitors asking again start nothing."""
    import dfdet.backbone
    import dfdet.demo as demo_mod
    from dfdet.config import BackboneConfig
    from dfdet.errors import WeightsUnavailable
    from dfdet.viz.session import AppConfig, Session
    from test_app_helpers import make_checkpoints
    real_load = dfdet.backbone.load_clip
    ckpt = make_checkpoints(real_load(tiny_cfg), tmp_path / "ck")
    gate, calls, seen = threading.Event(), [], []

    def slow_ensure(root, progress=None, **kw):
        calls.append(root)
        for i, name in enumerate(n for _, n in demo_mod.steps()):
            progress(i + 1, len(demo_mod.steps()), name, 10.0 * (6 - i))
            if i == 0:
                gate.wait(30)  # hold the build at its first step: the visitors below ask meanwhile
        return demo_mod.DemoAssets(tiny_cfg, ckpt, tmp_path / "no_run", tmp_path / "m.csv", tmp_path)

    def no_weights(cfg, device="cpu"):
        if cfg.pretrained:
            raise WeightsUnavailable("no CLIP weights here")
        return real_load(cfg, device)
    monkeypatch.setattr(dfdet.backbone, "load_clip", no_weights)
    monkeypatch.setattr(demo_mod, "ensure_demo", slow_ensure)
    s = Session(AppConfig(runs=str(tmp_path / "runs"), backbone=BackboneConfig(), cache_dir=str(tmp_path / "c"),
                          demo_root=str(tmp_path / "demo"), warm_up=False), load_models=False)
    th = s.load_models_async()
    for _ in range(600):
        if s.startup.demo.step == 1:
            break
        threading.Event().wait(0.05)
    line = s.startup.status_line()
    assert "Building demo mode" in line and "step 1 of 6: index the sample faces" in line and "s left" in line
    assert not s.store.runs and "already work" not in line and "open with the demo run when it is built" in line
    with pytest.raises(DfdetError) as refusal:  # Compare meanwhile: what is happening, not a weights download
        s.store.require_bank()
    assert "demo mode is being built" in str(refusal.value) and "ViT-L-14" not in str(refusal.value)
    seen += [s.startup.request_demo() for _ in range(3)]  # three visitors press the button
    assert all(m.startswith("Demo mode is being built") for m in seen)
    gate.set()
    th.join(60)
    assert s.status.mode == "demo" and len(calls) == 1
    assert s.startup.request_demo().startswith("Demo mode is on") and len(calls) == 1
    assert "DEMO MODE" in s.startup.status_line()
