"""dfdet.learn and the `inspect` / `geometry` commands, checked against values computed by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from dfdet.artifacts import write_run
from dfdet.backbone import TINY_MODEL
from dfdet.checkpoint import save_checkpoint
from dfdet.cli import main
from dfdet.learn import geometry, stack
from dfdet.methods import get_method
from dfdet.model import build_model, trainable_state


def _cli_json(capsys, *argv) -> object:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


# -- what trains ------------------------------------------------------------------------------------------

def test_stack_lights_exactly_the_ln_tensors_and_head_on_vitl():
    parts = stack.stack_parts("ln_tuning", "ViT-L-14")
    lit = [p for p in parts if p.trained]
    # 24 blocks x (ln_1, ln_2) + ln_pre + ln_post = 50 LayerNorms of 2 x 1024, and the 1024 x 2 + 2 head
    assert sorted(p.kind for p in lit) == ["head"] + ["ln"] * 50
    assert all(p.trained == p.params for p in lit)
    assert stack.trained_total("ln_tuning") == 50 * 2 * 1024 + 2050 == 104_450
    assert stack.trained_total("linear_probe") == 2050
    assert stack.trained_total("zeroshot_1desc") == 0
    frozen = {p.name for p in parts if not p.trained}
    assert {"patch embedding", "block 0 attn", "block 23 mlp"} <= frozen


def test_stack_counts_equal_the_registry_counts_on_the_tiny_model():
    from dfdet.viz.about import trainable_counts
    counts = trainable_counts(TINY_MODEL)
    for name in ("linear_probe", "ln_norm", "ln_norm_slerp", "textguided_1desc"):
        assert stack.trained_total(name, TINY_MODEL) == counts[name], name


def _moved_checkpoint(tiny_clip, tmp_path, d_gamma=0.5, d_beta=-0.25):
    """An ln_tuning checkpoint whose block-0 ln_1 γ moved by d_gamma and ln_post β by d_beta, nothing else."""
    det = build_model(tiny_clip, get_method("ln_tuning"))
    vis = det.backbone.visual
    with torch.no_grad():
        vis.transformer.resblocks[0].ln_1.weight += d_gamma
        vis.ln_post.bias += d_beta
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_checkpoint(folder, trainable_state(det), {"method": "ln_tuning",
                                                   "backbone": {"model": TINY_MODEL, "weights": "random-init-seed0"}})
    return folder


def test_inspect_reports_a_known_move(tiny_clip, tmp_path, capsys):
    folder = _moved_checkpoint(tiny_clip, tmp_path)
    out = _cli_json(capsys, "inspect", str(folder), "--json")
    assert "seeded random-weight" in out["compared_with"]  # says what Δ is measured against
    rows = {r["layer"]: r for r in out["layers"]}
    assert list(rows) == ["ln_pre", "block 0 ln_1", "block 0 ln_2", "block 1 ln_1", "block 1 ln_2", "ln_post"]
    g0 = tiny_clip.pristine["transformer.resblocks.0.ln_1.weight"].numpy()
    moved = rows["block 0 ln_1"]
    assert moved["mean |Δγ|"] == pytest.approx(0.5, abs=1e-6)
    assert moved["‖Δγ‖/‖γ₀‖"] == pytest.approx(0.5 * math.sqrt(g0.size) / np.linalg.norm(g0), rel=1e-5)
    assert moved["mean |Δβ|"] == pytest.approx(0.0, abs=1e-7)
    assert rows["ln_post"]["mean |Δβ|"] == pytest.approx(0.25, abs=1e-6)
    assert rows["ln_post"]["‖Δβ‖/‖β₀‖"] is None  # β₀ = 0: no relative size, never a division by zero
    for name in ("ln_pre", "block 0 ln_2", "block 1 ln_1", "block 1 ln_2"):
        assert rows[name]["mean |Δγ|"] == pytest.approx(0.0, abs=1e-7)


def test_inspect_text_and_errors(tiny_clip, tmp_path, capsys):
    folder = _moved_checkpoint(tiny_clip, tmp_path)
    assert main(["inspect", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "block 0 ln_1" in text and "0.5" in text and "n/a" in text
    assert main(["inspect", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "checkpoint folder not found" in err and "Traceback" not in err


def test_ln_deltas_relative_sizes():
    ref = {"ln_pre.weight": np.array([3.0, 4.0]), "ln_pre.bias": np.array([0.0, 2.0])}
    got = {"backbone.visual.ln_pre.weight": np.array([3.0, 5.0]), "backbone.visual.ln_pre.bias": np.array([1.0, 2.0])}
    row = stack.ln_deltas(got, ref).iloc[0]
    assert row["mean |Δγ|"] == pytest.approx(0.5) and row["‖Δγ‖/‖γ₀‖"] == pytest.approx(1 / 5)
    assert row["mean |Δβ|"] == pytest.approx(0.5) and row["‖Δβ‖/‖β₀‖"] == pytest.approx(1 / 2)


# -- alignment and uniformity ----------------------------------------------------------------------------------

def _square_run(folder, extra=0):
    """Four unit vectors: reals e1, e2; fakes −e1, −e2 (plus `extra` copies of e1 as reals in dataset B)."""
    e1, e2 = np.eye(4)[0], np.eye(4)[1]
    z = np.stack([e1, e2, -e1, -e2] + [e1] * extra)
    labels = [0, 0, 1, 1] + [0] * extra
    preds = pd.DataFrame({"path": [f"{i}.png" for i in range(len(z))], "dataset": ["A"] * 4 + ["B"] * extra,
                          "source": "s", "video": [f"v{i}" for i in range(len(z))], "label": labels, "split": "test",
                          "p_fake__ln_norm": 0.5})
    return write_run(folder, {"demo": False}, preds, [], [], {"ln_norm": (z, np.ones(len(z)))})


def test_geometry_by_hand(tmp_path, capsys):
    run = _square_run(tmp_path / "run")
    rows = _cli_json(capsys, "geometry", str(run), "--json")
    a = next(r for r in rows if r["dataset"] == "A")
    # same-class pairs: (e1, e2) and (−e1, −e2), both ‖·‖² = 2
    assert a["alignment"] == pytest.approx(2.0)
    # the six pairs: four at ‖·‖² = 2 (orthogonal), two at 4 (opposite)
    assert a["uniformity"] == pytest.approx(math.log((4 * math.exp(-4) + 2 * math.exp(-8)) / 6))
    assert (a["n"], a["real"], a["fake"]) == (4, 2, 2)


def test_geometry_samples_large_groups_and_says_so(tmp_path):
    run = _square_run(tmp_path / "run", extra=10)
    from dfdet.artifacts import load_run
    df = geometry.geometry_table(load_run(run), cfg=geometry.GeometryConfig(max_faces=6))
    b = df[df["dataset"] == "B"].iloc[0]
    assert (b["n"], b["n_used"]) == (10, 6)
    assert b["alignment"] == pytest.approx(0.0, abs=1e-9)  # identical vectors
    assert b["uniformity"] == pytest.approx(0.0, abs=1e-9)  # log mean exp(0)
    assert math.isnan(geometry.uniformity(np.eye(3)[:1]))


def test_geometry_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["geometry", str(tmp_path)]) == 2
    assert "not a finished dfdet run" in capsys.readouterr().err


# -- the sphere: exact slices -------------------------------------------------------------------------------

def test_slerp_stays_on_the_sphere_and_lerp_cuts_inside():
    from dfdet.learn import sphere
    za, zb = np.eye(8)[0], np.eye(8)[1]  # 90° apart
    p = sphere.interpolate(za, zb, na=2.0, nb=4.0, steps=5)
    assert np.allclose(np.linalg.norm(p.slerp, axis=1), 1.0)
    assert np.linalg.norm(p.lerp[2]) == pytest.approx(math.cos(math.radians(45)))  # the chord's midpoint
    assert p.angle == pytest.approx(90.0)
    assert np.linalg.norm(p.slerp_raw[2]) == pytest.approx(3.0)  # interpolated norm for a head without Norm
    with pytest.raises(Exception, match="same way"):
        sphere.interpolate(za, za)


def test_boundary_circle_is_where_the_head_says_one_half():
    from dfdet.learn import sphere
    rng = np.random.default_rng(1)
    head = sphere.Head(rng.standard_normal(16), 0.4, True, "test")
    za, zb = rng.standard_normal(16), rng.standard_normal(16)
    B = sphere.pair_view(za / np.linalg.norm(za), zb / np.linalg.norm(zb), head)
    assert np.allclose(B @ B.T, np.eye(3), atol=1e-9)
    circle = sphere.circle_on_sphere(B @ head.u, -head.c)
    assert circle is not None
    assert np.allclose(head.p_fake(circle @ B), 0.5, atol=1e-9)  # back in 16-d: exactly on the boundary
    far = sphere.circle_on_sphere(np.array([1.0, 0, 0]), 2.0)
    assert far is None  # a plane that misses the sphere draws nothing


def test_norm_sweep_is_flat_with_norm_and_moves_without():
    from dfdet.learn import sphere
    u = np.array([1.0, 0, 0, 0])
    z = np.array([0.6, 0.8, 0, 0])
    heads = {"with": sphere.Head(u, 0.1, True, "n"), "without": sphere.Head(u, 0.1, False, "r")}
    s = sphere.norm_sweep(z, 3.0, heads)
    assert np.ptp(s["with"]) == pytest.approx(0.0, abs=1e-12)
    assert np.ptp(s["without"]) > 0.3


def test_learn_link_clamps_and_ignores_with_plain_notes(tmp_path):
    from dfdet.artifacts import load_run
    from dfdet.learn import link
    run = load_run(_square_run(tmp_path / "run"))
    got = link.read({"tab": "learn", "run": "r", "method": "ln_norm", "a": "99", "b": "-3", "t": "7",
                     "row": "x<script>", "m2": "nope", "stack": "ln_tuning", "evil": "1"}, {"r": run})
    assert got.values == {"run": "r", "method": "ln_norm", "a": 3, "b": 0, "t": 1.0, "stack": "ln_tuning"}
    assert len(got.notes) == 6  # a, b, t clamped; row, m2, evil ignored
    assert link.read({"t": "nan", "run": "missing"}, {"r": run}).values == {}


def test_service_panels_on_a_run_without_models(tmp_path):
    from dfdet.learn.service import LearnService
    from dfdet.viz.store import AppConfig, Store
    _square_run(tmp_path / "runs" / "sq")
    store = Store(AppConfig(runs=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), demo="off"))
    store.reload_runs()
    svc = LearnService(store)
    fig, text = svc.boundary("sq", "ln_norm", 1)
    assert "class means" in fig["layout"]["title"]["text"]  # no head loaded: says what it drew instead
    sph, nf, pf, text = svc.pair("sq", "ln_norm", 0, 1, 0.5)
    assert "‖LERP‖ = 0.707" in text and "No p_fake" in text
    df, _ = svc.geometry("sq")
    assert df[df["dataset"] == "A"]["alignment"].iloc[0] == pytest.approx(2.0)
    table, cite = svc.reported("sq")
    assert "arXiv:2503.19683" in cite and (table["reported"] != "").all()


def test_bundled_reported_numbers_match_their_transcription_and_cite_their_source():
    from dfdet.learn import reported
    from dfdet.text.thesis import THESIS_REPORTED_AUROC
    rec = reported.records()
    thesis = rec[rec["source"] == "thesis"]
    assert {(r.method, r.dataset): r.value for r in thesis.itertuples()} == {
        (m, d): v for m, per in THESIS_REPORTED_AUROC.items() for d, v in per.items()}
    assert all(why for _, why in reported.missing())  # a table without numbers says why
    # the 'Proposed' row of the authors' model card (huggingface.co/yermandy/deepfake-detection, Results), as printed
    card = rec[rec["source"] == "model_card"]
    assert {r.dataset: r.value for r in card.itertuples()} == {
        "CDFv2": 96.62, "DFD": 98.0, "DFDC": 87.15, "FFIW": 91.52, "DSv1": 92.01}
    assert set(card["method"]) == {"ln_norm_slerp"} and set(card["level"]) == {"video"}
    assert set(thesis["level"]) == {"not stated"}  # the thesis does not say frame or video
    # nothing invented for the tables no traceable source gave
    assert rec[rec["table"].isin(["ablation", "ff_subsets"])].empty
    assert {t for t, _ in reported.missing()} == {t["title"] for t in reported.load()["tables"]
                                                  if t["id"] in ("ablation", "ff_subsets")}


def test_every_reported_number_names_a_known_method_dataset_and_cited_source():
    from dfdet.learn import reported
    from dfdet.methods import METHODS
    data, rec = reported.load(), reported.records()
    assert set(rec["method"]) <= set(METHODS)
    assert set(rec["dataset"]) <= set(data["dataset_names"])
    assert {t["source"] for t in data["tables"]} <= set(data["sources"])
    assert all(bool(t["records"]) != bool(t.get("missing")) for t in data["tables"])  # numbers or why, never both


def test_reported_sits_beside_the_runs_measured_value_on_the_same_dataset(tmp_path):
    from dfdet.artifacts import load_run
    from dfdet.learn import reported
    preds = pd.DataFrame({"path": ["a.png", "b.png"], "dataset": "CDFv2", "source": "s", "video": ["v0", "v1"],
                          "label": [0, 1], "split": "test", "p_fake__ln_norm_slerp": [0.2, 0.9]})
    metrics = [{"method": "ln_norm_slerp", "dataset": "CDFv2", "source": "*", "level": lvl, "auroc": v}
               for lvl, v in (("frame", 0.875), ("video", 0.9))]
    run = load_run(write_run(tmp_path / "run", {"demo": False}, preds, metrics, [], {}))
    table = reported.beside_measured(run).set_index(["method", "dataset"])
    row = table.loc[("ln_norm_slerp", "CDFv2")]
    assert (row["reported"], row["level"]) == ("96.62%", "video")
    assert (row["measured here (frame)"], row["measured here (video)"]) == ("87.50%", "90.00%")
    assert table.loc[("ln_norm_slerp", "DFD"), "measured here (video)"] == "—"  # the run has no DFD


def test_about_counts_a_loaded_zero_shot_method_as_loaded():
    from dfdet.viz import about
    md = about.method_markdown(TINY_MODEL, {"zeroshot_1desc": 0, "ln_norm": 8450}, "ViT-L-14")
    rows = {line.split("|")[1].strip(" `"): line for line in md.splitlines()[2:]}
    assert "not loaded" not in rows["zeroshot_1desc"] and "| 0 |" in rows["zeroshot_1desc"]
    assert "not loaded" in rows["linear_probe"]
    assert about.paper_results() is not None  # the bundled reported numbers (thesis), with their source


def test_onto_sphere_keeps_the_verdict_axis_exactly():
    from dfdet.learn import sphere
    c = np.array([[0.3, 0.01, 0.02], [-0.5, 0.0, 0.0], [0.9, -0.2, 0.1]])
    on = sphere.onto_sphere(c)
    assert np.allclose(np.linalg.norm(on, axis=1), 1.0)
    assert np.allclose(on[:, 0], c[:, 0])  # the side of the boundary plane is unchanged
    assert np.allclose(on[0, 1:] / np.linalg.norm(on[0, 1:]), c[0, 1:] / np.linalg.norm(c[0, 1:]))


def test_inspect_without_the_weights_it_was_trained_from_says_what_it_needs(tiny_clip, tmp_path, capsys):
    import json as _json
    folder = _moved_checkpoint(tiny_clip, tmp_path)
    meta = _json.loads((folder / "dfdet.json").read_text())
    meta["backbone"]["weights"] = "file:clip_l14.safetensors"
    (folder / "dfdet.json").write_text(_json.dumps(meta))
    assert main(["inspect", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "clip_l14.safetensors" in err and "--clip-weights" in err and "Traceback" not in err
    assert main(["inspect", str(folder), "--clip-weights", str(tmp_path / "missing.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err


def test_learn_link_round_trip(tmp_path):
    from urllib.parse import parse_qsl

    from dfdet.artifacts import load_run
    from dfdet.learn import link
    run = load_run(_square_run(tmp_path / "run"))
    q = link.query("r", "ln_norm", None, 1.0, 3.0, 2.0, 0.25, "ln_tuning")
    assert q == "tab=learn&run=r&method=ln_norm&a=1&b=3&row=2&t=0.25&stack=ln_tuning"
    got = link.read(dict(parse_qsl(q)), {"r": run})
    assert got.notes == [] and got.values == {"run": "r", "method": "ln_norm", "a": 1, "b": 3, "row": 2, "t": 0.25,
                                              "stack": "ln_tuning"}


def test_service_refuses_unknown_names_with_one_line(tmp_path):
    from dfdet.errors import DataError
    from dfdet.learn.service import LearnService
    from dfdet.viz.store import AppConfig, Store
    _square_run(tmp_path / "runs" / "sq")
    store = Store(AppConfig(runs=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), demo="off"))
    store.reload_runs()
    svc = LearnService(store)
    with pytest.raises(DataError, match="unknown method"):
        svc.what_trains("<b>x</b>")
    with pytest.raises(DataError, match="no method"):
        svc.boundary("sq", "ln_tuning")
    with pytest.raises(DataError, match="same row"):
        svc.pair("sq", "ln_norm", 2, 2)


def test_same_faces_compares_ln_with_ln_norm(tmp_path):
    from dfdet.learn.service import LearnService
    from dfdet.viz.store import AppConfig, Store
    folder = tmp_path / "runs" / "two"
    z = np.eye(4)
    preds = pd.DataFrame({"path": [f"{i}.png" for i in range(4)], "dataset": "A", "source": "s",
                          "video": [f"v{i}" for i in range(4)], "label": [0, 0, 1, 1], "split": "test",
                          "p_fake__ln_tuning": [0.1, 0.2, 0.7, 0.9], "p_fake__ln_norm": [0.4, 0.6, 0.7, 0.8]})
    write_run(folder, {}, preds, [], [], {"ln_tuning": (z, np.array([1.0, 2.0, 3.0, 4.0])),
                                          "ln_norm": (z, np.ones(4))})
    store = Store(AppConfig(runs=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), demo="off"))
    store.reload_runs()
    text = LearnService(store).same_faces("two")
    assert "same verdict for 75.0%" in text  # row 1: 0.2 vs 0.6
    assert "rank correlation +1.00" in text  # p_fake rises with ‖z‖ exactly
