"""The registry and the exact trainable parameters of each method on the real ViT-L/14 architecture."""
import pytest
import torch

from dfdet.methods import METHODS, PAPER_METHODS, get_method, list_methods
from dfdet.model import Detector, build_model, trainable_count, trainable_state

EXPECTED = {"linear_probe": 2_050, "ln_tuning": 104_450, "ln_norm": 104_450, "ln_norm_slerp": 104_450}


def test_registry_holds_the_four_paper_methods():
    assert list(PAPER_METHODS) == list(EXPECTED)
    for name in PAPER_METHODS:
        spec = get_method(name)
        assert spec.name == name and spec.label and spec.description
    assert get_method("ln_norm").normalize and not get_method("ln_tuning").normalize
    assert get_method("ln_norm_slerp").slerp and not get_method("ln_norm").slerp
    assert set(PAPER_METHODS) <= set(list_methods("ln"))
    with pytest.raises(KeyError, match="unknown method"):
        get_method("nope")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_vitl14_trainable_counts(vitl_clip, name):
    model = build_model(vitl_clip, name)
    assert trainable_count(model) == EXPECTED[name]
    assert model.backbone.width == 1024
    total = sum(p.numel() for p in model.backbone.parameters())
    assert 303_000_000 < total < 304_500_000  # ViT-L/14 vision tower: ~303M


@pytest.mark.parametrize("name", ["linear_probe", "ln_norm_slerp"])
def test_gradients_only_on_trainable_parameters(vitl_clip, name):
    model = build_model(vitl_clip, name)
    x = torch.randn(1, 3, 224, 224)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([1]))
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = set(trainable_state(model))
    assert with_grad == trainable
    assert sum(dict(model.named_parameters())[n].numel() for n in with_grad) == EXPECTED[name]
    model.zero_grad(set_to_none=True)


def test_ln_methods_train_every_layernorm(vitl_clip):
    model = build_model(vitl_clip, "ln_tuning")
    names = {n.rsplit(".", 1)[0] for n in trainable_state(model)} - {"head"}
    assert "backbone.visual.ln_pre" in names and "backbone.visual.ln_post" in names
    assert sum(".ln_1" in n for n in names) == 24 and sum(".ln_2" in n for n in names) == 24
    assert len(names) == 50


def test_norm_methods_put_features_on_the_sphere(tiny_clip):
    x = torch.randn(3, 3, 224, 224)
    z = Detector(build_model(tiny_clip, "ln_norm").backbone, get_method("ln_norm")).embed(x)
    assert torch.allclose(z.norm(dim=-1), torch.ones(3), atol=1e-5)
    raw = build_model(tiny_clip, "ln_tuning").embed(x)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(3), atol=1e-2)


def test_every_registered_method_has_a_description():
    for spec in METHODS.values():
        assert len(spec.description) > 20, spec.name
