"""Demo assets for machines without CLIP weights: the four methods trained briefly on a tiny
random-init ViT over ../shared/datasets, and an evaluation run of them.

Everything produced here is for exploring the tool's views. The scores are meaningless, and every
consumer must say so (the run's `demo` flag is set).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backbone import TINY_MODEL
from .config import BackboneConfig, TrainConfig
from .data.manifest import scan_folder, shared_dir, write_manifest
from .errors import DataError
from .methods import PAPER_METHODS

DEMO_VERSION = 1  # bump to rebuild cached demo assets after a change here


@dataclass
class DemoAssets:
    backbone_cfg: BackboneConfig  # the tiny random-init backbone the checkpoints were trained on
    checkpoints_dir: Path  # one checkpoint folder per paper method
    run_dir: Path  # evaluation run over every shared dataset (test split)
    manifest: Path  # manifest with splits over ../shared/datasets
    data_root: Path  # the folder its paths are relative to


def _split_of(video: str, seed: int = 0) -> str:
    """Deterministic 70/15/15 split by video (stable across machines, unlike hash())."""
    h = int(hashlib.sha256(f"{seed}:{video}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if h < 0.70 else "val" if h < 0.85 else "test"


def demo_manifest(out: Path, data_root: Path, train_datasets: tuple[str, ...]) -> Path:
    """The paper's protocol in miniature: train/val/test by video on `train_datasets`, every other
    dataset is a cross-dataset test set."""
    df = scan_folder(data_root)
    df["split"] = [_split_of(v) if d in train_datasets else "test" for v, d in zip(df["video"], df["dataset"])]
    return write_manifest(df, out / "manifest.csv")


def default_root() -> Path:
    return Path(os.environ.get("DFDET_DEMO_DIR", Path(__file__).resolve().parents[1] / "runs" / "demo"))


def ensure_demo(root: str | Path | None = None, train_datasets: tuple[str, ...] = ("DFDC",),
                max_steps: int = 8, progress=print) -> DemoAssets:
    """Build (once) and return the demo assets under `root`; later calls reuse them."""
    from .evaluate import EvalConfig, evaluate
    from .train import train
    root = Path(root) if root else default_root()
    data_root = shared_dir() / "datasets"
    if not data_root.is_dir():
        raise DataError(f"demo mode needs the sample faces in {data_root} (set $DFDET_SHARED)")
    bb = BackboneConfig(model=TINY_MODEL, pretrained=None, seed=0)
    assets = DemoAssets(bb, root / "checkpoints", root / "run", root / "manifest.csv", data_root)
    stamp = root / "demo.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("version") == DEMO_VERSION:
        assets.manifest = Path(json.loads(stamp.read_text())["manifest"])
        return assets
    root.mkdir(parents=True, exist_ok=True)
    assets.manifest = demo_manifest(root, data_root, train_datasets)
    for method in PAPER_METHODS:
        progress(f"demo: training {method} on the tiny random backbone ({max_steps} steps)")
        train(TrainConfig(method=method, backbone=bb, manifest=str(assets.manifest), data_root=str(data_root),
                          datasets=list(train_datasets), batch_size=32, epochs=2, lr=1e-3, min_lr=1e-4,
                          max_steps=max_steps, out=str(assets.checkpoints_dir / method), device="cpu"))
    progress("demo: evaluating on every sample dataset")
    evaluate(EvalConfig(manifest=str(assets.manifest), data_root=str(data_root), split="test",
                        checkpoints=str(assets.checkpoints_dir), methods=list(PAPER_METHODS), backbone=bb,
                        out=str(assets.run_dir)))
    stamp.write_text(json.dumps({"version": DEMO_VERSION, "manifest": str(assets.manifest),
                                 "note": "random-weight backbone: scores are meaningless"}))
    return assets


