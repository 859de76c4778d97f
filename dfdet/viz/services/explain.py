"""Why and how sure, for one face: every method's saliency map with its deletion/insertion curves,
the difference of two methods' maps, and the robustness probe (dfdet.explain, dfdet.robustness).

Faces come from a run or the sample manifest by row (maps of run rows are cached in the run
folder per (run, row, method, kind)) or from an uploaded photo (aligned like Compare does).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ...errors import DataError
from ...explain.cache import MapCache
from ...explain.saliency import KINDS
from ...explain.service import curves_figure, explain_face, gallery
from ...images import open_image
from ...robustness import probe_faces, probe_figure, unstable
from ..media import check_upload
from ..store import SAMPLES, Store, md_escape


@dataclass
class MapsView:
    items: list[tuple[Image.Image, str]]  # (map over the face, caption) per method, then the difference
    curves: object  # plotly figure: deletion/insertion per method vs random order
    note: str  # which face, which kind, what is missing (Markdown)


@dataclass
class ProbeView:
    figure: object  # plotly figure: p_fake per perturbation per method
    note: str  # stable / unstable per method (Markdown)


class ExplainService:
    def __init__(self, store: Store):
        self.store = store

    def face(self, source: str | None, row, upload: str | Path | None = None) -> tuple[Image.Image, str, tuple]:
        """(face, what it is, cache key or ()) for an uploaded photo, else a row of a run / the samples."""
        if upload:
            image = open_image(check_upload(upload, "image"))
            res = self.store.align(image)
            return (res.crop or image), f"uploaded photo `{md_escape(Path(str(upload)).name)}`", ()
        if row is None or row == "":
            raise DataError("pick a face first: a row (accordion above) or an uploaded photo")
        source = source or SAMPLES
        face, rec = self.store.face(source, row)
        key = (self.store.run(source[4:]).folder, int(float(row))) if source.startswith("run:") else ()
        where = "sample faces" if source == SAMPLES else f"run {source[4:]}"
        return face, f"row {int(float(row))} of {md_escape(where)}: `{md_escape(rec['path'])}`", key

    def maps(self, source: str | None, row, upload=None, kind: str = "gradcam",
             diff: tuple[str | None, str | None] = (None, None)) -> MapsView:
        if kind not in KINDS:
            raise DataError(f"unknown map kind {kind!r}; choose one of {', '.join(KINDS)}")
        bank = self.store.require_bank()
        face, what, key = self.face(source, row, upload)
        cache, cache_row = (MapCache(key[0]), key[1]) if key else (None, None)
        with self.store.model_lock:
            e = explain_face(bank, face, kind, cache=cache, row=cache_row)
        if not e.maps:
            raise DataError("no method here has a saliency map (they need a LayerNorm-family checkpoint)")
        pair = tuple(d for d in diff if d)
        note = [f"**{KINDS[kind]}** for {what}. Each map explains that method's own *fake* decision "
                "(bright = more evidence); the curves beside it say whether the map is evidence: "
                "deleting its top patches first should lower p(fake) faster than random order."]
        if e.skipped:
            note.append("No map for: " + ", ".join(md_escape(bank.entries[n].label) for n in e.skipped) + ".")
        return MapsView(gallery(e, pair if len(pair) == 2 else None), curves_figure(e), " ".join(note))

    def probe(self, source: str | None, row, upload=None) -> ProbeView:
        bank = self.store.require_bank()
        face, what, _ = self.face(source, row, upload)
        with self.store.model_lock:
            table = probe_faces(bank, [face])
        labels = {n: bank.entries[n].label for n in table["method"].unique()}
        flags = unstable(table)
        bad = [labels[m] for (_, m), v in flags.items() if v]
        verdict = (f"**unstable** for {md_escape(', '.join(bad))}: a perturbation flips the verdict at the "
                   "method's threshold" if bad else "stable: no perturbation flips any method's verdict")
        return ProbeView(probe_figure(table, labels, bank.demo), f"Robustness of {what}: {verdict}.")
