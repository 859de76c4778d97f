"""Why and how sure, for one face: every method's saliency map with its deletion/insertion curves,
the difference of two methods' maps, and the robustness probe (dfdet.explain, dfdet.robustness).

Faces come from a run or the sample manifest by row (maps of run rows are cached in the run
folder per (run, row, method, kind)) or from an uploaded photo (aligned like Compare does).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DataError
from ...explain.cache import MapCache
from ...explain.saliency import KINDS
from ...explain.service import curves_figure, explain_face, gallery
from ...images import UPLOAD_MAX_SIDE, open_image
from ...robustness import Frame, probe_faces, probe_figure, unstable
from ..media import check_upload
from ..store import SAMPLES, Store, md_escape


@dataclass
class MapsView:
    items: list[tuple[Image.Image, str]]  # (map over the face, caption) per method, then the difference
    curves: object  # plotly figure: deletion/insertion per method vs random order
    note: str  # which face, which kind, what is missing (Markdown)


CALIBRATION_COLUMNS = ["method", "dataset", "n", "threshold", "rule", "threshold here", "drift", "FPR at threshold",
                       "TPR at threshold", "TPR @1% FPR", "TPR @5% FPR", "ECE", "ECE (temperature)", "uncertain"]


@dataclass
class CalibrationView:
    figure: object  # plotly reliability diagram of the first dataset
    table: object  # pandas DataFrame, CALIBRATION_COLUMNS
    note: str


@dataclass
class ProbeView:
    figure: object  # plotly figure: p_fake per perturbation per method
    note: str  # stable / unstable per method (Markdown)


class ExplainService:
    def __init__(self, store: Store):
        self.store = store

    def face(self, source: str | None, row, upload: str | Path | None = None
             ) -> tuple[Image.Image, str, tuple, Frame | None]:
        """(face, what it is, cache key or (), the frame it was aligned from or None) for an uploaded photo,
        else a row of a run / the samples (a crop: no frame)."""
        if upload:
            image = open_image(check_upload(upload, "image"), max_side=UPLOAD_MAX_SIDE)
            res = self.store.align(image)
            what = f"uploaded photo `{md_escape(Path(str(upload)).name)}`"
            if not res.crops:
                return image, what, (), None
            frame = Frame(np.asarray(image.convert("RGB")), res.landmarks[0], self.store.face_aligner().cfg)
            return res.crops[0], what, (), frame
        if row is None or row == "":
            raise DataError("pick a face first: a row (accordion above) or an uploaded photo")
        source = source or SAMPLES
        face, rec = self.store.face(source, row)
        key = (self.store.run(source[4:]).folder, int(float(row))) if source.startswith("run:") else ()
        where = "sample faces" if source == SAMPLES else f"run {source[4:]}"
        return face, f"row {int(float(row))} of {md_escape(where)}: `{md_escape(rec['path'])}`", key, None

    def maps(self, source: str | None, row, upload=None, kind: str = "gradcam",
             diff: tuple[str | None, str | None] = (None, None)) -> MapsView:
        if kind not in KINDS:
            raise DataError(f"unknown map kind {kind!r}; choose one of {', '.join(KINDS)}")
        bank = self.store.require_bank()
        face, what, key, _ = self.face(source, row, upload)
        cache, cache_row = (MapCache(key[0]), key[1]) if key else (None, None)
        with self.store.model_lock:
            e = explain_face(bank, face, kind, cache=cache, row=cache_row)
        if not e.maps:
            raise DataError("no method here has a saliency map (they need a LayerNorm-family checkpoint)")
        pair = tuple(d for d in diff if d)
        what_map = ("Each map shows where that method's encoder attends, whatever the head decides (bright = more "
                    "attention), not its *fake* decision" if kind == "rollout" else
                    "Each map explains that method's own *fake* decision (bright = more evidence)")
        note = [f"**{KINDS[kind]}** for {what}. {what_map}; the curves beside it say whether the map is evidence: "
                "deleting its top patches first should lower p(fake) faster than random order."]
        if e.skipped:
            note.append("No map for: " + ", ".join(md_escape(bank.entries[n].label) for n in e.skipped) + ".")
        return MapsView(gallery(e, pair if len(pair) == 2 else None), curves_figure(e), " ".join(note))

    def probe(self, source: str | None, row, upload=None) -> ProbeView:
        bank = self.store.require_bank()
        face, what, _, frame = self.face(source, row, upload)
        with self.store.model_lock:
            table = probe_faces(bank, [face], frames=[frame])
        labels = {n: bank.entries[n].label for n in table["method"].unique()}
        flags = unstable(table)
        bad = [labels[m] for (_, m), v in flags.items() if v]
        verdict = (f"**unstable** for {md_escape(', '.join(bad))}: a perturbation flips the verdict at the "
                   "method's threshold" if bad else "stable: no perturbation flips any method's verdict")
        crops = ("looser crops re-aligned from the photo" if frame is not None else
                 "looser crops zoomed out with a black border (no original frame for this face)")
        return ProbeView(probe_figure(table, labels, bank.demo), f"Robustness of {what}: {verdict}; {crops}.")

    def calibration(self, run_name: str, datasets: list[str] | None, level: str = "frame") -> CalibrationView:
        """Reliability diagram and, per method x dataset, the validation threshold and how it fares here."""
        import pandas as pd

        from ...explain.service import reliability_figure
        from ..store import method_label
        run = self.store.run(run_name)
        level = level if level in ("frame", "video") else "frame"
        m = run.metrics
        if m.empty or "source" not in m:
            raise DataError(f"run {run_name} has no metrics.json records")
        m = m[(m["source"] == "*") & (m["level"] == level)]
        shown = [d for d in (datasets or []) if d in set(m["dataset"])] or sorted(set(m["dataset"]))
        m = m[m["dataset"].isin(shown)]
        cols = {"threshold": "threshold", "threshold_rule": "rule", "threshold_here": "threshold here",
                "threshold_drift": "drift", "fpr_at_threshold": "FPR at threshold",
                "tpr_at_threshold": "TPR at threshold", "tpr_at_fpr_1": "TPR @1% FPR", "tpr_at_fpr_5": "TPR @5% FPR",
                "ece": "ECE", "ece_calibrated": "ECE (temperature)", "uncertain_share": "uncertain"}
        rows = []
        for _, r in m.iterrows():
            row = {"method": method_label(run, r["method"]), "dataset": r["dataset"], "n": r.get("n")}
            for k, v in cols.items():
                val = r.get(k)
                row[v] = round(val, 4) if isinstance(val, float) and val == val else val
            rows.append(row)
        table = pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)
        rocs = [{**r, "method": method_label(run, r["method"])} for r in run.roc]
        fig = reliability_figure(rocs, shown[0], level, self.store.run_is_demo(run))
        missing = table["threshold"].isna().all() if len(table) else True
        note = (f"Reliability on {md_escape(shown[0])} (first dataset shown). Drift = the threshold the same rule "
                "would pick on this test set minus the one chosen on validation.")
        if missing:
            note += (" These checkpoints carry no calibration (trained before it existed): verdicts use 0.5; "
                     "re-train to calibrate on validation.")
        return CalibrationView(fig, table, note)

    def with_map(self, run_name: str, method: str, row: int, face: Image.Image, kind: str = "gradcam") -> Image.Image:
        """A run face with `method`'s map over it (cached per run, row, method, kind); unchanged for a method
        without a patch-grid map (text family, or not loaded here)."""
        from ...explain.cache import model_id
        from ...explain.render import model_view, overlay
        from ...explain.saliency import saliency_maps
        bank = self.store.require_bank()
        entry = bank.entries.get(method)
        if entry is None or entry.status != "ready" or entry.model is not None:
            return face
        run = self.store.run(run_name)
        pixels = bank.preprocess([face])

        def compute():
            with self.store.model_lock:
                return saliency_maps(bank.method_model(method), pixels, kind)[0]
        m = MapCache(run.folder).get_or_compute(int(row), method, kind, model_id(entry.meta), compute)
        return overlay(model_view(pixels[0]), m)
