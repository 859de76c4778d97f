"""dfdet.runtime: the ONNX Runtime int8 engine agrees with fp32, its artefact is cached by weights hash,
and DetectorBank / predict / evaluate use it with the LayerNorm overlays and heads exact."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dfdet import runtime as rt
from dfdet.backbone import VisionBackbone
from dfdet.errors import DfdetError
from dfdet.methods import PAPER_METHODS

pytest.importorskip("onnxruntime")

COS_MIN, DP_MAX = rt.DEFAULT_THRESHOLDS


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared):
    """Tiny backbone, the four methods with LayerNorms and heads moved off their init, one int8 build."""
    from bench.bench_methods import make_checkpoints
    from dfdet.backbone import TINY_MODEL, load_clip
    from dfdet.config import BackboneConfig
    clip = load_clip(BackboneConfig(model=TINY_MODEL, pretrained=None, seed=0))
    ck = tmp_path_factory.mktemp("ck")
    make_checkpoints(clip, ck)
    cache = tmp_path_factory.mktemp("runtime-cache")
    art = rt.ensure_artefact("onnx-int8", VisionBackbone(clip.model.visual), model_name=TINY_MODEL, folder=cache)
    faces = sorted((shared / "datasets" / "FF").rglob("*.png"))[::2] + sorted((shared / "datasets" / "CDFv2").rglob("*.png"))[::2]
    return {"clip": clip, "ck": ck, "cache": cache, "art": art, "faces": faces}


def banks(setup, monkeypatch):
    from dfdet.inference import DetectorBank
    monkeypatch.setenv(rt.CACHE_ENV, str(setup["cache"].parent))
    monkeypatch.setattr(rt, "cache_dir", lambda weights_file=None: setup["cache"])
    ref = DetectorBank(setup["clip"], setup["ck"], methods=list(PAPER_METHODS))
    fast = DetectorBank(setup["clip"], setup["ck"], methods=list(PAPER_METHODS), runtime="onnx-int8")
    return ref, fast


def test_int8_agrees_with_fp32_on_real_faces(setup, monkeypatch):
    from PIL import Image
    ref, fast = banks(setup, monkeypatch)
    assert sorted(fast.ready) == sorted(PAPER_METHODS) and fast.engine.name == "onnx-int8"
    pixels = ref.preprocess([Image.open(f).convert("RGB") for f in setup["faces"]])
    a, b = ref.score_and_embed_all(pixels), fast.score_and_embed_all(pixels)
    for m in PAPER_METHODS:
        (pa, za), (pb, zb) = a[m], b[m]
        cos = (za * zb).sum(1) / (np.linalg.norm(za, axis=1) * np.linalg.norm(zb, axis=1))
        assert cos.min() >= COS_MIN, (m, cos.min())
        assert np.abs(pa - pb).max() <= DP_MAX, (m, np.abs(pa - pb).max())
        assert not np.array_equal(za, zb)  # really another runtime, not the fp32 path again
    # the four methods differ, so a mix-up of overlays or heads could not pass the loop above
    assert np.abs(b["ln_tuning"][1] - b["linear_probe"][1]).max() > 1e-2
    # predict goes through the same engine; one method alone too (k=1: int8 activation scales are per
    # batch, so it is not bit-equal to the k=4 batch, but it meets the same bar against fp32)
    p = fast.predict(pixels)
    for m in PAPER_METHODS:
        np.testing.assert_allclose(p[m], b[m][0], atol=1e-6)
        alone = fast.score_and_embed(pixels, m)[0]
        assert np.abs(alone - a[m][0]).max() <= DP_MAX and not np.array_equal(alone, a[m][0])


def test_artefact_is_reused_and_has_a_verified_sidecar(setup):
    bb = VisionBackbone(setup["clip"].model.visual)
    again = rt.ensure_artefact("onnx-int8", bb, model_name="dfdet-tiny-vit", folder=setup["cache"])
    assert again.path == setup["art"].path and not again.built
    meta = json.loads(again.path.with_suffix(".json").read_text())
    assert meta["weights_sha256"] == rt.frozen_hash(bb) and meta["kind"] == "onnx-int8"
    assert again.path.name.startswith(f"dfdet-tiny-vit-{meta['weights_sha256'][:16]}-")


def test_cache_rebuilds_on_new_weights_and_on_tampering(setup, tmp_path, monkeypatch):
    """The cache logic with a stand-in builder (the real export is exercised by the agreement test)."""
    built = []

    def fake(backbone, fp32, out):
        built.append(rt.frozen_hash(backbone))
        Path(out).write_bytes(b"graph for " + built[-1].encode())
        return Path(out)
    monkeypatch.setitem(rt.BUILDERS, "onnx-int8", fake)
    bb = VisionBackbone(setup["clip"].model.visual)
    first = rt.ensure_artefact("onnx-int8", bb, folder=tmp_path)
    assert first.built and rt.ensure_artefact("onnx-int8", bb, folder=tmp_path).built is False
    first.path.write_bytes(b"tampered")
    assert rt.ensure_artefact("onnx-int8", bb, folder=tmp_path).built  # sha256 mismatch: rebuilt
    other = VisionBackbone(__import__("copy").deepcopy(setup["clip"].model.visual))
    with torch.no_grad():
        other.visual.conv1.weight.add_(1e-3)  # new frozen weights
        other.visual.ln_pre.weight.add_(1.0)  # LayerNorms are inputs: they alone would not change the hash
    second = rt.ensure_artefact("onnx-int8", other, folder=tmp_path)
    assert second.built and second.path != first.path and len(built) == 3
    ln_only = VisionBackbone(__import__("copy").deepcopy(setup["clip"].model.visual))
    with torch.no_grad():
        ln_only.visual.ln_pre.weight.add_(1.0)
    assert rt.frozen_hash(ln_only) == rt.frozen_hash(bb)


def test_cache_dir_is_beside_the_weights_file(tmp_path, monkeypatch):
    w = tmp_path / "w" / "clip.safetensors"
    w.parent.mkdir()
    w.write_bytes(b"x")
    assert rt.cache_dir(str(w)) == w.parent / "dfdet-runtime"
    monkeypatch.setenv(rt.CACHE_ENV, str(tmp_path / "c"))
    assert rt.cache_dir(None) == tmp_path / "c" / "runtime"


def test_resolve_and_describe():
    assert rt.resolve_runtime("auto", "cpu", "dfdet-tiny-vit") == "torch-fp32"  # not measured there
    assert rt.resolve_runtime("auto", "cuda", "ViT-L-14") == "torch-fp32"
    assert rt.resolve_runtime("onnx-int8", "cpu") == "onnx-int8"
    with pytest.raises(DfdetError, match="runs on the CPU"):
        rt.resolve_runtime("onnx-int8", "cuda")
    with pytest.raises(DfdetError, match="unknown runtime"):
        rt.resolve_runtime("tensorrt", "cpu")
    line = rt.describe("onnx-int8")
    assert rt.RUNTIMES["onnx-int8"].agreement in line and "cosine" in line


def test_predict_cli_with_runtime(setup, monkeypatch, capsys):
    from dfdet.cli import main
    monkeypatch.setattr(rt, "cache_dir", lambda weights_file=None: setup["cache"])
    img = str(setup["faces"][0])
    assert main(["predict", img, "--checkpoints", str(setup["ck"]), "--model", "dfdet-tiny-vit",
                 "--pretrained", "none", "--device", "cpu", "--runtime", "onnx-int8"]) == 0
    out = capsys.readouterr()
    assert "ONNX Runtime int8" in out.err and "agreement" in out.err
    assert out.out.count("meaningless") == 1 and "LN-tuning" in out.out


# -- the runtime benchmarks, at tiny sizes on the artefact built above (no export of their own) --------------
def _smoke_table(text: str, name: str, cols: int) -> list[str]:
    from test_bench_smoke import table_rows
    rows = [r for r in table_rows(text, name) if len(r) == cols]
    assert len(rows) == 1, (name, cols, rows)
    return rows[0]


def test_bench_runtimes_smoke(setup, tmp_path):
    """Speed, memory and agreement columns for each runtime, agreement computed on the faces it says."""
    from bench import bench_runtimes
    from test_bench_smoke import check_header, number
    out = bench_runtimes.main(["--model", "dfdet-tiny-vit", "--runtimes", "torch-fp32", "onnx-int8", "torch-int8",
                               "--dfdc", "2", "--faces", "5", "--rounds", "1", "--warmup", "0", "--slow-faces", "5",
                               "--cache", str(setup["cache"]), "--out", str(tmp_path / "rt.md")])
    text = Path(out).read_text()
    check_header(text, "bench_runtimes")
    for name in ("torch-fp32", "onnx-int8", "torch-int8"):
        row = _smoke_table(text, name, 11)  # runtime, s, vs fp32, vs 1 fwd, build, peak, steady, faces, cos, dp, bar
        # seconds are printed to 2 decimals: a tiny model on an idle machine can read 0.00; the ratio cannot
        assert all(np.isfinite(number(c)) for c in row[1:10]) and number(row[1]) >= 0 and number(row[3]) > 0
        assert row[7] == "5" and row[10] in ("yes", "no")
        per_method = _smoke_table(text, name, 7)  # runtime, faces, 4 x "max / mean", "min / mean" cosine
        pairs = [tuple(float(x) for x in c.split(" / ")) for c in per_method[2:]]
        assert per_method[1] == "5" and all(lo <= hi + 1e-9 for hi, lo in pairs[:4])  # mean <= max
        assert pairs[4][0] <= pairs[4][1] <= 1.0 + 1e-6 and number(row[8]) == pairs[4][0]
        if name == "torch-fp32":
            assert number(row[8]) == 1.0 and number(row[9]) == 0.0 and row[10] == "yes"
        else:  # really computed against fp32: close, not identical
            assert COS_MIN <= number(row[8]) < 1.0 and number(row[9]) <= 5 * DP_MAX
    assert "onnx-int8: rt " in text and "torch-int8: rt " in text  # the raw rounds


def test_bench_runtime_agreement_smoke(setup, tmp_path):
    """Stage 1 (with the reference, every face) and stage 2 (a prefix, backbone freed), stratified over datasets."""
    from bench import bench_runtime_agreement as ba
    from test_bench_smoke import check_header, number, table_rows
    out = ba.main(["--model", "dfdet-tiny-vit", "--runtimes", "torch-int8", "--subset-runtimes", "onnx-int8",
                   "--subset", "3", "--dfdc", "2", "--faces", "5", "--batch", "2", "--cache", str(setup["cache"]),
                   "--out", str(tmp_path / "agree.md")])
    text = Path(out).read_text()
    check_header(text, "bench_runtime_agreement")
    covers = {"torch-fp32": ("5", "FF 2, CDFv2 2, DFDC 1"), "torch-int8": ("5", "FF 2, CDFv2 2, DFDC 1"),
              "onnx-int8": ("3", "FF 1, CDFv2 1, DFDC 1")}
    for name, (n, per_ds) in covers.items():
        row = _smoke_table(text, name, 8)  # runtime, faces, per dataset, min/mean cos, max/mean dp, bar
        assert (row[1], row[2]) == (n, per_ds)
        cos_min, cos_mean, dp_max, dp_mean = (number(c) for c in row[3:7])
        assert cos_min <= cos_mean and dp_mean <= dp_max
        if name == "torch-fp32":
            assert (cos_min, dp_max, row[7]) == (1.0, 0.0, "yes")
        else:
            assert COS_MIN <= cos_min < 1.0 and dp_max <= 5 * DP_MAX
            for ds in ("FF", "CDFv2", "DFDC"):  # the per-dataset table
                assert [r for r in table_rows(text, name) if r[1:2] == [ds]]
    assert "with the torch backbone freed" in text


def test_bench_video_cpu_smoke(setup, tmp_path, monkeypatch):
    """Every variant timed, goals judged, the streamed video's stages and first-score times recorded."""
    from bench import bench_video_cpu
    from test_bench_smoke import check_header, number, table_rows
    monkeypatch.setattr(rt, "cache_dir", rt.cache_dir)  # the bench replaces it for --cache: undone at teardown
    out = bench_video_cpu.main(["--model", "dfdet-tiny-vit", "--runtime", "onnx-int8", "--frames", "2", "--rounds", "1",
                                "--no-fp32-video", "--cache", str(setup["cache"]), "--out", str(tmp_path / "v.md")])
    text = Path(out).read_text()
    check_header(text, "bench_video_cpu")
    for name in ("1 bare fp32 forward", "4 methods, one face (onnx-int8)", "video, streamed + overlap",
                 "video, streamed, sequential"):
        (row,) = table_rows(text, name)
        assert number(row[1]) > 0 and number(row[2]) > 0  # seconds (3 significant digits: never 0.00), ratio
    assert number(table_rows(text, "1 bare fp32 forward")[0][2]) == 1.0
    for goal in ("four methods on one face", "16-frame video end to end (best streamed variant)",
                 "first score on screen (overlap)", "first score on screen (sequential)"):
        (row,) = table_rows(text, goal)
        assert number(row[1]) > 0 and row[3] in ("met", "MISSED")
    for variant in ("overlap", "sequential"):
        (row,) = table_rows(text, variant)
        assert all(number(c) >= 0 for c in row[1:]) and number(row[-1]) >= number(row[5]) > 0  # total >= first
        assert re.search(rf"- first score, {variant}: \d+\.\d\d", text)
