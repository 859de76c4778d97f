"""Checkpoints: the trainable tensors as safetensors, plus a JSON sidecar that says what they are.

A checkpoint is a folder `NAME/` with `model.safetensors` and `dfdet.json`. Loading is
"backbone + overlay": build the method on the same CLIP weights, then load these tensors on top.
Nothing here ever unpickles: safetensors holds only tensors, JSON only data.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .fileio import atomic_write
from .errors import CheckpointError

WEIGHTS_FILE = "model.safetensors"
META_FILE = "dfdet.json"
FORMAT = "dfdet-checkpoint/1"
MAX_META_BYTES = 1 << 20  # a sidecar is a few KB; a larger one is not ours
MAX_META_DEPTH = 16  # nesting of the sidecar's JSON (ours is 4 deep)
META_TYPES = {"format": str, "method": str, "backbone": dict, "label": str, "display_name": str, "source": str,
              "code_version": str, "trainable_params": int, "config": dict, "hub": dict, "tensors": dict,
              "calibration": dict, "val_metrics": dict, "best_epoch": int, "steps": int, "train_seconds": float,
              "manifests": dict, "recipe": dict, "descriptions": dict, "backbone_file": dict, "imported": dict,
              "checkpoint_dtype": str}
MAX_TEXT = 300  # characters in a sidecar's name-like string (a label, a display name, a method)
MAX_DESCRIPTIONS = 1000  # prompts per class in a text-guided checkpoint's "descriptions"
REQUIRED_META = ("format", "method", "backbone")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)  # what a weight may be stored as


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
        if meta_path.stat().st_size > MAX_META_BYTES:
            raise CheckpointError(f"{meta_path}: {meta_path.stat().st_size:,} bytes is too large for a checkpoint's "
                                  f"{META_FILE} (at most {MAX_META_BYTES:,}); it is not one dfdet wrote")
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{meta_path} is not valid JSON: {err}") from None
    except RecursionError:
        raise CheckpointError(f"{meta_path} is nested too deeply to be a checkpoint's {META_FILE}") from None
    except PermissionError:
        raise CheckpointError(f"{meta_path}: permission denied (cannot read it as this user)") from None
    _check_meta(meta, meta_path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{meta_path}: checkpoint format {meta.get('format')!r}, written by dfdet "
            f"{meta.get('code_version', '(unknown version)')}; this dfdet {__version__} reads {FORMAT}. Re-train it "
            f"(`dfdet train --method {meta.get('method', '<method>')} ... --out {folder}`) or use the dfdet that "
            "wrote it")
    return meta


def _depth(value, limit: int, level: int = 0) -> int:
    if level > limit or not isinstance(value, (dict, list)):
        return level
    items = value.values() if isinstance(value, dict) else value
    return max((_depth(v, limit, level + 1) for v in items), default=level + 1)


def _check_meta(meta, meta_path: Path) -> None:
    """The sidecar's schema: an object, the keys every loader reads present, and each known key of its type."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path}: expected a JSON object, found {type(meta).__name__}")
    if _depth(meta, MAX_META_DEPTH) > MAX_META_DEPTH:
        raise CheckpointError(f"{meta_path} is nested deeper than {MAX_META_DEPTH} levels: not a checkpoint's "
                              f"{META_FILE}")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing and meta.get("format") == FORMAT:
        raise CheckpointError(f"{meta_path}: missing {', '.join(missing)}")
    for key, kind in META_TYPES.items():
        value = meta.get(key)
        kinds = (int, float) if kind is float else kind
        if value is not None and (not isinstance(value, kinds) or (kind in (int, float) and isinstance(value, bool))):
            raise CheckpointError(f"{meta_path}: {key!r} must be a {_TYPE_NAMES[kind]}, found "
                                  f"{type(value).__name__} {json.dumps(value)[:40]}")
    backbone = meta.get("backbone") or {}
    for key in ("model", "weights"):
        if key in backbone and not isinstance(backbone[key], str):
            raise CheckpointError(f"{meta_path}: 'backbone.{key}' must be a string, found "
                                  f"{type(backbone[key]).__name__}")
    problem = _field_problem(meta)
    if problem:
        raise CheckpointError(f"{meta_path}: {problem}; this checkpoint is not loaded (re-train or pull it again)")


