"""Failure cases in a run: the most confident mistakes and the faces the methods disagree on."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..artifacts import PRED_PREFIX

KINDS = {"fp": "false positives (real faces called fake)", "fn": "false negatives (fakes called real)"}


def _subset(preds: pd.DataFrame, dataset: str | None) -> pd.DataFrame:
    return preds if not dataset or dataset == "all" else preds[preds["dataset"] == dataset]


def confident_mistakes(preds: pd.DataFrame, method: str, kind: str, dataset: str | None = None,
                       threshold: float = 0.5, k: int = 12) -> pd.DataFrame:
    """Rows the method gets wrong, most confident first.

    fp: real faces (label 0) with p_fake >= threshold, highest p_fake first.
    fn: fake faces (label 1) with p_fake < threshold, lowest p_fake first.
    The result keeps the run's row index (the key the app uses to open a face).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}")
    col = PRED_PREFIX + method
    d = _subset(preds, dataset)
    if kind == "fp":
        wrong = d[(d["label"].astype(int) == 0) & (d[col] >= threshold)]
        return wrong.sort_values(col, ascending=False, kind="stable").head(k)
    wrong = d[(d["label"].astype(int) == 1) & (d[col] < threshold)]
    return wrong.sort_values(col, ascending=True, kind="stable").head(k)


def disagreements(preds: pd.DataFrame, methods: list[str], dataset: str | None = None,
                  k: int = 12) -> pd.DataFrame:
    """Rows where the methods' p_fake spread (max - min) is largest; adds a `spread` column."""
    if len(methods) < 2:
        return preds.iloc[:0].assign(spread=pd.Series(dtype=float))
    d = _subset(preds, dataset)
    scores = d[[PRED_PREFIX + m for m in methods]].to_numpy(dtype=float)
    spread = np.nanmax(scores, axis=1) - np.nanmin(scores, axis=1)
    return d.assign(spread=spread).sort_values("spread", ascending=False, kind="stable").head(k)
