"""Checkpoints: the trainable tensors as safetensors, plus a JSON sidecar that says what they are.

A checkpoint is a folder `NAME/` with `model.safetensors` and `dfdet.json`. Loading is
"backbone + overlay": build the method on the same CLIP weights, then load these tensors on top.
Nothing here ever unpickles: safetensors holds only tensors, JSON only data.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .fileio import atomic_write
from .errors import CheckpointError

WEIGHTS_FILE = "model.safetensors"
META_FILE = "dfdet.json"
FORMAT = "dfdet-checkpoint/1"



def save_checkpoint(folder: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    folder = Path(folder)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in sorted(tensors.items())}
    meta = {"format": FORMAT, "code_version": __version__, **meta,
            "tensors": {"count": len(tensors), "numel": int(sum(v.numel() for v in tensors.values()))}}
    # dfdet.json is the commit mark, written last: an interrupted save never pairs new weights with an
    # old sidecar, it leaves a folder that read_meta refuses as incomplete.
    (folder / META_FILE).unlink(missing_ok=True)
    atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(tensors, p, metadata={"format": FORMAT}))
    atomic_write(folder / META_FILE,
                 lambda p: Path(p).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str)))
    return folder


def read_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    if (folder / WEIGHTS_FILE).is_file() and not meta_path.is_file():
        raise CheckpointError(f"{folder} is an incomplete checkpoint: {WEIGHTS_FILE} without {META_FILE} (a save "
                              "was interrupted?); re-run the training that writes it")
    if not meta_path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        found = sorted(p.name for p in folder.iterdir())
        raise CheckpointError(
            f"{folder} is not a dfdet checkpoint: expected {WEIGHTS_FILE} and {META_FILE}, found {found}. "
            "dfdet loads only safetensors + JSON; convert other formats with `dfdet import-checkpoint`.")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{meta_path} is not valid JSON: {err}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{meta_path}: checkpoint format {meta.get('format')!r}, written by dfdet "
            f"{meta.get('code_version', '(unknown version)')}; this dfdet {__version__} reads {FORMAT}. Re-train it "
            f"(`dfdet train --method {meta.get('method', '<method>')} ... --out {folder}`) or use the dfdet that "
            "wrote it")
    return meta


def load_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    path = Path(folder) / WEIGHTS_FILE
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises on anything that is not a valid header + buffer
        raise CheckpointError(f"{path} is not a valid safetensors file ({err})") from None


def check_compatible(meta: dict, model_name: str, weights: str, folder: str | Path = "") -> None:
    bb = meta.get("backbone", {})
    if bb.get("model") != model_name or bb.get("weights") != weights:
        raise CheckpointError(
            f"checkpoint {folder} was trained on backbone {bb.get('model')}/{bb.get('weights')}, "
            f"but the loaded backbone is {model_name}/{weights}. Load it with "
            f"--model {bb.get('model')} and the matching weights, or train a new one.")


def apply_overlay(model: torch.nn.Module, tensors: dict[str, torch.Tensor], folder: str | Path = "") -> None:
    """Copy checkpoint tensors into the model; every key must exist with the same shape."""
    params = dict(model.named_parameters())
    missing = sorted(k for k in tensors if k not in params)
    if missing:
        raise CheckpointError(f"checkpoint {folder} has tensors the model lacks: {missing[:5]}")
    for k, v in tensors.items():
        if params[k].shape != v.shape:
            raise CheckpointError(f"checkpoint {folder}: {k} has shape {tuple(v.shape)}, "
                                  f"model expects {tuple(params[k].shape)}")
        with torch.no_grad():
            params[k].copy_(v.to(params[k].dtype))


def file_sha256(path: str | Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:limit] if limit else h.hexdigest()
