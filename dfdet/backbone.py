"""The CLIP image encoder and the feature the paper uses: z_cls, the [CLS] token after ln_post.

z_cls is taken *before* CLIP's visual projection (1024-d for ViT-L/14), as in the paper's
HF implementation (`CLIPVisionModel(...).pooler_output`); tests/test_fidelity_hf.py proves the two agree.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import BackboneConfig
from .errors import WeightsUnavailable

WEIGHTS_ENV = "DFDET_CLIP_WEIGHTS"  # local weights file, same effect as --clip-weights
TINY_MODEL = "dfdet-tiny-vit"  # 2-layer, width-64 ViT for tests and the demo mode; registered below
_CONFIG_DIR = Path(__file__).parent / "model_configs"


def _register_configs() -> None:
    import open_clip
    if TINY_MODEL not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)


def weights_id(cfg: BackboneConfig) -> str:
    """What the weights are (not where they are): checkpoints are only valid on the same id."""
    if cfg.pretrained:
        return cfg.pretrained
    if cfg.weights:
        return f"file:{Path(cfg.weights).name}"
    return f"random-init-seed{cfg.seed}"


def resolve_weights_file(cfg: BackboneConfig) -> str | None:
    path = cfg.weights or os.environ.get(WEIGHTS_ENV) or None
    if path and not Path(path).is_file():
        raise WeightsUnavailable(
            f"CLIP weights file not found: {path} (from {'--clip-weights' if cfg.weights else '$' + WEIGHTS_ENV}). "
            "Point it at an open_clip checkpoint (.safetensors or .bin) of "
            f"{cfg.model}/{cfg.pretrained or 'random'}.")
    return path


def _missing_weights_message(cfg: BackboneConfig, err: Exception) -> str:
    from open_clip.pretrained import get_pretrained_cfg
    pcfg = get_pretrained_cfg(cfg.model, cfg.pretrained) or {}
    hub = (pcfg.get("hf_hub") or "").strip("/")
    if not pcfg:
        return (f"open_clip has no weights tagged {cfg.pretrained!r} for {cfg.model}; pass a local file with "
                f"--clip-weights PATH (or ${WEIGHTS_ENV}), or --pretrained none for random weights (tests only)")
    where = f"the Hugging Face repo {hub} (file open_clip_pytorch_model.bin)" if hub else pcfg.get("url", "open_clip")
    get = (f"`huggingface-cli download {hub} open_clip_pytorch_model.bin` on a machine with network"
           if hub else "download it on a machine with network")
    return (f"CLIP weights for {cfg.model} (pretrained={cfg.pretrained!r}) are not on this machine and could not be "
            f"downloaded ({type(err).__name__}). Expected from {where}. Provide a local file with "
            f"--clip-weights PATH or ${WEIGHTS_ENV}=PATH; get it with {get}.")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers at all (HF_HUB_OFFLINE=1 counts as no)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    import socket
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _set_hub_offline(on: bool) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once at import; flip its constant too."""
    import huggingface_hub.constants as hub_constants
    if on:
        os.environ["HF_HUB_OFFLINE"] = "1"
    else:
        os.environ.pop("HF_HUB_OFFLINE", None)
    hub_constants.HF_HUB_OFFLINE = on


@dataclass
class LoadedClip:
    """A whole open_clip model plus what identifies its weights."""
    model: nn.Module  # open_clip CLIP (visual + text towers)
    config: BackboneConfig
    preprocess: object  # torchvision transform: PIL image -> normalised tensor
    pristine: dict | None = None  # the vision LayerNorms as loaded: banks that swap overlays restore these

    def __post_init__(self):
        if self.pristine is None:
            self.pristine = {n: p.detach().clone() for n, p in self.model.visual.named_parameters()
                             if n.rsplit(".", 1)[0] in _ln_module_names(self.model.visual)}

    @property
    def weights_id(self) -> str:
        return weights_id(self.config)


def load_clip(cfg: BackboneConfig, device: str | torch.device = "cpu") -> LoadedClip:
    """Create the open_clip model with real weights (tag or local file) or seeded random weights."""
    import open_clip
    _register_configs()
    if cfg.model not in open_clip.list_models():
        raise WeightsUnavailable(f"unknown open_clip model {cfg.model!r}; e.g. ViT-L-14, ViT-B-16, {TINY_MODEL}")
    path = resolve_weights_file(cfg)
    if path and str(path).endswith(".safetensors"):
        from .backbone_file import is_backbone_file
        if is_backbone_file(path):  # vision tower written by `dfdet import-checkpoint` (no text tower)
            return load_imported_backbone(path, device, expect_model=cfg.model)
    pretrained = path or cfg.pretrained
    if pretrained is None:
        torch.manual_seed(cfg.seed)  # random init must be the same in every process
    offline = pretrained is not None and not path and not _hub_reachable()
    try:
        if offline:  # no network: use the local HF cache only, and fail in seconds rather than a minute of retries
            _set_hub_offline(True)
        logging.disable(logging.CRITICAL)  # open_clip logs "initialized randomly" on purpose-random models
        with contextlib.redirect_stderr(io.StringIO()):
            model = open_clip.create_model(cfg.model, pretrained=pretrained, force_quick_gelu=cfg.quick_gelu,
                                           device=device)
    except WeightsUnavailable:
        raise
    except Exception as err:  # download / file errors surface as RuntimeError inside open_clip
        logging.disable(logging.NOTSET)
        if pretrained is None:
            raise
        if path:
            raise WeightsUnavailable(f"could not load CLIP weights from {path}: {err}") from None
        raise WeightsUnavailable(_missing_weights_message(cfg, err)) from None
    finally:
        if offline:
            _set_hub_offline(False)
    logging.disable(logging.NOTSET)
    model.eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    preprocess = clip_transform(size)
    logging.getLogger(__name__).info("loaded %s (%s)", cfg.model, weights_id(cfg))
    return LoadedClip(model=model, config=cfg, preprocess=preprocess)


