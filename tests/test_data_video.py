"""Frame sampling (PyAV): planned indices, exact vs fast decoding, capping long videos."""
from __future__ import annotations

import numpy as np
import pytest

from dfdet.data.faces import AlignConfig, FaceAligner
from dfdet.data.video import iter_frames, plan_indices, probe, sample_frames, video_faces
from dfdet.errors import DataError

STEP = 6  # brightness step per frame in the synthetic video: frame i has value ~ i * STEP


def write_video(path, n: int, size=(64, 48), value=lambda i: i * STEP, codec="libx264", fps=25):
    """A tiny H.264 video whose frame i is a flat image of brightness value(i) (index is readable)."""
    import av
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), value(i), np.uint8), format="rgb24")
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


@pytest.fixture(scope="module")
def counter_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("vid") / "count.mp4", 40)


def _read_index(rgb) -> int:
    return int(round(float(rgb.mean()) / STEP))


def test_plan_indices():
    assert plan_indices(300, 4)[0] == [0, 100, 199, 299]
    assert plan_indices(3, 32)[0] == [0, 1, 2]  # fewer frames than asked: all of them
    assert plan_indices(100, every=30)[0] == [0, 30, 60, 90]
    idx, msg = plan_indices(10_000, 5, max_frames=1000)
    assert idx == [0, 250, 500, 749, 999] and "only the first 1000" in msg
    assert plan_indices(0, 4) == ([], "the video has no frames")
    for bad in ({"n_frames": 0}, {"every": 0}, {"max_frames": -1}):
        with pytest.raises(DataError):
            plan_indices(10, **{"n_frames": 4, **bad})


def test_exact_indices_are_the_frames_asked_for(counter_video):
    info = probe(counter_video)
    assert info.n_frames == 40 and info.fps == 25 and (info.width, info.height) == (64, 48)
    s = sample_frames(counter_video, n_frames=5, fast=False)
    assert s.indices == [0, 10, 20, 29, 39]
    assert [_read_index(f) for f in s.frames] == s.indices
    assert s.times() == [i / 25 for i in s.indices]
    every = sample_frames(counter_video, every=1, fast=True)  # dense: fast mode falls back to exact
    assert every.indices == list(range(40)) and [_read_index(f) for f in every.frames] == every.indices


def test_fast_mode_reports_true_indices_near_the_plan(counter_video):
    fast = list(iter_frames(counter_video, [0, 10, 20, 29, 39], fast=True))
    assert len(fast) == 5
    for (i, rgb), want in zip(fast, [0, 10, 20, 29, 39]):
        assert abs(i - want) <= 2
        assert _read_index(rgb) == i  # the index reported is the frame's own


def test_fast_mode_is_pixel_identical_on_a_real_video(shared):
    video = shared / "videos" / "FF" / "real" / "004.mp4"
    fast = list(iter_frames(video, [0, 60, 120], fast=True))
    exact = dict(iter_frames(video, [i for i, _ in fast], fast=False))
    assert [i for i, _ in fast] == sorted(exact)
    for i, rgb in fast:
        assert rgb.shape == (720, 1280, 3) and np.array_equal(rgb, exact[i])


def test_long_video_is_capped_with_a_message(counter_video):
    s = sample_frames(counter_video, n_frames=4, max_frames=12, fast=False)
    assert s.indices == [0, 4, 7, 11] and "40 frames, only the first 12" in s.message


def test_unreadable_or_missing_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 2048)
    with pytest.raises(DataError, match="cannot read video"):
        sample_frames(bad)
    with pytest.raises(DataError, match="video not found"):
        sample_frames(tmp_path / "nope.mp4")


def test_video_faces_per_frame(shared):
    video = shared / "videos" / "FF" / "real" / "004.mp4"
    aligner = FaceAligner(AlignConfig())
    r = video_faces(video, n_frames=3, max_frames=90, aligner=aligner)
    assert len(r.frames) == 3
    assert all(abs(f.index - want) <= 2 for f, want in zip(r.frames, [0, 44, 89]))
    assert r.n_with_face == 3 and r.message.startswith("long video: 309 frames, only the first 90")
    for f in r.frames:
        assert f.faces.crop.size == (224, 224) and f.time_s == pytest.approx(f.index / 25)
    assert set(r.seconds) >= {"decode", "detect", "align"} and all(v > 0 for v in r.seconds.values())


def test_video_without_faces_reports_each_frame(tmp_path):
    video = write_video(tmp_path / "flat.mp4", 20, size=(160, 120))
    r = video_faces(video, n_frames=4)
    assert len(r.frames) == 4 and r.n_with_face == 0
    assert "no face in 4 of 4 sampled frames" in r.message
    assert all("no face found" in f.faces.message for f in r.frames)


def test_the_dfb_profile_spaces_its_frames_over_the_whole_video_as_deepfakebench():
    """DeepfakeBench: np.linspace(0, CAP_PROP_FRAME_COUNT - 1, 32, dtype=int) (preprocessing/preprocess.py:273-278),
    however long the video; the fast profile (and the dashboard) keep a cap on decoding."""
    from dfdet.data.preprocess import profile_config
    dfb = profile_config("dfb")
    idx, msg = plan_indices(100_000, dfb.n_frames, max_frames=dfb.max_frames, rule=dfb.index_rule)
    assert idx == np.linspace(0, 100_000 - 1, 32, dtype=int).tolist() and msg == ""
    fast = profile_config("fast")
    assert fast.max_frames == 3600 and max(plan_indices(100_000, 32, max_frames=fast.max_frames)[0]) == 3599


def test_a_whole_video_probe_counts_every_packet(counter_video):
    assert probe(counter_video, max_frames=0).n_frames == 40
    assert sample_frames(counter_video, n_frames=4, max_frames=0, fast=False).indices == [0, 13, 26, 39]
