"""dfdet.video_stream: per-frame scores arrive as they come and equal scoring all faces at once."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from dfdet.methods import PAPER_METHODS


@pytest.fixture(scope="module")
def bank_and_video(shared, tmp_path_factory):
    from bench.bench_methods import make_checkpoints
    from dfdet.backbone import TINY_MODEL, load_clip
    from dfdet.config import BackboneConfig
    from dfdet.inference import DetectorBank
    clip = load_clip(BackboneConfig(model=TINY_MODEL, pretrained=None, seed=0))
    ck = tmp_path_factory.mktemp("ck")
    make_checkpoints(clip, ck)
    video = shared / "videos" / "FF" / "real" / "004.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    from dfdet.data.faces import FaceAligner
    return DetectorBank(clip, ck, methods=list(PAPER_METHODS)), video, FaceAligner()


@pytest.mark.parametrize("overlap,frames,chunk", [(True, 5, 2), (False, 3, 1)])
def test_first_score_after_one_face_then_all_equal_to_batch(bank_and_video, overlap, frames, chunk):
    from dfdet.video_stream import stream_video_scores
    from dfdet.viz.compare import predict_faces
    bank, video, aligner = bank_and_video
    lock = threading.Lock()
    parts = []
    for part in stream_video_scores(bank, video, frames, aligner, chunk=chunk, overlap=overlap, lock=lock):
        assert lock.acquire(blocking=False)  # the model lock is never held across a yield
        lock.release()
        parts.append(part)
    first, last = parts[0], parts[-1]
    assert len(first.faces) == 1 and not first.done and set(first.scores) == set(PAPER_METHODS)
    assert last.done and last.seen == last.planned == frames and len(parts) >= 1 + (frames - 1) // chunk
    assert [len(p.faces) for p in parts] == sorted(len(p.faces) for p in parts)  # only ever grows
    assert all(len(p.faces) - len(q.faces) <= chunk for q, p in zip(parts, parts[1:]))  # chunk respected
    assert np.all(np.diff(last.times) > 0) and len(last.times) == len(last.faces)
    ref = predict_faces(bank, last.faces)
    for m in PAPER_METHODS:
        np.testing.assert_allclose(last.scores[m], ref[m], atol=1e-5)
    assert last.seconds["first_score"] <= last.seconds["total"] and last.seconds["forward"] > 0


def test_no_face_anywhere_is_one_clear_error(bank_and_video, tmp_path):
    import av
    from dfdet.errors import DataError
    from dfdet.video_stream import stream_video_scores
    bank, _, aligner = bank_and_video
    path = tmp_path / "grey.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for _ in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    with pytest.raises(DataError, match="no face found in any of the 3 sampled frames"):
        list(stream_video_scores(bank, path, 3, aligner))


def test_visitor_stream_redraws_each_yield_and_keeps_them_on_failure():
    """The Compare tab's streaming handler: each part redraws, a failure part-way only sets the status line."""
    import inspect

    import gradio as gr

    from dfdet.errors import DataError
    from ui.common import for_visitor_stream

    def parts(fail: bool):
        yield "first"
        if fail:
            raise DataError("decoding stopped at frame 9")
        yield "second"
    ok = for_visitor_stream(lambda: parts(False), 1)
    assert inspect.isgeneratorfunction(ok)  # gradio streams only generator functions
    assert list(ok()) == [("first", ""), ("second", "")]
    out = list(for_visitor_stream(lambda: parts(True), 1)())
    assert out[0] == ("first", "")
    skip, status = out[1]
    assert skip == gr.skip() and "decoding stopped at frame 9" in status and "err" in status