def _ln_module_names(visual: nn.Module) -> set[str]:
    return {n for n, m in visual.named_modules() if isinstance(m, nn.LayerNorm)}


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CenterCropFloor:
    """Centre crop with offsets (size - crop) // 2, as HF's CLIPImageProcessor (transformers
    image_transforms.center_crop) crops for the paper's reference code; torchvision's CenterCrop rounds
    the half pixel instead, which moves odd-remainder crops by one pixel."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img):
        w, h = img.size
        if w < self.size or h < self.size:  # not reached after the shortest-side resize; keep torchvision's padding
            from torchvision.transforms import functional as TF
            return TF.center_crop(img, self.size)
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return img.crop((left, top, left + self.size, top + self.size))


def clip_transform(image_size: int = 224):
    """CLIP's eval preprocessing as the reference's HF CLIPImageProcessor does it: RGB, bicubic resize of the
    short side (PIL), centre crop (floored offsets), CLIP mean/std."""
    from open_clip.transform import image_transform
    from torchvision.transforms import CenterCrop
    t = image_transform(image_size, is_train=False, mean=CLIP_MEAN, std=CLIP_STD,
                        interpolation="bicubic", resize_mode="shortest")
    t.transforms = [CenterCropFloor(image_size) if isinstance(x, CenterCrop) else x for x in t.transforms]
    return t


class VisionBackbone(nn.Module):
    """open_clip's VisionTransformer, read up to z_cls."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            raise ValueError("dfdet needs a ViT that pools the [CLS] token (pool_type='tok', no attentional pool)")
        self.visual = visual

    @property
    def width(self) -> int:
        return self.visual.ln_post.normalized_shape[0]

    def layer_norms(self) -> dict[str, nn.LayerNorm]:
        """Every LayerNorm of the encoder: ln_pre, each block's ln_1/ln_2, ln_post."""
        return {n: m for n, m in self.visual.named_modules() if isinstance(m, nn.LayerNorm)}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        v = self.visual
        x = v.conv1(images)  # [B, width, grid, grid]
        x = x.flatten(2).transpose(1, 2)  # [B, grid*grid, width]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.patch_dropout(x)
        x = v.ln_pre(x)
        if sdpa_blocks(v.transformer):
            for blk in v.transformer.resblocks:
                x = block_forward(blk, x)
        else:
            x = v.transformer(x)
        return v.ln_post(x[:, 0])  # LayerNorm is per token, so ln_post on [CLS] alone equals pooling after it


def sdpa_blocks(transformer: nn.Module) -> bool:
    """Whether block_forward can run these blocks: open_clip's plain batch-first self-attention blocks."""
    from open_clip.transformer import ResidualAttentionBlock
    return (getattr(transformer, "batch_first", False) and not getattr(transformer, "grad_checkpointing", False)
            and all(type(b) is ResidualAttentionBlock and not hasattr(b, "ln_1_kv") for b in transformer.resblocks))


def self_attention(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """nn.MultiheadAttention(x, x, x) through F.scaled_dot_product_attention, same weights.

    On CPU, MultiheadAttention's inference fast path materialises the [B, heads, N, N] matrix
    (bmm + softmax); SDPA runs a fused kernel there and on GPU (bench/results_inference.md).
    """
    b, n, d = x.shape
    h = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
    o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], dropout_p=attn.dropout if attn.training else 0.0)
    return attn.out_proj(o.transpose(1, 2).reshape(b, n, d))


def block_forward(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """open_clip ResidualAttentionBlock.forward with attention through self_attention."""
    x = x + blk.ls_1(self_attention(blk.attn, blk.ln_1(x)))
    return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _text_tower_unused(*_args, **_kwargs):
    raise WeightsUnavailable("this CLIP was built from an imported vision-only backbone: its text tower is random "
                             "and must not be used; text-guided methods need real CLIP weights (--clip-weights)")


def load_imported_backbone(path: str | Path, device: str | torch.device = "cpu",
                           expect_model: str | None = None) -> LoadedClip:
    """A LoadedClip whose vision tower is an imported backbone file (text tower random and disabled).

    `path` is the file or the checkpoint folder holding it; `expect_model`, if given, must be its architecture.
    """
    import open_clip
    from safetensors.torch import load_file

    from .backbone_file import backbone_file_info
    info = backbone_file_info(path)
    if expect_model and expect_model != info["model"]:
        raise WeightsUnavailable(f"{info['path']} holds a {info['model']} backbone, but {expect_model} was asked for; "
                                 f"pass --model {info['model']}")
    _register_configs()
    torch.manual_seed(0)
    with contextlib.redirect_stderr(io.StringIO()):
        model = open_clip.create_model(info["model"], pretrained=None, force_quick_gelu=info["quick_gelu"])
    visual = load_file(str(info["path"]))
    if "proj" not in visual:
        model.visual.proj = None  # the source carried no projection; z_cls does not need one
    try:
        model.visual.load_state_dict(visual, strict=True)
    except RuntimeError as err:
        raise WeightsUnavailable(f"{info['path']} does not fit open_clip {info['model']}: {err}") from None
    model.text_tower_random = True  # flag for anything that inspects the model
    model.encode_text = _text_tower_unused
    model.to(device).eval()
    size = model.visual.image_size
    cfg = BackboneConfig(model=info["model"], pretrained=info["weights"], weights=str(info["path"]),
                         quick_gelu=info["quick_gelu"])
    return LoadedClip(model=model, config=cfg,
                      preprocess=clip_transform(size[0] if isinstance(size, (tuple, list)) else size))
