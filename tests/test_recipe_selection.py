"""§2-§5 of the recipe: the selection rule, the two APs, hypersphere losses after SLERP, per-source rows
and video identity. Each test fails on the behaviour before issue #12.

References (yermandy/deepfake-detection): run.py:53 (monitor="val/mAP_video"), src/metrics.py:60 (macro AP),
src/model/dfdet.py:100-124 (videos = frame folders), src/model/dfdet.py:314-323 and src/heads/head.py:27
(losses on the head's features, after SLERP); yermandy/GenD src/exp/wacv_rebuttal.py:46 (GenD weights).
"""
import argparse
import json
import types

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

from dfdet.checkpoint import read_meta
from dfdet.config import BackboneConfig, TrainConfig
from dfdet.errors import DataError
from dfdet.methods import get_method
from dfdet.metrics import ONE_CLASS, binary_metrics, metric_table, video_level
from dfdet.slerp import alignment_loss, slerp_augment, uniformity_loss
from dfdet.train import head_loss, train, val_metrics


def test_map_macro_is_the_references_macro_ap_and_ap_fake_the_fake_classs():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) * 0.7 + y * 0.2, 2)
    m = binary_metrics(y, s)
    probs = np.stack([1 - s, s], 1)  # the reference's softmax columns (real, fake)
    assert m["map_macro"] == pytest.approx(skm.average_precision_score(np.eye(2)[y], probs, average="macro"))
    assert m["ap_fake"] == pytest.approx(skm.average_precision_score(y, s))
    assert "ap" not in m and m["map_macro"] != pytest.approx(m["ap_fake"])


def test_validation_reports_video_metrics_over_frame_folders():
    val = pd.DataFrame({"dataset": ["A"] * 4 + ["B"] * 4, "source": ["real"] * 4 + ["fake"] * 4,
                        "video": ["v1", "v1", "v2", "v2", "v1", "v1", "v2", "v2"]})
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.9, 0.2, 0.2, 0.6, 0.6, 0.3, 0.3])
    m = val_metrics(y, p, val)
    assert m["video_n"] == 4  # A/real/v1 and B/fake/v1 stay apart
    v = video_level(val.assign(label=y, p=p), "p")
    assert m["video_map_macro"] == pytest.approx(binary_metrics(v["label"].to_numpy(), v["p"].to_numpy())["map_macro"])
    assert m["video_map_macro"] != pytest.approx(m["map_macro"])


def _cfg(dfdc_manifest, out, **kw):
    manifest, root = dfdc_manifest
    base = dict(method="ln_norm_slerp", backbone=BackboneConfig(model="dfdet-tiny-vit", pretrained=None),
                manifest=str(manifest), data_root=str(root), batch_size=16, epochs=3, lr=3e-3, min_lr=1e-3,
                out=str(out), device="cpu", augment="none")
    base.update(kw)
    return TrainConfig(**base)


def test_the_papers_selection_rule_is_the_default_and_named_in_the_checkpoint(dfdc_manifest, tmp_path):
    assert TrainConfig().select_metric == "video_map_macro"
    out = train(_cfg(dfdc_manifest, tmp_path / "m", method="linear_probe", lr=5e-2, min_lr=5e-2, epochs=2))
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    scores = [r["val"]["video_map_macro"] for r in log]
    meta = read_meta(out)
    assert meta["best_epoch"] == int(np.argmax(scores)) + 1
    assert "video_map_macro" in meta["recipe"]["selection"] and "'val'" in meta["recipe"]["selection"]
    with pytest.raises(DataError, match="unknown select_metric"):
        train(_cfg(dfdc_manifest, tmp_path / "x", select_metric="ap"))


def test_hypersphere_losses_see_the_features_after_slerp():
    torch.manual_seed(0)
    spec = get_method("ln_norm_slerp")
    model = types.SimpleNamespace(spec=spec, classify=torch.nn.Linear(8, 2))
    feats = torch.nn.functional.normalize(torch.randn(12, 8), dim=-1)
    y = torch.tensor([0, 1] * 6)
    cfg = TrainConfig(align_weight=0.7, uniform_weight=0.3)
    got = head_loss(model, feats, y, cfg, torch.Generator().manual_seed(5))
    z = slerp_augment(feats, y, cfg.slerp_t, torch.Generator().manual_seed(5))
    ce = torch.nn.functional.cross_entropy(model.classify(z), y)
    after = ce + 0.7 * alignment_loss(z, y) + 0.3 * uniformity_loss(z)
    before = ce + 0.7 * alignment_loss(feats, y) + 0.3 * uniformity_loss(feats)
    assert got.item() == pytest.approx(after.item(), abs=1e-6)
    assert abs(after.item() - before.item()) > 1e-3  # the two behaviours are told apart


