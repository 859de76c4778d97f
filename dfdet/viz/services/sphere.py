"""Hypersphere: a run's faces on the sphere (UMAP), one face by row, and SLERP paths between two faces."""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from ...artifacts import PRED_PREFIX, Run
from ...errors import DataError
from .. import errors, plots
from ..media import load_face, placeholder
from ..roc import method_label
from ..store import COLOR_BY, Store, check_row, md_escape, truth_of

LEVELS = ("face", "video")  # one point per face, or per video (the mean of its frames, the paper's unit)


@dataclass
class SlerpResult:
    sphere: plots.FigureDict  # the sphere with the path drawn on it
    curve: object  # p(fake) along the path (plotly figure)
    text: str  # summary (Markdown, escaped)
    ends: list[tuple[Image.Image, str]]  # faces A and B with captions
    strip: list[tuple[Image.Image, str]]  # the nearest real face at evenly spaced points of the path


class SphereService:
    def __init__(self, store: Store):
        self.store = store

    def check(self, run_name: str, method: str) -> Run:
        run = self.store.run(run_name)
        if method not in run.methods:
            raise DataError(f"run {run_name} has no method {method!r}; it has {', '.join(self.store.methods_of(run))}")
        return run

    def figure(self, run_name: str, method: str, color_by: str = "label", dims: int = 2,
               level: str = "face", keep=(), where: dict | None = None) -> plots.FigureDict:
        """The run's faces on the sphere, built once per (run, method, colour, dims, level, kept rows) and kept.

        At most plots.MAX_POINTS are drawn, stratified by dataset x source x label; the errors at the
        run's threshold get half the budget and `keep` rows (A, B, a picked face) are always drawn; the
        rest of the faces are a density under them. The title says how many are shown of how many.
        `where`: errors.filter_mask's filters (datasets, sources, truth, verdicts, p_range of this method)."""
        run = self.check(run_name, method)
        if color_by not in COLOR_BY:
            raise DataError(f"colour by one of {', '.join(COLOR_BY)}, not {color_by!r}")
        if dims not in (2, 3):
            raise DataError("dims must be 2 or 3")
        if level not in LEVELS:
            raise DataError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        keep = tuple(sorted({check_row(r, len(run.predictions), f"run {run_name}") for r in keep}))
        key = (run_name, method, color_by, dims, level, keep, json.dumps(where or {}, sort_keys=True, default=str))
        spheres = self.store.spheres
        if key not in spheres:
            spheres[key] = self._build(run, run_name, method, color_by, dims, level, np.array(keep, dtype=np.int64),
                                       where or {})
        return spheres[key]

    def _build(self, run, run_name, method, color_by, dims, level, keep, where) -> plots.FigureDict:
        info = self.store.projection_info(run_name, method, dims)
        col = PRED_PREFIX + method
        thr = float(run.info.get("threshold", 0.5))
        preds = run.predictions
        coords = info.coords
        unit = "faces"
        if level == "video":
            preds, coords, first = video_points(preds, coords, col)
            keep = np.nonzero(np.isin(first, keep))[0]
            unit = "videos"
        groups = plots.color_groups(preds, color_by, col, thr)
        strata = pd.factorize(preds["dataset"].astype(str) + "\x1f" + preds["source"].astype(str) + "\x1f"
                              + preds["label"].astype(str))[0]
        wrong_mask = (preds[col].to_numpy() >= thr).astype(int) != preds["label"].astype(int).to_numpy()
        match = errors.filter_mask(preds, method=method, thresholds=self.store.thresholds(run_name), **where) \
            if where else np.ones(len(preds), bool)
        cand = np.nonzero(match)[0]
        local = plots.draw_rows(strata[cand], plots.MAX_POINTS, np.searchsorted(cand, keep[match[keep]]),
                                np.nonzero(wrong_mask[cand])[0])
        rows = np.union1d(cand[local], keep)
        wrong = np.nonzero(wrong_mask & match)[0]
        n = len(coords)
        sampled = len(rows) < n
        run_rows = first[rows] if level == "video" else rows
        what = "fitted here (no stored projection)" if info.source == "fitted" else "stored"
        of = f"{len(cand)} matching of {n} {unit}" if where else f"{n} {unit}"
        errs = f"all {len(wrong)} errors at {thr:.2f}" if len(wrong) <= plots.MAX_POINTS // 2 else \
            f"errors at {thr:.2f} first"
        shown = f"{len(rows)} shown of {of}: stratified, {errs}" if len(rows) < len(cand) or where else of
        title = (f"{method_label(run, method)}: L2-normalised embeddings, UMAP {dims}-D ({shown}"
                 + (", grey: density of all" if sampled and dims == 2 else "") + f"; projection {what})")
        hover = self.store.hover_text(run_name, run_rows) if (sampled or level == "video") else \
            self.store.hover_text(run_name)
        thumbs = self.store.thumbnails(run_name)
        thumbs = [thumbs[r] for r in run_rows] if thumbs and (sampled or level == "video") else thumbs
        return plots.sphere_figure(coords[rows], groups.iloc[rows].reset_index(drop=True), hover, thumbs,
                                   self.store.run_is_demo(run), title, rows=run_rows,
                                   density=coords if sampled else None)

    def cold(self, run_name: str, method: str, dims: int) -> bool:
        """True when showing this view needs a UMAP fit (seconds): the UI says so before it starts."""
        try:
            return not self.store.projection_cached(run_name, method, dims)
        except DataError:
            return False

    def point(self, run_name: str, row) -> tuple[Image.Image, str, int]:
        """A face of a run, large, with its truth and every method's recorded p_fake (Markdown)."""
        run = self.store.run(run_name)
        row = check_row(row, len(run.predictions), f"run {run_name}")
        image, rec = self.store.face(f"run:{run_name}", row)
        scores = ", ".join(f"{md_escape(method_label(run, m))} {run.predictions[PRED_PREFIX + m].iloc[row]:.3f}"
                           for m in self.store.methods_of(run))
        return image, f"**Row {row}**: {md_escape(self.store.describe(rec))}\n\np_fake: {scores}", row

    def random_pair(self, run_name: str, kind: str = "different class", seed: int | None = None) -> tuple[int, int]:
        """Two different rows of a run: same class, or one real and one fake."""
        labels = self.store.run(run_name).predictions["label"].astype(int).to_numpy()
        rng = np.random.default_rng(seed)
        if kind == "same class":
            classes = [c for c in (0, 1) if (labels == c).sum() >= 2]
            if not classes:
                raise DataError("no class has two faces in this run")
            rows = np.nonzero(labels == rng.choice(classes))[0]
            a, b = rng.choice(rows, 2, replace=False)
        else:
            real, fake = np.nonzero(labels == 0)[0], np.nonzero(labels == 1)[0]
            if not len(real) or not len(fake):
                raise DataError("this run does not hold both real and fake faces")
            a, b = rng.choice(real), rng.choice(fake)
        return int(a), int(b)

    def head_for(self, run: Run, method: str) -> tuple[str | None, str]:
        """The bank entry whose head belongs to this run's features, or why there is none."""
        bank = self.store.bank
        if bank is None:
            return None, "p(fake) along the path needs the method's head: no model is loaded."
        entry = bank.entries.get(method)
        if entry is None or entry.status != "ready":
            why = entry.message if entry is not None else "no checkpoint of this name is loaded"
            return None, f"p(fake) along the path needs the {method} head: {why}"
        bb = run.info.get("backbone", {})
        cfg = bank.clip.config
        if bb.get("model") != cfg.model or bb.get("weights") != bank.clip.weights_id:
            return None, (f"this run was made on {bb.get('model')}/{bb.get('weights')}, but the loaded backbone is "
                          f"{cfg.model}/{bank.clip.weights_id}: its head does not apply to these features.")
        return method, ""

    def slerp(self, run_name: str, method: str, a, b, color_by: str = "label", dims: int = 2,
              steps: int = 41) -> SlerpResult:
        """The great circle from face A to face B: drawn in the UMAP picture, scored by the method's head."""
        run = self.check(run_name, method)
        z, norm = self.store.embeddings(run_name, method)
        a = check_row(a, len(z), f"run {run_name}")
        b = check_row(b, len(z), f"run {run_name}")
        if a == b:
            raise DataError(f"face A and face B are the same row ({a}): a path needs two different faces")
        with single_threaded():
            return self._slerp(run, run_name, method, z, norm, a, b, color_by, dims, steps)

    def _slerp(self, run, run_name, method, z, norm, a, b, color_by, dims, steps) -> SlerpResult:
        import torch

        from ...slerp import slerp
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)
        za = torch.from_numpy(np.asarray(z[a], dtype=np.float32)).expand(steps, -1)
        zb = torch.from_numpy(np.asarray(z[b], dtype=np.float32)).expand(steps, -1)
        path = slerp(za, zb, torch.from_numpy(t)).numpy()
        from ..umap_cache import place
        info = self.store.projection_info(run_name, method, dims)
        ref = info.sample if len(info.sample) < len(z) else np.arange(len(z))  # a large run: its fitted sample
        z_ref = np.asarray(z[ref], dtype=np.float32)
        path_xy = place(path, z_ref, info.coords[ref])
        name, why = self.head_for(run, method)
        p = None
        spec = self.store.bank.entries[name].spec if name is not None else None
        if spec is not None:
            # Norm methods see the direction only; the others see it scaled by the interpolated norm.
            feats = path if spec.normalize else path * ((1 - t) * norm[a] + t * norm[b])[:, None]
            with self.store.model_lock:
                p = self.store.bank.head_p_fake(name, feats)
        col = PRED_PREFIX + method
        recorded = (float(run.predictions[col].iloc[a]), float(run.predictions[col].iloc[b]))
        demo = self.store.run_is_demo(run)
        sphere = plots.with_path(self.figure(run_name, method, color_by, dims), path_xy, t, p)  # A, B: its ends
        label = method_label(run, method)
        thr = self.head_threshold(name)
        curve = plots.slerp_curve(t, p, label, demo, recorded, why, thr)
        za_, zb_ = (np.asarray(z[r], dtype=np.float32) for r in (a, b))
        angle = float(np.degrees(np.arccos(np.clip(np.dot(za_, zb_), -1, 1))))
        la, lb = (truth_of(run.predictions.iloc[r]) for r in (a, b))
        text = (f"A = row {a} ({la}), B = row {b} ({lb}); angle between them on the sphere: {angle:.1f}°. "
                f"Recorded p_fake: A {recorded[0]:.3f}, B {recorded[1]:.3f}.")
        if p is not None:
            crosses = int(np.sum(np.diff((p >= thr).astype(int)) != 0))
            times = {0: "never crosses", 1: "crosses once", 2: "crosses twice"}.get(crosses, f"crosses {crosses} times")
            times += f" the method's threshold {thr:.3f}"
            text += f" Along the path p_fake goes from {p[0]:.3f} to {p[-1]:.3f} and {times}."
            if not spec.normalize:
                text += " (This method has no L2-norm: its head sees the path scaled by the interpolated norm.)"
        else:
            text += " " + why
        if demo:
            text += " " + plots.DEMO_NOTE + "."
        root = self.store.run_data_root(run)
        ends = [(self._face(root, run, r), f"{n}: row {r} ({truth_of(run.predictions.iloc[r])})")
                for n, r in (("A", a), ("B", b))]
        strip = []
        marks = [int(round(ti * (steps - 1))) for ti in (0.25, 0.5, 0.75)]
        real = run.predictions["label"].to_numpy()[ref] == 0  # a large run: among its fitted (stratified) sample
        nearest = [int(ref[j]) if j >= 0 else -1 for j in nearest_rows(z_ref, path[marks], allowed=real)]
        for ti, near in zip((0.25, 0.5, 0.75), nearest):
            if near >= 0:
                strip.append((self._face(root, run, near), f"t={ti:.2f}: nearest real face, row {near}"))
        return SlerpResult(sphere, curve, md_escape(text), ends, strip)

    def head_threshold(self, name: str | None) -> float:
        """The decision threshold of the head that scored the path (its validation threshold), else 0.5."""
        from ...calibration import threshold_of
        bank = self.store.bank
        entry = bank.entries.get(name) if bank is not None and name is not None else None
        return float(threshold_of(entry.meta)) if entry is not None else 0.5

    @staticmethod
    def _face(root, run: Run, row: int) -> Image.Image:
        try:
            im = load_face(root, run.predictions["path"].iloc[row])
        except Exception:  # noqa: BLE001 - a missing file shows as a placeholder, the path still draws
            im = placeholder(160)
        im.thumbnail((160, 160))
        return im


