"""Loading CLIP: preprocessing, local weights files, clear errors when weights are missing."""
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from dfdet.backbone import WEIGHTS_ENV, VisionBackbone, clip_transform, load_clip
from dfdet.cli import main
from dfdet.config import BackboneConfig
from dfdet.errors import WeightsUnavailable


# Preprocessing is compared with the reference's HF CLIPImageProcessor in tests/test_recipe_selfcheck.py.


def test_zcls_is_visual_output_before_projection(tiny_clip):
    x = torch.randn(2, 3, 224, 224)
    z = VisionBackbone(tiny_clip.model.visual)(x)
    with torch.no_grad():
        projected = tiny_clip.model.visual(x)
    assert z.shape == (2, 64) and projected.shape == (2, 32)
    assert torch.allclose(z @ tiny_clip.model.visual.proj, projected, atol=1e-5)


def test_random_init_is_reproducible(tiny_cfg):
    a, b = load_clip(tiny_cfg), load_clip(tiny_cfg)
    for (n, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert torch.equal(p, q), n


@pytest.mark.parametrize("via", ["config", "env"])
def test_local_weights_file_loads_the_same_model(tiny_clip, tmp_path, monkeypatch, via):
    path = tmp_path / "clip.safetensors"
    torch.manual_seed(123)
    for p in tiny_clip.model.parameters():  # make them differ from the seed-0 init
        p.data.normal_()
    save_file({k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}, str(path))
    cfg = BackboneConfig(model="dfdet-tiny-vit", pretrained=None)
    if via == "config":
        cfg.weights = str(path)
    else:
        monkeypatch.setenv(WEIGHTS_ENV, str(path))
    loaded = load_clip(cfg)
    x = torch.randn(1, 3, 224, 224)
    np.testing.assert_allclose(VisionBackbone(loaded.model.visual)(x).detach(),
                               VisionBackbone(tiny_clip.model.visual)(x).detach(), atol=1e-6)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(WeightsUnavailable, match="not found: .*nope.safetensors"):
        load_clip(BackboneConfig(model="dfdet-tiny-vit", weights=str(tmp_path / "nope.safetensors")))


def test_unreachable_pretrained_weights_give_one_clear_message(monkeypatch, capsys, shared):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    img = str(next((shared / "datasets" / "DFDC" / "real").rglob("*.jpg")))
    rc = main(["predict", img, "--model", "ViT-B-16", "--pretrained", "openai"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    assert "--clip-weights" in err and WEIGHTS_ENV in err and "huggingface-cli download" in err
    assert err.count("\n") == 1  # one line
