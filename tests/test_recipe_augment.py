"""§1 of the recipe: the paper's training-image augmentation, on training images only.

Reference: yermandy/deepfake-detection src/dataset/base.py:69-78 (the transforms) and
src/dataset/deepfake.py:241-259 (training dataset only). The expected numbers below are read from
that file, and checked against the attributes torchvision stores on the built transforms.
"""
import pytest
import torch
from torchvision.transforms import v2 as T

from dfdet.checkpoint import read_meta
from dfdet.config import BackboneConfig, TrainConfig, apply_overrides, from_dict, to_dict
from dfdet.data.augment import build_augmentation
from dfdet.errors import DataError
from dfdet.train import load_splits, make_datasets, train


def _cfg(dfdc_manifest, out=None, **kw):
    manifest, root = dfdc_manifest
    base = dict(method="linear_probe", backbone=BackboneConfig(model="dfdet-tiny-vit", pretrained=None),
                manifest=str(manifest), data_root=str(root), batch_size=16, epochs=1, lr=1e-3,
                out=str(out or "unused"), device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_transforms_and_parameters_are_the_papers():
    ops = build_augmentation("paper").transform.transforms  # what training uses
    assert [type(t) for t in ops] == [T.RandomHorizontalFlip, T.RandomAffine, T.GaussianBlur, T.ColorJitter, T.JPEG]
    flip, affine, blur, jitter, jpeg = ops
    assert flip.p == 0.5
    assert list(affine.degrees) == [-10, 10] and tuple(affine.translate) == (0.1, 0.1)
    assert tuple(affine.scale) == (0.9, 1.1) and affine.shear is None
    assert tuple(blur.kernel_size) == (3, 7) and list(blur.sigma) == [0.1, 2.0]
    assert tuple(jitter.brightness) == pytest.approx((0.9, 1.1)) and tuple(jitter.contrast) == pytest.approx((0.9, 1.1))
    assert jitter.saturation is None and jitter.hue is None
    assert list(jpeg.quality) == [40, 100]


def test_augment_is_on_by_default_for_every_paper_method_and_switches_off():
    from dfdet.methods import PAPER_METHODS, get_method
    assert TrainConfig().augment == "paper"
    for m in PAPER_METHODS:  # no method overrides it
        assert "augment" not in get_method(m).defaults.get("train", {})
    cfg = from_dict(TrainConfig, apply_overrides(to_dict(TrainConfig()), ["augment=none"]))
    assert cfg.augment == "none" and build_augmentation(cfg.augment) is None
    with pytest.raises(DataError, match="unknown augment"):
        build_augmentation("strong")


def test_train_images_are_augmented_and_val_images_are_not(dfdc_manifest, tiny_clip):
    cfg = _cfg(dfdc_manifest)
    train_df, val_df, root = load_splits(cfg)
    train_ds, val_ds = make_datasets(cfg, train_df, val_df, root, tiny_clip.preprocess)
    assert val_ds.augment is None and train_ds.augment is not None
    plain_train, _ = make_datasets(_cfg(dfdc_manifest, augment="none"), train_df, val_df, root, tiny_clip.preprocess)
    torch.manual_seed(0)
    a, b = train_ds[0][0], train_ds[0][0]
    assert not torch.equal(a, b)  # a fresh draw each time the image is read
    assert not torch.equal(a, plain_train[0][0])
    assert torch.equal(val_ds[0][0], val_ds[0][0])  # validation: CLIP preprocessing only
    assert torch.equal(plain_train[0][0], plain_train[0][0])


def test_fixed_seed_gives_the_same_augmented_batch(dfdc_manifest, tiny_clip):
    cfg = _cfg(dfdc_manifest)
    train_ds, _ = make_datasets(cfg, *load_splits(cfg), tiny_clip.preprocess)

    def batch(seed):
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(train_ds, batch_size=4, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed))
        return next(iter(loader))[0]

    assert torch.equal(batch(1), batch(1))
    assert not torch.equal(batch(1), batch(2))


def test_linear_probe_trains_on_fresh_augmented_images_by_default(dfdc_manifest, tmp_path, monkeypatch):
    """The paper's probe sees new augmented images every epoch; the cached path is the labelled fast option."""
    from dfdet import train as train_mod
    calls = []
    monkeypatch.setattr(train_mod, "extract_features", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(
        AssertionError("the augmented linear probe must not reuse frozen features")))
    out = train(_cfg(dfdc_manifest, tmp_path / "lp", epochs=1, max_steps=2))
    meta = read_meta(out)
    assert meta["config"]["augment"] == "paper" and meta["recipe"]["augment"].startswith("paper")
    assert meta["recipe"]["linear_probe_features"] == "fresh every epoch"
    assert calls == []
