"""Frame sampling from videos (PyAV) and per-frame aligned faces.

Frames are decoded in order and only the chosen ones are converted to RGB: H.264 files here have
a keyframe every ~250 frames, so seeking would save little and makes frame indices approximate.
A video longer than max_frames is only read up to max_frames, and the result says so; max_frames=0 spans
the whole video, as DeepfakeBench does (its frames are spaced over CAP_PROP_FRAME_COUNT).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError
from ..images import MAX_PIXELS
from .faces import FaceAligner, FaceResult


VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
DEFAULT_N_FRAMES = 32  # frames per video, evenly spaced (DeepfakeBench's default)
DEFAULT_MAX_FRAMES = 3600  # read at most this many frames of a video (2 min at 30 fps); 0 = the whole video


@dataclass
class VideoInfo:
    path: str  # the file
    n_frames: int  # frames in the video (from the container, else counted from packets)
    fps: float  # average frame rate (0 when unknown)
    width: int
    height: int


@dataclass
class FrameSample:
    frames: list[np.ndarray]  # H x W x 3 uint8 RGB, in index order
    indices: list[int]  # 0-based frame index of each frame
    info: VideoInfo  # what the video holds
    message: str = ""  # non-empty when the video was capped or ended early

    def times(self) -> list[float]:
        return [i / self.info.fps if self.info.fps else float("nan") for i in self.indices]


@dataclass
class FrameFaces:
    index: int  # 0-based frame index in the video
    time_s: float  # index / fps (nan when the frame rate is unknown)
    faces: FaceResult  # aligned crop(s), boxes and message of this frame


@dataclass
class VideoFaces:
    frames: list[FrameFaces]  # one entry per sampled frame, also those without a face
    info: VideoInfo
    message: str = ""  # capping / early end, and how many frames had no face
    seconds: dict = field(default_factory=dict)  # time spent: decode, detect, align

    @property
    def n_with_face(self) -> int:
        return sum(1 for f in self.frames if f.faces.crops)


def _open(path: str | Path):
    import av
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise DataError(f"cannot read video {path}: {_reason(err)} (not a video, or a damaged/incomplete one)") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path} has no video stream")
    ctx = container.streams.video[0].codec_context
    if (ctx.width or 0) * (ctx.height or 0) > MAX_PIXELS:
        container.close()
        raise _frame_too_large(path, ctx.width, ctx.height)
    return container


def _frame_too_large(path, width: int, height: int) -> DataError:
    """The image pixel limit holds for every video frame too (an 8192x8192 video of 0.2 MB costs 1 GB to decode)."""
    return DataError(f"{Path(path).name}: video frames too large ({width}x{height} = {width * height / 1e6:,.0f} MP); "
                     f"the limit is {MAX_PIXELS // 1_000_000} megapixels per frame. Downscale it first")


def _reason(err: Exception) -> str:
    """FFmpeg's own words without the errno and the repeated path."""
    return getattr(err, "strerror", None) or str(err)


def probe(path: str | Path, max_frames: int = DEFAULT_MAX_FRAMES) -> VideoInfo:
    """Frame count, rate and size; counts packets (no decoding) when the container omits the count."""
    import av
    with _open(path) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate) if s.average_rate else 0.0
        n = int(s.frames or 0)
        if n <= 0:
            try:  # count up to one past the cap: enough to plan the sample and to know it is capped
                packets = (p for p in c.demux(s) if p.size)
                n = sum(1 for _ in (packets if max_frames == 0 else zip(packets, range(max_frames + 1))))
            except av.error.FFmpegError as err:
                raise DataError(f"cannot read video {path}: {_reason(err)}") from None
        return VideoInfo(str(path), n, fps, s.codec_context.width, s.codec_context.height)


INDEX_RULES = ("truncate", "round")  # how evenly spaced positions become frame indices


