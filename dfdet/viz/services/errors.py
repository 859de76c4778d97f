"""Errors: a method's most confident mistakes at a threshold, and the faces the methods disagree on."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ...artifacts import PRED_PREFIX
from ...errors import DataError, DfdetError
from .. import errors
from ..media import load_face, placeholder
from ..roc import method_label
from ..store import Store
from .roc import check_threshold

K = 12  # faces per gallery
PAGE = 24  # faces per page of a filtered browse
VIDEO = ["dataset", "source", "video"]  # a video's identity (names repeat across datasets)


@dataclass
class ErrorCases:
    items: dict[str, list[tuple[Image.Image, str, int]]]  # kind -> (face, caption, run row)
    totals: dict[str, int] = field(default_factory=dict)  # kind -> mistakes in all (before de-duplication, top K)
    note: str = ""


@dataclass
class Page:
    items: list[tuple[Image.Image, str, int]]  # (face, caption, run row) of this page
    total: int  # rows matching the filters, in all
    page: int  # this page, from 0
    pages: int  # pages in all


class ErrorsService:
    def __init__(self, store: Store):
        self.store = store

    def validation_threshold(self, run_name: str, method: str) -> float | None:
        return self.store.validation_threshold(run_name, method)

    def cases(self, run_name: str, method: str, dataset: str = "all", threshold=0.5, k: int = K,
              one_per_video: bool = True) -> ErrorCases:
        """Gallery items for FP, FN and disagreement; one face per video unless asked otherwise."""
        run = self.store.run(run_name)
        if method not in run.methods:
            raise DataError(f"run {run_name} has no method {method!r}")
        if dataset not in ("all", "", None) and dataset not in set(run.predictions["dataset"]):
            raise DataError(f"run {run_name} has no dataset {dataset!r}")
        threshold = check_threshold(threshold)
        preds = run.predictions
        root = self.store.run_data_root(run)
        col = PRED_PREFIX + method
        items: dict[str, list] = {}
        totals: dict[str, int] = {}
        for kind in errors.KINDS:
            rows = errors.confident_mistakes(preds, method, kind, dataset, threshold, len(preds))
            totals[kind] = len(rows)
            if one_per_video:
                rows = rows.drop_duplicates(VIDEO)
            items[kind] = [self._item(root, r, f"{kind.upper()} p_fake {r[col]:.2f} · {r['dataset']}/{r['source']}", i)
                           for i, r in rows.head(k).iterrows()]
        methods = self.store.methods_of(run)
        dis = errors.disagreements(preds, methods, dataset, len(preds))
        totals["disagree"] = len(dis)
        if one_per_video:
            dis = dis.drop_duplicates(VIDEO)
        labels = {m: method_label(run, m) for m in methods}
        items["disagree"] = []
        for i, r in dis.head(k).iterrows():
            hi = max(methods, key=lambda m: r[PRED_PREFIX + m])
            lo = min(methods, key=lambda m: r[PRED_PREFIX + m])
            cap = (f"{labels[hi]} {r[PRED_PREFIX + hi]:.2f} vs {labels[lo]} {r[PRED_PREFIX + lo]:.2f} · "
                   f"{'fake' if int(r['label']) else 'real'}")
            items["disagree"].append(self._item(root, r, cap, i))
        return ErrorCases(items, totals)

    def browse(self, run_name: str, method: str, filters: dict | None = None, page: int = 0, per_page: int = PAGE,
               most_fake_first: bool = True) -> Page:
        """Faces matching filters (errors.filter_mask's keywords: datasets, sources, truth, verdicts, p_range),
        ordered by `method`'s p_fake, one page at a time: only that page's faces are read."""
        run = self.store.run(run_name)
        if method not in run.methods:
            raise DataError(f"run {run_name} has no method {method!r}")
        preds = run.predictions
        mask = errors.filter_mask(preds, thresholds=self.store.thresholds(run_name), method=method, **(filters or {}))
        rows = np.nonzero(mask)[0]
        col = PRED_PREFIX + method
        p = preds[col].to_numpy()[rows]
        rows = rows[np.argsort(-p if most_fake_first else p, kind="stable")]
        pages = max(1, -(-len(rows) // per_page))
        page = min(max(0, whole(page, "page")), pages - 1)
        root = self.store.run_data_root(run)
        items = [self._item(root, preds.iloc[r], f"p_fake {preds[col].iloc[r]:.2f} · {preds['dataset'].iloc[r]}/"
                            f"{preds['source'].iloc[r]}", int(r)) for r in rows[page * per_page:(page + 1) * per_page]]
        return Page(items, len(rows), page, pages)

    @staticmethod
    def _item(root: Path, rec, caption: str, row: int) -> tuple[Image.Image, str, int]:
        try:
            im = load_face(root, rec["path"])
        except DfdetError:
            im, caption = placeholder(160), caption + " (image file not on this machine)"
        im.thumbnail((192, 192))
        return im, caption, int(row)


def whole(value, what: str) -> int:
    """A whole number from a page's control (None counts as 0), or a one-line refusal."""
    try:
        v = float(value or 0)
        if v != int(v):
            raise ValueError
        return int(v)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{what} must be a whole number, not {value!r}") from None
