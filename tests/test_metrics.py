import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from dfdet.metrics import auroc, average_precision, binary_metrics, eer, metric_table, roc_curve, video_level


def _cases():
    rng = np.random.default_rng(0)
    for n, ties in [(20, False), (200, True), (1000, True)]:
        y = rng.integers(0, 2, n)
        s = rng.random(n) * 0.6 + y * 0.3
        yield y, (np.round(s, 1) if ties else s)


@pytest.mark.parametrize("y,s", list(_cases()))
def test_ranking_metrics_equal_sklearn(y, s):
    assert auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    f, t, _ = skm.roc_curve(y, s, drop_intermediate=False)
    ff, tt, _ = roc_curve(y, s)
    np.testing.assert_allclose(ff, f)
    np.testing.assert_allclose(tt, t)


@pytest.mark.parametrize("y,s", list(_cases()))
def test_threshold_metrics_equal_sklearn(y, s):
    m = binary_metrics(y, s, 0.5)
    pred = (s >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["tp"] + m["fn"] == y.sum() and m["tn"] + m["fp"] == (1 - y).sum()


def test_eer_is_where_fpr_meets_fnr():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert eer(y, np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])) == 0.0
    assert eer(y, np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])) == 1.0
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = rng.random(500) + y * 0.5
    fpr, tpr, _ = skm.roc_curve(y, s)
    i = np.nanargmin(np.abs(fpr - (1 - tpr)))
    assert abs(eer(y, s) - (fpr[i] + 1 - tpr[i]) / 2) < 0.01


def test_one_class_gives_nan_not_crash():
    m = binary_metrics(np.ones(5, int), np.linspace(0, 1, 5))
    assert np.isnan(m["auroc"]) and np.isnan(m["eer"]) and m["recall"] == pytest.approx(0.6)


def test_video_level_is_mean_of_frames_and_table_covers_sources():
    df = pd.DataFrame({"video": ["a", "a", "b", "b", "c"], "label": [0, 0, 1, 1, 1], "dataset": ["D"] * 5,
                       "source": ["real", "real", "X", "X", "Y"], "p_fake__m": [0.1, 0.3, 0.8, 0.4, 0.9]})
    v = video_level(df, "p_fake__m")
    assert v.set_index("video")["p_fake__m"].to_dict() == pytest.approx({"a": 0.2, "b": 0.6, "c": 0.9})
    records, rocs = metric_table(df, ["m"])
    keys = {(r["source"], r["level"]) for r in records}
    assert {("*", "frame"), ("*", "video"), ("X", "frame"), ("Y", "video")} <= keys
    assert ("real", "frame") not in keys  # reals are scored inside every fake source's row
    frame_all = next(r for r in records if r["source"] == "*" and r["level"] == "frame")
    assert frame_all["auroc"] == pytest.approx(skm.roc_auc_score(df["label"], df["p_fake__m"]))
    assert {(r["dataset"], r["level"]) for r in rocs} == {("D", "frame"), ("D", "video")}
