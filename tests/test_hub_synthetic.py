"""Synthetic released checkpoints, built with the real transformers + peft classes on a tiny CLIP.

The nesting mirrors the paper's Lightning module (yermandy/deepfake-detection, src/model): a
`feature_extractor` (CLIPEncoder: `vision_model` + `visual_projection`) wrapped by peft LN-tuning,
and a `model` LinearProbe with `linear`. The tiny vision config has the shape of dfdet-tiny-vit.
"""
from __future__ import annotations

import enum
import json
import sys
import types
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TINY_HF_NAME = "test/clip-vit-tiny"  # not an OpenAI name: the importer matches the tower by shape
LN_TARGETS = ["pre_layrnorm", "layer_norm1", "layer_norm2", "post_layernorm", "layernorm"]  # the paper's default


def tiny_vision_config():
    from transformers import CLIPVisionConfig
    return CLIPVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                            image_size=224, patch_size=32, projection_dim=32, hidden_act="quick_gelu")


class CLIPEncoder(nn.Module):
    """The paper's encoder: HF vision tower + visual projection; forward = pooler_output (z_cls)."""

    def __init__(self, projection: bool = True):
        super().__init__()
        from transformers import CLIPVisionModel
        cfg = tiny_vision_config()
        self.vision_model = CLIPVisionModel(cfg)
        if projection:
            self.visual_projection = nn.Linear(cfg.hidden_size, cfg.projection_dim, bias=False)

    def forward(self, x):
        return self.vision_model(pixel_values=x).pooler_output


class LinearProbe(nn.Module):
    def __init__(self, dim: int, normalize: bool):
        super().__init__()
        self.linear = nn.Linear(dim, 2)
        self.normalize_inputs = normalize

    def forward(self, x):
        return self.linear(F.normalize(x, dim=1) if self.normalize_inputs else x)


class PaperModel(nn.Module):
    """feature_extractor + model, in the order the paper builds them (head before peft)."""

    def __init__(self, normalize: bool, ln_tuning: bool, seed: int = 0, projection: bool = True):
        super().__init__()
        torch.manual_seed(seed)
        self.feature_extractor = CLIPEncoder(projection)
        self.model = LinearProbe(64, normalize)
        randomize_(self)
        self.feature_extractor.requires_grad_(False)
        if ln_tuning:
            from peft import LNTuningConfig, get_peft_model
            self.feature_extractor = get_peft_model(self.feature_extractor, LNTuningConfig(target_modules=LN_TARGETS))
            with torch.no_grad():  # "training": the tuned copies move away from the pre-trained values
                for name, p in self.feature_extractor.named_parameters():
                    if ".ln_tuning_layers." in name:
                        p.add_(0.3 * torch.randn_like(p))
        self.eval()

    def forward(self, x):
        return self.model(self.feature_extractor(x))


def randomize_(module: nn.Module) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif "embedding" in name:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))


def hyper_parameters(normalize: bool, ln_tuning: bool, slerp: bool, backbone: str = TINY_HF_NAME,
                     head=None) -> dict:
    """What `save_hyperparameters(config.model_dump())` stores: the paper's Config as nested dicts."""
    return {
        "run_name": "synthetic", "run_dir": "runs/synthetic", "seed": 42, "num_classes": 2, "checkpoint": None,
        "backbone": backbone, "freeze_feature_extractor": True, "unfreeze_layers": [],
        "head": head if head is not None else ("LinearNorm" if normalize else "linear"),
        "proj_feat_dim": 128, "normalize_features": False,
        "peft": {"enabled": ln_tuning,
                 "lora": {"enabled": False, "target_modules": ["out_proj"], "rank": 1, "alpha": 32, "dropout": 0.1,
                          "bias": "none", "use_rslora": False, "use_dora": False},
                 "ln_tuning": {"enabled": ln_tuning, "target_modules": LN_TARGETS}},
        "slerp_feature_augmentation": slerp, "slerp_feature_augmentation_range": [0.0, 1.0],
        "loss": {"ce_labels": 1.0, "label_smoothing": 0.0, "bce_labels": 0.0, "uniformity": 0.5 if slerp else 0.0,
                 "alignment_labels": 0.1 if slerp else 0.0},
        "lr": 8e-5, "min_lr": 5e-5, "lr_scheduler": "cosine", "weight_decay": 0.0, "betas": [0.9, 0.999],
        "max_epochs": 10, "batch_size": 128, "precision": "bf16-mixed",
    }


