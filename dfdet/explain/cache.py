"""Maps on disk, one file per (run, row, method, kind): a map of ViT-L/14 costs a forward and a backward.

Files live in the run folder (<run>/explain/<kind>/<method>/<row>-<model id>.npy), so deleting a
run deletes its maps. The model id is a hash of the checkpoint's metadata: a re-trained method
never gets an old map. A damaged or foreign file is ignored (recomputed), never unpickled.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from ..fileio import atomic_write

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def model_id(meta: dict) -> str:
    """What identifies a method's weights: a short hash of its checkpoint metadata."""
    return hashlib.sha256(json.dumps(meta or {}, sort_keys=True, default=str).encode()).hexdigest()[:12]


class MapCache:
    def __init__(self, run_folder: str | Path):
        self.root = Path(run_folder) / "explain"

    def path(self, row: int, method: str, kind: str, mid: str) -> Path:
        return self.root / _SAFE.sub("_", kind) / _SAFE.sub("_", method) / f"{int(row)}-{_SAFE.sub('_', mid)}.npy"

    def get(self, row: int, method: str, kind: str, mid: str) -> np.ndarray | None:
        p = self.path(row, method, kind, mid)
        if not p.is_file():
            return None
        try:
            m = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            return None
        if m.ndim != 2 or m.shape[0] != m.shape[1] or not np.issubdtype(m.dtype, np.floating):
            return None
        return m

    def put(self, row: int, method: str, kind: str, mid: str, saliency: np.ndarray) -> None:
        p = self.path(row, method, kind, mid)
        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a path
                np.save(f, np.asarray(saliency, dtype=np.float32))
        try:
            atomic_write(p, save)
        except OSError:
            pass  # a read-only run folder only loses the shortcut

    def get_or_compute(self, row: int, method: str, kind: str, mid: str, compute) -> np.ndarray:
        m = self.get(row, method, kind, mid)
        if m is None:
            m = np.asarray(compute(), dtype=np.float32)
            self.put(row, method, kind, mid, m)
        return m
