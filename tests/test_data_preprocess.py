"""`dfdet preprocess` on the real videos in ../shared/videos (FaceForensics++ and DFDC).

Few frames per video (4) and the HOG detector keep this fast; one run is shared by the tests.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from dfdet.cli import main
from dfdet.data.faces import AlignConfig, FaceAligner
from dfdet.data.manifest import read_manifest
from dfdet.data.preprocess import RECORDS, REPORT, preprocess, profile_config

N_FRAMES = 4


def _snapshot(root):
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != REPORT}


@pytest.fixture(scope="module")
def run(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp("crops")
    cfg = profile_config("fast", n_frames=N_FRAMES, workers=2)  # the dfb profile is tested in test_recipe_preprocess
    report = preprocess(shared / "videos", out, cfg, progress=False)
    return out, cfg, report


def test_every_video_yields_crops(run, shared):
    out, cfg, report = run
    videos = sorted(p.relative_to(shared / "videos").with_suffix("").as_posix()
                    for p in (shared / "videos").rglob("*.mp4"))
    assert len(videos) == 8 and len(report.records) == 8
    for rec in report.records:
        assert rec["status"] == "ok", rec
        assert rec["frames"] == N_FRAMES and rec["crops"] >= 1
        assert rec["crops"] + len(rec["no_face_frames"]) == N_FRAMES  # no frame silently dropped
    for v in videos:
        crops = sorted((out / v).glob("*.png"))
        assert crops, v
        assert all(Image.open(c).size == (224, 224) for c in crops)
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporaries
    on_disk = json.loads((out / REPORT).read_text())
    assert [r["input"] for r in on_disk["inputs"]] == [f"{v}.mp4" for v in videos]


def test_frames_without_a_face_are_in_the_report(run):
    out, _, report = run
    for rec in report.records:
        names = {f.split("/")[-1].split(".")[0] for f in rec["files"]}
        for idx in rec["no_face_frames"]:
            assert f"{idx:03d}" not in names
            assert "no face in" in rec["message"]


def test_detector_finds_one_centred_face_in_each_crop(run):
    out, _, _ = run
    aligner = FaceAligner(AlignConfig())
    crops = sorted(out.rglob("*.png"))
    assert len(crops) >= 28
    for path in crops:
        boxes = aligner.detect(np.asarray(Image.open(path).convert("RGB")))
        assert len(boxes) == 1, path
        left, top, right, bottom = boxes[0]
        cx, cy = (left + right) / 2 / 224, (top + bottom) / 2 / 224
        assert abs(cx - 0.5) < 0.1 and abs(cy - 0.5) < 0.15, (path, boxes)
        assert 0.4 < (right - left) / 224 < 0.95


def test_crops_form_a_manifest(run):
    out, _, _ = run
    assert main(["manifest", str(out), "-o", str(out.parent / "pp.csv")]) == 0
    df = read_manifest(out.parent / "pp.csv", out)
    assert df["video"].nunique() == 8 and set(df["dataset"]) == {"FF", "DFDC"}
    assert df.set_index("video")["label"].to_dict()["FF/DF/519_515"] == 1


def test_second_run_changes_nothing(run, shared):
    out, cfg, _ = run
    before = _snapshot(out)
    again = preprocess(shared / "videos", out, cfg, progress=False)
    assert again.skipped == 8 and _snapshot(out) == before


def test_no_face_and_unreadable_inputs_get_report_entries(tmp_path):
    from test_data_video import write_video
    src = tmp_path / "in"
    (src / "X" / "fake").mkdir(parents=True)
    write_video(src / "X" / "fake" / "flat.mp4", 24, size=(160, 120))
    Image.new("RGB", (200, 150), (30, 160, 60)).save(src / "X" / "fake" / "plain.png")
    (src / "X" / "fake" / "broken.mp4").write_bytes(b"\x00" * 1000)
    out = tmp_path / "out"
    cfg = profile_config("fast", n_frames=3, workers=1, fast=False)  # exact decoding: planned indices exactly
    report = preprocess(src, out, cfg, progress=False)
    by_name = {r["input"]: r for r in report.records}
    flat, plain, broken = by_name["X/fake/flat.mp4"], by_name["X/fake/plain.png"], by_name["X/fake/broken.mp4"]
    assert flat["status"] == "no_face" and flat["no_face_frames"] == [0, 12, 23] and flat["crops"] == 0
    assert "no face found in any of the 3 sampled frame(s)" in flat["message"]
    assert plain["status"] == "no_face" and plain["kind"] == "image"
    assert broken["status"] == "error" and "cannot read video" in broken["message"]
    assert "without any face" in report.summary() and "error" in report.summary()
    assert not (out / RECORDS / "X" / "fake" / "broken.mp4.json").exists()  # errors are retried next time
    again = preprocess(src, out, cfg, progress=False)
    assert again.skipped == 2 and again.count("error") == 1


def test_image_input_and_changed_settings_redo(tmp_path, shared):
    src = tmp_path / "in"
    src.mkdir()
    face = shared / "datasets" / "CDFv2" / "Celeb-real" / "id0_0000" / "000.png"
    (src / "person.jpg").write_bytes(face.read_bytes())  # a PNG under a .jpg name still opens
    out = tmp_path / "out"
    preprocess(src, out, profile_config("fast", workers=1, prefix="Mine/real"), progress=False)
    crop = out / "Mine" / "real" / "person.png"
    assert Image.open(crop).size == (224, 224)
    r = preprocess(src, out, profile_config("fast", workers=1, prefix="Mine/real", ext="jpg", size=256),
                   progress=False)
    assert r.skipped == 0 and not crop.exists()  # the old crop of other settings is removed
    assert Image.open(out / "Mine" / "real" / "person.jpg").size == (256, 256)


def test_cli_preprocess(tmp_path, shared, capsys):
    out = tmp_path / "out"
    video = shared / "videos" / "FF" / "real" / "004.mp4"
    code = main(["preprocess", str(video), "-o", str(out), "--frames", "2", "--max-frames", "60",
                 "--prefix", "FF/real", "--workers", "1", "--no-progress",
                 "--manifest", str(tmp_path / "m.csv")])
    assert code == 0
    text = capsys.readouterr().out
    assert "1 inputs: 1 ok" in text and "1 long video(s)" in text and "wrote" in text
    names = sorted(p.name for p in (out / "FF" / "real" / "004").glob("*.png"))
    assert names == ["000.png", "059.png"]  # default profile dfb: exact decoding, linspace(0, 59, 2, dtype=int)
    assert Image.open(out / "FF" / "real" / "004" / "059.png").size == (256, 256)
    df = read_manifest(tmp_path / "m.csv", out)
    assert len(df) == 2 and set(df["source"]) == {"real"} and set(df["label"]) == {0}
    assert main(["preprocess", str(tmp_path / "none"), "-o", str(out)]) == 2
    assert "input not found" in capsys.readouterr().err
    assert main(["preprocess", str(tmp_path), "-o", str(tmp_path / "inside")]) == 2
    assert "must not be inside" in capsys.readouterr().err


def test_multi_face_frames_are_reported(tmp_path, shared):
    small = Image.open(shared / "datasets" / "FF" / "real" / "000" / "000.png").convert("RGB").resize((200, 200))
    big = Image.open(shared / "datasets" / "CDFv2" / "Celeb-real" / "id0_0000" / "000.png").convert("RGB")
    canvas = Image.new("RGB", (480, 260))
    canvas.paste(small, (0, 30))
    canvas.paste(big, (220, 0))
    (tmp_path / "in").mkdir()
    canvas.save(tmp_path / "in" / "two.png")
    report = preprocess(tmp_path / "in", tmp_path / "out", profile_config("fast", workers=1), progress=False)
    rec = report.records[0]
    assert rec["status"] == "ok" and rec["multi_face_frames"] == {"0": 2} and rec["crops"] == 1
    assert "1 frame(s) with several faces; kept the largest" in rec["message"]
    assert "1 frames with several faces" in report.summary()
