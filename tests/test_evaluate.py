"""Evaluation writes the documented run layout, and its numbers agree with the models and sklearn."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dfdet.artifacts import PRED_PREFIX, load_run, write_json
from dfdet.errors import DfdetError
from dfdet.evaluate import EvalConfig, evaluate, summary_table
from dfdet.inference import DetectorBank
from dfdet.methods import PAPER_METHODS


@pytest.fixture(scope="module")
def run_dir(tiny_checkpoints, dfdc_manifest, tiny_cfg, tmp_path_factory):
    manifest, root = dfdc_manifest
    cfg = EvalConfig(manifest=str(manifest), data_root=str(root), split="all", checkpoints=str(tiny_checkpoints),
                     methods=list(PAPER_METHODS), backbone=tiny_cfg, out=str(tmp_path_factory.mktemp("run") / "r"))
    return evaluate(cfg)


def test_run_layout_is_complete_and_reloadable(run_dir):
    r = load_run(run_dir)
    assert sorted(r.methods) == sorted(PAPER_METHODS)
    assert len(r.predictions) == 80 and r.info["demo"] is True
    assert {"path", "dataset", "source", "video", "label", "split"} <= set(r.predictions.columns)
    for m in PAPER_METHODS:
        z, norm = r.embeddings(m)
        assert z.dtype == np.float16 and z.shape == (80, 64)
        assert np.allclose(np.linalg.norm(z.astype(np.float32), axis=1), 1, atol=1e-2)
        assert (norm > 0).all()
        if m in ("ln_norm", "ln_norm_slerp"):
            assert np.allclose(norm, 1, atol=1e-4)  # their features already live on the sphere
    assert set(r.metrics["level"]) == {"frame", "video"}
    assert {(x["method"], x["level"]) for x in r.roc} == {(m, lv) for m in PAPER_METHODS for lv in ("frame", "video")}


def test_metrics_match_predictions(run_dir):
    r = load_run(run_dir)
    for m in PAPER_METHODS:
        row = r.metrics.query("method == @m and source == '*' and level == 'frame'").iloc[0]
        assert row["auroc"] == pytest.approx(roc_auc_score(r.predictions["label"], r.predictions[PRED_PREFIX + m]),
                                             abs=1e-9)
    table = summary_table(r.metrics)
    assert list(table.columns) == ["DFDC"] and len(table) == 4


def test_predictions_equal_the_bank_on_the_same_images(run_dir, tiny_clip, tiny_checkpoints, dfdc_manifest):
    from dfdet.data.dataset import FaceDataset
    r = load_run(run_dir)
    bank = DetectorBank(tiny_clip, tiny_checkpoints, list(PAPER_METHODS))
    ds = FaceDataset(r.predictions.head(5), dfdc_manifest[1], bank.clip.preprocess)
    x = torch.stack([ds[i][0] for i in range(5)])
    probs = bank.predict(x)
    for m in PAPER_METHODS:
        assert probs[m] == pytest.approx(r.predictions[PRED_PREFIX + m].head(5).to_numpy(), abs=1e-5)


def test_old_or_partial_runs_are_refused_clearly(run_dir, tmp_path):
    with pytest.raises(DfdetError, match="not a finished dfdet run"):
        load_run(tmp_path)
    import shutil
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    write_json(old / "run.json", {"layout_version": 0})
    with pytest.raises(DfdetError, match="another dfdet version"):
        load_run(old)


def test_no_ready_method_is_a_clear_error(dfdc_manifest, tiny_cfg, tmp_path):
    manifest, root = dfdc_manifest
    cfg = EvalConfig(manifest=str(manifest), data_root=str(root), checkpoints=str(tmp_path / "none"),
                     methods=["ln_norm"], backbone=tiny_cfg, out=str(tmp_path / "r"))
    with pytest.raises(DfdetError, match="no method is ready.*dfdet train --method ln_norm"):
        evaluate(cfg)
