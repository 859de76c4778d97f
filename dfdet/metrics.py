"""Detection metrics for the fake class, at frame level and video level (mean p_fake per video)."""
from __future__ import annotations

import numpy as np
import pandas as pd

METRIC_NAMES = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "auroc", "ap", "eer")


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fpr, tpr, thresholds (descending), starting at (0, 0) with threshold +inf."""
    y = np.asarray(y).astype(int)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    distinct = np.where(np.diff(s))[0]
    idx = np.r_[distinct, len(s) - 1]
    tps = np.cumsum(yy)[idx]
    fps = (idx + 1) - tps
    P, N = max(yy.sum(), 1), max(len(yy) - yy.sum(), 1)
    tpr = np.r_[0.0, tps / P]
    fpr = np.r_[0.0, fps / N]
    thr = np.r_[np.inf, s[idx]]
    return fpr, tpr, thr


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score)
    return float(np.trapezoid(tpr, fpr))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Step-wise AP (sum over thresholds of (R_k - R_{k-1}) P_k), the same definition as scikit-learn."""
    y = np.asarray(y).astype(int)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    s, yy = np.asarray(score, dtype=np.float64)[order], y[order]
    idx = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(yy)[idx]
    precision = tps / (idx + 1)
    recall = tps / yy.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def eer(y: np.ndarray, score: np.ndarray) -> float:
    """Equal error rate: where the false-positive rate meets the false-negative rate (interpolated)."""
    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score)
    fnr = 1 - tpr
    diff = fpr - fnr
    i = int(np.nonzero(diff >= 0)[0][0])
    if i == 0 or diff[i] == 0:
        return float((fpr[i] + fnr[i]) / 2)
    # linear interpolation between the points that bracket fpr == fnr
    w = diff[i] / (diff[i] - diff[i - 1])
    return float(fpr[i] - w * (fpr[i] - fpr[i - 1]))


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    y = np.asarray(y).astype(int)
    pred = (np.asarray(score) >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    tpr = tp / (tp + fn) if tp + fn else float("nan")
    tnr = tn / (tn + fp) if tn + fp else float("nan")
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tpr if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    bal = np.nanmean([tpr, tnr]) if not (np.isnan(tpr) and np.isnan(tnr)) else float("nan")
    return {"n": int(len(y)), "n_fake": int(y.sum()), "accuracy": (tp + tn) / max(len(y), 1),
            "balanced_accuracy": float(bal), "precision": precision, "recall": recall, "f1": f1,
            "auroc": auroc(y, score), "ap": average_precision(y, score), "eer": eer(y, score),
            "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def video_level(df: pd.DataFrame, score_col: str) -> pd.DataFrame:
    """One row per video: its label and the mean of its frames' scores."""
    g = df.groupby("video", sort=True)
    return pd.DataFrame({"label": g["label"].first(), score_col: g[score_col].mean(),
                         "dataset": g["dataset"].first(), "source": g["source"].first()}).reset_index()


def metric_table(preds: pd.DataFrame, methods: list[str], score_prefix: str = "p_fake__",
                 threshold: float = 0.5) -> tuple[list[dict], list[dict]]:
    """Metrics per method x dataset x source ('*' = whole dataset) x level, and ROC points per dataset."""
    records, rocs = [], []
    for method in methods:
        col = score_prefix + method
        for level in ("frame", "video"):
            table = preds if level == "frame" else video_level(preds, col)
            for dataset, dd in table.groupby("dataset", sort=True):
                groups = [("*", dd)] + list(dd.groupby("source", sort=True))
                for source, sd in groups:
                    m = binary_metrics(sd["label"].to_numpy(), sd[col].to_numpy(), threshold)
                    records.append({"method": method, "dataset": dataset, "source": source, "level": level, **m})
                fpr, tpr, thr = roc_curve(dd["label"].to_numpy(), dd[col].to_numpy())
                rocs.append({"method": method, "dataset": dataset, "level": level,
                             "auroc": auroc(dd["label"].to_numpy(), dd[col].to_numpy()),
                             "fpr": fpr.round(6).tolist(), "tpr": tpr.round(6).tolist(),
                             "thresholds": [None if not np.isfinite(t) else round(float(t), 6) for t in thr]})
    return records, rocs
