"""Importing the paper's Lightning + peft checkpoint and GenD's safetensors, tested against the originals.

Synthetic checkpoints are built with the real transformers + peft classes (tests/test_hub_synthetic.py),
converted with `dfdet import-checkpoint`, and dfdet's model must then compute what the HF + peft
model computes: z_cls and p_fake to 1e-4 in fp32, with not a single source key dropped.
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

pytest.importorskip("peft")

from dfdet.checkpoint import load_tensors, read_meta  # noqa: E402
from dfdet.checkpoint import apply_overlay  # noqa: E402
from dfdet.cli import main  # noqa: E402
from dfdet.errors import CheckpointError  # noqa: E402
from dfdet.hub import imported  # noqa: E402
from dfdet.hub.imported import BACKBONE_FILE, load_imported_backbone  # noqa: E402
from dfdet.hub.paper import DISPLAY_NAME, SOURCE, convert_paper, load_lightning_checkpoint  # noqa: E402
from dfdet.inference import DetectorBank  # noqa: E402
from dfdet.methods import METHODS, PAPER_METHODS, get_method  # noqa: E402
from dfdet.model import build_model  # noqa: E402
from test_hub_synthetic import (PaperModel, hyper_parameters, lightning_checkpoint, save_gend,  # noqa: E402
                                save_paper_ckpt)

TOL = 1e-4
TOWER = "feature_extractor.base_model.model.vision_model."


def pixels(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def flags(method: str) -> dict:
    spec = get_method(method)
    return dict(normalize=spec.normalize, ln_tuning=spec.trains == "layernorm", slerp=spec.slerp)


def ours(folder, x):
    """(z_cls, p_fake) from dfdet: the imported backbone file + the checkpoint overlay."""
    clip = load_imported_backbone(folder)
    meta = read_meta(folder)
    det = build_model(clip, meta["method"]).eval()
    apply_overlay(det, load_tensors(folder), folder)
    with torch.no_grad():
        return det.backbone(x), F.softmax(det(x), dim=-1)[:, 1]


def reference(model, x):
    with torch.no_grad():
        z = model.feature_extractor(x)
        return z, F.softmax(model.model(z), dim=-1)[:, 1]


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_paper_checkpoint_imports_and_matches_hf_peft(tmp_path, method):
    f = flags(method)
    model = PaperModel(normalize=f["normalize"], ln_tuning=f["ln_tuning"], seed=PAPER_METHODS.index(method))
    ckpt = save_paper_ckpt(tmp_path / "model.ckpt", model, hyper_parameters(**f))
    out = tmp_path / "checkpoints" / "paper"
    assert main(["import-checkpoint", str(ckpt), "--out", str(out)]) == 0

    meta = read_meta(out)
    assert meta["method"] == method
    assert meta["display_name"] == DISPLAY_NAME and meta["source"] == SOURCE
    assert meta["backbone"] == {"model": "dfdet-tiny-vit", "weights": meta["backbone"]["weights"]}
    assert meta["config"]["slerp_feature_augmentation"] == f["slerp"]
    n_sd = len(model.state_dict())
    assert meta["imported"]["source_keys"] == n_sd and meta["imported"]["dropped_keys"] == 0
    assert sum(meta["imported"]["keys"].values()) == n_sd
    expected_params = 2 * 64 + 2 + (6 * 2 * 64 if f["ln_tuning"] else 0)  # head (+ 6 LayerNorms of width 64)
    assert meta["trainable_params"] == expected_params == sum(v.numel() for v in load_tensors(out).values())

    x = pixels()
    z, p = ours(out, x)
    z_ref, p_ref = reference(model, x)
    assert (z - z_ref).abs().max().item() < TOL
    assert (p - p_ref).abs().max().item() < TOL
    assert torch.isfinite(p).all()


def test_every_source_tensor_lands_where_the_report_says(tmp_path):
    """Values, not just counts: tuned LNs in the overlay, pre-trained LNs and the rest in the backbone file."""
    model = PaperModel(normalize=True, ln_tuning=True, seed=5)
    sd = model.state_dict()
    out = imported.write_imported(convert_paper(lightning_checkpoint(model, hyper_parameters(True, True, True))),
                                  tmp_path / "paper")
    overlay, backbone = load_tensors(out), load_file(str(out / BACKBONE_FILE))
    ln_pairs = {"pre_layrnorm": "ln_pre", "post_layernorm": "ln_post",
                "encoder.layers.1.layer_norm1": "transformer.resblocks.1.ln_1"}
    for hf, oc in ln_pairs.items():
        for t in ("weight", "bias"):
            assert torch.equal(overlay[f"backbone.visual.{oc}.{t}"], sd[f"{TOWER}{hf}.ln_tuning_layers.default.{t}"])
            assert torch.equal(backbone[f"{oc}.{t}"], sd[f"{TOWER}{hf}.base_layer.{t}"])
    qkv = [sd[f"{TOWER}encoder.layers.0.self_attn.{p}_proj.weight"] for p in "qkv"]
    assert torch.equal(backbone["transformer.resblocks.0.attn.in_proj_weight"], torch.cat(qkv))
    assert torch.equal(backbone["proj"], sd["feature_extractor.base_model.model.visual_projection.weight"].t())
    assert torch.equal(overlay["head.weight"], sd["model.linear.weight"])
    assert torch.equal(overlay["head.bias"], sd["model.linear.bias"])
    assert torch.equal(backbone["positional_embedding"], sd[f"{TOWER}embeddings.position_embedding.weight"])


def test_imported_checkpoint_is_its_own_row_in_the_bank(tmp_path, monkeypatch):
    """Named like OpenAI's CLIP, the import is valid on the "openai" weights and shows next to the methods."""
    monkeypatch.setitem(imported.OPENAI_HF_NAMES, "openai/clip-vit-tiny-test", "dfdet-tiny-vit")
    model = PaperModel(normalize=True, ln_tuning=True, seed=7)
    ckpt = save_paper_ckpt(tmp_path / "model.ckpt", model,
                           hyper_parameters(True, True, True, backbone="openai/clip-vit-tiny-test"), enum_head=True)
    out = tmp_path / "checkpoints" / "paper"
    assert main(["import-checkpoint", str(ckpt), "--out", str(out)]) == 0
    meta = read_meta(out)
    assert meta["backbone"] == {"model": "dfdet-tiny-vit", "weights": "openai"}
    assert meta["method"] == "ln_norm_slerp" and meta["config"]["head"] == "LinearNorm"  # enum came back as text

    clip = load_imported_backbone(out)
    assert clip.weights_id == "openai" and clip.model.text_tower_random
    bank = DetectorBank(clip, tmp_path / "checkpoints", methods=list(PAPER_METHODS))
    entry = bank.entries["paper"]
    assert entry.status == "ready", entry.message
    assert entry.label == DISPLAY_NAME and entry.trainable_params == meta["trainable_params"]
    # the other methods keep their rows (the bank lists a method's "not trained" row only if no folder has it)
    assert set(PAPER_METHODS) - {meta["method"]} <= set(bank.entries)
    x = pixels(2, seed=3)
    p = torch.as_tensor(bank.predict(x, names=["paper"])["paper"])
    assert (p - reference(model, x)[1]).abs().max().item() < TOL


