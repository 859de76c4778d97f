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
