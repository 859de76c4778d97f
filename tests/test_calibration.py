"""Calibrated thresholds: fitted on validation only, reported honestly on test sets."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dfdet.calibration import (Calibration, CalibrationConfig, apply_temperature, calibrate, choose_threshold,
                               conformal_band, fit_temperature, operating_metrics, reliability, tpr_at_fpr, verdict)


def test_ece_and_reliability_bins_equal_a_hand_computation():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.12, 0.95, 0.55, 0.58])
    r = reliability(y, p, bins=10)
    # bins: [0,.1): 0.05 (real) | [.1,.2): 0.15 (real), 0.12 (fake) | [.5,.6): 0.55 (fake), 0.58 (real) | [.9,1]: 0.95
    assert r["count"] == [1, 2, 0, 0, 0, 2, 0, 0, 0, 1]
    assert r["mean_p"][1] == pytest.approx(0.135) and r["frac_fake"][1] == pytest.approx(0.5)
    assert r["mean_p"][2] is None and r["frac_fake"][9] == 1.0
    hand = (1 * abs(0.05 - 0) + 2 * abs(0.135 - 0.5) + 2 * abs(0.565 - 0.5) + 1 * abs(0.95 - 1)) / 6
    assert r["ece"] == pytest.approx(hand, abs=1e-6)
    assert reliability([1], [1.0], bins=10)["count"][-1] == 1  # p = 1 falls in the last bin


def _scores(n: int, shift: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes: reals ~ N(0.4, 0.1), fakes ~ N(0.6, 0.1), all shifted by `shift`."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n), np.ones(n)].astype(int)
    p = np.r_[rng.normal(0.4, 0.1, n), rng.normal(0.6, 0.1, n)] + shift
    return y, np.clip(p, 0, 1)


def test_threshold_rules_and_drift_on_a_shifted_set():
    y, p = _scores(4000)
    assert choose_threshold(y, p, "eer") == pytest.approx(0.5, abs=0.01)
    assert choose_threshold(y, p, "balanced") == pytest.approx(0.5, abs=0.02)
    t5 = choose_threshold(y, p, "fpr", 0.05)  # the 95th percentile of the reals: 0.4 + 1.645 * 0.1
    assert t5 == pytest.approx(0.5645, abs=0.01) and np.mean(p[y == 0] >= t5) <= 0.05
    cal = calibrate(y, p, CalibrationConfig(rule="eer"))
    ys, ps = _scores(4000, shift=0.15, seed=1)  # a test set whose scores all moved up by 0.15
    m = operating_metrics(ys, ps, cal)
    assert m["threshold_drift"] == pytest.approx(0.15, abs=0.015)
    assert m["fpr_at_threshold"] == pytest.approx(0.69, abs=0.03)  # P(N(0.55, 0.1) >= 0.5)
    assert operating_metrics(*_scores(4000, seed=2), cal)["threshold_drift"] == pytest.approx(0, abs=0.015)
    # P(Z > 1.645 - 2) = P(Z > -0.355)
    assert m["tpr_at_fpr_5"] == pytest.approx(tpr_at_fpr(ys, ps, 0.05)) == pytest.approx(0.639, abs=0.03)


def test_conformal_band_covers_each_class_and_its_width_is_measured():
    y, p = _scores(2000)
    lo, hi = conformal_band(y, p, alpha=0.1)
    assert hi - lo == pytest.approx(2 * 0.1 * 1.2816 - 0.2, abs=0.03)  # [0.6 - 1.28 sd, 0.4 + 1.28 sd]
    yt, pt = _scores(4000, seed=5)  # fresh draws: each class keeps ~90% coverage
    assert np.mean(pt[yt == 1] >= lo) >= 0.88 and np.mean(pt[yt == 0] <= hi) >= 0.88
    lo2, hi2 = conformal_band(*_scores(2000, seed=3), alpha=0.05)
    assert hi2 - lo2 == pytest.approx(2 * 0.1 * 1.645 - 0.2, abs=0.03)  # more coverage, a wider band
    lo3, hi3 = conformal_band(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), alpha=0.1)
    assert (lo3, hi3) == (0.0, 1.0)  # two rows per class cannot promise 90%: everything is uncertain


def test_one_class_validation_keeps_0_5_and_says_why():
    cal = calibrate(np.zeros(5, int), np.linspace(0.1, 0.9, 5))
    assert cal.threshold == 0.5 and "one class" in cal.rule and cal.band == (0.0, 0.0)
    assert Calibration.from_meta({"calibration": cal.to_meta()}).threshold == 0.5


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    logit = rng.normal(0, 2, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-logit))).astype(int)  # calibrated at T = 1
    over = 1 / (1 + np.exp(-3 * logit))  # the same model, three times too sure
    t = fit_temperature(y, over)
    assert t == pytest.approx(3, rel=0.1)
    assert reliability(y, apply_temperature(over, t))["ece"] < reliability(y, over)["ece"] / 3


def test_verdict_uses_the_method_threshold_and_band_and_refuses_hostile_meta():
    cal = Calibration(rule="fpr", threshold=0.3, temperature=1.0, band=(0.25, 0.28), alpha=0.1)
    assert verdict(0.4, cal) == "fake" and verdict(0.4, None) == "real"  # differs from 0.5 where it should
    assert verdict(0.6, cal) == "fake" and verdict(0.1, cal) == "real" and verdict(0.26, cal) == "uncertain"
    back = Calibration.from_meta({"calibration": cal.to_meta()})
    assert back.threshold == 0.3 and back.band == (0.25, 0.28) and cal.to_meta()["band_width"] == pytest.approx(0.03)
    for bad in ({"threshold": 7, "temperature": 1, "band": [0, 1]},
                {"threshold": 0.5, "temperature": -1, "band": [0, 1]},
                {"threshold": 0.5, "temperature": 1, "band": [0.9, 0.1]}, {"threshold": "x"}, "nonsense"):
        assert Calibration.from_meta({"calibration": bad}) is None


def _train_probe(manifest, root, out):
    from dfdet.backbone import TINY_MODEL
    from dfdet.config import BackboneConfig, TrainConfig
    from dfdet.train import train
    cfg = TrainConfig(method="linear_probe", backbone=BackboneConfig(model=TINY_MODEL, pretrained=None),
                      manifest=str(manifest), data_root=str(root), batch_size=16, epochs=1, lr=1e-3, augment="none",
                      out=str(out), device="cpu")
    cfg.calibration.rule = "balanced"
    train(cfg)
    return json.loads((out / "dfdet.json").read_text())["calibration"]


def test_training_calibrates_on_validation_never_on_test(dfdc_manifest, tmp_path, tiny_clip):
    from dfdet.inference import DetectorBank
    from dfdet.images import open_image
    manifest, root = dfdc_manifest
    df = pd.read_csv(manifest).groupby(["split", "label"]).head(6).reset_index(drop=True)  # 12 rows per split
    df.to_csv(tmp_path / "small.csv", index=False)
    base = _train_probe(tmp_path / "small.csv", root, tmp_path / "a")
    val = df[df["split"] == "val"]
    assert base["split"] == "val" and base["n"] == len(val) and base["rule"] == "balanced"
    bank = DetectorBank(tiny_clip, tmp_path, ["linear_probe"])  # folder "a" holds the checkpoint
    p = bank.predict(bank.preprocess([open_image(root / q) for q in val["path"]]))["a"]
    again = calibrate(val["label"].to_numpy(), p, CalibrationConfig(rule="balanced"))
    assert again.threshold == pytest.approx(base["threshold"], abs=1e-5)  # recomputed from val rows alone
    assert again.temperature == pytest.approx(base["temperature"], rel=1e-3)
    poisoned = df.copy()  # test rows with flipped labels and other images: nothing may change
    test = poisoned["split"] == "test"
    poisoned.loc[test, "label"] = 1 - poisoned.loc[test, "label"]
    poisoned.loc[test, "path"] = poisoned.loc[test, "path"].to_numpy()[::-1]
    poisoned.to_csv(tmp_path / "poisoned.csv", index=False)
    assert _train_probe(tmp_path / "poisoned.csv", root, tmp_path / "b") == base


def test_predict_uses_each_method_threshold(tiny_clip, tmp_path, shared, capsys):
    from dfdet.checkpoint import META_FILE
    from dfdet.cli import main
    from test_app_helpers import make_checkpoints
    ckpt = make_checkpoints(tiny_clip, tmp_path / "ck", methods=("ln_tuning",))
    face = next((shared / "datasets" / "DFDC" / "real").glob("*/*"))
    args = ["predict", str(face), "--checkpoints", str(ckpt), "--model", "dfdet-tiny-vit", "--pretrained", "none",
            "--device", "cpu", "--csv", str(tmp_path / "p.csv")]
    assert main(args) == 0
    p = float(pd.read_csv(tmp_path / "p.csv")["p_fake"][0])
    meta_path = ckpt / "ln_tuning" / META_FILE
    meta = json.loads(meta_path.read_text())
    for thr in (p - 0.01, p + 0.01):  # just below / above this face's score: the verdict must follow
        meta["calibration"] = Calibration(rule="eer", threshold=thr, temperature=1.0, band=(0.0, 0.0),
                                          alpha=0.1).to_meta()
        meta_path.write_text(json.dumps(meta))
        assert main(args) == 0
        row = pd.read_csv(tmp_path / "p.csv").iloc[0]
        assert row["threshold"] == pytest.approx(thr, abs=1e-6)
        assert row["verdict"] == ("fake" if thr <= p else "real")
    capsys.readouterr()


def test_evaluation_records_drift_per_test_set():
    from dfdet.metrics import metric_table
    y0, p0 = _scores(300, seed=7)
    y1, p1 = _scores(300, shift=0.2, seed=8)
    preds = pd.DataFrame({"label": np.r_[y0, y1], "p_fake__m": np.r_[p0, p1],
                          "dataset": ["FF"] * 600 + ["CDF"] * 600, "source": "s", "split": "test",
                          "path": [f"{i}.png" for i in range(1200)], "video": [f"v{i}" for i in range(1200)]})
    preds["source"] = np.where(preds["label"] == 1, "fake", "real")
    records, rocs = metric_table(preds, ["m"])
    cal = calibrate(*_scores(2000, seed=9))
    from dfdet.calibration import add_operating_metrics
    add_operating_metrics(records, rocs, preds, {"m": cal})
    at = {(r["dataset"], r["level"]): r for r in records if r["source"] == "*"}
    assert at[("FF", "frame")]["threshold_drift"] == pytest.approx(0, abs=0.04)
    assert at[("CDF", "frame")]["threshold_drift"] == pytest.approx(0.2, abs=0.04)
    assert at[("CDF", "frame")]["fpr_at_threshold"] > 3 * at[("FF", "frame")]["fpr_at_threshold"]
    roc = next(r for r in rocs if r["dataset"] == "CDF" and r["level"] == "frame")
    assert sum(roc["reliability"]["count"]) == 600 and roc["calibrated_threshold"] == cal.threshold
    assert json.loads(json.dumps(records, allow_nan=False))  # strict JSON: no NaN anywhere


def test_compare_table_verdicts_use_each_method_calibration(tiny_clip, tmp_path):
    from dfdet.checkpoint import META_FILE
    from dfdet.inference import DetectorBank
    from dfdet.viz import compare
    from test_app_helpers import make_checkpoints
    ckpt = make_checkpoints(tiny_clip, tmp_path / "ck", methods=("linear_probe", "ln_tuning"))
    meta_path = ckpt / "ln_tuning" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["calibration"] = Calibration(rule="fpr", threshold=0.9, temperature=1.0, band=(0.75, 0.85),
                                      alpha=0.1, target_fpr=0.05).to_meta()
    meta_path.write_text(json.dumps(meta))
    bank = DetectorBank(tiny_clip, ckpt, ["linear_probe", "ln_tuning"])
    t = compare.score_table(bank, {"linear_probe": 0.7, "ln_tuning": 0.7}).set_index("method")["verdict"]
    assert t["Linear probe"].startswith("fake") and t["LN-tuning"].startswith("real")  # 0.7 < its 0.9
    t = compare.score_table(bank, {"linear_probe": 0.8, "ln_tuning": 0.8}).set_index("method")["verdict"]
    assert t["LN-tuning"].startswith("uncertain") and t["LN-tuning"].endswith("(meaningless: demo)")