def _field_problem(meta: dict) -> str:
    """'' if every field a reader uses holds a usable value, else the first that does not (one line).
    One bad field makes only this checkpoint unavailable, never a view or another method."""
    from .calibration import calibration_problem
    for key in ("method", "label", "display_name", "source", "code_version", "checkpoint_dtype"):
        value = meta.get(key)
        if isinstance(value, str) and (len(value) > MAX_TEXT or any(ord(ch) < 32 for ch in value)):
            return f"{key!r} is not a short one-line text"
    for key in ("trainable_params", "best_epoch", "steps", "train_seconds"):
        value = meta.get(key)
        if value is not None and not (math.isfinite(value) and value >= 0):
            return f"{key!r} must be a number >= 0, found {value}"
    if meta.get("calibration") is not None:
        problem = calibration_problem(meta["calibration"])
        if problem:
            return f"'calibration' {problem}"
    config = meta.get("config") or {}
    top_k = config.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        return f"'config.top_k' must be a whole number >= 0, found {json.dumps(top_k, default=str)[:40]}"
    if "top_k_scope" in config and not isinstance(config["top_k_scope"], str):
        return "'config.top_k_scope' must be a string"
    desc = meta.get("descriptions")
    if desc is not None and not _descriptions_ok(desc):
        return ("'descriptions' must be {\"name\": text, \"real\": [texts], \"fake\": [texts]} with 1 to "
                f"{MAX_DESCRIPTIONS} short texts per class")
    for key in ("val_metrics", "manifests", "backbone_file", "imported", "recipe", "hub"):
        value = meta.get(key)
        if isinstance(value, dict) and len(json.dumps(value, default=str)) > MAX_META_BYTES // 4:
            return f"{key!r} is too large"
    return ""


def _descriptions_ok(desc) -> bool:
    if not isinstance(desc, dict) or not isinstance(desc.get("name"), str) or len(desc["name"]) > MAX_TEXT:
        return False
    return all(isinstance(desc.get(k), list) and 0 < len(desc[k]) <= MAX_DESCRIPTIONS
               and all(isinstance(t, str) and len(t) <= 1000 for t in desc[k]) for k in ("real", "fake"))


_TYPE_NAMES = {str: "string", dict: "JSON object", int: "whole number", float: "number"}


def check_tensors(tensors: dict[str, torch.Tensor], folder: str | Path,
                  expected: dict[str, tuple[int, ...]] | None = None, method: str = "") -> None:
    """Refuse a checkpoint unless every tensor is a finite float weight and, with `expected` (name -> shape,
    the method's trainable set), the names are exactly those and the shapes match.

    Exact, both ways: a missing tensor would be scored with a freshly initialised one (a made-up score),
    and an extra one would overwrite part of the backbone every method shares.
    """
    what = f"a {method} checkpoint" if method else "this checkpoint"
    if expected is not None:
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        if missing or extra:
            parts = ([f"missing {len(missing)} tensor(s) {missing[:3]}"] if missing else []) + (
                [f"{len(extra)} tensor(s) outside the method's trainable set {extra[:3]}"] if extra else [])
            raise CheckpointError(f"{folder}: not {what}: {'; '.join(parts)}. Re-train it or pull it again")
    for k, v in tensors.items():
        if v.dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{folder}: tensor {k} is {str(v.dtype).replace('torch.', '')}; weights must be "
                                  "floating point")
        if expected is not None and tuple(v.shape) != tuple(expected[k]):
            raise CheckpointError(f"{folder}: {k} has shape {tuple(v.shape)}, {what} needs {tuple(expected[k])}")
        if not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{folder}: tensor {k} holds NaN or infinite values: the checkpoint is broken "
                                  "(a diverged training run?); re-train it")


def load_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    path = Path(folder) / WEIGHTS_FILE
    try:
        return load_file(str(path))
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied (cannot read it as this user)") from None
    except Exception as err:  # safetensors raises on anything that is not a valid header + buffer
        raise CheckpointError(f"{path} is not a valid safetensors file ({err})") from None


def check_compatible(meta: dict, model_name: str, weights: str, folder: str | Path = "") -> None:
    bb = meta.get("backbone") or {}
    if bb.get("model") != model_name or bb.get("weights") != weights:
        raise CheckpointError(
            f"checkpoint {folder} was trained on backbone {bb.get('model')}/{bb.get('weights')}, "
            f"but the loaded backbone is {model_name}/{weights}. Load it with "
            f"--model {bb.get('model')} and the matching weights, or train a new one.")


def apply_overlay(model: torch.nn.Module, tensors: dict[str, torch.Tensor], folder: str | Path = "") -> None:
    """Copy checkpoint tensors into the model; every key must exist with the same shape."""
    check_tensors(tensors, folder)
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
