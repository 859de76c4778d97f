"""The robustness probe: fixed perturbations, flips at each method's own threshold, a CLI summary."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dfdet.robustness import PERTURBATIONS, flip_summary, perturbed, probe_faces, probe_figure, unstable, zoom_out


def test_perturbations_are_the_documented_set_and_change_the_image(shared):
    face = Image.open(next((shared / "datasets" / "DFDC" / "real").glob("*/*"))).convert("RGB")
    views = perturbed(face)
    assert list(views) == ["original", "jpeg90", "jpeg70", "jpeg50", "jpeg30", "down0.5", "down0.25", "blur2",
                           "crop1.1", "crop1.5"]
    base = np.asarray(face, dtype=float)
    err = {k: np.abs(np.asarray(v, dtype=float) - base).mean() for k, v in views.items()}
    assert err["original"] == 0 and all(v.size == face.size for v in views.values())
    assert err["jpeg90"] < err["jpeg70"] < err["jpeg30"] and err["down0.5"] < err["down0.25"]
    z = np.asarray(zoom_out(face, 1.5))
    assert z[:10].max() == 0 and z[face.size[1] // 2, face.size[0] // 2].max() > 0  # black border, face inside
    assert [p.strength for p in PERTURBATIONS if p.family == "jpeg"] == [90, 70, 50, 30]


def test_flips_are_counted_at_each_method_threshold(tiny_clip, tmp_path, shared):
    from dfdet.calibration import Calibration
    from dfdet.checkpoint import META_FILE
    from dfdet.inference import DetectorBank
    from test_app_helpers import make_checkpoints
    ckpt = make_checkpoints(tiny_clip, tmp_path / "ck", methods=("linear_probe", "ln_tuning"))
    face = Image.open(next((shared / "datasets" / "DFDC" / "fake").glob("*/*"))).convert("RGB")
    bank = DetectorBank(tiny_clip, ckpt, ["linear_probe", "ln_tuning"])
    t = probe_faces(bank, [face])
    assert len(t) == 2 * (1 + len(PERTURBATIONS)) and set(t["threshold"]) == {0.5}
    p = t[t["method"] == "ln_tuning"].set_index("perturbation")["p_fake"]
    # put ln_tuning's threshold between the original score and the JPEG-30 score: that verdict must flip
    thr = float((p["original"] + p["jpeg30"]) / 2)
    meta_path = ckpt / "ln_tuning" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["calibration"] = Calibration(rule="eer", threshold=thr, temperature=1.0, band=(0.0, 0.0), alpha=0.1).to_meta()
    meta_path.write_text(json.dumps(meta))
    t2 = probe_faces(DetectorBank(tiny_clip, ckpt, ["linear_probe", "ln_tuning"]), [face])
    ln = t2[t2["method"] == "ln_tuning"].set_index("perturbation")
    assert ln.loc["jpeg30", "flipped"] and not ln.loc["original", "flipped"]
    assert (ln["flipped"] == ((ln["p_fake"] >= thr) != (ln.loc["original", "p_fake"] >= thr))).all()
    assert unstable(t2)[(0, "ln_tuning")]
    t2["dataset"] = "DFDC"
    s = flip_summary(t2).set_index("method")
    assert s.loc["ln_tuning", "jpeg30"] == 1.0 and s.loc["ln_tuning", "any"] == 1.0 and s.loc["ln_tuning", "faces"] == 1
    fig = probe_figure(t2, demo=True)
    assert "unstable" in " ".join(tr.name or "" for tr in fig.data) and "meaningless" in fig.layout.title.text


def test_cli_robustness_over_a_run(tiny_clip, tmp_path, shared, capsys):
    from dfdet.cli import main
    from test_app_helpers import make_checkpoints
    ckpt = make_checkpoints(tiny_clip, tmp_path / "ck", methods=("ln_tuning",))
    from dfdet.data.manifest import scan_folder
    df = scan_folder(shared / "datasets")
    df = pd.concat([df[(df["dataset"] == "DFDC") & (df["label"] == c)].head(2) for c in (0, 1)])
    run = tmp_path / "run"
    from dfdet.artifacts import write_run
    preds = df[["path", "dataset", "source", "video", "label"]].assign(split="test", **{"p_fake__ln_tuning": 0.5})
    write_run(run, {"data_root": str(shared / "datasets"), "demo": True}, preds, [], [], {})
    rc = main(["robustness", str(run), "--checkpoints", str(ckpt), "--model", "dfdet-tiny-vit", "--pretrained",
               "none", "--device", "cpu", "--per-dataset", "4", "--methods", "ln_tuning"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "flips" in out and "meaningless" in out
    summary = pd.read_csv(run / "robustness" / "summary.csv")
    assert list(summary["method"]) == ["ln_tuning"] and list(summary["faces"]) == [4]
    assert {"jpeg30", "crop1.5", "any"} <= set(summary.columns)
    probe = pd.read_csv(run / "robustness" / "probe.csv")
    assert len(probe) == len(summary) * 4 * (1 + len(PERTURBATIONS))


@pytest.fixture(scope="module")
def photo(shared) -> np.ndarray:
    """A real face in the middle of a larger photo with a textured, never-black background."""
    face = Image.open(next((shared / "datasets" / "DFDC" / "real").glob("*/*"))).convert("RGB")
    rng = np.random.default_rng(0)
    canvas = rng.integers(90, 170, (3 * face.size[1], 3 * face.size[0], 3), dtype=np.uint8)
    canvas[face.size[1]:2 * face.size[1], face.size[0]:2 * face.size[0]] = np.asarray(face)
    return canvas


def test_looser_crops_are_realigned_from_the_original_frame(photo):
    from dfdet.data.faces import FaceAligner
    from dfdet.robustness import Frame
    res = FaceAligner()(photo)
    assert res.crops, res.message
    face = res.crops[0]
    framed = perturbed(face, Frame(photo, res.landmarks[0]))
    bare = perturbed(face)
    for key in ("crop1.1", "crop1.5"):
        assert framed[key].size == face.size
        edge = np.asarray(framed[key])[:8].astype(float)
        assert edge.mean() > 60  # real background from the photo ...
        assert np.asarray(bare[key])[:8].max() == 0  # ... where the crop alone can only add a black border
    # the looser template shows more of the photo: the face shrinks towards the centre
    ink = {k: (np.abs(np.asarray(framed[k], dtype=float) - np.asarray(face, dtype=float)).mean()) for k in ("crop1.1", "crop1.5")}
    assert 0 < ink["crop1.1"] < ink["crop1.5"]
