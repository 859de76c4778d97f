"""ROC browser: curves, numbers with their n and intervals, and counts at a threshold, for one run."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ...errors import DataError
from .. import plots, roc
from ..store import Store


@dataclass
class RocResult:
    figure: object  # plotly figure: curves, operating points
    metrics: pd.DataFrame  # roc.TABLE_COLUMNS
    confusion: pd.DataFrame  # roc.CONFUSION_COLUMNS at the threshold


class RocService:
    def __init__(self, store: Store):
        self.store = store

    def view(self, run_name: str, methods: list[str], datasets: list[str], level: str, threshold,
             own: bool = False) -> RocResult:
        """`own`: each method at its validation threshold (0.5 where it has none) instead of one shared value."""
        run = self.store.run(run_name)
        methods, datasets = list(methods or []), list(datasets or [])
        unknown = [m for m in methods if m not in run.methods]
        if unknown:
            raise DataError(f"run {run_name} has no method {', '.join(map(repr, unknown))}; "
                            f"it has {', '.join(self.store.methods_of(run))}")
        known = set(run.predictions["dataset"])
        unknown = [d for d in datasets if d not in known]
        if unknown:
            raise DataError(f"run {run_name} has no dataset {', '.join(map(repr, unknown))}; "
                            f"it has {', '.join(sorted(known))}")
        if level not in roc.LEVELS:
            raise DataError(f"level must be one of {', '.join(roc.LEVELS)}, not {level!r}")
        chosen = self.store.thresholds(run_name) if own else {}
        threshold = {m: chosen.get(m, 0.5) for m in methods} if chosen else check_threshold(threshold)
        curves = roc.curves(run, methods, datasets, level)
        fig = plots.roc_figure(curves, self.store.run_is_demo(run), threshold)
        return RocResult(fig, roc.metrics_table(run, methods, datasets, level),
                         roc.confusion_table(run, methods, datasets, level, threshold))

    def has_own(self, run_name: str | None) -> bool:
        """Whether any method of the run has a validation threshold (then the browser starts at them)."""
        return bool(run_name in self.store.runs and self.store.thresholds(run_name))

    def datasets(self, run_name: str | None) -> list[str]:
        if not run_name or run_name not in self.store.runs:
            return []
        return sorted(self.store.runs[run_name].predictions["dataset"].unique())

    def main_dataset(self, run_name: str | None) -> list[str]:
        """The browser starts on one dataset (the largest): one curve per method."""
        if not run_name or run_name not in self.store.runs:
            return []
        return [self.store.runs[run_name].predictions["dataset"].value_counts().idxmax()]


def check_threshold(value) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise DataError(f"threshold must be a number between 0 and 1, not {value!r}") from None
    if not 0.0 <= t <= 1.0:
        raise DataError(f"threshold must be between 0 and 1, not {t}")
    return t
