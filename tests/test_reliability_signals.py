"""Interrupting training and preprocessing (SIGINT / SIGTERM) leaves no half-written file, and re-running resumes.

The interrupted runs are real `python -m dfdet ...` processes stopped by a signal mid-run; the
in-process tests pin the two promises underneath: an atomic write interrupted mid-way leaves the
old file (or none) and no temp file, and a resumed training ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

import dfdet.train as train_mod
from dfdet.checkpoint import META_FILE, WEIGHTS_FILE, load_tensors, read_meta, save_checkpoint
from dfdet.config import BackboneConfig, TrainConfig
from dfdet.data.manifest import scan_folder, write_manifest
from dfdet.data.preprocess import RECORDS
from dfdet.errors import CheckpointError
from test_reliability_helpers import TINY_ARGS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_manifest(shared, tmp_path_factory) -> tuple[Path, Path]:
    """16 train + 8 val real DFDC crops (balanced): a training run of a few seconds per epoch."""
    root = shared / "datasets"
    df = scan_folder(root)
    parts = []
    for _, g in df[df["dataset"] == "DFDC"].groupby("label"):
        g = g.sort_values("video").head(12).copy()
        g["split"] = ["train"] * 8 + ["val"] * 4
        parts.append(g)
    return write_manifest(pd.concat(parts), tmp_path_factory.mktemp("m") / "m.csv"), root


def dfdet_process(args: list[str], pause: dict | None = None, sigint_ignored: bool = False) -> subprocess.Popen:
    """`python -m dfdet args`; pause: DFDET_PAUSE* settings of tests/pause_point.py (a known point to stop at).

    sigint_ignored starts it the way a background job of a non-interactive shell (and some CI runners) does:
    with SIGINT set to SIG_IGN, which exec keeps. The CLI must install its own Ctrl-C handling regardless."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("DFDET_PAUSE")}
    if pause:
        hook = Path(pause["DFDET_PAUSE_MARKER"]).parent / "pause_hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text((ROOT / "tests" / "pause_point.py").read_text())
        env.update(pause, PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")
    start = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen([sys.executable, "-m", "dfdet", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=start)


def wait_for(predicate, proc: subprocess.Popen, seconds: float = 120) -> None:
    t0 = time.monotonic()
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before it could be interrupted:\n{proc.stderr.read()}")
        if time.monotonic() - t0 > seconds:
            proc.kill()
            pytest.fail("the run made no progress")
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen, sig: int, seconds: float = 60) -> tuple[int, str, str]:
    """Send sig and wait: the process must stop promptly (no draining, no hang) and say what happened."""
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running {seconds} s after signal {sig}")
    return proc.returncode, out, err


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------- atomic writes
def test_a_save_interrupted_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "ck"
    save_checkpoint(folder, {"head.weight": torch.ones(2, 4)}, {"method": "linear_probe"})
    before = (folder / WEIGHTS_FILE).read_bytes()

    import dfdet.checkpoint as ck

    def half_then_interrupt(tensors, path, metadata=None):
        Path(path).write_bytes(b"\x00" * 100)  # a partial file...
        raise KeyboardInterrupt  # ...and then Ctrl-C
    monkeypatch.setattr(ck, "save_file", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, {"head.weight": torch.zeros(2, 4)}, {"method": "linear_probe"})
    assert (folder / WEIGHTS_FILE).read_bytes() == before  # the old weights, whole
    assert temp_files(folder) == [] and not (folder / META_FILE).exists()
    with pytest.raises(CheckpointError, match="incomplete checkpoint.*interrupted"):
        read_meta(folder)  # the sidecar is the commit mark: an unfinished save is refused, never mixed


def tiny_train_cfg(manifest: tuple[Path, Path], out: Path, method: str, epochs: int = 4) -> TrainConfig:
    m, root = manifest
    return TrainConfig(method=method, backbone=BackboneConfig(model="dfdet-tiny-vit", pretrained=None),
                       manifest=str(m), data_root=str(root), batch_size=8, epochs=epochs, lr=1e-3, out=str(out),
                       device="cpu")


@pytest.mark.parametrize("method", ["ln_norm_slerp", "linear_probe"])
def test_resumed_training_ends_identical_to_an_uninterrupted_run(small_manifest, tmp_path, monkeypatch, method):
    whole = train_mod.train(tiny_train_cfg(small_manifest, tmp_path / "whole", method))
    save = train_mod.save_resume

    def stop_after_epoch_2(path, key, model, opt, gen, best, progress):
        save(path, key, model, opt, gen, best, progress)
        if progress[0] == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(train_mod, "save_resume", stop_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(tiny_train_cfg(small_manifest, tmp_path / "resumed", method))
    assert not (tmp_path / "resumed" / WEIGHTS_FILE).exists()
    monkeypatch.setattr(train_mod, "save_resume", save)
    resumed = train_mod.train(tiny_train_cfg(small_manifest, tmp_path / "resumed", method))
    a, b = load_tensors(whole), load_tensors(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (whole / "train_log.jsonl").read_text() == (resumed / "train_log.jsonl").read_text()
    assert not (resumed / train_mod.RESUME_FILE).exists()  # finished: nothing left to resume


@pytest.mark.parametrize("state", ["damaged", "other settings"])
def test_a_resume_state_that_does_not_fit_is_not_used(small_manifest, tmp_path, state):
    cfg = tiny_train_cfg(small_manifest, tmp_path / "x", "linear_probe", epochs=2)
    path = tmp_path / "x" / train_mod.RESUME_FILE
    path.parent.mkdir(parents=True)
    if state == "damaged":
        path.write_bytes(b"not safetensors")
    else:  # a valid state of another run: its tensors would not even fit this model
        lin = torch.nn.Linear(3, 3)
        train_mod.save_resume(path, "another-key", lin, torch.optim.AdamW(lin.parameters()), torch.Generator(),
                              None, (1, 1, 0.5, 0))
    out = train_mod.train(cfg)  # starts over instead of failing or mixing states
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 2 and not path.exists()


# ---------------------------------------------------------------------------------------------- real signals
@pytest.mark.parametrize("sig", [signal.SIGTERM], ids=["SIGTERM"])
def test_training_killed_mid_run_leaves_no_half_checkpoint_and_resumes(small_manifest, tmp_path, sig):
    m, root = small_manifest
    out = tmp_path / "ln_norm_slerp"
    argv = ["train", "--method", "ln_norm_slerp", "--manifest", str(m), "--data-root", str(root), "--epochs", "4",
            "--batch-size", "8", "--set", "lr=1e-3", "--out", str(out), *TINY_ARGS]
    marker = tmp_path / "paused"  # epoch 2 of 4 is finished and its resume state saved; the run waits there
    proc = dfdet_process(argv, pause={"DFDET_PAUSE": "dfdet.train:save_resume", "DFDET_PAUSE_AFTER": "2",
                                      "DFDET_PAUSE_MARKER": str(marker)})
    log = out / "train_log.jsonl"
    wait_for(marker.is_file, proc)
    rc, _, err = interrupt(proc, sig)
    assert rc == 130 and "interrupted; finished outputs were kept, re-run to resume" in err
    assert "Traceback" not in err
    assert not (out / WEIGHTS_FILE).exists() and not (out / META_FILE).exists()  # no checkpoint yet, not half of one
    assert temp_files(out) == []
    assert (out / train_mod.RESUME_FILE).is_file()

    again = dfdet_process(argv)
    out2, err2 = again.communicate(timeout=300)
    assert again.returncode == 0, err2
    assert "resuming after epoch 2/4" in out2 + err2
    meta = read_meta(out)  # a complete, loadable checkpoint
    assert meta["method"] == "ln_norm_slerp" and set(load_tensors(out)) and temp_files(out) == []
    assert len(log.read_text().splitlines()) == 4 and not (out / train_mod.RESUME_FILE).exists()


@pytest.mark.parametrize("sig,workers", [(signal.SIGINT, 1), (signal.SIGTERM, 2)],
                         ids=["SIGINT-1-worker", "SIGTERM-2-workers"])
def test_preprocessing_interrupted_keeps_whole_crops_and_resumes(shared, tmp_path, sig, workers):
    """Four videos finish; the fifth (last in order) writes its first crop and the run waits there, so the
    signal always lands mid-input, whatever the machine's speed."""
    src = tmp_path / "videos"
    links = {"FF/real/004.mp4": "FF/real/004.mp4", "FF/DF/519_515.mp4": "FF/DF/519_515.mp4",
             "DFDC/real/lynaeydofd.mp4": "DFDC/real/lynaeydofd.mp4", "FF/NT/004_982.mp4": "FF/NT/004_982.mp4",
             "ZZ/last.mp4": "FF/real/004.mp4"}
    for rel, target in links.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).symlink_to(shared / "videos" / target)  # read in place, never copied
    out = tmp_path / "crops"
    argv = ["preprocess", str(src), "-o", str(out), "--frames", "4", "--workers", str(workers), "--no-progress"]
    marker = tmp_path / "paused"
    # SIGINT is sent to a process that started with SIGINT ignored: what made this test hang in CI.
    proc = dfdet_process(argv, pause={"DFDET_PAUSE": "dfdet.data.preprocess:_save_atomic",
                                      "DFDET_PAUSE_MATCH": "ZZ", "DFDET_PAUSE_MARKER": str(marker)},
                         sigint_ignored=sig == signal.SIGINT)
    wait_for(lambda: marker.is_file() and len(list((out / RECORDS).rglob("*.json"))) == 4, proc)
    rc, _, err = interrupt(proc, sig)
    assert rc == 130 and "interrupted" in err and "Traceback" not in err
    assert temp_files(out) == []
    crops = list(out.rglob("*.png"))
    for p in crops:  # every crop on disk is whole
        with Image.open(p) as im:
            im.load()
    done = {p: p.stat().st_mtime_ns for p in (out / RECORDS).rglob("*.json")}
    assert len(done) == 4 and not any("ZZ" in str(p) for p in done)  # the interrupted input has no record
    finished = [f for r in done for f in json.loads(r.read_text())["files"]]

    again = dfdet_process(argv)
    out2, err2 = again.communicate(timeout=300)
    assert again.returncode == 0, err2
    assert "4 skipped as already finished" in out2 and "5 inputs: 5 ok" in out2
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished inputs were not redone
    assert all((out / f).is_file() for f in finished) and temp_files(out) == []

