"""Missing pieces: no CLIP weights and no network, a checkpoint for another backbone, a method without a
checkpoint, and artifacts from an older dfdet. Each gets a precise CLI message and a visible note in the
app, and everything else keeps working.
"""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from dfdet.backbone import load_clip
from dfdet.config import BackboneConfig
from dfdet.methods import get_method
from test_app_helpers import make_checkpoints, make_synthetic_run
from test_reliability_helpers import TINY_ARGS, run_cli, serve

WORKING = ["linear_probe", "ln_norm_slerp"]  # the methods whose checkpoints are fine in the broken folder


@pytest.fixture(autouse=True)
def _gradio_tmp():
    yield


@pytest.fixture(scope="module")
def pieces(tmp_path_factory, tiny_cfg):
    """A checkpoints folder with one method for another backbone, one missing, one of an older format; and
    a runs folder with a good run, a run from an older layout and a damaged one."""
    tmp = tmp_path_factory.mktemp("missing")
    clip = load_clip(tiny_cfg)
    ck = make_checkpoints(clip, tmp / "checkpoints", methods=["linear_probe", "ln_norm", "ln_norm_slerp"])
    meta = json.loads((ck / "ln_norm" / "dfdet.json").read_text())
    meta["backbone"] = {"model": "ViT-L-14", "weights": "openai"}  # trained on the real ViT-L/14
    (ck / "ln_norm" / "dfdet.json").write_text(json.dumps(meta))
    shutil.copytree(ck / "ln_norm_slerp", ck / "old_format")
    old = json.loads((ck / "old_format" / "dfdet.json").read_text())
    old.update({"format": "dfdet-checkpoint/0", "code_version": "0.0.3"})
    (ck / "old_format" / "dfdet.json").write_text(json.dumps(old))
    runs = tmp / "runs"
    make_synthetic_run(runs / "good")
    make_synthetic_run(runs / "from_older_version")
    info = json.loads((runs / "from_older_version" / "run.json").read_text())
    info["layout_version"] = 0
    (runs / "from_older_version" / "run.json").write_text(json.dumps(info))
    make_synthetic_run(runs / "damaged")
    (runs / "damaged" / "run.json").write_text('{"layout_version": 1, "backbone": ')
    return {"tmp": tmp, "ck": ck, "runs": runs}


