"""A 10^4-face run (bench/make_large_run.py) through the dashboard's services: stored projections are
used, never refitted; figures stay bounded and embed no image; ROC curves are decimated with exact
numbers; projections travel with `dfdet push` of a run. UMAP's fit is replaced by a cheap linear map
here (numba compiles for a minute); what is tested is everything around it."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dfdet.viz import plots, projection, umap_cache
from dfdet.viz.store import AppConfig, Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.make_large_run import FRAMES, make  # noqa: E402

N = 10_000
MB = 1 << 20
FIT_N = 600  # a small sample: the rest are placed by their nearest sampled neighbours


def linear_fit(z, dims=2, params=None):
    """A stand-in for UMAP: the first `dims` coordinates (deterministic, instant)."""
    return np.asarray(z)[:, :dims].astype(np.float32) * 10


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("large")
    run = make(N, root / "runs" / "big", dim=48, seed=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(umap_cache, "fit_umap", linear_fit)
        written = projection.project_run(run, params=projection.ProjectParams(fit_n=FIT_N), bar=False)
    assert len(written) == 8  # four methods x (2-D, 3-D)
    return run


@pytest.fixture
def store(big, tmp_path, monkeypatch):
    def refit(*a, **k):
        raise AssertionError("a stored projection must be used, not refitted")
    monkeypatch.setattr(umap_cache, "fit_umap", refit)
    return Store(AppConfig(runs=str(big.parent), cache_dir=str(tmp_path / "cache"), demo="off"))


def test_the_generator_writes_the_layout_with_videos_of_32_frames(big):
    from dfdet.artifacts import load_run
    run = load_run(big)
    p = run.predictions
    assert len(p) == N and len(run.methods) == 4
    assert p.groupby(["dataset", "source", "video"]).size().max() == FRAMES
    assert p["dataset"].nunique() == 4 and p["source"].nunique() >= 8 and set(p["label"]) == {0, 1}
    assert all(Path(run.info["data_root"], f).is_file() for f in p["path"].iloc[::997])  # real crops, by path
    z, norm = projection.load_embeddings(big / "embeddings" / "ln_norm.npz")
    assert isinstance(z, np.memmap) and z.shape == (N, 48) and len(norm) == N  # memory-mapped, not read
    assert np.allclose(np.linalg.norm(np.asarray(z[:50], np.float32), axis=1), 1, atol=1e-2)
    auroc = run.metrics.query("source == '*' and level == 'frame' and dataset == 'FF'")["auroc"]
    assert (auroc > 0.8).all()  # class structure in the scores


def test_project_is_resumable_and_places_the_rest_near_their_neighbours(big, monkeypatch):
    monkeypatch.setattr(umap_cache, "fit_umap", linear_fit)
    assert projection.project_run(big, params=projection.ProjectParams(fit_n=FIT_N), bar=False) == []  # all current
    got = projection.load(big, "ln_norm", 2)
    assert got.source == "stored" and got.coords.shape == (N, 2) and FIT_N * 0.9 <= len(got.sample) <= FIT_N + 20
    z, _ = projection.load_embeddings(big / "embeddings" / "ln_norm.npz")
    zs = projection.unit_chunk(z, got.sample)
    assert np.allclose(got.coords[got.sample], linear_fit(zs), atol=1e-4)  # the fitted rows, as fitted
    rest = np.setdiff1d(np.arange(N), got.sample)[::40]
    # every other face: the inverse-distance weighted mean of its 8 nearest sampled faces (exact at this size)
    placed = umap_cache.place(projection.unit_chunk(z, rest), zs, got.coords[got.sample], k=8)
    assert np.allclose(got.coords[rest], placed, atol=1e-3)


def test_views_use_the_stored_projection_and_stay_bounded_without_images(store):
    from dfdet.viz.services.errors import ErrorsService
    from dfdet.viz.services.roc import RocService
    from dfdet.viz.services.sphere import SphereService
    sphere = SphereService(store)
    for dims in (2, 3):
        for level in ("face", "video"):
            fig = sphere.figure("big", "ln_norm", "label", dims, level)
            text = fig.to_json()
            assert len(text) <= 5 * MB and "data:image" not in text
            points = [t for t in fig["data"] if t.get("customdata")]
            assert sum(len(t["customdata"]) for t in points) <= plots.MAX_POINTS
            assert "projection stored" in fig["layout"]["title"]["text"]
    fig = sphere.figure("big", "ln_norm", "label", 2, keep=(17, 9001))
    title = fig["layout"]["title"]["text"]
    assert f"shown of {N} faces" in title
    assert {t["type"] for t in fig["data"]} == {"heatmap", "scattergl"}  # density under WebGL points
    drawn = {int(r) for t in fig["data"] if t.get("customdata") for r, _ in t["customdata"]}
    assert {17, 9001} <= drawn  # the selected faces are always drawn
    run = store.run("big")
    wrong = set(np.nonzero((run.predictions["p_fake__ln_norm"] >= 0.5) != run.predictions["label"].astype(bool))[0])
    assert wrong <= drawn or len(wrong & drawn) >= plots.MAX_POINTS // 2 - 2  # the errors come first
    datasets = sorted(run.predictions["dataset"].unique())
    roc = RocService(store).view("big", run.methods, datasets, "frame", 0.5)
    text = roc.figure.to_json()
    assert len(text) <= 5 * MB and "data:image" not in text
    from dfdet.metrics import auroc
    curves = [tr for tr in roc.figure["data"][1:] if tr["mode"] == "lines"]
    assert len(curves) == 16 and all(len(tr["x"]) <= 1100 for tr in curves)  # drawn from ~1,000 points ...
    ff = run.predictions[run.predictions["dataset"] == "FF"]
    exact = auroc(ff["label"].to_numpy(), ff["p_fake__ln_norm"].to_numpy())
    row = roc.metrics[(roc.metrics["method"] == "LN + Norm") & (roc.metrics["dataset"] == "FF")]
    assert float(row["auroc"].iloc[0]) == pytest.approx(round(exact, 3))  # ... the numbers from all of them
    cases = ErrorsService(store).cases("big", "ln_norm")
    assert cases.totals["fp"] > 0 and 0 < len(cases.items["fp"]) <= 12


def test_a_slerp_path_on_a_large_run_is_placed_on_the_stored_projection(store):
    from dfdet.viz.services.sphere import SphereService
    res = SphereService(store).slerp("big", "ln_norm", 5, 7000)
    text = res.sphere.to_json()
    assert len(text) <= 5 * MB and "data:image" not in text
    path = [t for t in res.sphere["data"] if t.get("name") == "SLERP path"][0]
    coords = store.projection("big", "ln_norm", 2)
    assert abs(path["x"][0] - coords[5, 0]) < 0.5 * coords[:, 0].std()  # A's end is at (or beside) A
    assert len(res.strip) == 3


def test_new_embeddings_invalidate_the_stored_projection(big, tmp_path, monkeypatch):
    import shutil
    copy = tmp_path / "runs" / "copy"
    shutil.copytree(big, copy)
    z, norm = projection.load_embeddings(copy / "embeddings" / "ln_norm.npz")
    z = np.asarray(z)[::-1].copy()
    np.savez(copy / "embeddings" / "ln_norm.npz", z=z, norm=norm)
    assert projection.load(copy, "ln_norm", 2) is None
    assert projection.load(copy, "ln_tuning", 2) is not None  # only the changed method
    s = Store(AppConfig(runs=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"), demo="off"))
    from dfdet.errors import DataError
    with pytest.raises(DataError, match="dfdet project"):  # too large to fit in the app: says how to precompute
        s.projection("copy", "ln_norm", 2)


def test_a_small_run_without_a_stored_projection_is_fitted_here_and_says_so(tmp_path, monkeypatch):
    from test_app_helpers import make_synthetic_run

    from dfdet.viz.services.sphere import SphereService
    monkeypatch.setattr(umap_cache, "fit_umap", linear_fit)
    make_synthetic_run(tmp_path / "runs" / "small", n=40)
    s = Store(AppConfig(runs=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"), demo="off"))
    fig = SphereService(s).figure("small", "ln_norm")
    assert "fitted here" in fig["layout"]["title"]["text"]
    assert sum(len(t["customdata"]) for t in fig["data"]) == 40  # a small run: every face, no density
    assert {t["type"] for t in fig["data"]} == {"scatter"}


def test_push_of_a_run_carries_its_projections(big, tmp_path, monkeypatch):
    from test_hub_remote import LocalHub

    import huggingface_hub
    from dfdet.cli import main
    from dfdet.hub.space import pull_run
    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(huggingface_hub, "HfApi", type("Hub", (LocalHub,), {"root": root, "calls": []}))
    assert main(["push", str(big), "me/big-run"]) == 0
    files = {p.relative_to(root / "me/big-run").as_posix() for p in (root / "me/big-run").rglob("*") if p.is_file()}
    assert "projections/ln_norm.2d.npz" in files and not any(".knn" in f for f in files)
    got = pull_run("me/big-run", tmp_path / "pulled")
    assert projection.load(got, "ln_norm", 3) is not None  # the Space shows it without fitting
    meta = projection.meta_of(got / "projections" / "ln_norm.2d.npz")
    assert json.dumps(meta) and meta["n"] == N


def test_filters_by_dataset_truth_verdicts_and_p_range_are_paged(store):
    from dfdet.errors import DataError
    from dfdet.viz.services.errors import ErrorsService
    from dfdet.viz.services.sphere import SphereService
    p = store.run("big").predictions
    where = {"datasets": ["DFDC", "DFD"], "truth": "fake", "verdicts": {"ln_norm": "real", "ln_norm_slerp": "fake"}}
    expect = np.nonzero(p["dataset"].isin(["DFDC", "DFD"]) & (p["label"] == 1) & (p["p_fake__ln_norm"] < 0.5)
                        & (p["p_fake__ln_norm_slerp"] >= 0.5))[0]  # fakes LN + Norm misses and SLERP catches
    svc = ErrorsService(store)
    first, second = svc.browse("big", "ln_norm", where, 0, 10), svc.browse("big", "ln_norm", where, 1, 10)
    assert first.total == len(expect) > 20 and first.pages == -(-len(expect) // 10)
    got = [r for _, _, r in first.items + second.items]
    assert len(set(got)) == 20 and set(got) <= set(expect.tolist())
    scores = p["p_fake__ln_norm"].to_numpy()[got]
    assert (np.diff(scores) <= 1e-12).all()  # most fake first, across pages
    ranged = svc.browse("big", "ln_norm", {"p_range": (0.2, 0.3)})
    assert ranged.total == int(((p["p_fake__ln_norm"] >= 0.2) & (p["p_fake__ln_norm"] <= 0.3)).sum())
    fig = SphereService(store).figure("big", "ln_norm", where=where)
    drawn = {int(r) for t in fig["data"] if t.get("customdata") for r, _ in t["customdata"]}
    assert drawn == set(expect.tolist()) and f"{len(expect)} matching of {N} faces" in fig["layout"]["title"]["text"]
    with pytest.raises(DataError, match="no dataset 'XX'"):
        svc.browse("big", "ln_norm", {"datasets": ["XX"]})


def test_where_of_turns_the_filter_controls_into_filter_keywords():
    from dfdet.errors import DataError
    from dfdet.viz.errors import where_of
    assert where_of([], [], "all", [], [], 0, 1) == {}  # nothing ticked: every face
    assert where_of(["DFD"], ["FS"], "fake", ["ln_norm_slerp"], ["ln_norm"], 0.2, 0.9) == {
        "datasets": ["DFD"], "sources": ["FS"], "truth": "fake", "p_range": (0.2, 0.9),
        "verdicts": {"ln_norm_slerp": "fake", "ln_norm": "real"}}
    with pytest.raises(DataError, match="cannot both call a face fake and call it real: ln_norm"):
        where_of(fake_by=["ln_norm"], real_by=["ln_norm"])
    with pytest.raises(DataError, match="0 <= from <= to <= 1"):
        where_of(p_lo=0.8, p_hi=0.2)


def test_the_pages_filters_and_paging_reach_every_face_of_a_large_run(big, tmp_path, monkeypatch):
    """The controls on the page (ui/filters.py) through the handlers gradio calls: Errors pages through the
    matching faces, the Hypersphere draws only them, and both stay bounded."""
    from ui.page import build_app
    from dfdet.viz.services.errors import PAGE
    from dfdet.viz.session import Session
    monkeypatch.setattr(umap_cache, "fit_umap", linear_fit)  # only ever called for a projection not stored
    s = Session(AppConfig(runs=str(big.parent), cache_dir=str(tmp_path / "cache"), demo="off"), load_models=False)
    fns = {fn.api_name: fn.fn for fn in build_app(s).fns.values()}
    p = s.store.run("big").predictions
    expect = np.nonzero(p["dataset"].isin(["DFDC", "DFD"]) & (p["label"] == 1) & (p["p_fake__ln_norm"] < 0.5)
                        & (p["p_fake__ln_norm_slerp"] >= 0.5))[0]
    filters = (["DFDC", "DFD"], [], "fake", ["ln_norm_slerp"], ["ln_norm"], 0, 1)
    gallery, found, page, note, status = fns["_er_browse"]("big", "ln_norm", "most fake first", 0, *filters)
    pages = -(-len(expect) // PAGE)
    assert len(gallery) == PAGE and page == 0 and status == ""
    assert f"{len(expect)} faces match; page 0 of {pages - 1} (faces 1–{PAGE})" in note
    assert set(found["browse"]) <= set(expect.tolist())
    nxt = fns["_er_page_next"]("big", "ln_norm", "most fake first", 0, *filters)
    assert nxt[2] == 1 and not set(nxt[1]["browse"]) & set(found["browse"])  # the next page: other faces
    last = fns["_er_page_next"]("big", "ln_norm", "most real first", 10 ** 6, *filters)
    assert last[2] == pages - 1  # past the end: the last page
    fig, status = fns["_ui_hs"]("big", "ln_norm", "label", "2-D", "faces", *filters)
    assert status == "" and f"{len(expect)} matching of {N} faces" in fig["layout"]["title"]["text"]
    assert len(json.dumps(fig)) < 5 * MB and "data:image" not in json.dumps(fig)
    refused = fns["_er_browse"]("big", "ln_norm", "most fake first", 0, [], [], "all", ["ln_norm"], ["ln_norm"], 0, 1)
    assert "cannot both call a face fake" in refused[-1]
    for handler, bad in (("_er_browse", 1.5), ("_er_page_next", "abc"), ("_er_page_prev", 2.5)):
        got = fns[handler]("big", "ln_norm", "most fake first", bad, *filters)  # refused, not truncated to a page
        assert "page must be a whole number" in got[-1], (handler, got[-1])


def test_a_large_runs_hovered_face_is_fetched_on_demand_one_small_image_at_a_time(big, tmp_path, monkeypatch):
    import gradio as gr
    from ui.page import build_app
    from dfdet.viz import store as store_mod
    from dfdet.viz.session import Session
    monkeypatch.setattr(umap_cache, "fit_umap", linear_fit)
    s = Session(AppConfig(runs=str(big.parent), cache_dir=str(tmp_path / "cache"), demo="off"), load_models=False)
    fig = s.sphere.figure("big", "ln_norm")
    assert all(not cd[1] for t in fig["data"] if t.get("customdata") for cd in t["customdata"])  # none embedded
    fns = {fn.api_name: fn.fn for fn in build_app(s).fns.values()}
    got = fns["_hs_hover"]("big", "123")
    row, uri = got.split("|", 1)
    assert row == "123" and uri.startswith("data:image/jpeg;base64,") and len(uri) < 8_000
    monkeypatch.setattr(store_mod, "load_face", lambda *a: (_ for _ in ()).throw(AssertionError("read again")))
    assert fns["_hs_hover"]("big", "123") == got  # cached: the file is not read twice
    assert isinstance(fns["_hs_hover"]("big", str(N + 5)), type(gr.skip()))  # a bad row: no face, no error
    assert isinstance(fns["_hs_hover"]("nope", "1"), type(gr.skip()))


@pytest.mark.parametrize("page", [float("nan"), "abc", 1.5, float("inf")])
def test_a_page_that_is_no_whole_number_is_refused_in_one_line(store, page):
    from dfdet.errors import DataError
    from dfdet.viz.errors import where_of
    from dfdet.viz.services.errors import ErrorsService
    with pytest.raises(DataError, match="page must be a whole number"):
        ErrorsService(store).browse("big", "ln_norm", {}, page)
    with pytest.raises(DataError, match="two numbers from 0 to 1"):
        where_of(p_lo="abc")