def test_gend_safetensors_imports_and_matches(tmp_path):
    folder, model = save_gend(tmp_path / "GenD_tiny", normalize=True)
    out = tmp_path / "checkpoints" / "gend"
    assert main(["import-checkpoint", str(folder), "--out", str(out)]) == 0
    meta = read_meta(out)
    assert meta["method"] == "ln_norm" and meta["imported"]["format"] == "gend-safetensors"
    assert meta["backbone"]["weights"].startswith("gend-")  # its LayerNorms are trained: only valid on its own tower
    assert meta["imported"]["dropped_keys"] == 0 and meta["imported"]["source_keys"] == len(model.state_dict())
    x = pixels(2, seed=4)
    z, p = ours(out, x)
    with torch.no_grad():
        z_ref = model.feature_extractor(x)
        p_ref = F.softmax(model.model(z_ref), dim=-1)[:, 1]
    assert (z - z_ref).abs().max().item() < TOL and (p - p_ref).abs().max().item() < TOL


def test_extra_key_fails_with_a_listing(tmp_path, capsys):
    model = PaperModel(normalize=True, ln_tuning=True, seed=2)
    ckpt = lightning_checkpoint(model, hyper_parameters(True, True, False))
    ckpt["state_dict"]["feature_extractor.base_model.model.logit_scale"] = torch.tensor(1.0)
    torch.save(ckpt, tmp_path / "extra.ckpt")
    assert main(["import-checkpoint", str(tmp_path / "extra.ckpt"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unexpected key(s)" in err and "feature_extractor.base_model.model.logit_scale" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("drop", ["model.linear.bias", TOWER + "encoder.layers.1.mlp.fc2.bias",
                                  TOWER + "encoder.layers.0.layer_norm2.ln_tuning_layers.default.weight"])
def test_missing_key_fails_with_a_listing(drop):
    model = PaperModel(normalize=False, ln_tuning=True, seed=3)
    ckpt = lightning_checkpoint(model, hyper_parameters(False, True, False))
    del ckpt["state_dict"][drop]
    with pytest.raises(CheckpointError) as err:
        convert_paper(ckpt)
    short = drop.replace(TOWER, "").replace(".ln_tuning_layers.default", "")
    assert short in str(err.value)


def test_config_that_contradicts_the_weights_is_refused():
    model = PaperModel(normalize=False, ln_tuning=True, seed=4)
    ckpt = lightning_checkpoint(model, hyper_parameters(False, ln_tuning=False, slerp=False))
    with pytest.raises(CheckpointError, match="LN-tuning"):
        convert_paper(ckpt)


def test_backbone_name_that_contradicts_the_shapes_is_refused():
    model = PaperModel(normalize=False, ln_tuning=False, seed=4)
    ckpt = lightning_checkpoint(model, hyper_parameters(False, False, False, backbone="openai/clip-vit-large-patch14"))
    with pytest.raises(CheckpointError, match="ViT-L-14"):
        convert_paper(ckpt)


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, capsys):
    """A .ckpt whose unpickling would create a file: weights-only loading refuses it before anything runs."""
    target = tmp_path / "pwned.txt"

    class Payload:
        def __reduce__(self):
            return (open, (str(target), "w"))

    torch.save({"state_dict": {"x": torch.zeros(1)}, "hyper_parameters": {"head": Payload()}}, tmp_path / "evil.ckpt")
    assert not target.exists()
    assert main(["import-checkpoint", str(tmp_path / "evil.ckpt"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "open" in err and "Traceback" not in err
    assert not target.exists() and not (tmp_path / "out").exists()


def test_non_checkpoint_file_gives_a_clear_error(tmp_path):
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_lightning_checkpoint(bad)


def test_existing_output_needs_force(tmp_path):
    model = PaperModel(normalize=False, ln_tuning=False, seed=6)
    ckpt = save_paper_ckpt(tmp_path / "model.ckpt", model, hyper_parameters(False, False, False))
    out = tmp_path / "lp"
    assert main(["import-checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert read_meta(out)["method"] == "linear_probe"
    assert main(["import-checkpoint", str(ckpt), "--out", str(out)]) == 2
    assert main(["import-checkpoint", str(ckpt), "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([BACKBONE_FILE, "dfdet.json", "model.safetensors"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_registry_covers_every_paper_flag_combination():
    """Each of the paper's four methods is reachable from its config flags, and only those."""
    from dfdet.hub.imported import method_for
    for name in PAPER_METHODS:
        spec = METHODS[name]
        assert method_for(spec.trains, spec.normalize, spec.slerp, "x").name == name
    with pytest.raises(CheckpointError, match="no dfdet method"):
        method_for("head", True, False, "x")


def test_meta_is_plain_json(tmp_path):
    model = PaperModel(normalize=True, ln_tuning=True, seed=8)
    ckpt = save_paper_ckpt(tmp_path / "m.ckpt", model, hyper_parameters(True, True, True), enum_head=True)
    out = tmp_path / "p"
    main(["import-checkpoint", str(ckpt), "--out", str(out)])
    meta = json.loads((out / "dfdet.json").read_text())
    assert meta["imported"]["epoch"] == 3 and meta["imported"]["global_step"] == 120
    assert meta["imported"]["lightning_version"] == "2.4.0" and len(meta["imported"]["sha256"]) == 64
    assert meta["config"]["loss"]["uniformity"] == 0.5


def test_backbone_file_works_as_clip_weights(tmp_path, monkeypatch):
    """--clip-weights / $DFDET_CLIP_WEIGHTS pointing at an imported backbone: no OpenAI download needed."""
    from dfdet.backbone import WEIGHTS_ENV, load_clip
    from dfdet.config import BackboneConfig
    from dfdet.errors import WeightsUnavailable
    model = PaperModel(normalize=False, ln_tuning=True, seed=10)
    out = imported.write_imported(convert_paper(lightning_checkpoint(model, hyper_parameters(False, True, False))),
                                  tmp_path / "p")
    monkeypatch.setenv(WEIGHTS_ENV, str(out / BACKBONE_FILE))
    clip = load_clip(BackboneConfig(model="dfdet-tiny-vit"))
    assert clip.weights_id == read_meta(out)["backbone"]["weights"]
    x = pixels(1)
    with torch.no_grad():
        pre = model.feature_extractor.base_model.model.vision_model  # the pre-trained tower, without the tuning
        with model.feature_extractor.disable_adapter():
            z_base = pre(pixel_values=x).pooler_output
        z = build_model(clip, "linear_probe").backbone(x)
    assert (z - z_base).abs().max().item() < TOL  # the backbone file holds the pre-trained LayerNorms
    with pytest.raises(WeightsUnavailable, match="dfdet-tiny-vit backbone"):
        load_clip(BackboneConfig(model="ViT-L-14"))
    with pytest.raises(WeightsUnavailable, match="text tower"):
        clip.model.encode_text(torch.zeros(1, 77, dtype=torch.long))


def test_vit_l14_import_shapes_give_the_paper_parameter_counts():
    """On the paper's ViT-L/14 shapes (meta tensors, no memory): arch found by name and shape, exact counts."""
    import open_clip

    from dfdet.hf_convert import hf_shape, open_clip_to_hf
    from dfdet.hub.imported import ImportedModel, infer_arch, overlay_of
    with torch.device("meta"):
        visual = open_clip.create_model("ViT-L-14", pretrained=None, force_quick_gelu=True, device="meta").visual
    tower, projection = open_clip_to_hf(visual.state_dict())
    shape = hf_shape(tower, projection)
    assert infer_arch(shape, "openai/clip-vit-large-patch14") == "ViT-L-14" == infer_arch(shape, None)
    head = (torch.empty(2, 1024, device="meta"), torch.empty(2, device="meta"))
    expected = {"linear_probe": 2_050, "ln_tuning": 104_450, "ln_norm": 104_450, "ln_norm_slerp": 104_450}
    for name, count in expected.items():
        model = ImportedModel(visual=visual.state_dict(), tuned_ln={}, head_weight=head[0], head_bias=head[1],
                              spec=get_method(name), arch="ViT-L-14", weights="openai", quick_gelu=True, config={},
                              display_name="x", source="x")
        assert sum(v.numel() for v in overlay_of(model).values()) == count, name


def test_text_methods_refuse_the_random_text_tower_of_an_imported_backbone(tmp_path):
    """The bank over an imported backbone: text rows say why they cannot run, the rest still predicts."""
    model = PaperModel(normalize=True, ln_tuning=True, seed=11)
    imported.write_imported(convert_paper(lightning_checkpoint(model, hyper_parameters(True, True, False))),
                            tmp_path / "checkpoints" / "paper")
    bank = DetectorBank(load_imported_backbone(tmp_path / "checkpoints" / "paper"), tmp_path / "checkpoints")
    text_rows = [e for e in bank.entries.values() if e.spec.family == "text" and e.status != "missing"]
    if not text_rows:
        pytest.skip("no untrained text methods are registered")
    assert all(e.status == "error" and "text tower" in e.message for e in text_rows)
    assert bank.ready == ["paper"]
    assert set(bank.predict(pixels(1))) == {"paper"}
