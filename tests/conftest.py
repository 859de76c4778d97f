"""Shared fixtures. Tests run on CPU with tiny in-process models and the real data in ../shared."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # hide any GPU: the suite is a CPU suite
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network from a test
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from dfdet.backbone import TINY_MODEL, load_clip  # noqa: E402
from dfdet.config import BackboneConfig  # noqa: E402
from dfdet.data.manifest import shared_dir  # noqa: E402


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not (path / "datasets").is_dir():
        pytest.skip(f"../shared data not found at {path} (set DFDET_SHARED)")
    return path


@pytest.fixture(scope="session")
def tiny_cfg() -> BackboneConfig:
    return BackboneConfig(model=TINY_MODEL, pretrained=None, seed=0)


@pytest.fixture()
def tiny_clip(tiny_cfg):
    """A fresh tiny CLIP (2-layer ViT, width 64) with seeded random weights; cheap, so per test."""
    return load_clip(tiny_cfg)


@pytest.fixture(scope="session")
def vitl_clip():
    """The full ViT-L/14 architecture with random weights: for shapes and parameter counts only."""
    return load_clip(BackboneConfig(model="ViT-L-14", pretrained=None, seed=0))


@pytest.fixture(autouse=True)
def _gradio_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def dfdc_manifest(shared, tmp_path_factory) -> tuple[Path, Path]:
    """A small balanced manifest of real DFDC crops with train/val/test by video: (csv, data_root)."""
    from dfdet.data.manifest import scan_folder, write_manifest
    root = shared / "datasets"
    df = scan_folder(root)
    df = df[df["dataset"] == "DFDC"]
    parts = []
    for label, g in df.groupby("label"):
        g = g.sort_values("video").head(40).copy()
        g["split"] = ["train"] * 24 + ["val"] * 8 + ["test"] * 8
        parts.append(g)
    import pandas as pd
    path = tmp_path_factory.mktemp("manifest") / "dfdc.csv"
    write_manifest(pd.concat(parts), path)
    return path, root


@pytest.fixture(scope="session")
def tiny_checkpoints(dfdc_manifest, tmp_path_factory) -> Path:
    """All four paper methods trained for a few steps on the tiny backbone: a checkpoints folder."""
    from dfdet.config import BackboneConfig, TrainConfig
    from dfdet.methods import PAPER_METHODS
    from dfdet.train import train
    out = tmp_path_factory.mktemp("checkpoints")
    manifest, root = dfdc_manifest
    for m in PAPER_METHODS:
        train(TrainConfig(method=m, backbone=BackboneConfig(model=TINY_MODEL, pretrained=None), manifest=str(manifest),
                          data_root=str(root), batch_size=16, epochs=2, lr=1e-3, out=str(out / m), device="cpu",
                          augment="none"))  # speed: augmentation is tested in test_recipe_augment
    return out