def plan_indices(n_total: int, n_frames: int | None = DEFAULT_N_FRAMES, every: int | None = None,
                 max_frames: int = DEFAULT_MAX_FRAMES, rule: str = "round") -> tuple[list[int], str]:
    """Which frames to take: n_frames evenly spaced, or every k-th; only among the first max_frames
    (0: among all frames, DeepfakeBench's rule).

    rule "truncate" is DeepfakeBench's np.linspace(0, n - 1, k, dtype=int) (preprocess.py:278);
    "round" rounds to the nearest frame (dfdet's fast profile)."""
    if rule not in INDEX_RULES:
        raise DataError(f"unknown frame index rule {rule!r}; choose one of {INDEX_RULES}")
    if every is not None and every < 1:
        raise DataError(f"every must be >= 1, got {every}")
    if every is None and (n_frames is None or n_frames < 1):
        raise DataError(f"n_frames must be >= 1, got {n_frames}")
    if max_frames < 0:
        raise DataError(f"max_frames must be >= 0 (0 = the whole video), got {max_frames}")
    usable = min(n_total, max_frames) if max_frames else n_total
    message = ""
    if max_frames and n_total > max_frames:
        message = (f"long video: {n_total} frames, only the first {max_frames} were sampled "
                   "(raise max_frames to read more)")
    if usable <= 0:
        return [], "the video has no frames"
    if every is not None:
        return list(range(0, usable, every)), message
    pos = np.linspace(0, usable - 1, min(n_frames, usable))
    idx = np.unique(pos.astype(int) if rule == "truncate" else pos.round().astype(int))
    return idx.tolist(), message


FAST_MIN_GAP = 4  # fast decoding only when wanted frames are at least this far apart


