"""Checkpoints hold only trainable tensors, load as an overlay, and never unpickle."""
import json
import pickle

import pytest
import torch

from dfdet.checkpoint import apply_overlay, check_compatible, load_tensors, read_meta, save_checkpoint
from dfdet.errors import CheckpointError
from dfdet.inference import DetectorBank
from dfdet.methods import PAPER_METHODS, get_method
from dfdet.model import Detector, build_model, trainable_state


def test_checkpoint_holds_exactly_the_trainable_tensors(tiny_checkpoints, tiny_clip):
    for m in PAPER_METHODS:
        tensors = load_tensors(tiny_checkpoints / m)
        assert set(tensors) == set(trainable_state(build_model(tiny_clip, m)))
        meta = read_meta(tiny_checkpoints / m)
        assert meta["method"] == m and meta["code_version"] and meta["manifests"]
        assert meta["tensors"]["numel"] == meta["trainable_params"]


def test_vitl_ln_checkpoint_is_about_0_4_mb(vitl_clip, tmp_path):
    model = build_model(vitl_clip, "ln_norm_slerp")
    save_checkpoint(tmp_path / "c", trainable_state(model), {"method": "ln_norm_slerp"})
    size = (tmp_path / "c" / "model.safetensors").stat().st_size
    assert 0.38e6 < size < 0.45e6  # 104,450 fp32 values + header


def test_bank_equals_a_fresh_detector_with_the_overlay(tiny_checkpoints, tiny_clip, tiny_cfg):
    from dfdet.backbone import load_clip
    bank = DetectorBank(tiny_clip, tiny_checkpoints, list(PAPER_METHODS))
    assert set(bank.ready) == set(PAPER_METHODS)
    x = torch.randn(4, 3, 224, 224)
    probs = bank.predict(x)
    for m in ["ln_norm_slerp", "linear_probe", "ln_tuning"]:  # order matters: LN state must be reset between
        det = build_model(load_clip(tiny_cfg), m)
        apply_overlay(det, load_tensors(tiny_checkpoints / m))
        with torch.no_grad():
            ref = torch.softmax(det(x), -1)[:, 1].numpy()
        assert probs[m] == pytest.approx(ref, abs=1e-5)
        assert bank.predict(x, [m])[m] == pytest.approx(ref, abs=1e-5)


def test_missing_methods_are_listed_with_the_command(tiny_checkpoints, tiny_clip, tmp_path):
    import shutil
    shutil.copytree(tiny_checkpoints / "ln_norm", tmp_path / "ln_norm")
    bank = DetectorBank(tiny_clip, tmp_path, list(PAPER_METHODS))
    assert bank.ready == ["ln_norm"]
    for m in ("linear_probe", "ln_tuning", "ln_norm_slerp"):
        assert bank.entries[m].status == "missing"
        assert f"dfdet train --method {m}" in bank.entries[m].message


def test_other_backbone_is_refused(tiny_checkpoints, tmp_path):
    meta = read_meta(tiny_checkpoints / "ln_norm")
    with pytest.raises(CheckpointError, match="trained on backbone dfdet-tiny-vit/random-init-seed0.*ViT-L-14/openai"):
        check_compatible(meta, "ViT-L-14", "openai", tiny_checkpoints / "ln_norm")


def test_pickle_in_place_of_a_checkpoint_is_never_unpickled(tmp_path, tiny_clip):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    folder = tmp_path / "checkpoints" / "ln_norm"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(pickle.dumps(Evil()))
    (folder / "dfdet.json").write_text(json.dumps({"format": "dfdet-checkpoint/1", "method": "ln_norm",
                                                   "backbone": {"model": "dfdet-tiny-vit",
                                                                "weights": "random-init-seed0"}}))
    (tmp_path / "checkpoints" / "ln_tuning").mkdir()
    (tmp_path / "checkpoints" / "ln_tuning" / "model.ckpt").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_tensors(folder)
    bank = DetectorBank(tiny_clip, tmp_path / "checkpoints")
    assert bank.entries["ln_norm"].status == "error"
    assert "not a dfdet checkpoint" in bank.entries["ln_tuning"].message
    assert not marker.exists()


def test_overlay_shape_mismatch_is_clear(tiny_clip):
    det = Detector(build_model(tiny_clip, "ln_norm").backbone, get_method("ln_norm"))
    with pytest.raises(CheckpointError, match="head.weight has shape"):
        apply_overlay(det, {"head.weight": torch.zeros(2, 3)})
    with pytest.raises(CheckpointError, match="tensors the model lacks"):
        apply_overlay(det, {"nope": torch.zeros(1)})


def test_second_bank_on_the_same_model_starts_from_the_pristine_layernorms(tiny_checkpoints, tiny_clip):
    x = torch.randn(2, 3, 224, 224)
    first = DetectorBank(tiny_clip, tiny_checkpoints, list(PAPER_METHODS))
    first.fused = False
    ref = first.predict(x, ["linear_probe"])["linear_probe"]
    first.predict(x, ["ln_norm_slerp"])  # leaves ln_norm_slerp's LayerNorms in the shared ViT
    second = DetectorBank(tiny_clip, tiny_checkpoints, ["linear_probe"])
    assert second.predict(x)["linear_probe"] == pytest.approx(ref, abs=1e-6)
