"""FLOPs counted from the model: the counter agrees with the textbook ViT formula."""
from __future__ import annotations

import pytest
import torch
from open_clip.transformer import QuickGELU, VisionTransformer

from dfdet.backbone import VisionBackbone
from dfdet.flops import QUOTED_VITL14_GFLOP, analytic_vit_gflop, backbone_flops, forward_flops, step_flops


def small_vit() -> VisionBackbone:
    return VisionBackbone(VisionTransformer(image_size=64, patch_size=16, width=96, layers=3, heads=3, mlp_ratio=4.0,
                                            output_dim=48, act_layer=QuickGELU)).eval()


def test_counted_forward_equals_formula():
    """On real CPU tensors too, where nn.MultiheadAttention would take its fused (uncounted) path."""
    bb = small_vit()
    counted = forward_flops(bb, torch.randn(2, 3, 64, 64))
    expected = 2 * analytic_vit_gflop(width=96, layers=3, tokens=17, patch_pixels=3 * 16 * 16) * 1e9
    assert counted == pytest.approx(expected, rel=1e-9)


def test_vit_l14_counted_on_meta_device():
    """162.0 GFLOP counted; the quoted 155.6 is the same model without the two attention matmuls."""
    f = backbone_flops("ViT-L-14")
    assert f.backward == 0
    assert f.forward / 1e9 == pytest.approx(analytic_vit_gflop(1024, 24, 257), rel=1e-9)
    assert f.forward / 1e9 == pytest.approx(162.02, abs=0.01)
    no_attn = analytic_vit_gflop(1024, 24, 257, attention=False)
    assert no_attn == pytest.approx(QUOTED_VITL14_GFLOP, abs=0.1)


def test_ln_tuning_backward_is_input_gradients_only():
    """Only LayerNorms train: backward holds no weight gradients of the frozen matmuls (~1x forward, not 2x)."""
    bb = small_vit().train()
    bb.requires_grad_(False)
    for ln in bb.layer_norms().values():
        ln.requires_grad_(True)
    x = torch.randn(1, 3, 64, 64)
    ln_only = step_flops(bb, x)
    bb.requires_grad_(True)
    full = step_flops(bb, x)
    patch = 2 * 16 * 768 * 96  # 16 patches of 3x16x16 pixels onto width 96
    linear = analytic_vit_gflop(96, 3, 17, patch_pixels=768, attention=False) * 1e9 - patch  # blocks' matmuls
    attention = (analytic_vit_gflop(96, 3, 17) - analytic_vit_gflop(96, 3, 17, attention=False)) * 1e9
    assert ln_only.forward == full.forward == pytest.approx(linear + attention + patch)
    # input gradients of every frozen matmul (same FLOPs as forward), attention's backward is 2x its
    # forward, and nothing flows into the frozen patch embedding
    assert ln_only.backward == pytest.approx(linear + 2 * attention)
    assert full.backward > ln_only.backward + 0.9 * linear  # weight gradients too: the counter sees them
    bb.requires_grad_(False)
    with pytest.raises(ValueError, match="requires grad"):
        step_flops(bb, x)
