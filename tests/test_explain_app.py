"""The dashboard's "Why and how sure" panel: its service on a tiny bank, and the page builds with it."""
from __future__ import annotations

import pandas as pd
import pytest

from dfdet.errors import DataError


@pytest.fixture(scope="module")
def session(tmp_path_factory, shared, tiny_cfg):
    from dfdet.artifacts import write_run
    from dfdet.backbone import load_clip
    from dfdet.data.manifest import scan_folder
    from dfdet.viz.session import AppConfig, Session
    from test_app_helpers import make_checkpoints
    tmp = tmp_path_factory.mktemp("xp")
    ckpt = make_checkpoints(load_clip(tiny_cfg), tmp / "ck", methods=("linear_probe", "ln_tuning"))
    df = scan_folder(shared / "datasets")
    df = pd.concat([df[(df["dataset"] == "DFDC") & (df["label"] == c)].head(2) for c in (0, 1)])
    preds = df[["path", "dataset", "source", "video", "label"]].assign(split="test", p_fake__ln_tuning=0.5)
    write_run(tmp / "runs" / "r", {"data_root": str(shared / "datasets"), "demo": True}, preds, [], [], {})
    cfg = AppConfig(runs=str(tmp / "runs"), checkpoints=str(ckpt), methods=["linear_probe", "ln_tuning"],
                    backbone=tiny_cfg, cache_dir=str(tmp / "cache"), demo="off", warm_up=False)
    s = Session(cfg, clip=load_clip(tiny_cfg))
    s.store.reload_runs()
    return s, tmp / "runs" / "r"


def test_maps_of_a_run_row_are_cached_in_the_run_and_say_what_they_are(session):
    s, run = session
    v = s.explain.maps("run:r", 2, None, "chefer", ("ln_tuning", "linear_probe"))
    assert len(v.items) == 3 and "minus" in v.items[-1][1]
    assert "row 2 of run r" in v.note and "Chefer" in v.note
    assert len(list((run / "explain" / "chefer").rglob("2-*.npy"))) == 2
    assert "meaningless" in v.curves.layout.title.text
    with pytest.raises(DataError, match="unknown map kind"):
        s.explain.maps("run:r", 2, None, "nonsense")
    with pytest.raises(DataError, match="pick a face"):
        s.explain.maps("run:r", None)


def test_probe_flags_and_plots(session):
    s, _ = session
    v = s.explain.probe("run:r", 0)
    assert "Robustness of row 0" in v.note and ("unstable" in v.note or "stable" in v.note)
    assert {t.name.split(" (")[0] for t in v.figure.data if t.name} == {"Linear probe", "LN-tuning"}


def test_page_builds_with_the_panel_and_its_endpoints(session):
    from test_app_helpers import load_app_module
    s, _ = session
    app = load_app_module().build_app(s)
    names = {d.get("api_name") for d in app.config["dependencies"]}
    assert {"explain_maps", "robustness_probe", "_ui_maps", "_ui_probe", "calibration", "_ui_hs_map"} <= names
    ids = {c.get("props", {}).get("elem_id") for c in app.config["components"]}
    assert {"xp-panel", "xp-kind", "xp-maps", "xp-curves", "xp-probe", "cal-panel", "cal-plot", "er-maps",
            "hs-map"} <= ids


def test_calibration_view_reads_threshold_drift_from_the_run(session):
    import numpy as np
    from dfdet.artifacts import write_run
    from dfdet.calibration import add_operating_metrics, calibrate
    from dfdet.metrics import metric_table
    s, run = session
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(200)].astype(int)
    p0 = np.clip(np.r_[rng.normal(0.4, 0.1, 200), rng.normal(0.6, 0.1, 200)], 0, 1)
    preds = pd.DataFrame({"path": [f"{i}.png" for i in range(800)], "dataset": ["FF"] * 400 + ["CDF"] * 400,
                          "video": [f"v{i}" for i in range(800)], "label": np.r_[y, y], "split": "test",
                          "p_fake__ln_tuning": np.r_[p0, np.clip(p0 + 0.2, 0, 1)]})
    preds["source"] = np.where(preds["label"] == 1, "fake", "real")
    records, rocs = metric_table(preds, ["ln_tuning"])
    add_operating_metrics(records, rocs, preds, {"ln_tuning": calibrate(y, p0)})
    write_run(run.parent / "cal", {"demo": True, "methods": {}}, preds, records, rocs, {})
    s.store.reload_runs()
    v = s.explain.calibration("cal", ["CDF", "FF"], "frame")
    t = v.table.set_index("dataset")
    assert abs(t.loc["CDF", "drift"] - 0.2) < 0.05 and abs(t.loc["FF", "drift"]) < 0.05
    assert "Reliability on CDF" in v.note and "meaningless" in v.figure.layout.title.text
    assert any("ECE" in (tr.name or "") for tr in v.figure.data)
    with pytest.raises(DataError, match="no metrics"):
        s.explain.calibration("r", None)


def test_errors_mistakes_with_their_map_are_cached(session):
    s, run = session
    face, _ = s.store.face("run:r", 1)
    over = s.explain.with_map("r", "ln_tuning", 1, face)
    assert over.size == (224, 224) and list(over.getdata()) != list(face.resize((224, 224)).getdata())
    assert len(list((run / "explain" / "gradcam" / "ln_tuning").glob("1-*.npy"))) == 1
    assert s.explain.with_map("r", "zeroshot_1desc", 1, face) is face  # no patch-grid map: the face as it is


def test_probe_of_an_uploaded_photo_realigns_its_looser_crops(session, tmp_path, shared):
    import numpy as np
    from PIL import Image
    s, _ = session
    face = Image.open(next((shared / "datasets" / "DFDC" / "real").glob("*/*"))).convert("RGB")
    canvas = Image.new("RGB", (3 * face.size[0], 3 * face.size[1]), (128, 120, 110))
    canvas.paste(face, face.size)
    canvas.save(tmp_path / "photo.png")
    v = s.explain.probe(None, None, str(tmp_path / "photo.png"))
    assert "uploaded photo" in v.note and "re-aligned from the photo" in v.note
    v = s.explain.probe("run:r", 0)
    assert "black border" in v.note  # a run row is a crop: no frame to re-align from
    assert np.isfinite([y for t in v.figure.data for y in (t.y or []) if y is not None]).all()


def test_errors_threshold_starts_at_the_methods_validation_threshold(session, shared):
    from dfdet.artifacts import load_run, write_run
    from ui.errors import threshold_of
    s, run = session
    r = load_run(run)
    rec = {"method": "ln_tuning", "dataset": "DFDC", "level": "frame", "source": "*", "n": 4, "auroc": 0.5,
           "threshold": 0.3712, "threshold_rule": "eer"}
    write_run(run.parent / "cal", r.info, r.predictions, [rec], [], {})
    s.store.reload_runs()
    assert s.errors.validation_threshold("cal", "ln_tuning") == pytest.approx(0.3712)
    assert s.errors.validation_threshold("cal", "linear_probe") is None  # trained before calibration existed
    assert threshold_of(s, "cal", "ln_tuning") == {
        "value": 0.37, "label": "Threshold on p(fake) (the method's validation threshold: 0.37)"}
    assert threshold_of(s, "cal", "linear_probe")["value"] == 0.5
    assert "no validation threshold" in threshold_of(s, "r", "ln_tuning")["label"]
