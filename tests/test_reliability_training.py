"""No lost work (issue #11 §3): a selection rule the validation split cannot compute is refused before training,
an epoch whose metric is NaN is compared on the validation loss (and the log says so), a run always ends with
a checkpoint, a finished checkpoint is replaced only with --force and then whole, stale temp files of a killed
run are cleaned, and files get the usual mode."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest

import dfdet.train as train_mod
from dfdet.checkpoint import META_FILE, WEIGHTS_FILE, read_meta
from dfdet.config import BackboneConfig, TrainConfig
from dfdet.data.manifest import write_manifest
from dfdet.errors import DataError
from test_reliability_helpers import TINY_ARGS, run_cli

FILES = ("config.yaml", "train_log.jsonl", WEIGHTS_FILE, META_FILE)


def cfg_for(manifest, out: Path, method: str = "linear_probe", **kw) -> TrainConfig:
    m, root = manifest
    return TrainConfig(method=method, backbone=BackboneConfig(model="dfdet-tiny-vit", pretrained=None),
                       manifest=str(m), data_root=str(root), batch_size=16, epochs=2, lr=1e-3, out=str(out),
                       device="cpu", augment="none", **kw)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {f: (folder / f).read_bytes() for f in FILES}


@pytest.fixture(scope="module")
def finished(dfdc_manifest, tmp_path_factory) -> Path:
    """A finished linear-probe checkpoint (2 epochs on the tiny backbone)."""
    return train_mod.train(cfg_for(dfdc_manifest, tmp_path_factory.mktemp("ck") / "lp"))


def test_a_one_class_validation_split_is_refused_before_training(dfdc_manifest, tmp_path):
    m, root = dfdc_manifest
    df = pd.read_csv(m)
    df = df[(df["split"] != "val") | (df["label"] == 0)]  # validation holds only real faces
    one = write_manifest(df, tmp_path / "one_class_val.csv")
    r = run_cli(["train", "--method", "linear_probe", "--manifest", str(one), "--data-root", str(root),
                 "--epochs", "1", "--out", str(tmp_path / "out"), *TINY_ARGS])
    assert r.rc != 0 and not r.crashed, r.crashed
    assert "the 'val' split holds only real faces" in r.err and "select_metric=loss" in r.err
    assert not (tmp_path / "out").exists()  # refused before anything was written
    r = run_cli(["train", "--method", "linear_probe", "--manifest", str(m), "--data-root", str(root),
                 "--set", "select_metric=bogus", "--out", str(tmp_path / "out"), *TINY_ARGS])
    assert r.rc != 0 and not r.crashed and "unknown select_metric 'bogus'" in r.err


def test_a_nan_metric_falls_back_to_the_validation_loss_and_says_so(dfdc_manifest, tmp_path, monkeypatch, capsys):
    real = train_mod.val_metrics
    calls = []

    def nan_on_second_epoch(*args):
        m = real(*args)
        calls.append(1)
        if len(calls) == 2:
            m["video_map_macro"] = math.nan
        return m
    monkeypatch.setattr(train_mod, "val_metrics", nan_on_second_epoch)
    out = train_mod.train(cfg_for(dfdc_manifest, tmp_path / "x"))
    assert "epoch 2: video_map_macro is not a number on the 'val' split; this epoch is compared on the " \
           "validation loss instead" in capsys.readouterr().out
    log = [__import__("json").loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[1]["val"]["selected_on"] == "loss" and log[0]["best"]  # epoch 1 had the metric: it ranks first
    assert read_meta(out)["best_epoch"] == 1


def test_a_run_where_no_epoch_can_be_scored_still_ends_with_a_checkpoint(dfdc_manifest, tmp_path, monkeypatch):
    """Also: temp files a SIGKILL left are cleaned at the start, and every file gets the usual mode (not 0600)."""
    real = train_mod.validate

    def unscorable(*args):
        return {**real(*args), "video_map_macro": math.nan, "loss": math.nan}
    monkeypatch.setattr(train_mod, "validate", unscorable)
    out = tmp_path / "x"
    out.mkdir()
    stale = [out / f".{WEIGHTS_FILE}.k1ll3d.tmp", out / ".config.yaml.abc123.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")  # what SIGKILL mid-write leaves
    assert train_mod.train(cfg_for(dfdc_manifest, out)) == out
    assert read_meta(out)["method"] == "linear_probe" and (out / WEIGHTS_FILE).is_file()
    assert not (out / train_mod.RESUME_FILE).exists() and not any(p.exists() for p in stale)
    umask = os.umask(0)
    os.umask(umask)
    for f in FILES:
        assert (out / f).stat().st_mode & 0o777 == 0o666 & ~umask, f


def test_a_finished_checkpoint_is_replaced_only_with_force(dfdc_manifest, finished, tmp_path):
    before = snapshot(finished)
    with pytest.raises(DataError, match="already holds a finished checkpoint; pass --force"):
        train_mod.train(cfg_for(dfdc_manifest, finished, seed=7))
    assert snapshot(finished) == before


def test_a_forced_retrain_killed_midway_leaves_the_old_checkpoint_whole(dfdc_manifest, finished, tmp_path,
                                                                        monkeypatch):
    import shutil
    out = shutil.copytree(finished, tmp_path / "lp")
    before = snapshot(out)
    save = train_mod.save_resume

    def killed_after_epoch_1(path, key, model, opt, gen, best, progress):
        save(path, key, model, opt, gen, best, progress)
        raise KeyboardInterrupt
    monkeypatch.setattr(train_mod, "save_resume", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg_for(dfdc_manifest, out, seed=7, force=True))
    assert snapshot(out) == before  # old weights with their own config and log
    monkeypatch.setattr(train_mod, "save_resume", save)
    assert train_mod.train(cfg_for(dfdc_manifest, out, seed=7, force=True)) == out  # resumes in staging, swaps
    assert read_meta(out)["config"]["seed"] == 7 and "seed: 7" in (out / "config.yaml").read_text()
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lp"]  # no staging or old folder left behind


def test_the_text_trainer_replaces_a_finished_checkpoint_only_with_force_and_whole(dfdc_manifest, tmp_path,
                                                                                   monkeypatch):
    """The text-guided trainer stages a forced retrain like the paper trainer (its helper, not a copy): without
    --force it refuses; killed midway, the old checkpoint keeps its own config and log; finished, it swaps in."""
    from dfdet.text import TextTrainConfig, train as text_train
    m, root = dfdc_manifest
    df = pd.read_csv(m)
    m = write_manifest(df.groupby(["split", "label"]).head(4), tmp_path / "small.csv")  # 4 faces per class and split

    def text_cfg(**kw) -> TextTrainConfig:
        return TextTrainConfig(method="textguided_1desc", backbone=BackboneConfig(model="dfdet-tiny-vit",
                               pretrained=None), manifest=str(m), data_root=str(root), batch_size=4, epochs=1,
                               max_steps=1, grad_accum=1, warmup_steps=1, device="cpu",
                               out=str(tmp_path / "ck" / "tg"), **kw)
    out = text_train.train_textguided(text_cfg())
    before = snapshot(out)
    r = run_cli(["train", "--method", "textguided_1desc", "--manifest", str(m), "--data-root", str(root),
                 "--max-steps", "1", "--seed", "7", "--out", str(out), *TINY_ARGS])
    assert r.rc != 0 and not r.crashed and "already holds a finished checkpoint; pass --force" in r.err, r.text
    assert snapshot(out) == before
    validate = text_train.validate

    def killed(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(text_train, "validate", killed)  # after the first training step, before any checkpoint
    with pytest.raises(KeyboardInterrupt):
        text_train.train_textguided(text_cfg(seed=7, force=True))
    assert snapshot(out) == before
    monkeypatch.setattr(text_train, "validate", validate)
    assert text_train.train_textguided(text_cfg(seed=7, force=True)) == out
    assert read_meta(out)["config"]["seed"] == 7 and "seed: 7" in (out / "config.yaml").read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["tg"]  # no staging or old folder left behind
