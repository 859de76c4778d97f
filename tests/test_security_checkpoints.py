"""Issue 19, items 3, 4 and 9: one bad field, one bad repo or one interrupted swap never takes down the rest.

Every field of a checkpoint's dfdet.json is validated when it is loaded or pulled (a bad one makes only that
method unavailable, with the reason); a bad --hub-runs repo is skipped with a note; staging folders are never
listed, and a checkpoint swap leaves the old or the new checkpoint in place at every instant.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from dfdet.checkpoint import META_FILE, read_meta
from dfdet.errors import CheckpointError
from dfdet.inference import DetectorBank
from dfdet.methods import PAPER_METHODS
from test_hub_remote import hub  # noqa: F401 - the folder-backed Hub fixture
from test_reliability_checkpoints import baseline, clip, edit_meta, face, good  # noqa: F401 - fixtures
from test_reliability_helpers import TINY_ARGS, run_cli

CAL = {"rule": "eer", "threshold": 0.4, "temperature": 1.3, "band": [0.3, 0.5], "alpha": 0.1, "split": "val",
       "n": 32, "target_fpr": None, "band_width": 0.2}


def with_cal(**change):
    return lambda m: {**m, "calibration": {**CAL, **change}}


BAD_FIELDS = {  # name: (how dfdet.json is spoiled, what the refusal names)
    "calibration-n-text": (with_cal(n="abc"), r"'calibration' 'n' must be a whole number"),
    "calibration-threshold-text": (with_cal(threshold="x"), r"'threshold' must be a number in \[0, 1\]"),
    "calibration-threshold-2": (with_cal(threshold=2.0), r"'threshold' must be a number in \[0, 1\]"),
    "calibration-temperature-nan": (with_cal(temperature=float("nan")), r"'temperature' must be a finite"),
    "calibration-band-reversed": (with_cal(band=[0.9, 0.1]), r"'band' must be \[lo, hi\]"),
    "calibration-band-short": (with_cal(band=[0.1]), r"'band' must be"),
    "calibration-rule": (with_cal(rule={"a": 1}), r"'rule' must be one of"),
    "calibration-alpha-bool": (with_cal(alpha=True), r"'alpha' must be"),
    "calibration-list": (lambda m: {**m, "calibration": [1]}, r"'calibration' must be a JSON object"),
    "calibration-no-threshold": (lambda m: {**m, "calibration": {"band": [0, 1], "temperature": 1}},
                                 r"lacks 'threshold'"),
    "best-epoch-negative": (lambda m: {**m, "best_epoch": -1}, r"'best_epoch' must be a number >= 0"),
    "train-seconds-inf": (lambda m: {**m, "train_seconds": float("inf")}, r"'train_seconds' must be a number"),
    "label-newline": (lambda m: {**m, "label": "a\nb"}, r"'label' is not a short one-line text"),
    "val-metrics-list": (lambda m: {**m, "val_metrics": [1]}, r"'val_metrics' must be a JSON object"),
    "top-k-text": (lambda m: {**m, "config": {"top_k": "many"}}, r"'config.top_k' must be a whole number"),
    "descriptions-bad": (lambda m: {**m, "descriptions": {"name": "x", "real": "a", "fake": []}},
                         r"'descriptions' must be"),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_one_bad_field_makes_only_its_own_checkpoint_unavailable(clip, good, face, baseline, tmp_path, case):
    spoil, message = BAD_FIELDS[case]
    ck = shutil.copytree(good, tmp_path / "checkpoints")
    shutil.copytree(ck / "ln_norm", ck / "pulled")
    edit_meta(ck / "pulled", spoil)
    with pytest.raises(CheckpointError, match=message):
        read_meta(ck / "pulled")
    bank = DetectorBank(clip, ck, list(PAPER_METHODS))
    e = bank.entries["pulled"]
    assert e.status == "error" and e.model is None and e.tensors is None and re.search(message, e.message)
    assert sorted(bank.ready) == sorted(PAPER_METHODS)
    probs = bank.predict(bank.preprocess([face]))
    assert all(np.array_equal(probs[m], baseline[m]) for m in PAPER_METHODS)


def test_a_valid_calibration_still_loads(good, tmp_path):
    ck = shutil.copytree(good / "ln_norm", tmp_path / "ln_norm")
    edit_meta(ck, with_cal())
    from dfdet.calibration import Calibration
    cal = Calibration.from_meta(read_meta(ck))
    assert cal is not None and cal.threshold == 0.4 and cal.n == 32


def test_predict_names_the_bad_calibration_and_scores_the_others(good, tmp_path, face):
    """Issue 19 §3: calibration.n = "abc" gave a traceback in `dfdet predict` and scored nothing."""
    ck = tmp_path / "checkpoints"
    for m in ("ln_norm", "linear_probe"):
        shutil.copytree(good / m, ck / m)
    edit_meta(ck / "ln_norm", with_cal(n="abc"))
    edit_meta(ck / "linear_probe", with_cal())
    img = tmp_path / "face.png"
    face.save(img)
    r = run_cli(["predict", str(img), "--checkpoints", str(ck), *TINY_ARGS])
    assert not r.crashed and "Traceback" not in r.text and r.rc == 0, r.text
    assert "Linear probe" in r.out and "'calibration' 'n' must be a whole number" in r.out, r.out


def test_pull_refuses_a_checkpoint_with_a_bad_field(good, tmp_path, hub):  # noqa: F811
    from dfdet.hub.remote import pull
    repo = hub.root / "me" / "bad"
    shutil.copytree(good / "ln_norm", repo)
    edit_meta(repo, with_cal(n="abc"))
    with pytest.raises(CheckpointError, match=r"'calibration' 'n' must be a whole number"):
        pull("me/bad", tmp_path / "checkpoints" / "bad")
    assert not (tmp_path / "checkpoints" / "bad").exists()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == []  # no staging folder left behind


# ------------------------------------------------------------------------------- item 4: --hub-runs
def run_repo(root: Path, name: str, run: Path) -> Path:
    repo = root / "me" / name
    shutil.copytree(run, repo)
    return repo


BAD_RUNS = {  # how a published run folder is spoiled
    "run-json-list": lambda r: (r / "run.json").write_text("[]"),
    "metrics-not-json": lambda r: (r / "metrics.json").write_text("{nope"),
    "metrics-number": lambda r: (r / "metrics.json").write_text("5"),
    "run-json-binary": lambda r: (r / "run.json").write_bytes(b"\xff\xfe\x00garbage"),
}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_one_bad_hub_run_is_skipped_with_a_note_and_the_rest_loads(tmp_path, tiny_clip, tiny_cfg, hub,  # noqa: F811
                                                                     case):
    from dfdet.hub.space import fetch_all
    from dfdet.viz.session import AppConfig, Session
    from test_app_helpers import make_synthetic_run
    from test_hub_remote import trained_checkpoint
    made = make_synthetic_run(tmp_path / "made" / "ff_eval")
    run_repo(hub.root, "good-run", made)
    BAD_RUNS[case](run_repo(hub.root, "bad-run", made))
    ck = trained_checkpoint(tiny_clip, tmp_path / "checkpoints" / "ln_norm")  # a local checkpoint
    got = fetch_all([], ["me/bad-run", "me/good-run"], False, tmp_path / "checkpoints", tmp_path / "runs")
    assert [p.name for p in got.runs] == ["good-run"]
    assert got.notes[0].startswith("run me/bad-run skipped: me/bad-run is not a readable dfdet run folder")
    assert "\n" not in got.notes[0]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["good-run"]  # no staging folder left
    cfg = AppConfig(runs=str(tmp_path / "runs2"), checkpoints=str(ck.parent), backbone=tiny_cfg,
                    cache_dir=str(tmp_path / "cache"), demo="off", hub_runs=["me/bad-run", "me/good-run"])
    s = Session(cfg, load_models=False)
    s.startup.load_models(clip=tiny_clip)
    assert s.bank.entries["ln_norm"].status == "ready" and "good-run" in s.runs
    assert "run me/bad-run skipped" in s.banner()


def test_the_run_pull_filter_never_passes_dotdot(tmp_path, hub):  # noqa: F811
    from dfdet.hub.space import pull_run
    from test_app_helpers import make_synthetic_run
    repo = run_repo(hub.root, "run", make_synthetic_run(tmp_path / "made" / "r"))
    (repo / "embeddings" / "sub").mkdir()
    (repo / "embeddings" / "sub" / "x.npz").write_bytes(b"x")
    hub.calls.clear()
    pull_run("me/run", tmp_path / "runs")
    wanted = [c for c in hub.calls if c[0] == "snapshot_download"][0][2]
    assert all(".." not in f and f.count("/") <= 1 for f in wanted), wanted
    from dfdet.hub import space
    assert not space._EMBEDDINGS.fullmatch("embeddings/../../escape.npz")
    assert not space._EMBEDDINGS.fullmatch("embeddings/..npz")
