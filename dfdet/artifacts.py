"""The layout of an evaluation run folder, the contract between `dfdet evaluate` and the dashboard.

    runs/<run>/
      run.json                   what was evaluated: backbone, weights id, methods, manifest, demo flag
      predictions.csv            one row per image: path, label, dataset, source, video, split, p_fake__<method>
      metrics.json               list of records: method, dataset, source ("*" = all; a fake source = the
                                 dataset's reals + that source), level, n, metric values (ap_fake, map_macro, ...)
      roc.json                   list of records: method, dataset, level, fpr, tpr, thresholds, auroc
      embeddings/<method>.npz    z: float16 [N, D] L2-normalised features in predictions.csv row order;
                                 norm: float32 [N] their norms before normalisation
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .fileio import atomic_write
from .errors import DfdetError

LAYOUT_VERSION = 2  # 2: metrics name ap_fake and map_macro (1 had "ap" = ap_fake) and score a source with the reals
READABLE_VERSIONS = (1, 2)
PRED_PREFIX = "p_fake__"  # predictions.csv column per method: p_fake__<method>



def write_json(path: Path, obj) -> None:
    atomic_write(Path(path), lambda p: Path(p).write_text(json.dumps(obj, indent=1, default=float)))


def write_run(folder: str | Path, info: dict, predictions: pd.DataFrame, metrics: list[dict], roc: list[dict],
              embeddings: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    folder = Path(folder)
    atomic_write(folder / "predictions.csv", lambda p: predictions.to_csv(p, index=False))
    write_json(folder / "metrics.json", metrics)
    write_json(folder / "roc.json", roc)
    for method, (z, norm) in embeddings.items():
        atomic_write(folder / "embeddings" / f"{method}.npz",
                lambda p: np.savez(open(p, "wb"), z=z.astype(np.float16), norm=norm.astype(np.float32)))
    write_json(folder / "run.json", {"layout_version": LAYOUT_VERSION, **info})  # last: marks the run complete
    return folder


@dataclass
class Run:
    """A finished evaluation run, loaded for reading."""
    folder: Path
    info: dict
    predictions: pd.DataFrame
    metrics: pd.DataFrame
    roc: list[dict]

    @property
    def methods(self) -> list[str]:
        return [c[len(PRED_PREFIX):] for c in self.predictions.columns if c.startswith(PRED_PREFIX)]

    def embeddings(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        path = self.folder / "embeddings" / f"{method}.npz"
        if not path.is_file():
            raise DfdetError(f"run {self.folder} has no embeddings for {method}")
        try:
            with np.load(path, allow_pickle=False) as f:
                return f["z"], f["norm"]
        except (ValueError, KeyError, OSError, EOFError) as err:  # never unpickled: object arrays are refused
            raise DfdetError(f"{path} is not a dfdet embeddings file (arrays z and norm of numbers): {err}. "
                             "Re-run `dfdet evaluate` to write it again") from None


def load_run(folder: str | Path) -> Run:
    folder = Path(folder)
    info_path = folder / "run.json"
    if not info_path.is_file():
        raise DfdetError(f"{folder} is not a finished dfdet run (no run.json); run `dfdet evaluate` to make one")
    info = json.loads(info_path.read_text())
    if info.get("layout_version") not in READABLE_VERSIONS:
        raise DfdetError(f"{folder} was written by another dfdet version (layout {info.get('layout_version')}, "
                         f"this version reads {LAYOUT_VERSION}); re-run `dfdet evaluate`")
    preds = pd.read_csv(folder / "predictions.csv", keep_default_na=False)
    metrics = pd.DataFrame(json.loads((folder / "metrics.json").read_text()))
    if info.get("layout_version") == 1 and "ap" in metrics.columns:  # layout 1's "ap" was the fake class's AP
        metrics = metrics.rename(columns={"ap": "ap_fake"}).assign(map_macro=float("nan"))
    roc = json.loads((folder / "roc.json").read_text())
    return Run(folder=folder, info=info, predictions=preds, metrics=metrics, roc=roc)


def list_runs(root: str | Path = "runs") -> list[Path]:
    root = Path(root)
    return sorted(p.parent for p in root.glob("*/run.json")) if root.is_dir() else []
