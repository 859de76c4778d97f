"""The Compare view's numbers: one probability row per method, for an image or a whole video."""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from typing import TYPE_CHECKING

from ..calibration import Calibration
from ..methods import METHODS

if TYPE_CHECKING:
    from ..inference import DetectorBank

THRESHOLD = 0.5  # p_fake at or above this is called fake
TABLE_COLUMNS = ["method", "p_real", "p_fake", "verdict", "trainable params", "status"]
DEMO_VERDICT = " (meaningless: demo)"
DEMO_CSV_NOTE = "# DEMO: random-weight backbone, every score below is meaningless"


@dataclass
class Prediction:
    """What Compare shows for one input: the face(s) scored and one table row per method."""
    table: pd.DataFrame  # TABLE_COLUMNS; p_* are NaN for methods without a checkpoint
    crops: list[Image.Image]  # the aligned faces that were scored (one per video frame for videos)
    message: str  # face-detection notes, what is missing, demo warning
    demo: bool  # scores come from a random-weight backbone
    times: np.ndarray | None = None  # video: timestamp (s) of each scored frame
    frame_scores: dict[str, np.ndarray] = field(default_factory=dict)  # video: label -> per-frame p_fake


NON_FINITE = "error: the model's score is not a number (NaN or infinite); no verdict"


def verdict(p: float, demo: bool, threshold: float = THRESHOLD, cal=None) -> str:
    """fake/real at the method's own validation threshold (dfdet.calibration), 'uncertain' in its band."""
    if not np.isfinite(p):  # NaN >= threshold is False: it would read as "real"
        return "error"
    if cal is not None:
        from ..calibration import verdict as calibrated
        v = calibrated(p, cal)
    else:
        v = "fake" if p >= threshold else "real"
    return v + DEMO_VERDICT if demo else v


def score_table(bank: DetectorBank, scores: dict[str, float]) -> pd.DataFrame:
    """Every bank entry as a row: scored ones with p_real/p_fake/verdict, the rest with their status."""
    rows = []
    order = {m: i for i, m in enumerate(METHODS)}  # the registry's order, whatever the folder names
    for name, entry in sorted(bank.entries.items(), key=lambda kv: (order.get(kv[1].spec.name, len(order)), kv[0])):
        p = scores.get(name)
        status = "ready" if entry.status == "ready" else entry.message
        if p is not None and not np.isfinite(p):
            p, status = None, NON_FINITE
        if p is None:
            rows.append({"method": entry.label, "p_real": np.nan, "p_fake": np.nan, "verdict": "",
                         "trainable params": entry.trainable_params or None, "status": status})
        else:
            rows.append({"method": entry.label, "p_real": round(1 - float(p), 4), "p_fake": round(float(p), 4),
                         "verdict": verdict(float(p), bank.demo, cal=Calibration.from_meta(entry.meta)),
                         "trainable params": entry.trainable_params,
                         "status": status})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def predict_faces(bank: DetectorBank, faces: list[Image.Image], batch: int = 16) -> dict[str, np.ndarray]:
    """p_fake per ready method for each face (batched so long videos do not hold every frame's tensor)."""
    out: dict[str, list[np.ndarray]] = {n: [] for n in bank.ready}
    for s in range(0, len(faces), batch):
        probs = bank.predict(bank.preprocess(faces[s:s + batch]))
        for n, p in probs.items():
            out[n].append(p)
    return {n: np.concatenate(v) for n, v in out.items() if v}


def image_prediction(bank: DetectorBank, face: Image.Image, message: str = "") -> Prediction:
    probs = predict_faces(bank, [face])
    table = score_table(bank, {n: float(p[0]) for n, p in probs.items()})
    return Prediction(table=table, crops=[face], message=message, demo=bank.demo)


def video_prediction(bank: DetectorBank, faces: list[Image.Image], times: np.ndarray,
                     message: str = "", probs: dict[str, np.ndarray] | None = None) -> Prediction:
    """Per-frame scores and the video-level score: the mean p_fake over frames (as in the metrics).
    probs: per-frame p_fake already computed (a streamed video, dfdet.video_stream)."""
    probs = predict_faces(bank, faces) if probs is None else probs
    table = score_table(bank, {n: float(np.mean(p)) for n, p in probs.items()})
    table.insert(1, "frames", [len(faces) if not np.isnan(v) else 0 for v in table["p_fake"]])
    frame_scores = {bank.entries[n].label: p for n, p in probs.items()}
    return Prediction(table=table, crops=faces, message=message, demo=bank.demo, times=np.asarray(times),
                      frame_scores=frame_scores)


EXPORT_KEEP_S = 600  # gradio copies an export into its own cache at once; older ones are removed


def table_csv(table: pd.DataFrame, demo: bool, folder: str | Path | None = None, stem: str = "dfdet_scores") -> Path:
    """The table as a CSV file for download; a demo table says once, in a first comment line, that its
    scores are meaningless. Counts stay whole numbers (empty where a method has none).

    Each export is a new file, so the folder is pruned of exports older than EXPORT_KEEP_S on every
    call: a public app must not fill the disk one CSV per click.
    """
    folder = Path(folder or tempfile.gettempdir()) / "dfdet_exports"
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in folder.glob(f"{stem}_*.csv"):
        try:
            if now - old.stat().st_mtime > EXPORT_KEEP_S:
                old.unlink()
        except OSError:
            pass  # another worker removed it first
    out = table.copy()
    for col in out.columns:
        if col in ("trainable params", "frames") or col.startswith("trainable params"):
            out[col] = pd.to_numeric(out[col], errors="coerce").round().astype("Int64")
    path = folder / f"{stem}_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}_{time.perf_counter_ns() % 10**6}.csv"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        if demo:
            f.write(f"{DEMO_CSV_NOTE}\n")
        out.to_csv(f, index=False)
    os.replace(tmp, path)
    return path