def nearest_rows(z, queries: np.ndarray, chunk: int = 1 << 15, allowed: np.ndarray | None = None) -> list[int]:
    """The row of z (memory-mapped at scale) most similar to each query, in one chunked pass; only rows where
    `allowed` is true (e.g. the real faces), -1 when there is none."""
    best = np.full(len(queries), -np.inf)
    arg = np.full(len(queries), -1, dtype=np.int64)
    q = np.asarray(queries, dtype=np.float32).T
    for s in range(0, len(z), chunk):
        sim = np.asarray(z[s:s + chunk], dtype=np.float32) @ q
        if allowed is not None:
            sim[~np.asarray(allowed[s:s + chunk], dtype=bool)] = -np.inf
        j = sim.argmax(0)
        v = sim[j, np.arange(len(queries))]
        better = v > best
        best[better], arg[better] = v[better], s + j[better]
    return arg.tolist()


def video_points(preds: pd.DataFrame, coords: np.ndarray, col: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """One point per video (dataset, source, video): the mean of its frames' coordinates and p_fake; and the
    run row of its first frame (what a click opens)."""
    key = pd.factorize(preds["dataset"].astype(str) + "\x1f" + preds["source"].astype(str) + "\x1f"
                       + preds["video"].astype(str))[0]
    count = np.bincount(key)
    mean = np.stack([np.bincount(key, coords[:, d]) / count for d in range(coords.shape[1])], 1).astype(np.float32)
    first = np.full(len(count), len(preds), dtype=np.int64)
    np.minimum.at(first, key, np.arange(len(preds)))
    table = preds.iloc[first].reset_index(drop=True).copy()
    table[col] = np.bincount(key, preds[col].to_numpy(dtype=float)) / count
    return table, mean, first


@contextlib.contextmanager
def single_threaded():
    """Small-tensor math on one thread: for a 41 x 1024 path, waking the BLAS/OpenMP thread pools costs
    more than the math on a busy CPU (side by side in bench/results_dashboard.md). The model queue
    runs one call at a time, so no concurrent inference is slowed by this."""
    import torch
    from threadpoolctl import threadpool_limits
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)
