"""`dfdet selfcheck --runtime`: the self-check scores with whichever runtime is active, says which, and
reports that runtime's agreement with torch-fp32 on the same crops.

The paper's weights are not here, so this runs on the synthetic tiny checkpoint of the paper's layout
(test_recipe_selfcheck's `synthetic` fixture: its "published" values are what the reference pipeline
computes). What is tested is the runtime plumbing; the published-number check itself is the `weights` test.
"""
from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("peft")

from dfdet import runtime as rt  # noqa: E402
from dfdet.cli import main  # noqa: E402
from dfdet.errors import DfdetError  # noqa: E402
from dfdet.selfcheck import run_selfcheck  # noqa: E402
from test_recipe_selfcheck import synthetic  # noqa: E402,F401  (the module-scoped fixture)


def test_selfcheck_on_the_int8_runtime(synthetic, tmp_path, monkeypatch):  # noqa: F811
    ckpt, root, expected = synthetic
    monkeypatch.setattr(rt, "cache_dir", lambda weights_file=None: tmp_path / "cache")
    ref = run_selfcheck(ckpt, root, expected=expected, tolerance=1e-3)
    assert ref.runtime == "torch-fp32" and ref.vs_fp32 is None
    fast = run_selfcheck(ckpt, root, expected=expected, tolerance=0.02, runtime="onnx-int8")
    assert fast.runtime == "onnx-int8" and fast.passed, fast.table()
    # Really the int8 engine, and the agreement it reports is what the two columns show.
    diffs = [abs(a["dfdet"] - b["dfdet"]) for a, b in zip(fast.rows, ref.rows)]
    assert max(diffs) > 0
    assert fast.vs_fp32["dp_max"] == pytest.approx(max(diffs), abs=1e-6)
    assert rt.DEFAULT_THRESHOLDS[0] <= fast.vs_fp32["cos_min"] < 1.0
    assert "runtime onnx-int8" in fast.table() and "onnx-int8 vs torch-fp32 on these 12 images" in fast.table()
    assert list((tmp_path / "cache").glob("*-onnx-int8.onnx"))  # built once, cached where cache_dir says


def test_selfcheck_cli_names_the_runtime(synthetic, capsys):  # noqa: F811
    ckpt, root, _ = synthetic
    main(["selfcheck", "--checkpoint", str(ckpt), "--data-root", str(root), "--runtime", "auto"])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == rt.describe("torch-fp32")  # auto on a tiny model: the reference
    assert "runtime torch-fp32" in out
    with pytest.raises(DfdetError, match="combine"):
        run_selfcheck(ckpt, root, precision="bf16", runtime="onnx-int8")
