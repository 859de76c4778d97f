"""Detection metrics at frame level and video level (mean p_fake per video).

Two average precisions, named so they cannot be confused:
- `ap_fake`: AP of the fake class (p_fake as the score), the usual detection AP;
- `map_macro`: the reference's mAP (yermandy/deepfake-detection src/metrics.py:60,
  average_precision_score(one_hot, probs, average="macro")): the mean of the real class's AP (scored
  by p_real = 1 - p_fake) and the fake class's AP. The paper keeps the epoch with the best
  video-level `map_macro` on validation (run.py:53, monitor="val/mAP_video").
A group with a single class has no ranking metrics: they are NaN, never a number like AP = 1.0.

Two F1s, likewise:
- `f1_macro`: the reference's F1 (src/model/dfdet.py:378,384, f1_score(labels, probs.argmax(1),
  average="macro")): the mean of the real and the fake class's F1 on argmax predictions, where a tie
  p_fake == 0.5 goes to real (argmax picks the first column). It ignores `threshold`.
- `f1_fake`: the fake class's F1 at `threshold` (p_fake >= threshold is fake, dfdet's verdict rule);
  `f1` is the same number under its old name, kept so older run files and tables still read.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

METRIC_NAMES = ("accuracy", "balanced_accuracy", "precision", "recall", "f1_fake", "f1_macro", "auroc", "ap_fake",
                "map_macro", "eer")
LEGACY_NAMES = {"f1": "f1_fake"}  # old metric name -> its current name (run files written before the rename)
RANKING_METRICS = ("auroc", "ap_fake", "map_macro", "eer")  # need both classes
ONE_CLASS = "n/a (one class)"  # the note on a metrics row whose group holds a single class
VIDEO_KEY = ["dataset", "source", "video"]  # a video's identity: names like "000" repeat across datasets


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


def map_macro(y: np.ndarray, score: np.ndarray) -> float:
    """Mean over the two classes of their one-vs-rest AP (p_real = 1 - p_fake); NaN with one class."""
    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        return float("nan")
    s = np.asarray(score, dtype=np.float64)
    return float((average_precision(y, s) + average_precision(1 - y, 1 - s)) / 2)


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


def _f1(tp: int, fp: int, fn: int) -> float:
    """F1 of one class; 0 when it has no true positives (scikit-learn's zero_division=0)."""
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def f1_macro(y: np.ndarray, score: np.ndarray) -> float:
    """The reference's macro F1 on argmax predictions of (p_real, p_fake): fake only if p_fake > 0.5."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(score, dtype=np.float64) > 0.5).astype(int)  # argmax([1 - p, p]); a tie is real
    per_class = [_f1(int(((pred == c) & (y == c)).sum()), int(((pred == c) & (y != c)).sum()),
                     int(((pred != c) & (y == c)).sum())) for c in (0, 1) if (y == c).any() or (pred == c).any()]
    return float(np.mean(per_class)) if per_class else 0.0


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
    one_class = len(y) == 0 or y.min() == y.max()
    return {"n": int(len(y)), "n_fake": int(y.sum()), "accuracy": (tp + tn) / max(len(y), 1),
            "balanced_accuracy": float(bal), "precision": precision, "recall": recall, "f1_fake": f1, "f1": f1,
            "f1_macro": f1_macro(y, score),
            "auroc": auroc(y, score), "ap_fake": float("nan") if one_class else average_precision(y, score),
            "map_macro": map_macro(y, score), "eer": eer(y, score),
            "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def video_level(df: pd.DataFrame, score_col: str) -> pd.DataFrame:
    """One row per video (dataset, source, video): its label and the mean of its frames' scores.

    The reference groups frames by their folder <dataset>/<source>/<video> (src/model/dfdet.py:100-124);
    grouping by the video name alone would merge FF "000" with another dataset's "000"."""
    g = df.groupby(VIDEO_KEY, sort=True)
    return pd.DataFrame({"label": g["label"].first(), score_col: g[score_col].mean()}).reset_index()


def group_metrics(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict:
    """binary_metrics, with every metric blanked and a note when the group holds one class."""
    m = binary_metrics(y, score, threshold)
    if len(y) == 0 or np.min(y) == np.max(y):
        m.update({k: None for k in (*METRIC_NAMES, *LEGACY_NAMES)})
        m["note"] = ONE_CLASS
    return m


def source_groups(table: pd.DataFrame):
    """("*", all rows), then per fake source: the dataset's real rows plus that source's rows, the protocol of
    the FF++ per-manipulation tables. Real sources get no row of their own: they are in every fake row."""
    yield "*", table
    reals = table["label"] == 0
    for source, sd in table.groupby("source", sort=True):
        if (sd["label"] == 0).all():
            continue
        yield source, table[reals | (table["source"] == source)]


def metric_table(preds: pd.DataFrame, methods: list[str], score_prefix: str = "p_fake__",
                 threshold: float = 0.5) -> tuple[list[dict], list[dict]]:
    """Metrics per method x dataset x source x level, and ROC points per dataset.

    source "*" is the whole dataset; a fake source's row scores the dataset's reals plus that source
    (see source_groups). Rows of one class carry note ONE_CLASS and no metric values."""
    records, rocs = [], []
    for method in methods:
        col = score_prefix + method
        for level in ("frame", "video"):
            table = preds if level == "frame" else video_level(preds, col)
            for dataset, dd in table.groupby("dataset", sort=True):
                for source, sd in source_groups(dd):
                    m = group_metrics(sd["label"].to_numpy(), sd[col].to_numpy(), threshold)
                    records.append({"method": method, "dataset": dataset, "source": source, "level": level, **m})
                fpr, tpr, thr = roc_curve(dd["label"].to_numpy(), dd[col].to_numpy())
                rocs.append({"method": method, "dataset": dataset, "level": level,
                             "auroc": auroc(dd["label"].to_numpy(), dd[col].to_numpy()),
                             "fpr": fpr.round(6).tolist(), "tpr": tpr.round(6).tolist(),
                             "thresholds": [None if not np.isfinite(t) else round(float(t), 6) for t in thr]})
    return records, rocs
