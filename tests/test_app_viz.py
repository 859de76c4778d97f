"""dfdet.viz without gradio: projections and their cache, error mining, ROC tables, figures, counts."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dfdet.artifacts import load_run
from dfdet.errors import DataError
from dfdet.methods import PAPER_METHODS
from dfdet.viz import about, compare, errors, media, plots, roc, umap_cache
from dfdet.viz.session import AppConfig, Session

from test_app_helpers import make_checkpoints, make_synthetic_run


@pytest.fixture()
def synth(tmp_path):
    return load_run(make_synthetic_run(tmp_path / "run", demo=True))


# -- projections -------------------------------------------------------------------------------
def test_exact_knn_matches_brute_force():
    rng = np.random.default_rng(1)
    z = umap_cache.unit_rows(rng.normal(size=(50, 8)))
    idx, dist = umap_cache.exact_knn(z, 5, chunk=7)  # chunking must not change the answer
    full = 1 - z @ z.T
    for i in range(50):
        assert idx[i, 0] == i and dist[i, 0] == pytest.approx(0, abs=1e-5)
        assert set(idx[i]) == set(np.argsort(full[i], kind="stable")[:5])
        assert np.all(np.diff(dist[i]) >= -1e-6)


def test_place_is_exact_on_the_reference_points_and_between_neighbours():
    rng = np.random.default_rng(2)
    z = umap_cache.unit_rows(rng.normal(size=(30, 6)))
    coords = rng.normal(size=(30, 2)).astype(np.float32)
    assert np.allclose(umap_cache.place(z[[3, 7]], z, coords), coords[[3, 7]], atol=1e-3)
    mid = umap_cache.unit_rows(z[[3]] + z[[7]])
    p = umap_cache.place(mid, z, coords, k=30)[0]
    lo, hi = coords.min(0), coords.max(0)
    assert np.all(p >= lo) and np.all(p <= hi)  # a weighted mean stays inside the references' hull box


def test_tiny_sets_fall_back_to_pca():
    z = np.eye(4, 6, dtype=np.float32)
    out = umap_cache.fit_umap(z, 3)
    assert out.shape == (4, 3) and np.isfinite(out).all()


def test_umap_cache_fits_once_then_reads_disk(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    z = umap_cache.unit_rows(np.r_[rng.normal(size=(20, 16)) + 3, rng.normal(size=(20, 16)) - 3])
    emb = tmp_path / "emb.npz"
    np.savez(emb, z=z.astype(np.float16), norm=np.ones(40, np.float32))
    calls = []
    real_fit = umap_cache.fit_umap

    def counting_fit(*a, **kw):
        calls.append(1)
        return real_fit(*a, **kw)
    monkeypatch.setattr(umap_cache, "fit_umap", counting_fit)
    cache = umap_cache.UmapCache(tmp_path / "cache")
    first = cache.get(emb, z, 2)
    assert first.shape == (40, 2) and np.isfinite(first).all() and len(calls) == 1
    # two clusters on the sphere stay two clusters in the picture
    a, b = first[:20].mean(0), first[20:].mean(0)
    spread = max(first[:20].std(0).max(), first[20:].std(0).max())
    assert np.linalg.norm(a - b) > 2 * spread
    again = umap_cache.UmapCache(tmp_path / "cache").get(emb, z, 2)  # new process: from disk
    assert len(calls) == 1 and np.array_equal(first, again)
    cache.get(emb, z, 3)
    assert len(calls) == 2  # 3-D is its own projection
    np.savez(emb, z=z[::-1].astype(np.float16), norm=np.ones(40, np.float32))  # a re-run changes the file
    umap_cache.UmapCache(tmp_path / "cache").get(emb, z[::-1], 2)
    assert len(calls) == 3


# -- errors and ROC tables ---------------------------------------------------------------------
def test_confident_mistakes_are_wrong_and_sorted(synth):
    preds = synth.predictions
    fp = errors.confident_mistakes(preds, "linear_probe", "fp", k=5)
    fn = errors.confident_mistakes(preds, "linear_probe", "fn", k=5)
    assert fp.index[0] == 0 and fn.index[0] == 2  # the planted mistakes come first
    assert (fp["label"] == 0).all() and (fp["p_fake__linear_probe"] >= 0.5).all()
    assert (fn["label"] == 1).all() and (fn["p_fake__linear_probe"] < 0.5).all()
    assert fp["p_fake__linear_probe"].is_monotonic_decreasing
    assert fn["p_fake__linear_probe"].is_monotonic_increasing
    only = errors.confident_mistakes(preds, "linear_probe", "fp", dataset="DS1")
    assert (only["dataset"] == "DS1").all()
    with pytest.raises(ValueError):
        errors.confident_mistakes(preds, "linear_probe", "tp")


def test_disagreement_puts_the_split_face_first(synth):
    dis = errors.disagreements(synth.predictions, ["linear_probe", "ln_norm"], k=3)
    assert dis.index[0] == 5
    assert dis["spread"].iloc[0] == pytest.approx(abs(1 - 2 * synth.predictions["p_fake__linear_probe"].iloc[5]),
                                                  abs=1e-5)
    assert dis["spread"].iloc[1] == 0  # every other face gets the same score from both
    assert errors.disagreements(synth.predictions, ["ln_norm"]).empty  # one method cannot disagree


def test_confusion_counts_follow_the_threshold(synth):
    p = synth.predictions
    for level in roc.LEVELS:
        t = roc.confusion_table(synth, ["ln_norm"], ["DS0", "DS1"], level, 0.5)
        assert len(t) == 2
        for _, r in t.iterrows():
            n = len(p[p["dataset"] == r["dataset"]]) if level == "frame" else \
                p[p["dataset"] == r["dataset"]]["video"].nunique()
            assert r["TP"] + r["FP"] + r["TN"] + r["FN"] == n
    frame = roc.confusion_table(synth, ["ln_norm"], ["DS0"], "frame", 0.5).iloc[0]
    d = p[p["dataset"] == "DS0"]
    assert frame["FP"] == int(((d["p_fake__ln_norm"] >= 0.5) & (d["label"] == 0)).sum())
    everything = roc.confusion_table(synth, ["ln_norm"], ["DS0"], "frame", 0.0).iloc[0]
    assert everything["TN"] == 0 and everything["FN"] == 0


def test_metrics_table_and_curves_select_what_was_asked(synth):
    m = roc.metrics_table(synth, ["ln_norm"], ["DS1"], "frame")
    assert list(m["method"]) == ["LN + Norm"] and list(m["dataset"]) == ["DS1"]
    stored = synth.metrics.query("method == 'ln_norm' and dataset == 'DS1' and source == '*' and level == 'frame'")
    assert m["auroc"].iloc[0] == pytest.approx(stored["auroc"].iloc[0], abs=1e-4)
    curves = roc.curves(synth, ["linear_probe", "ln_norm"], ["DS0"], "video")
    assert [c["name"] for c in curves] == ["Linear probe · DS0", "LN + Norm · DS0"]
    d = synth.predictions.query("dataset == 'DS1'")
    assert (m["n real"].iloc[0], m["n fake"].iloc[0]) == ((d["label"] == 0).sum(), (d["label"] == 1).sum())
    assert "small n" in m["note"].iloc[0]  # 10 faces per class: flagged
    lo, hi = (float(x) for x in m["auroc 95% CI"].iloc[0].split(" to "))
    assert lo <= m["auroc"].iloc[0] <= hi


def test_bootstrap_intervals_match_the_definitions():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(200), np.ones(200)].astype(int)
    s = np.r_[rng.normal(0, 1, 200), rng.normal(1, 1, 200)]
    b = roc.bootstrap(y, s)
    from dfdet.metrics import auroc
    assert b["auroc"] == pytest.approx(auroc(y, s), abs=1e-3)
    neg = np.sort(s[y == 0])[::-1]
    thr = neg[int(np.floor(roc.TARGET_FPR * 200))]  # 10 negatives may lie above the threshold
    assert ((neg > thr).mean() <= roc.TARGET_FPR) and b["tpr"] == pytest.approx((s[y == 1] > thr).mean())
    assert b["auroc_lo"] < b["auroc"] < b["auroc_hi"] and b["tpr_lo"] < b["tpr"] < b["tpr_hi"]
    assert 0.04 < b["auroc_hi"] - b["auroc_lo"] < 0.15  # ~ +-2 standard errors of an AUROC of 0.76 at n=200
    tiny = roc.bootstrap(np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9, 0.7]))
    assert tiny["auroc"] == 1.0 and tiny["auroc_lo"] == 1.0  # perfect separation: the flag, not the CI, warns
    assert roc.small_n_note(2, 3, "video").startswith("⚠ small n (2 videos")


def test_one_order_and_one_colour_per_method():
    from dfdet.methods import METHODS
    from dfdet.viz import style
    names = list(METHODS)
    assert style.method_order(reversed(names)) == names
    colors = [style.method_color(m) for m in names]
    assert len(set(colors[:len(style.METHOD_PALETTE) - 1])) == min(len(names), len(style.METHOD_PALETTE) - 1)
    assert not {"#1f77b4", "#d62728"} & set(colors)  # real/fake colours of the sphere are never a method's
    table = pd.DataFrame({"method": [METHODS["ln_norm"].label, METHODS["linear_probe"].label], "p_fake": [0.7, 0.2]})
    bars = plots.probability_bars(table, demo=False).to_plotly_json()["data"][0]
    assert list(bars["marker"]["color"]) == [style.method_color("ln_norm"), style.method_color("linear_probe")]


def test_bars_say_the_tables_verdict_and_mark_each_methods_threshold():
    table = pd.DataFrame({"method": ["Linear probe", "LN + Norm"], "p_fake": [0.3, 0.4],
                          "verdict": ["fake (meaningless: demo)", "uncertain (meaningless: demo)"]})
    fig = plots.probability_bars(table, demo=True, thresholds={"Linear probe": 0.27, "LN + Norm": 0.37})
    assert list(fig.data[0].text) == ["0.300 fake", "0.400 uncertain"]  # not "real" by the 0.5 rule
    assert sorted(round(sh.y0, 2) for sh in fig.layout.shapes) == [0.27, 0.37]
    plain = plots.probability_bars(table.drop(columns="verdict"), demo=False)  # no calibration: the 0.5 line
    assert list(plain.data[0].text) == ["0.300 real", "0.400 real"] and plain.layout.shapes[0].y0 == 0.5


def test_roc_figure_legend_and_operating_point(synth):
    curves = roc.curves(synth, ["ln_norm"], ["DS0"], "frame")
    fig = plots.roc_figure(curves, demo=True, threshold=0.5).to_plotly_json()
    names = [t.get("name") for t in fig["data"]]
    n = len(synth.predictions.query("dataset == 'DS0'"))
    assert f"LN + Norm · DS0 (AUROC {curves[0]['auroc']:.3f}, n={n})" in names  # n beside every number
    dots = [t for t in fig["data"] if t.get("name") == "LN + Norm · DS0 at threshold"]
    assert len(dots) == 1 and "threshold 0.50" in fig["layout"]["title"]["text"]  # operating point marked
    assert plots.DEMO_NOTE in fig["layout"]["title"]["text"]
    thr = np.array([np.inf, 0.9, 0.7, 0.5, 0.2])
    assert plots.operating_point(thr, 0.5) == 3 and plots.operating_point(thr, 0.95) == 0
    assert plots.operating_point(thr, 0.0) == 4


def test_roc_browser_starts_at_each_methods_own_threshold(tmp_path):
    folder = make_synthetic_run(tmp_path / "runs" / "cal")
    metrics = json.loads((folder / "metrics.json").read_text())
    for m in metrics:  # ln_norm chose 0.31 on validation; linear_probe was trained before calibration existed
        if m["method"] == "ln_norm":
            m["threshold"] = 0.31
    (folder / "metrics.json").write_text(json.dumps(metrics))
    make_synthetic_run(tmp_path / "runs" / "plain")
    s = Session(AppConfig(runs=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), demo="off"), load_models=False)
    both = ["linear_probe", "ln_norm"]
    assert s.roc.has_own("cal") and not s.roc.has_own("plain")
    own = s.roc.view("cal", both, ["DS0"], "frame", 0.5, own=True)
    assert dict(zip(own.confusion["method"], own.confusion["threshold"])) == {"Linear probe": 0.5, "LN + Norm": 0.31}
    preds = s.store.run("cal").predictions.query("dataset == 'DS0'")
    fakes = preds[preds["label"] == 1]["p_fake__ln_norm"]
    row = own.confusion[own.confusion["method"] == "LN + Norm"].iloc[0]
    assert row["TP"] == int((fakes >= 0.31).sum())  # the counts are at 0.31, not at the slider's 0.5
    dots = {t["name"]: t["hovertemplate"] for t in own.figure["data"] if t.get("name", "").endswith("at threshold")}
    assert "threshold 0.31" in dots["LN + Norm · DS0 at threshold"]
    assert "threshold 0.50" in dots["Linear probe · DS0 at threshold"]
    assert "own validation threshold" in own.figure["layout"]["title"]["text"]
    shared = s.roc.view("cal", both, ["DS0"], "frame", 0.5)  # the slider moved: one threshold for all
    assert set(shared.confusion["threshold"]) == {0.5}
    plain = s.roc.view("plain", both, ["DS0"], "frame", 0.4, own=True)  # nothing of its own: the slider's value
    assert set(plain.confusion["threshold"]) == {0.4} and "threshold 0.40" in plain.figure["layout"]["title"]["text"]


def test_sphere_figure_carries_rows_and_thumbnails(synth):
    n = len(synth.predictions)
    coords = np.random.default_rng(0).normal(size=(n, 2))
    groups = plots.color_groups(synth.predictions, "correct", "p_fake__ln_norm")
    assert set(groups) <= {"correct", "wrong"} and "wrong" in set(groups)
    thumbs = [f"data:x{i}" for i in range(n)]
    fig = plots.sphere_figure(coords, groups, [str(i) for i in range(n)], thumbs, False, "t")
    seen = {int(r): t for tr in fig["data"] for r, t in tr["customdata"]}
    assert seen == {i: f"data:x{i}" for i in range(n)}
    assert plots.DEMO_NOTE not in json.dumps(fig["layout"])  # not demo: no demo label
    t = np.linspace(0, 1, 5)
    with_path = plots.with_path(fig, coords[:5], t, t)
    assert len(with_path["data"]) == len(fig["data"]) + 2 and len(fig["data"]) == 2  # the cached base is untouched
    decoded = json.loads(with_path.to_json())
    assert decoded["data"][-2]["name"] == "SLERP path" and decoded["data"][-1]["text"] == ["A", "B"]


# -- Compare table -----------------------------------------------------------------------------
def test_score_table_never_invents_scores_for_missing_methods(tmp_path, tiny_clip):
    from dfdet.inference import DetectorBank
    make_checkpoints(tiny_clip, tmp_path / "ck", methods=("ln_norm",))
    bank = DetectorBank(tiny_clip, tmp_path / "ck", list(PAPER_METHODS))
    t = compare.score_table(bank, {"ln_norm": 0.8})
    by = t.set_index("method")
    assert by.loc["LN + Norm", "p_fake"] == 0.8 and by.loc["LN + Norm", "verdict"] == "fake (meaningless: demo)"
    for m in ("linear_probe", "ln_tuning", "ln_norm_slerp"):
        row = by.loc[bank.entries[m].label]
        assert np.isnan(row["p_fake"]) and row["verdict"] == ""
        assert row["status"].startswith("not trained yet: dfdet train --method " + m)
    path = compare.table_csv(t, demo=True, folder=tmp_path)
    assert path.read_text().startswith(compare.DEMO_CSV_NOTE) and path.read_text().count("meaningless") == 1 + 1
    csv = pd.read_csv(path, comment="#")
    assert len(csv) == 4 and csv["trainable params"].isna().sum() == 3
    import csv as csvlib
    rows = list(csvlib.DictReader(path.read_text().splitlines()[1:]))
    count = [r["trainable params"] for r in rows if r["method"] == "LN + Norm"][0]
    assert count.isdigit()  # a whole number, not "898.0"


# -- About -------------------------------------------------------------------------------------
def test_exact_trainable_counts_for_vit_l14():
    counts = about.trainable_counts("ViT-L-14")
    assert counts["linear_probe"] == 1024 * 2 + 2
    # ln_pre + 24 blocks x (ln_1, ln_2) + ln_post = 50 LayerNorms of width 1024, gamma and beta each
    for m in ("ln_tuning", "ln_norm", "ln_norm_slerp"):
        assert counts[m] == 50 * 2 * 1024 + 2050
    md = about.method_markdown("ViT-L-14")
    assert "| 104,450 |" in md and "| 2,050 |" in md


def test_counts_agree_with_a_real_model(tiny_clip):
    from dfdet.model import build_model, trainable_count
    counts = about.trainable_counts(tiny_clip.config.model)
    for m in PAPER_METHODS:
        assert counts[m] == trainable_count(build_model(tiny_clip, m))


# -- inputs ------------------------------------------------------------------------------------
def test_uploads_are_checked_before_decoding(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="not an accepted image format"):
        media.check_upload(tmp_path / "x.gif", "image")
    with pytest.raises(DataError, match="not an accepted video format"):
        media.check_upload(tmp_path / "x.png", "video")
    with pytest.raises(DataError, match="no image given"):
        media.check_upload(None, "image")
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 3 * 2 ** 20)
    monkeypatch.setattr(media, "MAX_UPLOAD_MB", 2)
    with pytest.raises(DataError, match="over the 2 MB limit"):
        media.check_upload(big, "image")


def test_manifest_paths_cannot_leave_the_data_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    with pytest.raises(DataError, match="outside the data root"):
        media.load_face(tmp_path / "root", "../secret.png")
    with pytest.raises(DataError, match="outside the data root"):
        media.under_root(tmp_path / "root", "/etc/passwd")


def test_huge_images_are_refused(tmp_path, monkeypatch):
    from PIL import Image

    import dfdet.images
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    monkeypatch.setattr(dfdet.images, "MAX_PIXELS", 1000)
    with pytest.raises(DataError, match="too large"):
        media.load_face(tmp_path, "a.png")


# -- Session on a synthetic run ----------------------------------------------------------------
def test_session_without_models_still_serves_the_run_views(tmp_path, tiny_cfg, monkeypatch):
    import dfdet.backbone
    import dfdet.viz.session as sess
    from dfdet.errors import WeightsUnavailable

    def no_weights(cfg, device="cpu"):
        raise WeightsUnavailable("weights missing for the test")
    monkeypatch.setattr(dfdet.backbone, "load_clip", no_weights)
    assert sess.WEIGHTS_ENV == dfdet.backbone.WEIGHTS_ENV  # the banner names the variable the loader reads
    make_synthetic_run(tmp_path / "runs" / "synth", n=12)
    s = Session(AppConfig(runs=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), demo="off"))
    assert s.status.mode == "none" and "weights missing for the test" in s.banner()
    assert "demo mode" not in s.banner()  # --demo off: not offered
    monkeypatch.setattr(umap_cache, "fit_umap", lambda z, dims=2, params=None: z[:, :dims].astype(np.float32))
    sphere, curve, text = s.slerp_path("synth", "ln_norm", 0, 1)
    assert "no model is loaded" in text
    path = [t for t in sphere.to_plotly_json()["data"] if t.get("name") == "SLERP path"][0]
    coords = s.projection("synth", "ln_norm", 2)
    assert path["x"][0] == pytest.approx(coords[0, 0], abs=1e-3) and path["x"][-1] == pytest.approx(coords[1, 0],
                                                                                                    abs=1e-3)
    cases = s.error_cases("synth", "linear_probe")
    assert "image file not on this machine" in cases["fp"][0][1]  # the synthetic run has no face files
    with pytest.raises(DataError, match="unknown run"):
        s.run("nope")


def test_video_timeline_draws_each_methods_threshold_in_its_colour():
    t = np.arange(4) / 2.0
    scores = {"Linear probe": np.array([0.2, 0.3, 0.4, 0.3]), "LN + Norm": np.array([0.5, 0.6, 0.4, 0.5])}
    fig = plots.frame_timeline(t, scores, demo=True, thresholds={"Linear probe": 0.27, "LN + Norm": 0.37})
    lines = {round(sh.y0, 2): sh.line.color for sh in fig.layout.shapes}
    assert set(lines) == {0.27, 0.37}  # no 0.5 line that no verdict uses
    assert lines[0.27] == fig.data[0].line.color and lines[0.37] == fig.data[1].line.color
    plain = plots.frame_timeline(t, scores, demo=False)
    assert [sh.y0 for sh in plain.layout.shapes] == [0.5]


def test_the_hypersphere_text_points_at_the_methods_threshold_not_a_fixed_half():
    text = about.HYPERSPHERE_TEXT
    assert "crosses the method's threshold" in text and "crosses 0.5" not in text
