"""The ROC browser's numbers: per method x dataset, AUROC and TPR at a fixed FPR with bootstrap
confidence intervals and the sample sizes behind them, and confusion counts at a threshold.

A tiny test set can give AUROC 1.000 by chance (5 videos do, often); every number is therefore
shown with its n and its 95% interval, and sets below SMALL_N per class are flagged.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ..artifacts import PRED_PREFIX, Run
from ..metrics import binary_metrics, video_level

LEVELS = ("frame", "video")
TARGET_FPR = 0.05  # TPR is read at this false-positive rate
N_BOOT = 400  # bootstrap resamples (stratified by class); the interval is the 2.5th-97.5th percentile
SMALL_N = 30  # fewer real or fake items than this: the numbers are flagged as unreliable
EXACT_BOOT_MAX = 1000  # up to this many items the bootstrap resamples items; above, per-bin counts (see binned)
BOOT_BINS = 1024  # score bins of the large-n bootstrap (the point estimates stay exact)
_BOOT_CACHE: dict[tuple, tuple] = {}  # (scores' digest, n_boot, seed) -> intervals: once per run and subset
_BOOT_KEEP = 512
METRIC_COLUMNS = ["auroc", "auroc 95% CI", f"TPR@{TARGET_FPR:.0%}FPR", "TPR 95% CI", "ap_fake", "map_macro", "eer"]
TABLE_COLUMNS = ["method", "dataset", "n real", "n fake", *METRIC_COLUMNS, "note"]
CONFUSION_COLUMNS = ["method", "dataset", "threshold", "TP", "FP", "TN", "FN", "precision", "recall", "F1"]


def method_label(run: Run, method: str) -> str:
    """The label a run recorded for a method column, else the registry's label."""
    from ..methods import METHODS
    info = run.info.get("methods", {}).get(method, {})
    if info.get("label"):
        return info["label"]
    spec = METHODS.get(info.get("method", method))
    return spec.label if spec else method


def registry_order(run: Run) -> list[str]:
    """The run's method columns in the registry's order (checkpoint folder names sort otherwise)."""
    from .style import method_order
    return method_order(run.methods, lambda m: run.info.get("methods", {}).get(m, {}).get("method", m))


def spec_name(run: Run, method: str) -> str:
    return run.info.get("methods", {}).get(method, {}).get("method", method)


def level_table(run: Run, method: str, level: str) -> pd.DataFrame:
    """Frames, or videos (mean p_fake per video), computed once per run and method: every table of a view
    reads it, and at 10^6 faces a groupby costs a second."""
    if level == "frame":
        return run.predictions
    videos = run.__dict__.setdefault("_video_tables", {})
    if method not in videos:
        videos[method] = video_level(run.predictions, PRED_PREFIX + method)
    return videos[method]


def curves(run: Run, methods: list[str], datasets: list[str], level: str) -> list[dict]:
    """roc.json records for the selection (registry order, then dataset), each with method, label and n."""
    out = []
    counts = {}
    for rec in run.roc:
        if rec["method"] in methods and rec["dataset"] in datasets and rec["level"] == level:
            if rec["dataset"] not in counts:
                t = level_table(run, rec["method"], level)
                counts[rec["dataset"]] = int((t["dataset"] == rec["dataset"]).sum())
            out.append({**rec, "label": method_label(run, rec["method"]), "spec": spec_name(run, rec["method"]),
                        "name": f"{method_label(run, rec['method'])} · {rec['dataset']}", "n": counts[rec["dataset"]]})
    order = {m: i for i, m in enumerate(registry_order(run))}
    return sorted(out, key=lambda r: (order.get(r["method"], len(order)), r["dataset"]))


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float = TARGET_FPR) -> np.ndarray:
    """TPR at the strictest threshold whose FPR is <= fpr; rows are resamples (last axis = items)."""
    k = np.floor(fpr * neg.shape[-1]).astype(int)  # negatives allowed above the threshold
    thr = -np.sort(-neg, axis=-1)[..., k] if k < neg.shape[-1] else np.full(neg.shape[:-1], -np.inf)
    return (pos > np.expand_dims(thr, -1)).mean(axis=-1)


