"""The ROC browser's tables: stored metrics for a selection, and confusion counts at a threshold."""
from __future__ import annotations

import pandas as pd

from ..artifacts import PRED_PREFIX, Run
from ..metrics import binary_metrics, video_level

METRIC_COLUMNS = ["auroc", "ap_fake", "map_macro", "eer", "balanced_accuracy", "precision", "recall", "f1"]
LEVELS = ("frame", "video")


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
    from ..methods import METHODS
    order = {m: i for i, m in enumerate(METHODS)}
    spec = {m: run.info.get("methods", {}).get(m, {}).get("method", m) for m in run.methods}
    return sorted(run.methods, key=lambda m: (order.get(spec[m], len(order)), m))


def curves(run: Run, methods: list[str], datasets: list[str], level: str) -> list[dict]:
    """roc.json records for the selection, each named "<method label> · <dataset>"."""
    out = []
    for rec in run.roc:
        if rec["method"] in methods and rec["dataset"] in datasets and rec["level"] == level:
            out.append({**rec, "name": f"{method_label(run, rec['method'])} · {rec['dataset']}"})
    order = {(m, d): i for i, (m, d) in enumerate((m, d) for m in methods for d in datasets)}
    return sorted(out, key=lambda r: order.get((r["method"], r["dataset"]), 0))


def metrics_table(run: Run, methods: list[str], datasets: list[str], level: str) -> pd.DataFrame:
    """The stored metrics (whole dataset, source "*") for the selection, one row per method x dataset."""
    m = run.metrics
    if m.empty:
        return pd.DataFrame(columns=["method", "dataset", "n", *METRIC_COLUMNS])
    sel = m[(m["source"] == "*") & (m["level"] == level) & m["method"].isin(methods) & m["dataset"].isin(datasets)]
    table = sel[["method", "dataset", "n", *METRIC_COLUMNS]].copy()
    table["method"] = [method_label(run, x) for x in table["method"]]
    return table.round(4).reset_index(drop=True)


def confusion_table(run: Run, methods: list[str], datasets: list[str], level: str,
                    threshold: float) -> pd.DataFrame:
    """TP/FP/TN/FN and the threshold-dependent rates, recomputed from predictions.csv."""
    rows = []
    preds = run.predictions
    for method in methods:
        col = PRED_PREFIX + method
        table = preds if level == "frame" else video_level(preds, col)
        for dataset in datasets:
            d = table[table["dataset"] == dataset]
            if d.empty:
                continue
            b = binary_metrics(d["label"].to_numpy(), d[col].to_numpy(), threshold)
            rows.append({"method": method_label(run, method), "dataset": dataset, "threshold": threshold,
                         "TP": b["tp"], "FP": b["fp"], "TN": b["tn"], "FN": b["fn"],
                         "precision": round(b["precision"], 4), "recall": round(b["recall"], 4),
                         "balanced_accuracy": round(b["balanced_accuracy"], 4)})
    return pd.DataFrame(rows, columns=["method", "dataset", "threshold", "TP", "FP", "TN", "FN", "precision",
                                       "recall", "balanced_accuracy"])
