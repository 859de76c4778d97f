"""The dashboard through its public API: app.py launched in-process, every endpoint called by gradio_client.

The models are the tiny random-weight backbone with seeded checkpoints, and the run is a real
`dfdet evaluate` output over faces from ../shared, so the numbers are meaningless by design;
the tests check that every view returns what it promises and labels such scores as meaningless.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfdet.methods import PAPER_METHODS, get_method
from dfdet.viz.plots import DEMO_NOTE
from dfdet.viz.session import AppConfig, Session

from test_app_helpers import demo_session, load_app_module


@pytest.fixture(autouse=True)
def _gradio_tmp():
    """Overrides conftest's per-test GRADIO_TEMP_DIR: the module's one server keeps one upload folder."""
    yield


@pytest.fixture(scope="module")
def env(tmp_path_factory, shared, tiny_cfg):
    """The app as `python app.py` starts it on a machine without CLIP weights: the page is built and served
    first, then demo mode is built in the background (here from pre-built test assets: the real build
    trains for a minute) and its run appears. Every documented endpoint is then called with that run."""
    from gradio_client import Client
    tmp = tmp_path_factory.mktemp("app")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    session, assets = demo_session(tmp, shared, tiny_cfg, mp)
    mod = load_app_module()
    app = mod.build_app(session)  # before the demo run exists: the run lists are empty at build time
    assert not session.runs
    mod.launch(app, prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    session.load_models_async()
    assert session.startup.loaded.wait(600) and session.status.mode == "demo", session.banner()
    session.start_warm_up()
    client = Client(app.local_url, verbose=False, download_files=str(tmp / "downloads"))
    yield {"client": client, "session": session, "run": "demo", "tmp": tmp, "app": app, "mod": mod, "assets": assets}
    app.close()
    mp.undo()


def table(out) -> pd.DataFrame:
    return pd.DataFrame(out["data"], columns=out["headers"])


def figure(out) -> dict:
    return json.loads(out["plot"])


def title_of(fig: dict) -> str:
    t = fig["layout"].get("title", {})
    return t.get("text", "") if isinstance(t, dict) else str(t)


def test_api_lists_every_endpoint(env):
    names = set(env["client"].view_api(print_info=False, return_format="dict")["named_endpoints"])
    expected = {"/predict_image", "/predict_video", "/random_face", "/predict_sample", "/hypersphere", "/point",
                "/random_pair", "/slerp_path", "/roc", "/errors", "/start_demo", "/status"}
    assert expected <= names, expected - names


def check_prediction(out, n_faces: int):
    gallery, note, tab, bars, timeline, csv = out
    assert len(gallery) == n_faces
    df = table(tab)
    labels = {get_method(m).label for m in PAPER_METHODS}
    assert set(df["method"]) == labels
    p = df["p_fake"].astype(float)
    assert np.all((p >= 0) & (p <= 1))
    assert np.allclose(df["p_real"].astype(float) + p, 1.0, atol=2e-4)
    assert all(v.endswith("(meaningless: demo)") for v in df["verdict"])  # random-weight backbone
    assert DEMO_NOTE in title_of(figure(bars))
    assert Path(csv).read_text().splitlines()[0].startswith("# DEMO") and "meaningless" in Path(csv).read_text()
    exported = pd.read_csv(csv, comment="#")
    assert np.allclose(exported["p_fake"], p) and "note" not in exported  # said once, not on every row
    assert exported[[c for c in exported if c.startswith("trainable params")][0]].dtype.kind == "i"  # whole counts
    return df, note, timeline


def test_predict_image_aligns_the_face_and_scores_every_method(env, shared):
    src = sorted((shared / "datasets" / "FF" / "real").glob("*/*.png"))[0]
    from gradio_client import handle_file
    out = env["client"].predict(handle_file(str(src)), api_name="/predict_image")
    df, note, _ = check_prediction(out, 1)
    assert "face" in note
    # the same face scored directly by the library gives the same numbers
    bank = env["session"].bank
    from dfdet.viz.compare import predict_faces
    from dfdet.images import open_image
    res = env["session"]._align(open_image(src))
    face = res.crop if res.crop is not None else open_image(src)
    direct = predict_faces(bank, [face])
    for name, p in direct.items():
        row = df[df["method"] == bank.entries[name].label]
        assert float(row["p_fake"].iloc[0]) == pytest.approx(float(p[0]), abs=1e-4)


def test_predict_image_rejects_other_formats_with_a_readable_message(env, shared):
    from gradio_client import handle_file
    from PIL import Image
    gif = env["tmp"] / "face.gif"  # a real image, but not an accepted format
    Image.open(sorted((shared / "datasets" / "FF" / "real").glob("*/*.png"))[0]).save(gif)
    with pytest.raises(Exception) as err:
        env["client"].predict(handle_file(str(gif)), api_name="/predict_image")
    assert "not an accepted image format" in str(err.value) and ".png" in str(err.value)
    bad = env["tmp"] / "notes.txt"  # not an image at all: refused before the handler, still as a message
    bad.write_text("not an image")
    with pytest.raises(Exception) as err:
        env["client"].predict(handle_file(str(bad)), api_name="/predict_image")
    assert "Traceback" not in str(err.value)


def test_random_face_then_predict_sample(env):
    c = env["client"]
    source, row, info = c.predict("FF", "any", "fake", api_name="/random_face")
    assert source == "samples"
    rec = env["session"].samples.iloc[int(row)]
    assert rec["dataset"] == "FF" and int(rec["label"]) == 1
    assert rec["path"] in info
    out = c.predict(source, row, api_name="/predict_sample")
    check_prediction(out, 1)


def test_predict_sample_out_of_range_is_a_message_not_a_traceback(env):
    with pytest.raises(Exception) as err:
        env["client"].predict("samples", 10 ** 6, api_name="/predict_sample")
    assert "out of range" in str(err.value)


def test_predict_sample_from_a_run_matches_the_recorded_scores(env):
    run = env["session"].run(env["run"])
    out = env["client"].predict(f"run:{env['run']}", 3, api_name="/predict_sample")
    df = table(out[2])
    for m in PAPER_METHODS:
        got = float(df[df["method"] == get_method(m).label]["p_fake"].iloc[0])
        assert got == pytest.approx(run.predictions[f"p_fake__{m}"].iloc[3], abs=1e-3)


def test_predict_video_scores_frames_and_the_video(env, shared):
    from gradio_client import handle_file
    video = shared / "videos" / "FF" / "real" / "004.mp4"
    out = env["client"].predict(handle_file(str(video)), api_name="/predict_video")
    gallery, note, tab, bars, timeline, csv = out
    df = table(tab)
    fig = figure(timeline)
    assert len(fig["data"]) == len(PAPER_METHODS)
    n = int(df["frames"].iloc[0])
    assert n == len(gallery) and n >= 1
    for trace in fig["data"]:
        row = df[df["method"] == trace["name"]]
        assert float(row["p_fake"].iloc[0]) == pytest.approx(np.mean(trace["y"]), abs=1e-3)  # video = mean of frames


def test_hypersphere_plots_every_face_with_thumbnails(env):
    out = env["client"].predict(env["run"], "ln_norm", "label", "2-D", api_name="/hypersphere")
    fig = figure(out)
    run = env["session"].run(env["run"])
    points = [tr for tr in fig["data"] if tr.get("customdata")]
    assert sum(len(tr["customdata"]) for tr in points) == len(run.predictions)
    assert {tr["name"].split(" ")[0] for tr in points} == {"real", "fake"}
    rows = sorted(int(cd[0]) for tr in points for cd in tr["customdata"])
    assert rows == list(range(len(run.predictions)))
    assert all(cd[1].startswith("data:image/jpeg;base64,") for tr in points for cd in tr["customdata"])
    assert DEMO_NOTE in title_of(fig)
    # cached on disk: a second session reuses the projection file instead of fitting again
    assert any((env["tmp"] / "cache" / "umap").glob("*.npz"))


def test_hypersphere_3d_and_colour_by_correctness(env):
    fig = figure(env["client"].predict(env["run"], "ln_tuning", "correct", "3-D", api_name="/hypersphere"))
    kinds = {tr["type"] for tr in fig["data"]}
    assert kinds == {"scatter3d"}
    assert {tr["name"].split(" ")[0] for tr in fig["data"]} <= {"correct", "wrong"}


def test_point_shows_the_face_and_its_scores(env):
    image, text, row = env["client"].predict(env["run"], "ln_norm", 5, api_name="/point")
    run = env["session"].run(env["run"])
    assert Path(image).is_file() and int(row) == 5
    assert run.predictions["path"].iloc[5] in text


def test_random_pair_respects_the_kind(env):
    labels = env["session"].run(env["run"]).predictions["label"].to_numpy()
    a, b = env["client"].predict(env["run"], "same class", api_name="/random_pair")
    assert labels[int(a)] == labels[int(b)] and a != b
    a, b = env["client"].predict(env["run"], "different class", api_name="/random_pair")
    assert labels[int(a)] != labels[int(b)]


def test_slerp_path_head_agrees_with_the_run_at_both_ends(env):
    run = env["session"].run(env["run"])
    labels = run.predictions["label"].to_numpy()
    a, b = int(np.nonzero(labels == 0)[0][0]), int(np.nonzero(labels == 1)[0][0])
    for method in ("ln_norm_slerp", "linear_probe"):  # normalised and raw-feature heads
        sphere, curve, text = env["client"].predict(env["run"], method, a, b, "label", "2-D", api_name="/slerp_path")
        c = figure(curve)
        line = c["data"][0]
        assert line["x"][0] == 0 and line["x"][-1] == 1 and len(line["x"]) == 41
        # t=0 and t=1 are faces A and B themselves: the head must reproduce the run's recorded p_fake
        assert line["y"][0] == pytest.approx(run.predictions[f"p_fake__{method}"].iloc[a], abs=2e-3)
        assert line["y"][-1] == pytest.approx(run.predictions[f"p_fake__{method}"].iloc[b], abs=2e-3)
        s = figure(sphere)
        path = [tr for tr in s["data"] if tr["name"] == "SLERP path"][0]
        assert len(path["x"]) == 41
        assert "meaningless" in text


def test_roc_view_legend_metrics_and_confusion(env):
    run = env["session"].run(env["run"])
    fig, metrics, conf = env["client"].predict(env["run"], ["ln_norm", "linear_probe"], ["FF", "DFDC"], "frame",
                                               0.5, api_name="/roc")
    f = figure(fig)
    names = [tr["name"] for tr in f["data"] if "AUROC" in tr.get("name", "")]
    assert len(names) == 1 + 4  # chance line + 2 methods x 2 datasets
    rec = [r for r in run.roc if r["method"] == "ln_norm" and r["dataset"] == "FF" and r["level"] == "frame"][0]
    n_ff = int((run.predictions["dataset"] == "FF").sum())
    assert f"LN + Norm · FF (AUROC {rec['auroc']:.3f}, n={n_ff})" in names  # n beside every AUROC
    m = table(metrics)
    assert set(m.columns) >= {"n real", "n fake", "auroc", "auroc 95% CI", "TPR@5%FPR", "TPR 95% CI", "ap_fake", "map_macro", "eer"}
    assert list(m["method"]) == ["Linear probe", "Linear probe", "LN + Norm", "LN + Norm"]  # registry order
    ff = m[m["dataset"] == "FF"].iloc[0]
    assert int(ff["n real"]) + int(ff["n fake"]) == n_ff and ff["note"].startswith("⚠ small n")
    cf = table(conf)
    preds = run.predictions[run.predictions["dataset"] == "FF"]
    p = preds["p_fake__ln_norm"].to_numpy()
    y = preds["label"].to_numpy()
    row = cf[(cf["method"] == "LN + Norm") & (cf["dataset"] == "FF")].iloc[0]
    assert int(row["TP"]) == int(((p >= 0.5) & (y == 1)).sum())
    assert int(row["FP"]) == int(((p >= 0.5) & (y == 0)).sum())
    assert int(row["TP"]) + int(row["FP"]) + int(row["TN"]) + int(row["FN"]) == len(preds)


def test_roc_threshold_moves_the_counts(env):
    low = table(env["client"].predict(env["run"], ["ln_norm"], ["FF"], "video", 0.0, api_name="/roc")[2]).iloc[0]
    high = table(env["client"].predict(env["run"], ["ln_norm"], ["FF"], "video", 1.0, api_name="/roc")[2]).iloc[0]
    n_videos = env["session"].run(env["run"]).predictions.query("dataset == 'FF'")["video"].nunique()
    assert int(low["TP"]) + int(low["FP"]) == n_videos  # threshold 0: everything called fake
    assert int(high["TN"]) + int(high["FN"]) >= n_videos - 1  # threshold 1: (almost) nothing is
    with pytest.raises(Exception, match="1.5"):  # refused with a message, not counted as "nothing is fake"
        env["client"].predict(env["run"], ["ln_norm"], ["FF"], "video", 1.5, api_name="/roc")


def test_slerp_refuses_a_path_from_a_face_to_itself_and_fractional_rows(env):
    with pytest.raises(Exception, match="same row"):
        env["client"].predict(env["run"], "ln_norm", 3, 3, "label", "2-D", api_name="/slerp_path")
    with pytest.raises(Exception, match="whole number"):
        env["client"].predict(env["run"], "ln_norm", 3.7, api_name="/point")


def test_a_known_face_says_its_ground_truth_and_whether_each_method_was_right(env):
    out = env["client"].predict("samples", 0, api_name="/predict_sample")
    df = table(out[2])
    truth = "fake" if int(env["session"].samples.iloc[0]["label"]) else "real"
    for _, r in df.iterrows():
        assert r["right?"] == ("✓ right" if r["verdict"].split(" ")[0] == truth else "✗ wrong")
    assert list(df.columns[:6]) == ["method", "p_real", "p_fake", "verdict", "trainable params (dfdet-tiny-vit)",
                                    "status"]  # the counts name their backbone


def test_errors_galleries_are_real_mistakes(env):
    fp, fn, dis, note = env["client"].predict(env["run"], "ln_tuning", "all", 0.5, api_name="/errors")
    run = env["session"].run(env["run"])
    p = run.predictions["p_fake__ln_tuning"].to_numpy()
    y = run.predictions["label"].to_numpy()
    n_fp, n_fn = int(((p >= 0.5) & (y == 0)).sum()), int(((p < 0.5) & (y == 1)).sum())
    assert len(fp) == min(12, n_fp) and len(fn) == min(12, n_fn)
    assert len(dis) == min(12, len(y))
    for item in fp + fn:
        assert item["caption"].split(" ")[0] in ("FP", "FN")
    assert "meaningless" in note


def test_demo_button_is_a_no_op_message_when_models_are_live_or_demo(env):
    banner, msg = env["client"].predict(api_name="/start_demo")
    assert "DEMO" in banner and msg.startswith("Demo mode is on")
    assert env["session"].startup.demo.state == "done"  # one build, by the server; a visitor cannot start another


def test_app_without_weights_starts_explains_and_offers_demo(tmp_path, tiny_cfg, shared):
    """--demo offer: no CLIP weights, the app builds, says what is missing, and demo mode is built once."""
    mp = pytest.MonkeyPatch()
    try:
        s, _ = demo_session(tmp_path, shared, tiny_cfg, mp, demo="offer")
        s.startup.load_models()
        assert s.status.mode == "none" and s.bank is None
        banner = s.banner()
        assert "--clip-weights" in banner and "DFDET_CLIP_WEIGHTS" in banner and "demo mode" in banner
        app = load_app_module().build_app(s)  # builds with no model and no runs
        assert app is not None
        with pytest.raises(Exception) as err:
            s.analyse_sample("samples", 0)
        assert "--clip-weights" in str(err.value)
        msg = s.enable_demo()
        assert "meaningless" in msg and s.status.mode == "demo"
        assert s.run_is_demo(s.runs["demo"]) and "DEMO" in s.banner()
        pred = s.analyse_sample("samples", 0)
        assert pred.demo and all("meaningless" in v for v in pred.table["verdict"])
        assert s.startup.request_demo().startswith("Demo mode is on")  # asking again builds nothing
    finally:
        mp.undo()


def test_status_endpoint_reports_the_models(env):
    banner, *_ = env["client"].predict(api_name="/status")
    assert "DEMO MODE" in banner and "meaningless" in banner
    for label in (get_method(m).label for m in PAPER_METHODS):
        assert label in banner


def test_models_loading_in_the_background_are_reported_not_crashed(tmp_path, tiny_cfg):
    s = Session(AppConfig(runs=str(tmp_path), backbone=tiny_cfg, cache_dir=str(tmp_path / "c"), demo="off",
                          methods=list(PAPER_METHODS), checkpoints=str(tmp_path / "none")), load_models=False)
    assert s.status.mode == "loading" and "Loading" in s.banner()
    with pytest.raises(Exception, match="still loading"):
        s.analyse_sample("samples", 0)
    s.load_models_async().join(60)
    assert s.status.mode == "demo"  # random weights: labelled as demo
    assert all(e.status == "missing" and "dfdet train" in e.message for e in s.bank.entries.values())
    assert "not trained yet" in s.banner() and "&lt;your manifest&gt;" in s.banner()


def test_a_photo_without_a_face_scores_nothing_unless_asked_to_score_it_as_a_crop(env):
    """A landscape with no face: the visitor reads "no face found" and gets no verdicts, unless they tick
    "score the whole image as a face crop"; no detector the UI does not offer is suggested."""
    from PIL import Image

    from dfdet.errors import DataError
    x = np.linspace(0, 255, 640, dtype=np.uint8)
    path = env["tmp"] / "landscape.png"
    Image.fromarray(np.stack([np.tile(x, (360, 1))] * 3, axis=-1)).save(path)
    compare = env["session"].compare
    with pytest.raises(DataError) as err:
        compare.image(str(path), as_crop=False)
    assert "no face found, so nothing was scored" in str(err.value) and "cnn" not in str(err.value)
    asked = compare.image(str(path), as_crop=True)
    assert asked.prediction.table["p_fake"].notna().all() and "scored the whole image as a face crop, as asked" \
        in asked.prediction.message and "cnn" not in asked.prediction.message
