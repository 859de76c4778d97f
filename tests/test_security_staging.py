"""Issue 19, items 8 and 9: a checkpoint or run folder is replaced whole, with the old or the new one in place
at every instant; an interrupted replacement is undone at the next start; staging folders are never listed."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from dfdet import swap
from dfdet.artifacts import load_run
from dfdet.checkpoint import META_FILE
from dfdet.errors import DataError
from dfdet.inference import DetectorBank
from dfdet.methods import PAPER_METHODS
from test_app_helpers import make_synthetic_run
from test_reliability_checkpoints import clip, good  # noqa: F401 - fixtures

STAGING = (".ln_norm.pull-x1", ".ln_norm.new-x2", ".ln_norm.retrain", ".ln_norm.replaced", ".ln_norm.eval-1-ab")


class Killed(BaseException):
    """The process dies here (kill -9): nothing after this point runs."""


def label_of(folder: Path) -> str:
    return json.loads((folder / META_FILE).read_text())["label"]


def relabelled(src: Path, dst: Path, label: str) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / META_FILE).read_text())
    (dst / META_FILE).write_text(json.dumps({**meta, "label": label}))
    return dst


# ------------------------------------------------------------------------------------------------ item 9
def test_staging_folders_are_never_scored_as_rows(clip, good, tmp_path):  # noqa: F811
    ck = shutil.copytree(good, tmp_path / "checkpoints")
    for name in STAGING:
        shutil.copytree(ck / "ln_norm", ck / name)
    bank = DetectorBank(clip, ck, list(PAPER_METHODS))
    assert sorted(bank.entries) == sorted(PAPER_METHODS) and sorted(bank.ready) == sorted(PAPER_METHODS)


def test_staging_run_folders_are_never_listed(tmp_path, tiny_cfg):
    from dfdet.viz.session import AppConfig, Session
    runs = tmp_path / "runs"
    make_synthetic_run(runs / "ff")
    for name in (".ff.eval-1-ab", ".ff.pull-x", ".ff.replaced"):
        shutil.copytree(runs / "ff", runs / name)
    s = Session(AppConfig(runs=str(runs), checkpoints=str(tmp_path / "none"), backbone=tiny_cfg,
                          cache_dir=str(tmp_path / "cache"), demo="off"), load_models=False)
    assert list(s.runs) == ["ff"]


def test_a_swap_keeps_the_old_or_the_new_checkpoint_in_place_at_every_instant(good, tmp_path, monkeypatch):  # noqa: F811
    out = relabelled(good / "ln_norm", tmp_path / "ck" / "ln_norm", "OLD")
    new = relabelled(good / "ln_norm", tmp_path / "ck" / ".ln_norm.retrain", "NEW")
    seen = []
    real_replace, real_exchange, real_rmtree = os.replace, swap._exchange, shutil.rmtree

    def check(*_):
        seen.append(label_of(out))  # raises if the checkpoint is missing at this instant

    def replace(a, b):
        check()
        real_replace(a, b)
        check()

    def exchange(a, b):
        check()
        done = real_exchange(a, b)
        check()
        return done
    monkeypatch.setattr(swap.os, "replace", replace)
    monkeypatch.setattr(swap, "_exchange", exchange)
    monkeypatch.setattr(swap.shutil, "rmtree", lambda p, **kw: (check(), real_rmtree(p, **kw)))
    swap.swap_folder(new, out)
    assert label_of(out) == "NEW" and seen[0] == "OLD" and seen[-1] == "NEW"
    assert sorted(p.name for p in out.parent.iterdir()) == ["ln_norm"]


@pytest.mark.parametrize("where", ["pull", "train"])
def test_a_kill_between_the_two_renames_is_undone_at_the_next_start(clip, good, tmp_path, monkeypatch,  # noqa: F811
                                                                   where):
    """Without an atomic exchange, the swap is two renames; a kill between them left no checkpoint at all."""
    ck = shutil.copytree(good, tmp_path / "checkpoints")
    relabelled(ck / "ln_norm", ck / ".ln_norm.new-x", "NEW")
    shutil.rmtree(ck / "ln_norm")
    relabelled(good / "ln_norm", ck / "ln_norm", "OLD")
    monkeypatch.setattr(swap, "_exchange", lambda a, b: False)  # a file system without renameat2
    calls = []
    real_replace = os.replace

    def replace(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise Killed
        real_replace(a, b)
    monkeypatch.setattr(swap.os, "replace", replace)
    with pytest.raises(Killed):
        if where == "train":
            from dfdet.train import swap_in
            swap_in(ck / ".ln_norm.new-x", ck / "ln_norm")
        else:
            swap.swap_folder(ck / ".ln_norm.new-x", ck / "ln_norm")
    assert not (ck / "ln_norm").exists()  # the instant the issue describes
    monkeypatch.setattr(swap.os, "replace", real_replace)
    bank = DetectorBank(clip, ck, list(PAPER_METHODS))  # the next start
    assert bank.entries["ln_norm"].status == "ready" and bank.entries["ln_norm"].meta["label"] == "OLD"
    assert not (ck / ".ln_norm.replaced").exists()


# ------------------------------------------------------------------------------------------------ item 8
def run_parts(folder: Path):
    run = load_run(folder)
    emb = {m: run.embeddings(m) for m in run.methods}
    return run.info, run.predictions, run.metrics.to_dict("records"), run.roc, emb


def test_a_re_evaluation_that_dies_midway_leaves_the_earlier_run_whole(tmp_path, monkeypatch):
    from dfdet import artifacts
    from dfdet.evaluate import place_run
    old = make_synthetic_run(tmp_path / "runs" / "ff")
    before = {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()}
    info, preds, metrics, roc, emb = run_parts(make_synthetic_run(tmp_path / "made" / "new", n=24, seed=3,
                                                                  methods=("ln_norm",)))
    real_savez = np.savez

    def full_disk(f, **arrays):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(artifacts.np, "savez", full_disk)
    with pytest.raises(DataError, match="No space left on device"):
        place_run(old, {**info, "split": "val"}, preds, metrics, roc, emb)
    after = {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()}
    assert after == before  # not one file of the earlier run changed
    assert sorted(p.name for p in old.parent.iterdir()) == ["ff"]  # no staging left
    monkeypatch.setattr(artifacts.np, "savez", real_savez)
    place_run(old, {**info, "split": "val"}, preds, metrics, roc, emb)  # a finished one replaces it whole
    run = load_run(old)
    assert run.info["split"] == "val" and len(run.predictions) == 24 and run.methods == ["ln_norm"]
    assert sorted(p.name for p in (old / "embeddings").iterdir()) == ["ln_norm.npz"]  # no stale embeddings
    assert sorted(p.name for p in old.parent.iterdir()) == ["ff"]


def test_a_run_never_replaces_a_folder_that_is_not_a_run(tmp_path):
    from dfdet.evaluate import check_run_target
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("months of work")
    with pytest.raises(DataError, match="holds files that are not a dfdet run"):
        check_run_target(tmp_path / "mine")
    check_run_target(make_synthetic_run(tmp_path / "runs" / "ff"))  # an earlier run: fine


def test_a_run_moved_aside_by_a_killed_swap_is_back_at_the_next_start(tmp_path, tiny_cfg):
    from dfdet.viz.session import AppConfig, Session
    runs = tmp_path / "runs"
    make_synthetic_run(runs / ".ff.replaced")  # a kill between the two renames of a re-evaluation's swap
    s = Session(AppConfig(runs=str(runs), checkpoints=str(tmp_path / "none"), backbone=tiny_cfg,
                          cache_dir=str(tmp_path / "cache"), demo="off"), load_models=False)
    assert list(s.runs) == ["ff"] and sorted(p.name for p in runs.iterdir()) == ["ff"]