def auroc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC per row (Mann-Whitney with ties as one half), vectorised over resamples."""
    from scipy.stats import rankdata
    ranks = rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    n_p, n_n = pos.shape[-1], neg.shape[-1]
    return (ranks[..., :n_p].sum(axis=-1) - n_p * (n_p + 1) / 2) / (n_p * n_n)


def _bootstrap(p: np.ndarray, n: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float, float, float, float]:
    rng = np.random.default_rng(seed)
    if len(p) + len(n) > EXACT_BOOT_MAX:
        return _binned(p, n, n_boot, rng)
    bp = p[rng.integers(0, len(p), (n_boot, len(p)))]
    bn = n[rng.integers(0, len(n), (n_boot, len(n)))]
    a, t = auroc_rows(bp, bn), tpr_at_fpr(bp, bn)
    return (float(auroc_rows(p[None], n[None])[0]), *np.percentile(a, [2.5, 97.5]).tolist(),
            float(tpr_at_fpr(p[None], n[None])[0]), *np.percentile(t, [2.5, 97.5]).tolist())


def _binned(p: np.ndarray, n: np.ndarray, n_boot: int, rng) -> tuple[float, float, float, float, float, float]:
    """Large n: the Poisson bootstrap on per-bin counts (each bin's count redrawn ~ Poisson(count), the
    large-n limit of resampling items within a class), so a resample costs O(bins), not O(n log n). Ties
    within a bin count one half; the point estimates (AUROC, TPR at the FPR) are exact on the items."""
    edges = np.unique(np.quantile(np.r_[p, n], np.linspace(0, 1, BOOT_BINS + 1)))
    hp = np.bincount(np.clip(np.searchsorted(edges, p, "right") - 1, 0, len(edges) - 1), minlength=len(edges))
    hn = np.bincount(np.clip(np.searchsorted(edges, n, "right") - 1, 0, len(edges) - 1), minlength=len(edges))
    bp = rng.poisson(hp, size=(n_boot, len(hp))).astype(float)
    bn = rng.poisson(hn, size=(n_boot, len(hn))).astype(float)
    n_p, n_n = bp.sum(1), np.maximum(bn.sum(1), 1)
    cn = np.cumsum(bn, axis=1)
    a = (bp * (cn - bn / 2)).sum(1) / (np.maximum(n_p, 1) * n_n)  # negatives in lower bins + half the tied
    fpr_above = 1 - cn / n_n[:, None]  # share of negatives above each bin
    first_ok = (fpr_above <= TARGET_FPR).argmax(axis=1)  # the lowest bin whose upper side passes <= 5% FPR
    t = (n_p - np.cumsum(bp, axis=1)[np.arange(n_boot), first_ok]) / np.maximum(n_p, 1)
    return (float(auroc_exact(p, n)), *np.percentile(a, [2.5, 97.5]).tolist(),
            float(tpr_at_fpr(p[None], n[None])[0]), *np.percentile(t, [2.5, 97.5]).tolist())


def auroc_exact(p: np.ndarray, n: np.ndarray) -> float:
    from ..metrics import auroc
    return auroc(np.r_[np.ones(len(p)), np.zeros(len(n))], np.r_[p, n])


def bootstrap(y: np.ndarray, score: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float]:
    """AUROC and TPR@TARGET_FPR with 95% percentile intervals; resampled within each class."""
    y, score = np.asarray(y).astype(int), np.asarray(score, dtype=float)
    pos, neg = score[y == 1], score[y == 0]
    if not len(pos) or not len(neg):
        nan = float("nan")
        return {"auroc": nan, "auroc_lo": nan, "auroc_hi": nan, "tpr": nan, "tpr_lo": nan, "tpr_hi": nan}
    pos, neg = pos.round(6), neg.round(6)
    key = (hashlib.sha1(pos.tobytes()).hexdigest(), hashlib.sha1(neg.tobytes()).hexdigest(), n_boot, seed)
    if key not in _BOOT_CACHE:
        while len(_BOOT_CACHE) >= _BOOT_KEEP:
            _BOOT_CACHE.pop(next(iter(_BOOT_CACHE)))
        _BOOT_CACHE[key] = _bootstrap(pos, neg, n_boot, seed)
    a, alo, ahi, t, tlo, thi = _BOOT_CACHE[key]
    return {"auroc": a, "auroc_lo": alo, "auroc_hi": ahi, "tpr": t, "tpr_lo": tlo, "tpr_hi": thi}


def small_n_note(n_real: int, n_fake: int, level: str) -> str:
    unit = "videos" if level == "video" else "faces"
    if min(n_real, n_fake) == 0:
        return f"one class only: no ROC ({n_real} real, {n_fake} fake {unit})"
    if min(n_real, n_fake) < SMALL_N:
        return f"⚠ small n ({min(n_real, n_fake)} {unit} in the smaller class): wide interval, do not compare"
    return ""


def metrics_table(run: Run, methods: list[str], datasets: list[str], level: str) -> pd.DataFrame:
    """One row per method x dataset: n per class, AUROC and TPR@FPR with 95% CIs, AP, EER, a small-n note."""
    rows = []
    stored = run.metrics
    for rec in curves(run, methods, datasets, level):
        table = level_table(run, rec["method"], level)
        d = table[table["dataset"] == rec["dataset"]]
        y, s = d["label"].astype(int).to_numpy(), d[PRED_PREFIX + rec["method"]].to_numpy(dtype=float)
        b = bootstrap(y, s)
        n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
        m = stored[(stored["method"] == rec["method"]) & (stored["dataset"] == rec["dataset"])
                   & (stored["source"] == "*") & (stored["level"] == level)] if not stored.empty else stored
        rows.append({"method": rec["label"], "dataset": rec["dataset"], "n real": n_real, "n fake": n_fake,
                     "auroc": round(b["auroc"], 3), "auroc 95% CI": _ci(b["auroc_lo"], b["auroc_hi"]),
                     METRIC_COLUMNS[2]: round(b["tpr"], 3), "TPR 95% CI": _ci(b["tpr_lo"], b["tpr_hi"]),
                     "ap_fake": _stored(m, "ap_fake"), "map_macro": _stored(m, "map_macro"),
                     "eer": _stored(m, "eer"), "note": small_n_note(n_real, n_fake, level)})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _stored(m: pd.DataFrame, key: str) -> float:
    """A metric as the run stored it (rounded), NaN when the run has none (one class, older layout)."""
    if not len(m) or key not in m or m[key].iloc[0] is None:
        return float("nan")
    return round(float(m[key].iloc[0]), 3)


def _ci(lo: float, hi: float) -> str:
    return "" if not np.isfinite(lo) else f"{lo:.3f} to {hi:.3f}"


def confusion_table(run: Run, methods: list[str], datasets: list[str], level: str,
                    threshold: float | dict[str, float]) -> pd.DataFrame:
    """TP/FP/TN/FN and the threshold-dependent rates, recomputed from predictions.csv (registry order).
    `threshold`: one for all, or method -> its own."""
    rows = []
    for method in registry_order(run):
        if method not in methods:
            continue
        t = threshold[method] if isinstance(threshold, dict) else threshold
        table = level_table(run, method, level)
        for dataset in sorted(datasets):
            d = table[table["dataset"] == dataset]
            if d.empty:
                continue
            b = binary_metrics(d["label"].to_numpy(), d[PRED_PREFIX + method].to_numpy(), t)
            rows.append({"method": method_label(run, method), "dataset": dataset, "threshold": round(t, 4),
                         "TP": int(b["tp"]), "FP": int(b["fp"]), "TN": int(b["tn"]), "FN": int(b["fn"]),
                         "precision": round(b["precision"], 3), "recall": round(b["recall"], 3),
                         "F1": round(b.get("f1", float("nan")), 3)})
    return pd.DataFrame(rows, columns=CONFUSION_COLUMNS)
