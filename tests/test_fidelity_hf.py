"""Fidelity: our z_cls equals the paper's `CLIPVisionModel(...).pooler_output` on identical weights.

The paper computes features with HF transformers; dfdet with open_clip. Random weights are loaded
into both through dfdet.hf_convert and the outputs must agree to 1e-4 in fp32.
"""
from __future__ import annotations

import os

import pytest
import torch
from open_clip.transformer import QuickGELU, VisionTransformer

from dfdet.backbone import VisionBackbone
from dfdet.hf_convert import (ConversionError, find_tower_prefix, hf_keys, hf_shape, hf_to_open_clip, hf_vision_config,
                              open_clip_keys, open_clip_to_hf)

transformers = pytest.importorskip("transformers")
TOL = 1e-4


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Every parameter random (LayerNorm gamma around 1): a wrong name mapping cannot hide behind an init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("weight") and p.ndim == 1:  # LayerNorm gamma
                p.copy_(1.0 + 0.2 * noise)
            elif "class_embedding" in name or "positional_embedding" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.05 * noise)


def hf_twin(visual: torch.nn.Module):
    """An HF CLIPVisionModel with the same architecture and the converted weights of `visual`."""
    cfg = hf_vision_config(visual)
    hf = transformers.CLIPVisionModel(cfg).eval()
    tower, projection = open_clip_to_hf(visual.state_dict())
    prefix = find_tower_prefix(hf.state_dict())  # "" in transformers 5, "vision_model." in 4
    result = hf.load_state_dict({prefix + k: v for k, v in tower.items()}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return hf, projection


def images(visual, n=2, seed=1) -> torch.Tensor:
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_same_features(visual: torch.nn.Module, n: int = 2) -> float:
    hf, _ = hf_twin(visual)
    x = images(visual, n)
    with torch.no_grad():
        ours = VisionBackbone(visual).eval()(x)
        theirs = hf(pixel_values=x).pooler_output
    diff = (ours - theirs).abs().max().item()
    assert ours.shape == theirs.shape == (n, visual.conv1.out_channels)
    assert torch.isfinite(ours).all()
    assert diff < TOL, f"z_cls differs from HF pooler_output by {diff:.2e}"
    return diff


def test_tiny_vit_matches_hf_pooler_output(tiny_clip):
    visual = tiny_clip.model.visual.float().eval()
    randomize_(visual, 0)
    hf, _ = hf_twin(visual)
    assert hf.config.hidden_act == "quick_gelu"  # OpenAI CLIP's activation: the tiny config declares it too
    assert_same_features(visual)


def test_nontrivial_vit_matches_hf_pooler_output():
    """3 blocks, width 96, 3 heads, patch 16 on 64 px: more than one block and more than one head."""
    torch.manual_seed(0)
    visual = VisionTransformer(image_size=64, patch_size=16, width=96, layers=3, heads=3, mlp_ratio=4.0,
                               output_dim=48, act_layer=QuickGELU).eval()
    randomize_(visual, 3)
    assert_same_features(visual, n=3)


def test_plain_gelu_is_carried_over():
    """hidden_act follows the open_clip activation, so non-OpenAI towers convert faithfully too."""
    visual = VisionTransformer(image_size=32, patch_size=16, width=32, layers=1, heads=2, mlp_ratio=2.0,
                               output_dim=16, act_layer=torch.nn.GELU).eval()
    randomize_(visual, 4)
    assert hf_vision_config(visual).hidden_act == "gelu"
    assert_same_features(visual)


def vitl_visual(layers: int | None = None, device: str = "cpu") -> torch.nn.Module:
    """open_clip's registered ViT-L-14 vision tower (QuickGELU), optionally cut to its first `layers` blocks."""
    import open_clip
    cfg = open_clip.get_model_config("ViT-L-14")
    v = cfg["vision_cfg"]
    if device == "meta":
        with torch.device("meta"):
            return open_clip.create_model("ViT-L-14", pretrained=None, force_quick_gelu=True, device="meta").visual
    torch.manual_seed(0)
    return VisionTransformer(image_size=v["image_size"], patch_size=v["patch_size"], width=v["width"],
                             layers=layers or v["layers"], heads=v["width"] // v.get("head_width", 64),
                             mlp_ratio=v.get("mlp_ratio", 4.0), output_dim=cfg["embed_dim"],
                             act_layer=QuickGELU).eval()


def test_full_vit_l14_converts_shape_for_shape_into_hf():
    """All 24 blocks of the paper's ViT-L/14 map key-for-key and shape-for-shape onto CLIPVisionModel."""
    visual = vitl_visual(device="meta")  # no memory, no init: shapes only
    cfg = hf_vision_config(visual)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.patch_size, cfg.image_size,
            cfg.intermediate_size, cfg.projection_dim, cfg.hidden_act) == \
        (1024, 24, 16, 14, 224, 4096, 768, "quick_gelu")
    with torch.device("meta"):
        hf = transformers.CLIPVisionModel(cfg)
    tower, projection = open_clip_to_hf(visual.state_dict())
    prefix = find_tower_prefix(hf.state_dict())
    theirs = {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    ours = {prefix + k: tuple(v.shape) for k, v in tower.items()}
    assert ours == theirs
    assert tuple(projection.shape) == (768, 1024)
    assert sum(v.numel() for v in tower.values()) == sum(p.numel() for p in visual.parameters()) - projection.numel()


def test_vit_l14_width_heads_and_patch_match_hf_numerically():
    """ViT-L/14 at full width (1024, 16 heads, patch 14, 257 tokens), first 2 of its 24 blocks: fast on CPU."""
    visual = vitl_visual(layers=2)
    randomize_(visual, 7)
    assert_same_features(visual, n=1)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DFDET_SLOW_TESTS"), reason="~40 s on CPU; set DFDET_SLOW_TESTS=1")
def test_full_vit_l14_matches_hf_pooler_output():
    """All 24 blocks, random weights: the paper's exact architecture end to end."""
    visual = vitl_visual()
    randomize_(visual, 8)
    assert_same_features(visual, n=1)


def test_swapped_q_and_k_is_detected(tiny_clip):
    """The comparison can fail: a conversion that swaps q and k gives different features."""
    visual = tiny_clip.model.visual.float().eval()
    randomize_(visual, 5)
    hf, _ = hf_twin(visual)
    sd = hf.state_dict()
    prefix = find_tower_prefix(sd)
    with torch.no_grad():
        for i in range(hf.config.num_hidden_layers):
            q, k = (f"{prefix}encoder.layers.{i}.self_attn.{p}_proj.weight" for p in "qk")
            sd[q], sd[k] = sd[k].clone(), sd[q].clone()
    hf.load_state_dict(sd)
    x = images(visual)
    with torch.no_grad():
        diff = (VisionBackbone(visual)(x) - hf(pixel_values=x).pooler_output).abs().max().item()
    assert diff > 1e-3


def test_round_trip_is_exact_and_projection_transposed(tiny_clip):
    visual = tiny_clip.model.visual
    randomize_(visual, 6)
    sd = visual.state_dict()
    tower, projection = open_clip_to_hf(sd)
    assert sorted(tower) == sorted(hf_keys(2))
    assert projection.shape == (sd["proj"].shape[1], sd["proj"].shape[0])
    back = hf_to_open_clip(tower, projection)
    assert sorted(back) == sorted(sd) == sorted(open_clip_keys(2, projection=True))
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
    shape = hf_shape(tower, projection)
    assert (shape.width, shape.layers, shape.patch_size, shape.image_size, shape.mlp_dim, shape.output_dim) == \
        (64, 2, 32, 224, 256, 32)


def test_missing_and_unexpected_keys_are_listed(tiny_clip):
    tower, _ = open_clip_to_hf(tiny_clip.model.visual.state_dict())
    broken = dict(tower)
    del broken["encoder.layers.1.self_attn.v_proj.bias"]
    broken["encoder.layers.0.self_attn.extra.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError) as err:
        hf_to_open_clip(broken)
    msg = str(err.value)
    assert "encoder.layers.1.self_attn.v_proj.bias" in msg and "encoder.layers.0.self_attn.extra.weight" in msg
    assert "1 missing" in msg and "1 unexpected" in msg


def test_wrong_shape_is_refused(tiny_clip):
    tower, _ = open_clip_to_hf(tiny_clip.model.visual.state_dict())
    tower["encoder.layers.0.layer_norm1.weight"] = torch.ones(63)
    with pytest.raises(ConversionError, match="ln_1.weight"):
        hf_to_open_clip(tower)


def test_legacy_position_ids_buffer_is_accounted_for(tiny_clip):
    tower, _ = open_clip_to_hf(tiny_clip.model.visual.state_dict())
    n = tower["embeddings.position_embedding.weight"].shape[0]
    assert "positional_embedding" in hf_to_open_clip({**tower, "embeddings.position_ids": torch.arange(n)[None]})
    with pytest.raises(ConversionError, match="position_ids"):
        hf_to_open_clip({**tower, "embeddings.position_ids": torch.arange(n).flip(0)[None]})