@pytest.fixture(scope="module")
def live(pieces, tiny_cfg):
    """The app on the tiny backbone over those folders."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(pieces["tmp"] / "gradio_live"))
    served = serve(pieces["tmp"] / "live", tiny_cfg, runs=pieces["runs"], checkpoints=pieces["ck"])
    yield served
    served.close()
    mp.undo()


@pytest.fixture(scope="module")
def no_weights(pieces):
    """The app asked for real CLIP weights (ViT-B-32 openai) on a machine that has none and no network."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(pieces["tmp"] / "gradio_none"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.delenv("DFDET_CLIP_WEIGHTS", raising=False)
    import test_reliability_helpers as h

    from dfdet.viz.session import AppConfig, Session
    from test_app_helpers import load_app_module
    cfg = AppConfig(runs=str(pieces["runs"]), checkpoints=str(pieces["ck"]), demo="off", warm_up=False,
                    backbone=BackboneConfig(model="ViT-B-32", pretrained="openai"),
                    cache_dir=str(pieces["tmp"] / "cache_none"))
    session = Session(cfg)  # tries to load the weights for real: offline, none on disk
    mod = load_app_module()
    app = mod.build_app(session)
    mod.launch(app, prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    from gradio_client import Client
    served = h.Served(app, Client(app.local_url, verbose=False), session, mod, pieces["ck"],
                      pieces["tmp"] / "gradio_none")
    yield served
    served.close()
    mp.undo()


LABEL = {m: get_method(m).label for m in ("linear_probe", "ln_tuning", "ln_norm", "ln_norm_slerp")}


# ---------------------------------------------------------------------------------------------- no weights
def test_cli_without_weights_or_network_says_what_is_missing_and_how_to_get_it(pieces, shared, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DFDET_CLIP_WEIGHTS", raising=False)
    face = sorted((shared / "datasets" / "FF" / "real").glob("*/*.png"))[0]
    res = run_cli(["predict", str(face), "--checkpoints", str(pieces["ck"]), "--model", "ViT-B-32",
                   "--pretrained", "openai", "--device", "cpu"], seconds=120)
    assert res.rc == 2 and not res.crashed and "Traceback" not in res.text
    err = res.err
    assert "CLIP weights for ViT-B-32 (pretrained='openai') are not on this machine" in err
    assert "--clip-weights PATH" in err and "DFDET_CLIP_WEIGHTS" in err and "huggingface-cli download" in err


def test_app_without_weights_starts_says_so_and_keeps_the_run_views(no_weights):
    c = no_weights.client
    banner = c.predict(api_name="/status")[0]
    assert "CLIP weights are not available" in banner and "ViT-B-32" in banner
    assert "--clip-weights" in banner and "DFDET_CLIP_WEIGHTS" in banner
    with pytest.raises(Exception) as err:  # a model view says exactly what is missing...
        c.predict("samples", 0, api_name="/predict_sample")
    assert "no model is loaded" in str(err.value) and "--clip-weights" in str(err.value)
    fig, metrics, conf = c.predict("good", ["linear_probe", "ln_norm"], ["DS0", "DS1"], "frame", 0.5, api_name="/roc")
    assert len(metrics["data"]) == 4  # ...while the run views work from the artifacts on disk
    fp, fn, dis, note = c.predict("good", "ln_norm", "all", 0.5, api_name="/errors")
    assert fp and fn


# ---------------------------------------------------------------------------------------------- checkpoints
def test_cli_names_each_unusable_checkpoint_and_scores_with_the_rest(pieces, shared):
    face = sorted((shared / "datasets" / "FF" / "real").glob("*/*.png"))[0]
    res = run_cli(["predict", str(face), "--checkpoints", str(pieces["ck"]), "--methods", "linear_probe",
                   "ln_tuning", "ln_norm", "ln_norm_slerp", *TINY_ARGS])
    assert res.rc == 0 and not res.crashed and "Traceback" not in res.text
    out = res.out
    assert "ln_norm: checkpoint" in out and "was trained on backbone ViT-L-14/openai" in out
    assert "but the loaded backbone is dfdet-tiny-vit/random-init-seed0" in out and "--model ViT-L-14" in out
    assert "ln_tuning: not trained yet: dfdet train --method ln_tuning" in out
    assert "checkpoint format 'dfdet-checkpoint/0', written by dfdet 0.0.3" in out and "Re-train it" in out
    table = [line for line in out.splitlines() if line.startswith(face.name)]
    assert {LABEL[m] for m in WORKING} <= {lab for line in table for lab in LABEL.values() if lab in line}
    assert not any(LABEL["ln_tuning"] in line for line in table)  # no made-up score for a missing method


def test_cli_evaluate_skips_what_it_cannot_use_and_writes_the_rest(pieces, shared, tmp_path):
    from dfdet.data.manifest import scan_folder, write_manifest
    df = scan_folder(shared / "datasets")
    df = df[df["dataset"] == "FF"].copy()
    df["split"] = "test"
    manifest = write_manifest(df, tmp_path / "ff.csv")
    res = run_cli(["evaluate", "--manifest", str(manifest), "--data-root", str(shared / "datasets"),
                   "--checkpoints", str(pieces["ck"]), "--methods", "linear_probe", "ln_tuning", "ln_norm",
                   "ln_norm_slerp", "--out", str(tmp_path / "run"), *TINY_ARGS])
    assert res.rc == 0 and not res.crashed, res.text[-2000:]
    assert "skipped ln_norm:" in res.out and "skipped ln_tuning:" in res.out
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert {c[len("p_fake__"):] for c in preds.columns if c.startswith("p_fake__")} >= set(WORKING)
    assert "p_fake__ln_norm" not in preds.columns and "p_fake__ln_tuning" not in preds.columns


def test_app_notes_each_unusable_checkpoint_and_scores_with_the_rest(live):
    c = live.client
    banner = c.predict(api_name="/status")[0]
    assert "**Not available:**" in banner
    assert f"- {LABEL['ln_tuning']}: not trained yet: dfdet train --method ln_tuning" in banner
    assert f"- {LABEL['ln_norm']}: checkpoint" in banner and "trained on backbone ViT-L-14/openai" in banner
    assert "old_format" in banner and "dfdet-checkpoint/0" in banner
    out = c.predict("samples", 0, api_name="/predict_sample")
    rows = {r[0]: r for r in out[2]["data"]}
    for m in WORKING:
        assert rows[LABEL[m]][2] is not None and rows[LABEL[m]][5] == "ready"
    for m, why in (("ln_tuning", "not trained yet"), ("ln_norm", "trained on backbone ViT-L-14/openai")):
        assert rows[LABEL[m]][2] is None and why in rows[LABEL[m]][5]  # a visible note, never a made-up score


# ---------------------------------------------------------------------------------------------- old artifacts
def test_app_notes_run_folders_from_an_older_version_and_shows_the_rest(live, pieces):
    c = live.client
    banner = c.predict(api_name="/status")[0]
    assert "**Run folders not shown:**" in banner
    assert "from_older_version" in banner and "written by another dfdet version (layout 0" in banner
    assert "re-run `dfdet evaluate`" in banner
    assert "damaged" in banner and "unreadable (JSONDecodeError" in banner
    assert set(live.session.runs) == {"good"}
    fig, metrics, conf = c.predict("good", ["linear_probe", "ln_norm"], ["DS0"], "frame", 0.5, api_name="/roc")
    assert len(metrics["data"]) == 2
    with pytest.raises(Exception, match="unknown run 'from_older_version'; runs: good"):  # the service checks names
        c.predict("from_older_version", ["ln_norm"], ["DS0"], "frame", 0.5, api_name="/roc")
