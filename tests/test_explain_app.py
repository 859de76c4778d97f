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
    assert {"explain_maps", "robustness_probe", "_ui_maps", "_ui_probe"} <= names
    ids = {c.get("props", {}).get("elem_id") for c in app.config["components"]}
    assert {"xp-panel", "xp-kind", "xp-maps", "xp-curves", "xp-probe"} <= ids
