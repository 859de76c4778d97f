"""Saliency maps that can be wrong: a planted-square task where the evidence is known.

"Fake" = a white square planted on one patch of a real DFDC crop. The tiny ViT (at 56 px, so that
training takes seconds) is trained on it until it detects the square; then every class-specific map
must peak on the planted patch, and
deleting patches in the map's order must lower p_fake faster than random order. The same checks
on the untrained detector must fail: a map that passes them there would be decoration.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dfdet.backbone import CLIP_MEAN, CLIP_STD
from dfdet.explain.cache import MapCache, model_id
from dfdet.explain.faithfulness import model_scorer, patch_masks, perturbation_curves
from dfdet.explain.saliency import difference_map, saliency_maps, traced_forward
from dfdet.model import build_model

PATCH = 8  # dfdet-tiny-vit56: the tiny ViT (2 blocks, width 64) at 56 px, a 7x7 grid of 8-px patches
MODEL_CONFIGS = Path(__file__).parent / "model_configs"


def _white() -> torch.Tensor:
    return ((1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)).view(3, 1, 1)


def _plant(x: torch.Tensor, r: int, c: int) -> torch.Tensor:
    x = x.clone()
    x[:, r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH] = _white()
    return x


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls: on a busy 2-core machine one thread runs them several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def planted(one_thread, shared):
    """(trained detector, untrained detector, 8 planted test faces, their square positions)."""
    import open_clip
    from dfdet.backbone import load_clip
    from dfdet.config import BackboneConfig
    open_clip.add_model_config(MODEL_CONFIGS)
    paths = sorted((shared / "datasets" / "DFDC" / "real").glob("*/*"))[:40]
    clip = load_clip(BackboneConfig(model="dfdet-tiny-vit56", pretrained=None, seed=0))
    faces = torch.stack([clip.preprocess(Image.open(p).convert("RGB")) for p in paths])
    g = torch.Generator().manual_seed(0)

    def positions(n):
        return [tuple(torch.randint(1, 6, (2,), generator=g).tolist()) for _ in range(n)]

    torch.manual_seed(0)
    model = build_model(clip, "ln_tuning")
    untrained = copy.deepcopy(model)  # the same detector before any step
    model.requires_grad_(True)  # the whole tiny ViT learns the square: a few steps are enough
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_steps(model, opt, faces, g, positions)
    model.eval()
    pos = positions(8)
    test = torch.stack([_plant(faces[32 + i], *p) for i, p in enumerate(pos)])
    with torch.no_grad():
        p_fake = F.softmax(model(torch.cat([test, faces[32:40]])), -1)[:, 1]
    from dfdet.metrics import auroc
    assert auroc(np.r_[np.ones(8), np.zeros(8)], p_fake.numpy()) >= 0.85, \
        f"the tiny ViT did not learn the planted square: p_fake {p_fake.numpy().round(2)}"
    return model, untrained.eval(), test, pos


def train_steps(model, opt, faces, g, positions, steps: int = 60, batch: int = 32) -> None:
    for _ in range(steps):
        idx = torch.randint(0, 32, (batch,), generator=g)
        fake = torch.rand(batch, generator=g) < 0.5
        pos = positions(batch)
        x = torch.stack([_plant(faces[i], *p) if f else faces[i] for i, f, p in zip(idx, fake, pos)])
        loss = F.cross_entropy(model(x), fake.long())
        opt.zero_grad()
        loss.backward()
        opt.step()


def evidence(model, test, pos, kind: str) -> tuple[int, float, float]:
    """(maps peaking on the square, mean deletion AUC, mean deletion AUC of random orders)."""
    maps = saliency_maps(model, test, kind)
    hits = sum(np.unravel_index(m.argmax(), m.shape) == p for m, p in zip(maps, pos))
    aucs = [perturbation_curves(model_scorer(model), test[i], maps[i], steps=7, n_random=2).aucs() for i in range(2)]
    return hits, float(np.mean([a["deletion"] for a in aucs])), float(np.mean([a["deletion_random"] for a in aucs]))


def shows_evidence(hits: int, deletion: float, deletion_random: float) -> bool:
    return hits >= 6 and deletion < 0.6 * deletion_random


@pytest.mark.parametrize("kind", ["gradcam", "chefer"])
def test_maps_find_the_planted_square_and_untrained_maps_do_not(planted, kind):
    model, untrained, test, pos = planted
    trained = evidence(model, test, pos, kind)
    assert shows_evidence(*trained), f"{kind} on the trained detector: {trained}"
    before = evidence(untrained, test, pos, kind)
    assert not shows_evidence(*before), f"{kind} passes on an untrained detector too: {before}"


def test_rollout_ignores_the_head(planted):
    model, _, test, _ = planted
    a = saliency_maps(model, test[:2], "rollout")
    saved = {k: v.clone() for k, v in model.head.state_dict().items()}
    try:
        with torch.no_grad():
            model.head.weight.normal_()
        b = saliency_maps(model, test[:2], "rollout")
        c = saliency_maps(model, test[:2], "chefer")
    finally:
        model.head.load_state_dict(saved)
    np.testing.assert_allclose(a, b, atol=1e-6)  # class-agnostic, as documented
    assert not np.allclose(c, saliency_maps(model, test[:2], "chefer"), atol=1e-3)  # chefer is not


def test_traced_forward_is_the_model_and_last_block_output_has_no_patch_gradient(tiny_clip):
    torch.manual_seed(0)
    model = build_model(tiny_clip, "ln_norm").eval()
    x = torch.randn(2, 3, 224, 224)
    logits, attns = traced_forward(model, x)
    torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=1e-4)
    assert attns[0].shape == (2, 2, 50, 50)  # heads = width / head_width = 64 / 32
    # Why Grad-CAM reads the last block's ln_1: what the last block adds to patch tokens never reaches z_cls.
    out = {}
    last = model.backbone.visual.transformer.resblocks[-1]
    h = last.mlp.register_forward_hook(lambda m, i, o: out.setdefault("o", o))
    try:
        with torch.enable_grad():
            y = model(x.requires_grad_(True))
            grad = torch.autograd.grad(y[:, 1].sum(), out["o"])[0]
    finally:
        h.remove()
    assert grad[:, 1:].abs().max() == 0 and grad[:, 0].abs().max() > 0


def test_difference_map_and_masks():
    a, b = np.eye(3, dtype=np.float32), np.full((3, 3), 0.25, np.float32)
    np.testing.assert_allclose(difference_map(a, b), a - b)
    with pytest.raises(Exception, match="different grids"):
        difference_map(a, np.zeros((4, 4)))
    m = patch_masks(np.array([4, 0, 1, 2, 3, 5, 6, 7, 8]), 3, 6, 9)
    assert m.shape == (10, 1, 6, 6)
    assert m[0].sum() == 0 and m[-1].sum() == 36
    assert m[1, 0, 2:4, 2:4].sum() == 4 and m[1].sum() == 4  # the first patch removed is the centre one


def test_map_cache_round_trip_and_refuses_damage(tmp_path):
    cache = MapCache(tmp_path)
    mid = model_id({"method": "ln_tuning", "x": 1})
    assert mid != model_id({"method": "ln_tuning", "x": 2})
    calls = []
    m = cache.get_or_compute(3, "ln_tuning", "gradcam", mid, lambda: calls.append(1) or np.ones((4, 4)))
    again = cache.get_or_compute(3, "ln_tuning", "gradcam", mid, lambda: calls.append(1) or np.zeros((4, 4)))
    assert len(calls) == 1 and np.array_equal(m, again)
    cache.path(3, "ln_tuning", "gradcam", mid).write_bytes(b"not a numpy file")
    assert cache.get(3, "ln_tuning", "gradcam", mid) is None
    bad = cache.path(4, "../x", "gradcam", mid)
    bad.parent.mkdir(parents=True)
    with bad.open("wb") as f:
        np.save(f, np.array([object()], dtype=object), allow_pickle=True)
    assert cache.get(4, "../x", "gradcam", mid) is None  # a pickled array is never loaded
    assert cache.path(4, "../x", "gradcam", mid).is_relative_to(tmp_path / "explain")


def test_cli_explain_writes_maps_and_curves(tiny_clip, tmp_path, shared, capsys):
    from dfdet.cli import main
    from test_app_helpers import make_checkpoints
    ckpt = make_checkpoints(tiny_clip, tmp_path / "ck", methods=("linear_probe", "ln_tuning"))
    face = next((shared / "datasets" / "DFDC" / "fake").glob("*/*"))
    out, js = tmp_path / "maps.png", tmp_path / "maps.json"
    rc = main(["explain", str(face), "--checkpoints", str(ckpt), "--model", "dfdet-tiny-vit", "--pretrained", "none",
               "--device", "cpu", "--kind", "chefer", "--diff", "ln_tuning", "linear_probe", "--steps", "4",
               "-o", str(out), "--json", str(js)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "deletion AUC" in text and "meaningless" in text
    assert Image.open(out).size[0] > 400
    payload = json.loads(js.read_text())
    assert set(payload["maps"]) == {"linear_probe", "ln_tuning"}
    maps = {k: np.array(v) for k, v in payload["maps"].items()}
    assert maps["ln_tuning"].shape == (7, 7) and not np.allclose(maps["ln_tuning"], maps["linear_probe"])
    assert len(payload["curves"]["ln_tuning"]["deletion"]) == 5
    assert main(["explain", str(face), "--checkpoints", str(ckpt), "--model", "dfdet-tiny-vit", "--pretrained",
                 "none", "--device", "cpu", "--diff", "ln_norm", "linear_probe", "-o", str(out)]) == 2
    assert "not ready" in capsys.readouterr().err


def test_service_maps_per_method_cached_per_run_row_method(tiny_clip, tmp_path, shared, monkeypatch):
    from dfdet.explain import service
    from dfdet.inference import DetectorBank
    from test_app_helpers import make_checkpoints
    ckpt = make_checkpoints(tiny_clip, tmp_path / "ck", methods=("linear_probe", "ln_tuning"))
    bank = DetectorBank(tiny_clip, ckpt, ["linear_probe", "ln_tuning", "zeroshot_1desc"])
    face = Image.open(next((shared / "datasets" / "DFDC" / "fake").glob("*/*"))).convert("RGB")
    cache = MapCache(tmp_path / "run")
    e = service.explain_face(bank, face, "gradcam", cache=cache, row=5, steps=4)
    assert set(e.maps) == {"linear_probe", "ln_tuning"} and "zeroshot_1desc" in e.skipped
    assert len(list((tmp_path / "run" / "explain" / "gradcam").rglob("5-*.npy"))) == 2
    monkeypatch.setattr(service, "saliency_maps", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = service.explain_face(bank, face, "gradcam", cache=cache, row=5, curves=False)
    assert all(np.array_equal(e.maps[n], again.maps[n]) for n in e.maps)
    items = service.gallery(e, diff=("ln_tuning", "linear_probe"))
    assert len(items) == 3 and "minus" in items[-1][1] and items[0][1].endswith("(meaningless: demo)")
    fig = service.curves_figure(e)
    assert len(fig.data) == 8 and "meaningless" in fig.layout.title.text