def _rgb(frame) -> np.ndarray:
    if frame.width * frame.height > MAX_PIXELS:  # a stream may change size midway: checked before converting
        raise _frame_too_large("video", frame.width, frame.height)
    rgb = frame.to_ndarray(format="rgb24")
    rot = int(getattr(frame, "rotation", 0) or 0)
    if rot % 360:  # phone videos: the display matrix says how to turn the frame
        rgb = np.ascontiguousarray(np.rot90(rgb, k=(rot // 90) % 4))
    return rgb


def iter_frames(path: str | Path, indices: list[int], fast: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """Decode in order and yield (index, RGB array) for the wanted indices; stops after the last.

    fast: for sparse samples (wanted frames >= FAST_MIN_GAP apart) skip decoding non-reference
    frames, about half of an H.264 stream, and take the decoded frame nearest each wanted index.
    Indices may then move by a frame or two; the index yielded is always the true one (from pts).
    """
    import av
    wanted = sorted(set(indices))
    if not wanted:
        return
    with _open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"  # frame threads: decoding dominates for full-HD video
        fps = float(s.average_rate) if s.average_rate else 0.0
        sparse = len(wanted) == 1 or min(b - a for a, b in zip(wanted, wanted[1:])) >= FAST_MIN_GAP
        if fast and sparse and fps > 0 and s.time_base is not None:
            s.codec_context.skip_frame = "NONREF"
            gen = _nearest(c.decode(s), wanted, fps, float(s.time_base), s.start_time or 0)
        else:
            gen = _exact(c.decode(s), wanted)
        try:
            yield from gen
        except av.error.FFmpegError as err:
            raise DataError(f"cannot decode video {path}: {_reason(err)}") from None


def _exact(frames, wanted: list[int]):
    want, last = set(wanted), wanted[-1]
    for i, frame in enumerate(frames):
        if i in want:
            yield i, _rgb(frame)
        if i >= last:
            return


def _nearest(frames, wanted: list[int], fps: float, time_base: float, start: int):
    """Among decoded frames (indices from pts), yield the one nearest each wanted index, once each."""
    k, prev, prev_i, done = 0, None, None, -1
    for frame in frames:
        if frame.pts is None:
            continue
        i = round((frame.pts - start) * time_base * fps)
        while k < len(wanted) and wanted[k] <= i:
            pick, pick_i = (prev, prev_i) if prev is not None and wanted[k] - prev_i < i - wanted[k] else (frame, i)
            if pick_i != done:
                yield pick_i, _rgb(pick)
                done = pick_i
            k += 1
        if k == len(wanted):
            return
        prev, prev_i = frame, i
    if k < len(wanted) and prev is not None and prev_i != done and wanted[k] - prev_i < FAST_MIN_GAP:
        yield prev_i, _rgb(prev)  # the wanted frame was a skipped one at the very end


def sample_frames(path: str | Path, n_frames: int | None = DEFAULT_N_FRAMES, every: int | None = None,
                  max_frames: int = DEFAULT_MAX_FRAMES, fast: bool = True) -> FrameSample:
    """n_frames evenly spaced frames (or every k-th, which overrides n_frames) of the first max_frames.

    fast: see iter_frames (sparse samples decode only reference frames, about 2x faster).
    """
    info = probe(path, max_frames)
    indices, message = plan_indices(info.n_frames, n_frames, every, max_frames)
    got = list(iter_frames(path, indices, fast))
    message = _ended_early(message, indices, [i for i, _ in got])
    return FrameSample([f for _, f in got], [i for i, _ in got], info, message)


def _ended_early(message: str, planned: list[int], got: list[int]) -> str:
    if len(got) < len(planned):
        note = (f"the video ended after {got[-1] + 1 if got else 0} frames, before {len(planned) - len(got)} "
                "of the planned frames (its header promised more)")
        return f"{message}; {note}" if message else note
    return message


def iter_video_faces(path: str | Path, aligner: FaceAligner, n_frames: int | None = DEFAULT_N_FRAMES,
                     every: int | None = None, max_frames: int = DEFAULT_MAX_FRAMES,
                     seconds: dict | None = None, info: VideoInfo | None = None,
                     fast: bool = True, rule: str = "round") -> Iterator[FrameFaces]:
    """Like video_faces, one frame at a time (memory stays at one frame); adds stage times to seconds."""
    seconds = seconds if seconds is not None else {}
    seconds.setdefault("decode", 0.0)
    t = time.perf_counter()
    info = info or probe(path, max_frames)
    indices, _ = plan_indices(info.n_frames, n_frames, every, max_frames, rule)
    frames = iter_frames(path, indices, fast)
    while True:
        item = next(frames, None)
        seconds["decode"] += time.perf_counter() - t
        if item is None:
            return
        i, rgb = item
        yield FrameFaces(i, i / info.fps if info.fps else float("nan"), aligner(rgb, seconds))
        t = time.perf_counter()


def video_faces(path: str | Path, n_frames: int | None = DEFAULT_N_FRAMES, every: int | None = None,
                max_frames: int = DEFAULT_MAX_FRAMES, size: int = 224,
                aligner: FaceAligner | None = None, fast: bool = True) -> VideoFaces:
    """Aligned face crop(s) for each sampled frame, with frame indices and times (the dashboard's
    per-frame view). Frames without a face are kept, with no crops and a message."""
    from .faces import AlignConfig
    aligner = aligner or FaceAligner(AlignConfig(size=size))
    info = probe(path, max_frames)
    planned, message = plan_indices(info.n_frames, n_frames, every, max_frames)
    seconds: dict = {}
    frames = list(iter_video_faces(path, aligner, n_frames, every, max_frames, seconds, info, fast))
    message = _ended_early(message, planned, [f.index for f in frames])
    missing = [f.index for f in frames if not f.faces.crops]
    if missing:
        note = f"no face in {len(missing)} of {len(frames)} sampled frames (frames {_ranges(missing)})"
        message = f"{message}; {note}" if message else note
    return VideoFaces(frames, info, message, seconds)


def _ranges(indices: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f", ... ({len(indices) - limit} more)" if len(indices) > limit else "")
