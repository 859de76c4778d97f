import math

import pytest
import torch
import torch.nn.functional as F

from dfdet.slerp import alignment_loss, same_class_partners, slerp, slerp_augment, uniformity_loss


@pytest.fixture()
def pair():
    g = torch.Generator().manual_seed(0)
    return F.normalize(torch.randn(16, 32, generator=g), dim=-1), F.normalize(torch.randn(16, 32, generator=g), dim=-1)


def test_endpoints_and_unit_norm(pair):
    x, y = pair
    assert torch.allclose(slerp(x, y, 0.0), x, atol=1e-5)
    assert torch.allclose(slerp(x, y, 1.0), y, atol=1e-5)
    for t in (0.1, 0.5, 0.93):
        assert torch.allclose(slerp(x, y, t).norm(dim=-1), torch.ones(16), atol=1e-5)


def test_angle_to_start_is_t_theta(pair):
    x, y = pair
    theta = torch.acos((x * y).sum(-1))
    t = torch.linspace(0, 1, 16)
    z = slerp(x, y, t)
    angle = torch.acos((x * z).sum(-1).clamp(-1, 1))
    assert torch.allclose(angle, t * theta, atol=1e-3)
    # and it stays on the great circle: angle(x,z) + angle(z,y) == theta
    rest = torch.acos((z * y).sum(-1).clamp(-1, 1))
    assert torch.allclose(angle + rest, theta, atol=1e-3)


def test_nearly_parallel_vectors_do_not_blow_up():
    x = F.normalize(torch.randn(4, 8), dim=-1)
    z = slerp(x, x + 1e-9, 0.5)
    assert torch.isfinite(z).all() and torch.allclose(z, x, atol=1e-5)


def test_partners_never_cross_classes():
    labels = torch.tensor([0, 1, 0, 0, 1, 1, 1, 0, 1])
    for seed in range(20):
        p = same_class_partners(labels, torch.Generator().manual_seed(seed))
        assert torch.equal(labels[p], labels)


def test_augmented_feature_lies_between_same_class_features():
    g = torch.Generator().manual_seed(1)
    # two classes in opposite hemispheres along axis 0
    real = F.normalize(torch.randn(8, 6, generator=g).abs() + torch.tensor([3.0, 0, 0, 0, 0, 0]), dim=-1)
    fake = -real
    feats, labels = torch.cat([real, fake]), torch.tensor([0] * 8 + [1] * 8)
    out = slerp_augment(feats, labels, (0.0, 1.0), g)
    assert torch.allclose(out.norm(dim=-1), torch.ones(16), atol=1e-5)
    assert (out[:8, 0] > 0).all() and (out[8:, 0] < 0).all()  # a class never mixes into the other


def test_t_range_is_respected(pair):
    x, _ = pair
    labels = torch.zeros(16, dtype=torch.long)
    out = slerp_augment(x, labels, (0.0, 0.0), torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-5)


def test_alignment_and_uniformity_match_hand_computation():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # one same-class pair (0,1) at distance sqrt(2): ||.||^2 = 2
    assert alignment_loss(x, labels).item() == pytest.approx(2.0, abs=1e-5)
    d2 = torch.tensor([2.0, 4.0, 2.0])
    assert uniformity_loss(x).item() == pytest.approx(math.log(torch.exp(-2 * d2).mean().item()), abs=1e-5)
