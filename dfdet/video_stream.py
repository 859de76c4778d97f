"""A video's per-frame scores as they come, so a visitor sees the first one after about one forward.

Only the sampled frames are decoded to RGB (dfdet.data.video). A background thread decodes and aligns
faces while the main thread scores them: the first face alone (the first score on screen), then
whatever faces are ready, at most `chunk` at a time, all methods in one grouped forward on the bank's
runtime. ONNX Runtime and torch release the GIL in their kernels, so decoding and face detection run
beside the forward on the second core instead of before it (bench/results_cpu_video.md).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .errors import DataError

if TYPE_CHECKING:
    from PIL import Image

    from .inference import DetectorBank

_END = object()


@dataclass
class VideoScores:
    """The scores so far. Each yield holds everything up to then, so a view can redraw from the latest."""
    faces: list  # aligned face crops (PIL) of the scored frames, in frame order
    times: np.ndarray  # timestamp (s) of each scored frame
    scores: dict[str, np.ndarray]  # bank entry name -> p_fake per scored frame
    planned: int  # frames sampled from the video
    seen: int  # sampled frames decoded and searched for a face so far
    done: bool  # every sampled frame has been seen and scored
    note: str = ""  # frames without a face, capped or short videos
    seconds: dict = field(default_factory=dict)  # decode / detect / align / forward / first_score / total


def stream_video_scores(bank: DetectorBank, path: str | Path, n_frames: int = 16, aligner=None,
                        chunk: int = 8, overlap: bool = True, lock=None) -> Iterator[VideoScores]:
    """Yield VideoScores after the first face and after each later chunk of faces; the last has done=True.

    lock: held around each forward only (a dashboard's model lock), never across a yield, so a visitor
    who leaves mid-video cannot keep the model from the others.
    """
    import contextlib
    from .data.video import iter_video_faces, plan_indices, probe
    if aligner is None:
        from .data.faces import AlignConfig, FaceAligner
        aligner = FaceAligner(AlignConfig(size=224))
    t0 = time.perf_counter()
    info = probe(path)
    planned_idx, plan_note = plan_indices(info.n_frames, n_frames)
    planned = len(planned_idx)
    # every key up front: the decode thread adds to these while the consumer copies the dict
    seconds: dict = {"decode": 0.0, "detect": 0.0, "align": 0.0, "forward": 0.0}
    frames = iter_video_faces(path, aligner, n_frames, seconds=seconds, info=info)
    source = _background(frames) if overlap else frames
    names = bank.ready
    faces, times, seen, missing = [], [], 0, []
    scores = {n: [] for n in names}
    pending: list = []
    finished = False
    while not finished:
        want = 1 if not faces else chunk
        for item in _take(source, want, block_for_one=True):
            if item is _END:
                finished = True
                break
            seen += 1
            if item.faces.crop is None:
                missing.append(item.index)
            else:
                pending.append(item)
            if len(pending) >= want:
                break
        if not pending and not finished:
            continue
        if finished and not faces and not pending:
            raise DataError(f"{Path(path).name}: no face found in any of the {seen} sampled frames"
                            + (f" ({plan_note})" if plan_note else ""))
        if pending:
            t = time.perf_counter()
            with lock if lock is not None else contextlib.nullcontext():
                probs = bank.predict(bank.preprocess([f.faces.crop for f in pending]), names)
            seconds["forward"] += time.perf_counter() - t
            for n in names:
                scores[n].append(probs[n])
            faces += [f.faces.crop for f in pending]
            times += [f.time_s for f in pending]
            pending = []
            seconds.setdefault("first_score", time.perf_counter() - t0)
        seconds["total"] = time.perf_counter() - t0
        yield VideoScores(list(faces), np.asarray(times, float), {n: np.concatenate(v) for n, v in scores.items() if v},
                          planned, seen, finished, "; ".join(x for x in (plan_note, _note(missing, seen)) if x),
                          dict(seconds))


def _note(missing: list[int], seen: int) -> str:
    if not missing:
        return ""
    shown = ", ".join(str(i) for i in missing[:8]) + (", ..." if len(missing) > 8 else "")
    return f"no face in {len(missing)} of {seen} sampled frames (frames {shown})"


def _background(items: Iterator) -> queue.Queue:
    """Run an iterator in a daemon thread; its items (then _END, or the exception) arrive on a queue."""
    q: queue.Queue = queue.Queue()

    def work():
        try:
            for it in items:
                q.put(it)
        except BaseException as err:  # re-raised in the consumer, with its message
            q.put(err)
        q.put(_END)
    threading.Thread(target=work, name="dfdet-video-decode", daemon=True).start()
    return q


def _take(source, want: int, block_for_one: bool) -> Iterator:
    """Up to `want` items: from a queue, the first waits and the rest only if already there; else iterate."""
    if isinstance(source, queue.Queue):
        for k in range(want):
            try:
                item = source.get(block=(k == 0 and block_for_one))
            except queue.Empty:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            if item is _END:
                return
    else:
        for _ in range(want):
            item = next(source, _END)
            yield item
            if item is _END:
                return
