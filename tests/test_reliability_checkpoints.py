"""Checkpoints are untrusted input (`dfdet pull`, other people's Hub repos): each folder is validated whole
at load (schema, dtypes, shapes, the exact tensor set of its method, finite values), and a bad one makes
only its own row unavailable. Nothing is ever scored with a half-loaded model (issue #11 §2)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from dfdet.backbone import TINY_MODEL, load_clip
from dfdet.checkpoint import META_FILE, WEIGHTS_FILE
from dfdet.inference import DetectorBank
from dfdet.methods import PAPER_METHODS, get_method
from test_app_helpers import make_checkpoints
from test_reliability_helpers import TINY_ARGS, run_cli

NOT_LN = "backbone.visual.conv1.weight"  # a backbone tensor no method trains


@pytest.fixture(scope="module")
def clip(tiny_cfg):
    return load_clip(tiny_cfg)


@pytest.fixture(scope="module")
def good(clip, tmp_path_factory) -> Path:
    return make_checkpoints(clip, tmp_path_factory.mktemp("good") / "checkpoints")


@pytest.fixture(scope="module")
def face(shared) -> Image.Image:
    return Image.open(sorted((shared / "datasets" / "FF" / "real").glob("*/*.png"))[0]).convert("RGB")


def edit_tensors(folder: Path, fn) -> None:
    tensors = load_file(str(folder / WEIGHTS_FILE))
    fn(tensors)
    save_file(tensors, str(folder / WEIGHTS_FILE))


def edit_meta(folder: Path, fn) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps(fn(meta)))


def conv1(t, clip):
    t[NOT_LN] = torch.zeros_like(clip.model.visual.conv1.weight)


BAD = {  # name: (how the ln_norm checkpoint is spoiled, what the refusal must say)
    "no-head": (lambda f, c: edit_tensors(f, lambda t: [t.pop(k) for k in ("head.weight", "head.bias")]),
                r"missing 2 tensor\(s\) \['head.bias', 'head.weight'\]"),
    "no-layernorm": (lambda f, c: edit_tensors(f, lambda t: t.pop(sorted(k for k in t if "ln" in k)[0])),
                     r"missing 1 tensor"),
    "backbone-tensor": (lambda f, c: edit_tensors(f, lambda t: conv1(t, c)),
                        r"outside the method's trainable set \['backbone.visual.conv1.weight'\]"),
    "unknown-tensor": (lambda f, c: edit_tensors(f, lambda t: t.update(extra=torch.zeros(3))),
                       r"outside the method's trainable set \['extra'\]"),
    "int-dtype": (lambda f, c: edit_tensors(f, lambda t: t.update({"head.bias": torch.zeros(2, dtype=torch.int64)})),
                  r"head.bias is int64; weights must be floating point"),
    "wrong-shape": (lambda f, c: edit_tensors(f, lambda t: t.update({"head.bias": torch.zeros(3)})),
                    r"head.bias has shape \(3,\), a ln_norm checkpoint needs \(2,\)"),
    "nan": (lambda f, c: edit_tensors(f, lambda t: t["head.weight"].view(-1).__setitem__(0, float("nan"))),
            r"head.weight holds NaN or infinite values"),
    "inf": (lambda f, c: edit_tensors(f, lambda t: t["head.bias"].__setitem__(1, float("-inf"))),
            r"head.bias holds NaN or infinite values"),
    "meta-list": (lambda f, c: (f / META_FILE).write_text("[1, 2]"), r"expected a JSON object, found list"),
    "meta-method-number": (lambda f, c: edit_meta(f, lambda m: {**m, "method": 5}), r"'method' must be a string"),
    "meta-backbone-string": (lambda f, c: edit_meta(f, lambda m: {**m, "backbone": "ViT"}),
                             r"'backbone' must be a JSON object"),
    "meta-backbone-model-list": (lambda f, c: edit_meta(f, lambda m: {**m, "backbone": {"model": [1], "weights": "x"}}),
                                 r"'backbone.model' must be a string"),
    "meta-params-text": (lambda f, c: edit_meta(f, lambda m: {**m, "trainable_params": "many"}),
                         r"'trainable_params' must be a whole number"),
    "meta-no-method": (lambda f, c: edit_meta(f, lambda m: {k: v for k, v in m.items() if k != "method"}),
                       r"missing method"),
    "meta-deep-100k": (lambda f, c: (f / META_FILE).write_text("[" * 100_000 + "]" * 100_000),
                       r"nested too deeply"),
    "meta-deep-100": (lambda f, c: edit_meta(f, lambda m: {**m, "x": json.loads("[" * 100 + "]" * 100)}),
                      r"nested deeper than"),
    "meta-huge": (lambda f, c: edit_meta(f, lambda m: {**m, "x": "a" * (2 << 20)}), r"too large"),
}


@pytest.fixture(scope="module")
def baseline(clip, good, face):
    bank = DetectorBank(clip, good, list(PAPER_METHODS))
    return bank.predict(bank.preprocess([face]))


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_checkpoint_is_refused_and_marks_only_its_own_row(clip, good, face, baseline, tmp_path, case):
    spoil, message = BAD[case]
    ck = shutil.copytree(good, tmp_path / "checkpoints")
    shutil.copytree(ck / "ln_norm", ck / "pulled")  # a second ln_norm checkpoint, as `dfdet pull` adds
    spoil(ck / "pulled", clip)
    bank = DetectorBank(clip, ck, list(PAPER_METHODS))
    e = bank.entries["pulled"]
    assert e.status == "error" and e.tensors is None and e.model is None
    assert "pulled" in e.message and __import__("re").search(message, e.message), e.message
    assert sorted(bank.ready) == sorted(PAPER_METHODS)  # every other method still loads...
    probs = bank.predict(bank.preprocess([face]))
    assert all(np.array_equal(probs[m], baseline[m]) for m in PAPER_METHODS)  # ...and scores exactly as before


def test_a_checkpoint_without_its_head_is_never_scored_by_the_cli(good, tmp_path, face):
    """Issue #11 §2: an ln_norm folder without head.* was scored with a fresh head (0.5374), with no warning."""
    ck = tmp_path / "checkpoints"
    shutil.copytree(good / "ln_norm", ck / "ln_norm")
    shutil.copytree(good / "linear_probe", ck / "linear_probe")
    edit_tensors(ck / "ln_norm", lambda t: [t.pop(k) for k in ("head.weight", "head.bias")])
    img = tmp_path / "face.png"
    face.save(img)
    r = run_cli(["predict", str(img), "--checkpoints", str(ck), *TINY_ARGS])
    assert not r.crashed, r.crashed
    assert "Linear probe" in r.out and "LN + Norm " not in r.out.split("ln_norm:")[0]  # no score row
    assert f"{ck / 'ln_norm'}: not a ln_norm checkpoint: missing 2 tensor(s)" in r.out


