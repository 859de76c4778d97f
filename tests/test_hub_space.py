"""A dashboard with network, against the folder-backed Hub: the authors' models imported as live rows,
dfdet checkpoints and run folders pulled from the repos its settings name, `dfdet push` of a run
folder, one progress line per download, and a failing repo that does not stop the others."""
from __future__ import annotations

import huggingface_hub
import pytest

from dfdet.cli import main
from dfdet.hub.space import GEND_REPO, PAPER_REPO
from dfdet.viz.session import AppConfig, Session
from test_app_helpers import make_synthetic_run
from test_hub_remote import hub, trained_checkpoint  # noqa: F401 - hub: the folder-backed Hub fixture


def test_push_of_a_run_folder_then_the_app_shows_it_with_pulled_checkpoints(tmp_path, tiny_clip, tiny_cfg, hub,
                                                                              monkeypatch):
    run = make_synthetic_run(tmp_path / "made" / "ff_eval")
    assert main(["push", str(run), "me/dfdet-run"]) == 0
    files = set(hub("x").list_repo_files("me/dfdet-run"))
    assert {"run.json", "predictions.csv", "metrics.json", "roc.json", "README.md",
            "embeddings/ln_norm.npz"} <= files
    ckpt = trained_checkpoint(tiny_clip, tmp_path / "made" / "ln_norm")
    assert main(["push", str(ckpt), "me/dfdet-ln-norm"]) == 0

    monkeypatch.setenv("DFDET_HUB_RUNS", "me/dfdet-run")  # the Space owner's setting, read from the environment
    cfg = AppConfig(runs=str(tmp_path / "runs"), checkpoints=str(tmp_path / "checkpoints"), backbone=tiny_cfg,
                    cache_dir=str(tmp_path / "cache"), demo="off", hub_checkpoints=["me/dfdet-ln-norm", "me/gone"])
    s = Session(cfg, load_models=False)
    s.startup.load_models(clip=tiny_clip)
    steps = s.startup.hub_steps
    assert steps == ["1 of 3: download checkpoint me/dfdet-ln-norm", "2 of 3: download checkpoint me/gone",
                     "3 of 3: download run me/dfdet-run"]
    assert s.bank.entries["dfdet-ln-norm"].status == "ready"  # the pulled checkpoint is a live row, named by its repo
    assert "dfdet-run" in s.runs and len(s.runs["dfdet-run"].predictions) == 40
    details = s.banner()
    assert "checkpoint me/gone skipped: cannot pull me/gone: repository not found" in details
    # a restart without network reuses what was pulled
    class Offline:
        def __init__(self, token=None):
            pass

        def __getattr__(self, name):
            raise OSError("network is unreachable")
    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    s2 = Session(cfg, clip=tiny_clip)
    assert s2.bank.entries["dfdet-ln-norm"].status == "ready" and "dfdet-run" in s2.runs


def test_the_authors_models_become_live_rows_named_as_theirs(tmp_path, hub, monkeypatch):
    from test_hub_synthetic import PaperModel, hyper_parameters, save_gend, save_paper_ckpt
    save_gend(hub.root / GEND_REPO)
    (hub.root / PAPER_REPO).mkdir(parents=True)
    save_paper_ckpt(hub.root / PAPER_REPO / "model.ckpt", PaperModel(True, True), hyper_parameters(True, True, True))
    from dfdet.hub.space import fetch_all
    got = fetch_all([], [], True, tmp_path / "checkpoints", tmp_path / "runs")
    assert [p.name for p in got.checkpoints] == ["paper_authors", "gend_authors"], got.notes
    from dfdet.backbone import load_imported_backbone
    from dfdet.inference import DetectorBank
    bank = DetectorBank(load_imported_backbone(got.checkpoints[1]), tmp_path / "checkpoints")
    labels = {e.label for e in bank.entries.values() if e.status == "ready"}
    assert "GenD (authors' model)" in labels
    again = fetch_all([], [], True, tmp_path / "checkpoints", tmp_path / "runs")  # reused: nothing downloaded
    assert again.checkpoints == got.checkpoints
    assert sum(c[0] == "snapshot_download" for c in hub.calls) == 2
