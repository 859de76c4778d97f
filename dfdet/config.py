"""Typed configs. Defaults are the paper's recipe; YAML files and CLI flags override them."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .calibration import CalibrationConfig


@dataclass
class BackboneConfig:
    model: str = "ViT-L-14"  # open_clip architecture name (ViT-B-16, ViT-L-14, or a registered tiny test config)
    pretrained: str | None = "openai"  # open_clip weights tag; None with weights=None means random init (tests, speed)
    weights: str | None = None  # local weights file (.safetensors or open_clip .bin/.pt); also $DFDET_CLIP_WEIGHTS
    quick_gelu: bool = True  # OpenAI CLIP was trained with QuickGELU; a mismatch silently degrades features
    seed: int = 0  # seed for random init, so a random-weight backbone is the same in every process


@dataclass
class TrainConfig:
    method: str = "ln_norm_slerp"  # registry name of the method to train
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    manifest: str = ""  # manifest CSV with path,label,dataset,source,video,identity,split
    data_root: str = ""  # folder the manifest's paths are relative to (default: the manifest's folder)
    train_split: str = "train"  # manifest split used for training
    val_split: str = "val"  # split used to pick the best epoch; never the test split
    datasets: list[str] = field(default_factory=list)  # restrict to these datasets (empty = all)
    batch_size: int = 128  # paper: 128; the global batch per optimiser step, whatever the number of processes
    micro_batch: int = 0  # images per forward in each process (0 = batch_size / processes); smaller accumulates
    epochs: int = 10  # paper: 10
    lr: float = 8e-5  # AdamW peak learning rate (paper: 8e-5)
    min_lr: float = 5e-5  # cosine annealing floor (paper: 5e-5)
    weight_decay: float = 0.0  # paper: 0
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    seed: int = 42  # paper: 42; controls init, shuffling and SLERP sampling
    precision: str = "auto"  # "auto" = bf16 autocast on CUDA, fp32 on CPU; or "fp32" / "bf16"
    augment: str = "paper"  # training-image augmentation: "paper" (the reference's torchvision v2 ops) or "none"
    slerp_t: tuple[float, float] = (0.0, 1.0)  # t ~ U(t0, t1) for SLERP augmentation
    align_weight: float = 0.0  # weight of the alignment loss (Wang & Isola) on the head's input; 0 = off
    uniform_weight: float = 0.0  # weight of the uniformity loss on the head's input; 0 = off
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)  # threshold rule, conformal alpha (val)
    select_metric: str = "video_map_macro"  # picks the best epoch on val; paper: video-level macro mAP (run.py:53)
    max_steps: int = 0  # stop after this many optimiser steps (0 = no limit); for smoke runs
    num_workers: int = -1  # DataLoader workers per process (-1 = auto: 0 on CPU, up to 8 on CUDA)
    cache_features: str = "memory"  # linear probe with augment=none only: "memory" or a folder for a disk cache
    compile: bool = False  # torch.compile the backbone (CUDA only; off unless measured to help)
    device: str = "auto"  # "auto", "cpu", "cuda"
    out: str = "runs/train"  # run folder: checkpoint, resolved config, training log
    force: bool = False  # replace a finished checkpoint in `out` (trained in a staging folder, swapped in at the end)


def _coerce(tp: Any, value: Any, key: str = "") -> Any:
    """Coerce YAML/CLI values to the field's type (YAML reads '1e-4' as a string)."""
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value)
    if isinstance(value, list) and getattr(tp, "__origin__", None) is tuple:
        return tuple(float(v) if isinstance(v, str) else v for v in value)
    try:
        if tp is float and isinstance(value, (str, int)) and not isinstance(value, bool):
            return float(value)
        if tp is int and isinstance(value, str):
            return int(value)
    except ValueError:
        raise ValueError(f"config field {key!r} expects {tp.__name__}, got {value!r}") from None
    return value


def from_dict(cls, data: dict) -> Any:
    """Build a dataclass from a (possibly partial, nested) dict; unknown keys are an error."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}; known: {sorted(known)}")
    obj = cls()
    hints = _type_hints(cls)
    for k, v in data.items():
        setattr(obj, k, _coerce(hints[k], v, k))
    return obj


def _type_hints(cls) -> dict:
    import typing
    return typing.get_type_hints(cls)


def to_dict(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def load_yaml(path: str | Path) -> dict:
    text = Path(path).read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key=value` or `backbone.model=value` strings; values are parsed as YAML scalars."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return data
