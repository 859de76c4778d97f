"""Compare: one input (a photo, a video, or a face by row) scored by every method, and what it was.

Every result carries a "Results for" line naming its input, the ground truth when it is known,
and whether each method was right, so a table can never be read against the wrong input.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DataError, DfdetError
from ...images import UPLOAD_MAX_SIDE, open_image
from .. import compare
from ..media import check_upload
from ..store import SAMPLES, Store, md_escape, truth_of


@dataclass
class CompareResult:
    prediction: compare.Prediction  # the table, the crops, the notes
    header: str  # "Results for: …" (Markdown, escaped)
    original: Image.Image | None = None  # an uploaded photo with the detected face boxed


class CompareService:
    def __init__(self, store: Store):
        self.store = store

    def image(self, path: str | Path | None, as_crop: bool | None = None) -> CompareResult:
        """An uploaded photo: detect and align the largest face, then score it with every method. With no face
        found, nothing is scored unless `as_crop` (the visitor asked to score the image as a face crop); None
        (the API) keeps its documented answer: the whole image, said so in the note."""
        bank = self.store.require_bank()
        path = check_upload(path, "image")
        image = open_image(path, max_side=UPLOAD_MAX_SIDE)  # a big photo is decoded at what detection needs
        res = self.store.align(image)
        if res.crop is None and as_crop is False:
            raise DataError(f"{Path(path).name}: no face found, so nothing was scored. If it is a face crop (a face "
                            "filling the image), tick “No face found? Score the whole image as a face crop”")
        if res.crop is None:
            face = image
            note = ("no face found; scored the whole image as a face crop, as asked" if as_crop else
                    "no face found; scored the whole image as given (fine for an already-cropped face)")
        else:
            face, note = res.crop, res.message or "one face found and aligned"
        with self.store.model_lock:
            pred = compare.image_prediction(bank, face, note)
        return CompareResult(pred, f"**Results for:** uploaded photo `{md_escape(Path(path).name)}` "
                                   "(ground truth unknown)", boxed(image, res.boxes[0] if res.boxes else None))

    def video(self, path: str | Path | None, what: str = "uploaded video") -> CompareResult:
        """An uploaded video: aligned faces from evenly spaced frames, per-frame and video-level scores."""
        res = None
        for res in self.video_stream(path, what):
            pass
        return res

    def video_stream(self, path: str | Path | None, what: str = "uploaded video", truth: str | None = None):
        """video() as it goes: a result after the first scored face, then after each chunk of faces
        (dfdet.video_stream: decoding and face detection run beside the forward; the lock only per forward)."""
        from ...video_stream import stream_video_scores
        bank = self.store.require_bank()
        path = check_upload(path, "video")
        for part in stream_video_scores(bank, path, self.store.cfg.video_frames, self.store.face_aligner(),
                                        lock=self.store.model_lock):
            if part.done:
                note = f"{len(part.faces)} of {part.seen} sampled frames had a face"
                note += f"; {part.note}" if part.note else ""
                count = f"{len(part.faces)} frames"
            else:
                note = (f"scoring: {part.seen} of {part.planned} sampled frames read, {len(part.faces)} scored so "
                        "far (the table shows the mean over those)")
                count = f"{len(part.faces)} of {part.planned} frames so far"
            pred = compare.video_prediction(bank, part.faces, part.times, note, probs=part.scores)
            known = f" · **ground truth: {truth}**" if truth else " (ground truth unknown)"
            yield CompareResult(pred, f"**Results for:** {what} `{md_escape(Path(path).name)}`, {count}{known}")

    def sample(self, source: str, row) -> CompareResult:
        """A face crop from a manifest or run (already aligned by the data pipeline): score it as is."""
        bank = self.store.require_bank()
        face, rec = self.store.face(source or SAMPLES, row)
        with self.store.model_lock:
            pred = compare.image_prediction(bank, face, self.store.describe(rec))
        truth = truth_of(rec)
        add_correctness(pred, truth)
        where = "sample faces" if (source or SAMPLES) == SAMPLES else f"run {source[4:]}"
        return CompareResult(pred, f"**Results for:** row {int(float(row))} of {md_escape(where)}: "
                                   f"`{md_escape(rec['path'])}` ({md_escape(rec['dataset'])} / "
                                   f"{md_escape(rec['source'])}) · **ground truth: {truth}**")

    def random_row(self, dataset: str = "any", source: str = "any", label: str = "any",
                   seed: int | None = None) -> int:
        df, _ = self.store.source_table(SAMPLES)
        m = np.ones(len(df), dtype=bool)
        if dataset and dataset != "any":
            m &= (df["dataset"] == dataset).to_numpy()
        if source and source != "any":
            m &= (df["source"] == source).to_numpy()
        if label and label != "any":
            m &= (df["label"].astype(int) == (1 if label == "fake" else 0)).to_numpy()
        rows = np.nonzero(m)[0]
        if not len(rows):
            raise DataError(f"no sample face matches dataset={dataset}, source={source}, label={label}")
        return int(np.random.default_rng(seed).choice(rows))


def add_correctness(pred: compare.Prediction, truth: str) -> None:
    """A "right?" column next to the verdict when the ground truth is known (empty for unscored methods;
    an "uncertain" verdict is neither right nor wrong)."""
    def right(v: str) -> str:
        word = v.split(" ")[0]
        return "" if not v else "– uncertain" if word == "uncertain" else "✓ right" if word == truth else "✗ wrong"
    pred.table["right?"] = [right(v) for v in pred.table["verdict"].astype(str)]


def boxed(image: Image.Image, box) -> Image.Image | None:
    """The photo with the detected face outlined (None when no face box is known)."""
    if box is None:
        return None
    from PIL import ImageDraw
    out = image.convert("RGB").copy()
    out.thumbnail((640, 640))
    scale = out.width / image.width
    x0, y0, x1, y1 = (float(v) * scale for v in box)
    ImageDraw.Draw(out).rectangle([x0, y0, x1, y1], outline="#ffd400", width=max(2, out.width // 160))
    return out


def video_faces(path: Path, n_frames: int, aligner) -> tuple[list[Image.Image], np.ndarray, str]:
    """Aligned faces of n_frames evenly spaced frames (frames without a face skipped), their times, a note."""
    from ...data.video import video_faces as sample_video_faces
    res = sample_video_faces(path, n_frames, aligner=aligner)
    faces = [f.faces.crop for f in res.frames if f.faces.crop is not None]
    times = np.array([f.time_s for f in res.frames if f.faces.crop is not None], dtype=float)
    if not faces:
        raise DataError(f"{path.name}: no face found in any of the {len(res.frames)} sampled frames"
                        + (f" ({res.message})" if res.message else ""))
    note = f"{len(faces)} of {len(res.frames)} sampled frames had a face"
    if res.message:
        note += f"; {res.message}"
    return faces, times, note


__all__ = ["CompareService", "CompareResult", "DfdetError"]
