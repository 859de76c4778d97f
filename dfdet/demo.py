"""Demo assets for machines without CLIP weights: the four methods trained briefly on a tiny
random-init ViT over a small sample of ../shared/datasets, and an evaluation run of them.

Everything produced here is for exploring the tool's views. The scores are meaningless, and every
consumer must say so (the run's `demo` flag is set).

The build is a list of named steps, so a server can show which one is running and about how long
is left; the time each step took is kept in demo.json and is the next estimate. The assets are
kept on disk and reused by every later start (bump DEMO_VERSION to rebuild them).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .config import BackboneConfig, TrainConfig
from .data.manifest import scan_folder, shared_dir, write_manifest
from .errors import DataError
from .methods import PAPER_METHODS, get_method

DEMO_VERSION = 2  # bump to rebuild cached demo assets after a change here
STAMP = "demo.json"
TRAIN_FACES = 96  # per class, from the training dataset: a few steps need no more
VAL_FACES = 32  # per class
TEST_FACES = 60  # per class and dataset at most (FF and CDFv2 have fewer: all of theirs are used)
MAX_STEPS = 6  # optimiser steps per method
# Seconds per step of the first build, measured on the 2-core reference machine, idle (whole build 10.8 s:
# prepare 0.3, train 1.7, evaluate 1.6). A build then rescales them by how fast its own steps ran, and
# the next one starts from this machine's timings (timings.json).
DEFAULT_ESTIMATE = {"prepare": 0.5, "train": 2.0, "evaluate": 2.0}

# (step number from 1, steps, name, estimated seconds left or None when there is nothing to estimate)
Progress = Callable[[int, int, str, "float | None"], None]


@dataclass
class DemoAssets:
    backbone_cfg: BackboneConfig  # the tiny random-init backbone the checkpoints were trained on
    checkpoints_dir: Path  # one checkpoint folder per paper method
    run_dir: Path  # evaluation run over every shared dataset (test split)
    manifest: Path  # manifest with splits over ../shared/datasets
    data_root: Path  # the folder its paths are relative to


def _hash01(key: str) -> float:
    """Deterministic in [0, 1] (stable across machines and processes, unlike hash())."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _split_of(video: str, seed: int = 0) -> str:
    """Deterministic 70/15/15 split by video."""
    h = _hash01(f"{seed}:{video}")
    return "train" if h < 0.70 else "val" if h < 0.85 else "test"


def _take(df: pd.DataFrame, per_class: int) -> pd.Index:
    """Up to per_class rows of each label, chosen by a stable hash of the video (whole videos first)."""
    keep = []
    for _, d in df.groupby("label"):
        order = sorted(d.index, key=lambda i: (_hash01(d.at[i, "video"]), d.at[i, "path"]))
        keep += order[:per_class]
    return pd.Index(keep)


def demo_manifest(out: Path, data_root: Path, train_datasets: tuple[str, ...]) -> Path:
    """The paper's protocol in miniature: train/val/test by video on `train_datasets`, every other
    dataset is a cross-dataset test set. Small per-class samples keep the build short; rows not
    used have an empty split."""
    df = scan_folder(data_root)
    split = pd.Series("", index=df.index, dtype=object)
    for dataset, d in df.groupby("dataset"):
        if dataset in train_datasets:
            by_video = pd.Series([_split_of(v) for v in d["video"]], index=d.index)
            for name, per_class in (("train", TRAIN_FACES), ("val", VAL_FACES), ("test", TEST_FACES)):
                split[_take(d[by_video == name], per_class)] = name
        else:
            split[_take(d, TEST_FACES)] = "test"
    df["split"] = split
    return write_manifest(df, out / "manifest.csv")


def default_root() -> Path:
    """$DFDET_DEMO_DIR, else ~/.cache/dfdet/demo: kept across restarts and independent of the working folder."""
    cache = Path(os.environ.get("DFDET_CACHE") or Path.home() / ".cache" / "dfdet")
    return Path(os.environ.get("DFDET_DEMO_DIR") or cache / "demo")


def steps(methods=PAPER_METHODS) -> list[tuple[str, str]]:
    """(kind, name) of each build step, in order."""
    return ([("prepare", "index the sample faces")]
            + [("train", f"train {get_method(m).label} ({MAX_STEPS} steps)") for m in methods]
            + [("evaluate", "evaluate every method on the sample datasets")])


