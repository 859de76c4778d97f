"""multi_ln_forward: k LayerNorm overlays in one batched forward equal k separate forwards."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from open_clip.transformer import QuickGELU, VisionTransformer

from dfdet.backbone import VisionBackbone
from dfdet.checkpoint import save_checkpoint
from dfdet.inference import DetectorBank
from dfdet.methods import PAPER_METHODS, get_method
from dfdet.model import Detector, trainable_state
from dfdet.multi_ln import grouped_layer_norm, multi_ln_forward, stack_overlays

TOL = 1e-5


def random_overlay(backbone: VisionBackbone, seed: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every LayerNorm gamma/beta moved well away from the backbone's own."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, ln in backbone.layer_norms().items():
        out[f"{prefix}visual.{name}.weight"] = ln.weight.detach() + 0.3 * torch.randn(ln.weight.shape, generator=g)
        out[f"{prefix}visual.{name}.bias"] = ln.bias.detach() + 0.3 * torch.randn(ln.bias.shape, generator=g)
    return out


def separate_forward(backbone: VisionBackbone, pixels: torch.Tensor, overlay: dict) -> torch.Tensor:
    """The reference: a copy of the backbone with the overlay loaded, run on its own."""
    twin = copy.deepcopy(backbone)
    params = dict(twin.named_parameters())
    with torch.no_grad():
        for k, v in overlay.items():
            k = k.removeprefix("backbone.")
            if k in params:
                params[k].copy_(v)
        return twin(pixels)


def multi_head_vit() -> VisionBackbone:
    """3 blocks, width 96, 3 heads: more than one block and more than one head."""
    torch.manual_seed(0)
    return VisionBackbone(VisionTransformer(image_size=64, patch_size=16, width=96, layers=3, heads=3,
                                            mlp_ratio=4.0, output_dim=48, act_layer=QuickGELU)).eval()


@pytest.fixture()
def backbones(tiny_clip):
    return {"tiny": VisionBackbone(tiny_clip.model.visual).eval(), "3-block": multi_head_vit()}


@pytest.mark.parametrize("which", ["tiny", "3-block"])
def test_equals_separate_forwards(backbones, which):
    bb = backbones[which]
    size = bb.visual.image_size[0] if isinstance(bb.visual.image_size, (tuple, list)) else bb.visual.image_size
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    overlays = [{}, random_overlay(bb, 1), random_overlay(bb, 2, prefix="backbone."), random_overlay(bb, 3)]
    with torch.no_grad():
        zs = multi_ln_forward(bb, x, overlays)
    assert len(zs) == 4
    for i, (z, ov) in enumerate(zip(zs, overlays)):
        ref = separate_forward(bb, x, ov)
        assert z.shape == ref.shape == (3, bb.width)
        assert torch.isfinite(z).all()
        diff = (z - ref).abs().max().item()
        assert diff < TOL, f"overlay {i}: {diff:.2e}"
    # the groups really differ: a mix-up of groups could not pass the loop above
    assert (zs[1] - zs[2]).abs().max() > 1e-2
    assert (zs[0] - separate_forward(bb, x, {})).abs().max() < TOL


def test_single_image_single_overlay_is_the_plain_forward(backbones):
    bb = backbones["tiny"]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        (z,) = multi_ln_forward(bb, x, [{}])
        assert (z - bb(x)).abs().max() < TOL


def test_gradients_match_separate_forward(backbones):
    """Differentiable in the overlays: the same gamma/beta gradients as a forward with them loaded."""
    bb = backbones["3-block"]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    ov = {k: v.clone().requires_grad_(True) for k, v in random_overlay(bb, 5).items()}
    other = random_overlay(bb, 6)
    zs = multi_ln_forward(bb, x, [other, ov])
    zs[1].square().sum().backward()
    twin = copy.deepcopy(bb)
    params = dict(twin.named_parameters())
    with torch.no_grad():
        for k, v in ov.items():
            params[k].copy_(v)
    twin(x).square().sum().backward()
    for k, v in ov.items():
        assert v.grad is not None
        assert torch.allclose(v.grad, params[k].grad, atol=1e-4, rtol=1e-4), k


def test_grouped_layer_norm_uses_each_groups_affine():
    x = torch.randn(6, 5, 8)
    gamma, beta = torch.randn(3, 8), torch.randn(3, 8)
    y = grouped_layer_norm(x, gamma, beta, 1e-5)
    for g in range(3):
        ref = torch.nn.functional.layer_norm(x[2 * g:2 * g + 2], (8,), gamma[g], beta[g], 1e-5)
        assert torch.allclose(y[2 * g:2 * g + 2], ref, atol=1e-6)


def test_overlay_errors_are_clear(backbones):
    bb = backbones["tiny"]
    with pytest.raises(ValueError, match="not a LayerNorm"):
        stack_overlays(bb, [{"visual.conv1.weight": bb.visual.conv1.weight}])
    with pytest.raises(ValueError, match="shape"):
        stack_overlays(bb, [{"visual.ln_pre.weight": torch.ones(3)}])
    with pytest.raises(ValueError, match="at least one"):
        stack_overlays(bb, [])
    stacked = stack_overlays(bb, [{"head.weight": torch.ones(2, 64)}, {}])  # head keys are not the backbone's
    assert stacked["visual.ln_pre"][0].shape == (2, 64)


def test_bank_predict_equals_bank_predict_one_by_one(tiny_clip, tmp_path):
    """All four paper methods from one batched forward give DetectorBank.predict's probabilities."""
    from dfdet.multi_ln import bank_predict
    from dfdet.backbone import weights_id
    torch.manual_seed(0)
    for i, name in enumerate(PAPER_METHODS):
        spec = get_method(name)
        det = Detector(VisionBackbone(copy.deepcopy(tiny_clip.model.visual)), spec)
        with torch.no_grad():
            for k, p in det.named_parameters():
                if p.requires_grad:
                    p.add_(0.3 * torch.randn_like(p))
        meta = {"method": name, "backbone": {"model": tiny_clip.config.model, "weights": weights_id(tiny_clip.config)}}
        save_checkpoint(tmp_path / name, trainable_state(det), meta)
    bank = DetectorBank(tiny_clip, tmp_path, methods=list(PAPER_METHODS))
    assert sorted(bank.ready) == sorted(PAPER_METHODS)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    ours = bank_predict(bank, x)
    ref = bank.predict(x)
    assert list(ours) == list(ref)
    for name in ref:
        assert ours[name].shape == (2,)
        np.testing.assert_allclose(ours[name], ref[name], atol=1e-5)
    # bank.predict left the last method's LayerNorms in the shared backbone; bank_predict must not depend on it
    again = bank_predict(bank, x, ["linear_probe"])
    np.testing.assert_allclose(again["linear_probe"], ref["linear_probe"], atol=1e-5)
    # distinct checkpoints give distinct answers, so a mixed-up group would be seen
    assert np.abs(ours["ln_tuning"] - ours["ln_norm"]).max() > 1e-4
