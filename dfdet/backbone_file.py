"""The vision-only backbone file that `dfdet import-checkpoint` writes: its name, format tag and header.

A released detector ships its own CLIP vision tower; dfdet keeps it as `backbone.safetensors` next to
the overlay. This module only reads the header, so both dfdet.backbone (which loads it) and dfdet.hub
(which writes it) depend on it, and not on each other.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from .errors import WeightsUnavailable

BACKBONE_FILE = "backbone.safetensors"  # full open_clip `visual` state dict, next to the overlay
BACKBONE_FORMAT = "dfdet-backbone/1"


def is_backbone_file(path: str | Path) -> bool:
    """Cheap header check: is this a dfdet backbone file (rather than a whole open_clip checkpoint)?"""
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format") == BACKBONE_FORMAT
    except Exception:  # not safetensors at all
        return False


def backbone_file_info(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / BACKBONE_FILE
    if not path.is_file():
        raise WeightsUnavailable(f"no imported backbone at {path}; create one with `dfdet import-checkpoint`")
    try:
        with safe_open(str(path), framework="pt") as f:
            info = dict(f.metadata() or {})
    except Exception as err:  # safetensors raises on anything that is not a valid header
        raise WeightsUnavailable(f"{path} is not a valid safetensors file ({err})") from None
    if info.get("format") != BACKBONE_FORMAT:
        raise WeightsUnavailable(f"{path} is not a dfdet backbone file (format {info.get('format')!r}, "
                                 f"expected {BACKBONE_FORMAT})")
    return {**info, "path": path, "quick_gelu": json.loads(info.get("quick_gelu", "true"))}