def fake_paper_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for the paper's `src.config` and Lightning's AttributeDict, so objects pickle under real names."""
    config = types.ModuleType("src.config")

    class Head(str, enum.Enum):
        Linear = "linear"
        LinearNorm = "LinearNorm"

    Head.__module__, Head.__qualname__ = "src.config", "Head"
    config.Head = Head
    data = types.ModuleType("lightning.fabric.utilities.data")

    class AttributeDict(dict):
        def __getattr__(self, key):
            return self[key]

    AttributeDict.__module__, AttributeDict.__qualname__ = data.__name__, "AttributeDict"
    data.AttributeDict = AttributeDict
    mods = {"src": types.ModuleType("src"), "src.config": config}
    parts = data.__name__.split(".")
    mods.update({".".join(parts[:i]): types.ModuleType(".".join(parts[:i])) for i in range(1, len(parts))})
    mods[data.__name__] = data
    return mods


def lightning_checkpoint(model: PaperModel, hp: dict) -> dict:
    """The dict Lightning's `Trainer.save_checkpoint` writes, with optimizer and scheduler state."""
    params = [p for p in model.parameters() if p.requires_grad] or list(model.model.parameters())
    opt = torch.optim.AdamW(params, lr=8e-5)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=5e-5)
    return {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": OrderedDict(model.state_dict()),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4, "completed": 3}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val/mAP_video', 'mode': 'max'}": {
            "monitor": "val/mAP_video", "best_model_score": torch.tensor(0.93), "best_model_path": "runs/x/best.ckpt",
            "best_k_models": {"runs/x/best.ckpt": torch.tensor(0.93)}, "kth_value": torch.tensor(0.93),
            "dirpath": "runs/x", "last_model_path": ""}},
        "optimizer_states": [opt.state_dict()], "lr_schedulers": [sched.state_dict()],
        "hparams_name": "kwargs", "hyper_parameters": hp,
    }


def save_paper_ckpt(path: Path, model: PaperModel, hp: dict, enum_head: bool = False) -> Path:
    """torch.save like Lightning. With enum_head, the head is the paper's str-enum member (as model_dump
    leaves a default) and the hparams an AttributeDict, as some Lightning versions store them."""
    ckpt = lightning_checkpoint(model, hp)
    if not enum_head:
        torch.save(ckpt, path)
        return path
    mods = fake_paper_modules()
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        attr_dict = mods["lightning.fabric.utilities.data"].AttributeDict
        ckpt["hyper_parameters"] = attr_dict({**hp, "head": mods["src.config"].Head(hp["head"])})
        torch.save(ckpt, path)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return path


def save_gend(folder: Path, normalize: bool = True, seed: int = 1) -> tuple[Path, nn.Module]:
    """GenD's save_pretrained output: model.safetensors (LayerNorms trained in place) + config.json."""
    from safetensors.torch import save_file
    torch.manual_seed(seed)
    model = nn.Module()
    model.feature_extractor = CLIPEncoder()
    model.model = LinearProbe(64, normalize)
    randomize_(model)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["GenD"], "model_type": "GenD", "backbone": TINY_HF_NAME,
        "head": "LinearNorm" if normalize else "linear", "torch_dtype": "float32", "transformers_version": "4.56.0"}))
    model.forward = lambda x: model.model(model.feature_extractor(x))
    return folder, model


# The builders above are only useful if they produce what the real libraries produce; check that here.

def test_synthetic_paper_checkpoint_has_peft_ln_tuning_layout():
    model = PaperModel(normalize=True, ln_tuning=True)
    keys = list(model.state_dict())
    tower = "feature_extractor.base_model.model.vision_model."
    assert f"{tower}pre_layrnorm.base_layer.weight" in keys
    assert f"{tower}pre_layrnorm.ln_tuning_layers.default.weight" in keys
    assert f"{tower}encoder.layers.1.layer_norm2.ln_tuning_layers.default.bias" in keys
    assert f"{tower}encoder.layers.0.self_attn.q_proj.weight" in keys
    assert "feature_extractor.base_model.model.visual_projection.weight" in keys
    assert keys[-2:] == ["model.linear.weight", "model.linear.bias"]
    # peft trains exactly the LayerNorm copies: 2 blocks x 2 LNs + pre + post, gamma and beta of width 64
    trainable = {n: p.numel() for n, p in model.feature_extractor.named_parameters() if p.requires_grad}
    assert all(".ln_tuning_layers.default." in n for n in trainable) and sum(trainable.values()) == 6 * 2 * 64


def test_synthetic_paper_model_uses_the_tuned_layernorms():
    model = PaperModel(normalize=False, ln_tuning=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        tuned = model(x)
        with model.feature_extractor.disable_adapter():
            base = model(x)
    assert (tuned - base).abs().max() > 1e-3
