"""Alignment and uniformity (Wang & Isola, 2020) of a run's embeddings: the two quantities GenD's losses
optimise, measured per method and dataset on the unit-sphere features the run stored.

alignment  = mean ‖x_i − x_j‖^α over same-class pairs i ≠ j (lower: each class is tighter);
uniformity = log mean exp(−t ‖x_i − x_j‖²) over all distinct pairs (lower: spread more evenly).
Both are the definitions of dfdet.slerp's losses (the reference's src/losses/unifalign.py), evaluated
without gradients. On unit vectors ‖x_i − x_j‖² = 2 − 2 x_i·x_j, so one Gram matrix gives both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..artifacts import Run
from ..errors import DataError

MAX_FACES = 400  # per (method, dataset): a 400² Gram matrix (80k pairs) is ms; larger groups are sampled, and say so


@dataclass(frozen=True)
class GeometryConfig:
    alpha: float = 2.0  # alignment exponent (Wang & Isola's α; GenD uses 2)
    t: float = 2.0  # uniformity temperature (Wang & Isola's t; GenD uses 2)
    max_faces: int = MAX_FACES  # faces per group at most (a seeded sample beyond that)
    seed: int = 0  # the sample's seed: the same run gives the same table


def _sq_dists(z: np.ndarray) -> np.ndarray:
    """Pairwise squared distances of the rows, made unit: one float32 Gram matrix (stored features are float16)."""
    z = np.asarray(z, dtype=np.float32)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return np.clip(2.0 - 2.0 * (z @ z.T).astype(np.float64), 0.0, 4.0)


def alignment(z: np.ndarray, labels: np.ndarray, alpha: float = 2.0, d2: np.ndarray | None = None) -> float:
    """Mean ‖x_i − x_j‖^α over same-class pairs (i ≠ j); NaN with no such pair. `d2`: the squared distances,
    when already computed."""
    d2 = _sq_dists(z) if d2 is None else d2
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    return float(np.power(d2[same], alpha / 2).mean()) if same.any() else float("nan")


def uniformity(z: np.ndarray, t: float = 2.0, d2: np.ndarray | None = None) -> float:
    """log mean exp(−t ‖x_i − x_j‖²) over distinct pairs; NaN for fewer than two points."""
    if len(z) < 2:
        return float("nan")
    d2 = _sq_dists(z) if d2 is None else d2
    iu = np.triu_indices(len(z), k=1)
    return float(np.log(max(np.exp(-t * d2[iu]).mean(), 1e-6)))  # floored as the loss is (unifalign.py:63)


def geometry_table(run: Run, methods: list[str] | None = None, cfg: GeometryConfig = GeometryConfig()) -> pd.DataFrame:
    """One row per (method, dataset) and per method over all datasets ('*'): n, alignment, uniformity."""
    methods = methods or [m for m in run.methods if (run.folder / "embeddings" / f"{m}.npz").is_file()]
    if not methods:
        raise DataError(f"run {run.folder} has no embeddings: `dfdet evaluate` writes them under embeddings/")
    preds = run.predictions
    labels = preds["label"].astype(int).to_numpy()
    datasets = preds["dataset"].astype(str).to_numpy()
    rows = []
    for m in methods:
        z, _ = run.embeddings(m)
        if len(z) != len(preds):
            raise DataError(f"run {run.folder}: embeddings/{m}.npz has {len(z)} rows, predictions.csv {len(preds)}")
        for ds in ["*", *sorted(set(datasets))]:
            idx = np.arange(len(z)) if ds == "*" else np.nonzero(datasets == ds)[0]
            rows.append(_row(m, ds, z, labels, idx, cfg))
    return pd.DataFrame(rows)


def _row(method: str, dataset: str, z: np.ndarray, labels: np.ndarray, idx: np.ndarray, cfg: GeometryConfig) -> dict:
    n = len(idx)
    if n > cfg.max_faces:
        idx = np.sort(np.random.default_rng(cfg.seed).choice(idx, cfg.max_faces, replace=False))
    zz, ll = z[idx], labels[idx]
    d2 = _sq_dists(zz)  # one Gram matrix for both quantities
    return {"method": method, "dataset": dataset, "n": n, "n_used": len(idx),
            "alignment": alignment(zz, ll, cfg.alpha, d2), "uniformity": uniformity(zz, cfg.t, d2),
            "real": int((ll == 0).sum()), "fake": int((ll == 1).sum())}
