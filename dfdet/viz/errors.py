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


TRUTHS = ("real", "fake")
VERDICTS = ("real", "fake")


def _as_list(value) -> list[str]:
    if value in (None, "", "all"):
        return []
    return [str(v) for v in ([value] if isinstance(value, str) else value)]


def where_of(datasets=None, sources=None, truth=None, fake_by=None, real_by=None, p_lo=None, p_hi=None) -> dict:
    """The page's filter controls as filter_mask's keywords (only the ones that filter). `fake_by` and
    `real_by`: the methods that must call a face fake (real) at their own threshold."""
    from ..errors import DataError
    fake_by, real_by = _as_list(fake_by), _as_list(real_by)
    both = sorted(set(fake_by) & set(real_by))
    if both:
        raise DataError(f"a method cannot both call a face fake and call it real: {', '.join(both)}")
    where: dict = {}
    if _as_list(datasets):
        where["datasets"] = _as_list(datasets)
    if _as_list(sources):
        where["sources"] = _as_list(sources)
    if truth not in (None, "", "all"):
        where["truth"] = truth
    if fake_by or real_by:
        where["verdicts"] = {**{m: "fake" for m in fake_by}, **{m: "real" for m in real_by}}
    try:
        lo = 0.0 if p_lo in (None, "") else float(p_lo)
        hi = 1.0 if p_hi in (None, "") else float(p_hi)
    except (TypeError, ValueError):
        raise DataError(f"the p_fake range needs two numbers from 0 to 1, not {p_lo!r} to {p_hi!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise DataError(f"the p_fake range needs 0 <= from <= to <= 1, not {lo:g} to {hi:g}")
    if (lo, hi) != (0.0, 1.0):
        where["p_range"] = (lo, hi)
    return where


def filter_mask(preds: pd.DataFrame, datasets=None, sources=None, truth: str | None = None,
                verdicts: dict[str, str] | None = None, thresholds: dict[str, float] | None = None,
                method: str | None = None, p_range: tuple[float, float] | None = None) -> np.ndarray:
    """Rows matching every given filter: datasets, sources, truth, each method's verdict at its threshold
    (e.g. {"ln_norm": "real", "ln_norm_slerp": "fake"} with truth "fake": the fakes LN+Norm misses and
    SLERP catches), and `method`'s p_fake within p_range (inclusive). Vectorised: a 10^6-row run is fast."""
    from ..errors import DataError
    keep = np.ones(len(preds), dtype=bool)
    for col, wanted in (("dataset", _as_list(datasets)), ("source", _as_list(sources))):
        if wanted:
            unknown = sorted(set(wanted) - set(preds[col].astype(str).unique()))
            if unknown:
                raise DataError(f"no {col} {', '.join(map(repr, unknown))} in this run")
            keep &= preds[col].astype(str).isin(wanted).to_numpy()
    if truth not in (None, "", "all"):
        if truth not in TRUTHS:
            raise DataError(f"truth must be real or fake, not {truth!r}")
        keep &= preds["label"].astype(int).to_numpy() == TRUTHS.index(truth)
    for m, verdict in (verdicts or {}).items():
        if verdict in (None, "", "any"):
            continue
        if PRED_PREFIX + m not in preds or verdict not in VERDICTS:
            raise DataError(f"a verdict filter needs a method of this run and 'real' or 'fake', not {m!r}={verdict!r}")
        called_fake = preds[PRED_PREFIX + m].to_numpy() >= (thresholds or {}).get(m, 0.5)
        keep &= called_fake if verdict == "fake" else ~called_fake
    if p_range is not None:
        lo, hi = (float(v) for v in p_range)
        if not (0.0 <= lo <= hi <= 1.0) or method is None or PRED_PREFIX + method not in preds:
            raise DataError(f"a p_fake range needs a method of this run and 0 <= low <= high <= 1, not {p_range}")
        p = preds[PRED_PREFIX + method].to_numpy()
        keep &= (p >= lo) & (p <= hi)
    return keep