@pytest.mark.parametrize("case", ["meta-method-number", "meta-backbone-string", "meta-deep-100k"])
def test_a_sidecar_of_the_wrong_shape_is_a_message_not_a_traceback(good, tmp_path, face, case):
    ck = tmp_path / "checkpoints"
    shutil.copytree(good / "ln_norm", ck / "ln_norm")
    shutil.copytree(good / "linear_probe", ck / "linear_probe")
    BAD[case][0](ck / "ln_norm", None)
    img = tmp_path / "face.png"
    face.save(img)
    r = run_cli(["predict", str(img), "--checkpoints", str(ck), *TINY_ARGS])
    assert not r.crashed and "Traceback" not in r.text, r.crashed
    assert r.rc == 0 and "Linear probe" in r.out and __import__("re").search(BAD[case][1], r.out), r.text


def test_predict_scores_only_the_methods_asked_for(good, tmp_path, face):
    img = tmp_path / "face.png"
    face.save(img)
    r = run_cli(["predict", str(img), "--checkpoints", str(good), "--methods", "ln_norm", *TINY_ARGS])
    assert r.rc == 0, r.text
    rows = [line for line in r.out.splitlines() if "face.png" in line]
    assert len(rows) == 1 and "LN + Norm" in rows[0], r.out


def overflowing(good: Path, tmp_path: Path) -> Path:
    """A finite checkpoint whose scores overflow: the final LayerNorm's gamma at 3e38 makes logits inf - inf."""
    ck = tmp_path / "checkpoints"
    shutil.copytree(good / "ln_tuning", ck / "ln_tuning")
    shutil.copytree(good / "linear_probe", ck / "linear_probe")
    edit_tensors(ck / "ln_tuning", lambda t: t.update({k: torch.full_like(v, 3e38) for k, v in t.items()
                                                       if k.startswith("backbone.") and "ln_post" in k}))
    return ck


def test_a_non_finite_score_is_an_error_never_the_verdict_real(clip, good, tmp_path, face):
    from dfdet.viz.compare import NON_FINITE, image_prediction
    ck = overflowing(good, tmp_path)
    bank = DetectorBank(clip, ck, ["linear_probe", "ln_tuning"])
    assert bank.ready == ["linear_probe", "ln_tuning"]  # every tensor is finite: it loads
    assert not np.isfinite(bank.predict(bank.preprocess([face]))["ln_tuning"]).any()
    table = image_prediction(bank, face).table.set_index("method")
    row = table.loc[get_method("ln_tuning").label]
    assert row["verdict"] == "" and row["status"] == NON_FINITE and np.isnan(row["p_fake"])
    assert table.loc[get_method("linear_probe").label, "verdict"].split()[0] in ("real", "fake")
    img = tmp_path / "face.png"
    face.save(img)
    r = run_cli(["predict", str(img), "--checkpoints", str(ck), *TINY_ARGS])
    assert r.rc == 1 and not r.crashed
    lt = next(line for line in r.out.splitlines() if "LN-tuning" in line)
    assert lt.split()[-1] == "error" and "not a number" in r.err, r.text
