"""§6: `dfdet preprocess --profile dfb` (the default) reproduces DeepfakeBench's preprocessing.

Reference: SCLBD/DeepfakeBench preprocessing/preprocess.py: get_keypts (104-117, points 37, 44, 30,
49, 55 of the 81-point model), extract_aligned_face_dlib (120-207: res 256, HOG `face_detector(rgb, 1)`,
re-detection on the aligned crop at 198-200), frame indices np.linspace(..., dtype=int) at 278.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dfdet.data.faces import KEYPOINTS, AlignConfig, FaceAligner
from dfdet.data.preprocess import PreprocessConfig, preprocess, profile_config
from dfdet.data.video import plan_indices


@pytest.mark.parametrize("n_total,k", [(300, 32), (100, 32), (37, 8), (10, 32)])
def test_dfb_frame_indices_truncate_like_numpy_linspace_int(n_total, k):
    expected = sorted(set(np.linspace(0, n_total - 1, k, endpoint=True, dtype=int).tolist()))
    assert plan_indices(n_total, k, rule="truncate")[0] == expected
    assert PreprocessConfig().index_rule == "truncate"
    if n_total == 100:  # 3.19..., 6.38..., ...: rounding would pick other frames
        assert plan_indices(n_total, k, rule="round")[0] != expected


def test_dfb_is_the_default_profile_and_fast_is_named():
    dfb, fast = PreprocessConfig(), profile_config("fast")
    assert dfb.profile == "dfb" and dfb == profile_config("dfb")
    a = dfb.align
    assert (a.size, a.upsample, a.retry_upsample, a.detect_max_side, a.redetect, a.clip_boxes, a.detect_color) == \
        (256, 1, False, 0, True, False, True)
    assert dfb.fast is False  # DeepfakeBench reads every frame (preprocess.py:284-303)
    assert (fast.align.size, fast.align.detect_max_side, fast.fast, fast.index_rule) == (224, 640, True, "round")


def test_keypoints_are_deepfakebenchs_anatomical_points(shared):
    """The 81-point model's first 68 points are dlib's iBUG 68, so 37, 44, 30, 49, 55 name the same spots:
    checked on landmarks dlib's 68-point model puts on a real face."""
    assert KEYPOINTS["deepfakebench"] == ((37,), (44,), (30,), (49,), (55,))
    aligner = FaceAligner(AlignConfig(size=256))
    rgb = np.asarray(Image.open(shared / "datasets" / "FF" / "real" / "000" / "000.png").convert("RGB"))
    lm = aligner(rgb).landmarks[0]
    x, y = lm[:, 0], lm[:, 1]
    left_eye, right_eye = lm[36:42], lm[42:48]
    assert x[36] < x[37] < x[39] and y[37] < left_eye[:, 1].mean()  # upper lid of the image-left eye
    assert x[42] < x[44] < x[45] and y[44] < right_eye[:, 1].mean()  # upper lid of the image-right eye
    assert y[30] == max(y[27:31]) and x[31] < x[30] < x[35]  # nose tip: bottom of the bridge, above the nostrils
    assert x[48] < x[49] < x[51] and y[49] < y[48]  # upper outer lip, next to the left mouth corner (48)
    assert x[57] < x[55] < x[54] and y[55] > y[54]  # lower outer lip, next to the right mouth corner (54)


def test_dfb_redetects_on_the_aligned_crop_and_drops_lost_faces(shared, monkeypatch):
    canvas = Image.new("RGB", (320, 320))  # a frame that is not crop-sized
    canvas.paste(Image.open(shared / "datasets" / "CDFv2" / "Celeb-real" / "id0_0000" / "000.png").convert("RGB"),
                 (32, 32))
    rgb = np.asarray(canvas)
    aligner = FaceAligner(profile_config("dfb").align)
    res = aligner(rgb)
    assert len(res.crops) == 1 and res.crops[0].size == (256, 256)
    calls = []
    real = aligner._det

    def det(img, up):  # finds the face in the frame, nothing in the aligned 256 x 256 crop
        calls.append((img.shape, up))
        return real(img, up) if img.shape[:2] != (256, 256) else []

    monkeypatch.setattr(aligner, "_det", det)
    lost = aligner(rgb)
    assert lost.crops == [] and lost.n_faces == 1 and "not found again on the aligned crop" in lost.message
    assert calls[-1] == ((256, 256, 3), 1)  # on the RGB crop, one upsampling pass
    fast = FaceAligner(profile_config("fast").align)
    monkeypatch.setattr(fast, "_det", lambda img, up: calls.append("fast") or real(img, up))
    n = len(calls)
    assert len(fast(rgb).crops) == 1 and calls[n:] == ["fast"]  # the fast profile detects once


def test_dfb_preprocess_of_a_video(shared, tmp_path):
    video = shared / "videos" / "FF" / "real" / "004.mp4"
    rep = preprocess(video, tmp_path / "out", profile_config("dfb", n_frames=3, max_frames=100, workers=1),
                     progress=False)
    rec = rep.records[0]
    assert rec["status"] == "ok", rec
    names = sorted(p.name for p in (tmp_path / "out").rglob("*.png"))
    assert names == [f"{i:03d}.png" for i in np.linspace(0, 99, 3, dtype=int)]  # 000, 049, 099
    assert all(Image.open(p).size == (256, 256) for p in (tmp_path / "out").rglob("*.png"))


def test_template_is_deepfakebenchs_destination_points():
    """DeepfakeBench builds its target points step by step (preprocess.py:128-154): the ArcFace 112 px
    template, x shifted by 8, scaled to the output, moved by the 1.3x margin, then resized back."""
    from dfdet.data.faces import template
    res, scale = 256, 1.3
    dst = np.array([[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366],
                    [33.5493, 92.3655], [62.7299, 92.2041]])  # insightface's 112 x 112 template
    dst[:, 0] += 8.0
    dst = dst * res / 112
    margin = res * (scale - 1) / 2
    dst = (dst + margin) * res / (res + 2 * margin)
    np.testing.assert_allclose(template(res, scale), dst, atol=1e-9)