def test_gend_preset_sets_its_weights_and_set_still_overrides():
    from dfdet.commands.train import add_arguments, build_config
    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg, _ = build_config(p.parse_args(["--method", "ln_norm", "--preset", "gend"]))
    assert (cfg.uniform_weight, cfg.align_weight) == (0.5, 0.1)  # GenD src/exp/wacv_rebuttal.py:46
    cfg, _ = build_config(p.parse_args(["--method", "ln_norm", "--preset", "gend", "--set", "align_weight=0"]))
    assert (cfg.uniform_weight, cfg.align_weight) == (0.5, 0.0)
    with pytest.raises(DataError, match="unknown preset"):
        build_config(p.parse_args(["--method", "ln_norm", "--preset", "nope"]))


def _preds():
    # dataset D: two real videos and two fake sources; dataset G: fakes only
    rows = [("D", "real", "r1", 0, 0.2), ("D", "real", "r2", 0, 0.7), ("D", "X", "x1", 1, 0.6),
            ("D", "X", "x2", 1, 0.9), ("D", "Y", "y1", 1, 0.1), ("D", "Y", "y2", 1, 0.8),
            ("G", "gan", "000", 1, 0.3), ("G", "gan", "001", 1, 0.4)]
    df = pd.DataFrame(rows, columns=["dataset", "source", "video", "label", "p_fake__m"])
    return df.assign(path=[f"{d}/{s}/{v}/0.png" for d, s, v, *_ in rows])


def test_a_fake_source_is_scored_with_the_datasets_reals():
    records, _ = metric_table(_preds(), ["m"])
    rows = {(r["dataset"], r["source"], r["level"]): r for r in records}
    x = rows[("D", "X", "frame")]
    assert x["n"] == 4 and x["n_fake"] == 2  # the two reals + X's two fakes
    assert x["ap_fake"] == pytest.approx(skm.average_precision_score([0, 0, 1, 1], [0.2, 0.7, 0.6, 0.9]))
    assert x["auroc"] == pytest.approx(skm.roc_auc_score([0, 0, 1, 1], [0.2, 0.7, 0.6, 0.9]))
    assert x["ap_fake"] != 1.0 and rows[("D", "Y", "frame")]["auroc"] == pytest.approx(0.5)
    assert ("D", "real", "frame") not in rows


def test_a_single_class_group_gives_no_number_that_looks_like_a_result():
    records, _ = metric_table(_preds(), ["m"])
    for r in records:
        if r["dataset"] == "G":
            assert r.get("note") == ONE_CLASS
            assert all(r[k] is None for k in ("auroc", "ap_fake", "map_macro", "eer", "accuracy"))
        else:
            assert "note" not in r and r["ap_fake"] is not None


def test_videos_are_grouped_by_dataset_source_and_name():
    df = pd.DataFrame({"dataset": ["FF", "FF", "CDF", "CDF", "CDF", "CDF"],
                       "source": ["real", "real", "real", "real", "synth", "synth"],
                       "video": ["000", "000", "000", "000", "000", "000"],
                       "label": [0, 0, 0, 0, 1, 1], "s": [0.1, 0.3, 0.5, 0.7, 0.8, 1.0]})
    v = video_level(df, "s").set_index(["dataset", "source", "video"])
    assert len(v) == 3
    assert v.loc[("FF", "real", "000"), "s"] == pytest.approx(0.2)
    assert v.loc[("CDF", "synth", "000"), "label"] == 1 and v.loc[("CDF", "real", "000"), "label"] == 0


def test_slerp_partners_are_a_permutation_within_each_class():
    """The reference pairs each class with torch.randperm of itself (src/model/dfdet.py:291-294)."""
    from dfdet.slerp import same_class_partners
    labels = torch.tensor([0, 1, 0, 0, 1, 0, 1, 1, 0, 0] * 4)
    for seed in range(5):
        p = same_class_partners(labels, torch.Generator().manual_seed(seed))
        for c in (0, 1):
            members = (labels == c).nonzero().flatten()
            assert sorted(p[members].tolist()) == members.tolist()  # every feature is used once as a partner