def read_stamp(root: str | Path) -> dict | None:
    """The finished build's record, or None when there is none of this version."""
    try:
        stamp = json.loads((Path(root) / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get("version") == DEMO_VERSION else None


def estimate(root: str | Path) -> dict[str, float]:
    """Seconds per step kind: the last build's on this machine if known, else the defaults."""
    try:
        last = json.loads((Path(root) / "timings.json").read_text())
        return {k: float(last.get(k, v)) for k, v in DEFAULT_ESTIMATE.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return dict(DEFAULT_ESTIMATE)


class Countdown:
    """Seconds left in a build: the per-kind estimates, scaled by how much slower (or faster) than estimated the
    finished steps ran on this machine now (a loaded CPU stretches every step alike)."""

    def __init__(self, kinds: list[str], per: dict[str, float]):
        self.kinds, self.per = kinds, per
        self.took: dict[str, list[float]] = {}

    def done(self, kind: str, seconds: float) -> None:
        self.took.setdefault(kind, []).append(seconds)

    def spent(self) -> float:
        """Seconds the finished steps took."""
        return sum(map(sum, self.took.values()))

    def speed(self) -> float:
        """Measured over estimated, over the finished steps (1 before any)."""
        est = sum(self.per[k] * len(v) for k, v in self.took.items())
        return self.spent() / est if est > 0 else 1.0

    def left(self, i: int) -> float:
        """Seconds for steps i.. (0-based): a kind already run here by its mean, the others scaled by speed()."""
        f = self.speed()
        return sum(sum(self.took[k]) / len(self.took[k]) if k in self.took else self.per[k] * f
                   for k in self.kinds[i:])

    def timings(self) -> dict[str, float]:
        return {k: round(sum(v) / len(v), 2) for k, v in self.took.items()}


def ensure_demo(root: str | Path | None = None, train_datasets: tuple[str, ...] = ("DFDC",),
                progress: Progress | None = None) -> DemoAssets:
    """Build (once) and return the demo assets under `root`; later calls, and later starts, reuse them."""
    from .evaluate import EvalConfig, evaluate
    from .train import train
    root = Path(root) if root else default_root()
    data_root = shared_dir() / "datasets"
    if not data_root.is_dir():
        raise DataError(f"demo mode needs the sample faces in {data_root} (set $DFDET_SHARED)")
    bb = BackboneConfig(model=_tiny_model(), pretrained=None, seed=0)
    assets = DemoAssets(bb, root / "checkpoints", root / "run", root / "manifest.csv", data_root)
    if read_stamp(root) is not None:
        if progress is not None:
            progress(1, 1, "reuse the demo built earlier", None)
        return assets
    plan = steps()
    clock = Countdown([k for k, _ in plan], estimate(root))
    root.mkdir(parents=True, exist_ok=True)

    def step(i: int, work: Callable[[], object]) -> None:
        kind, name = plan[i]
        if progress is not None:
            progress(i + 1, len(plan), name, clock.left(i))
        t0 = time.perf_counter()
        work()
        clock.done(kind, time.perf_counter() - t0)

    step(0, lambda: demo_manifest(root, data_root, train_datasets))
    for i, method in enumerate(PAPER_METHODS, start=1):
        step(i, lambda m=method: train(TrainConfig(
            method=m, backbone=bb, manifest=str(assets.manifest), data_root=str(data_root),
            datasets=list(train_datasets), batch_size=32, epochs=1, lr=1e-3, min_lr=1e-4, max_steps=MAX_STEPS,
            augment="none",  # a few steps on a random backbone: augmentation buys nothing, and costs time
            out=str(assets.checkpoints_dir / m), device="cpu")))
    step(len(plan) - 1, lambda: evaluate(EvalConfig(
        manifest=str(assets.manifest), data_root=str(data_root), split="test", checkpoints=str(assets.checkpoints_dir),
        methods=list(PAPER_METHODS), backbone=bb, out=str(assets.run_dir))))
    (root / "timings.json").write_text(json.dumps(clock.timings()))
    (root / STAMP).write_text(json.dumps({"version": DEMO_VERSION, "manifest": str(assets.manifest),
                                          "seconds": round(clock.spent(), 1),
                                          "note": "random-weight backbone: scores are meaningless"}))
    return assets


def _tiny_model() -> str:
    from .backbone import TINY_MODEL
    return TINY_MODEL
