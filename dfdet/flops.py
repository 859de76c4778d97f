"""FLOPs counted from the model itself, so utilisation (MFU) claims do not rest on a quoted constant.

torch's FlopCounterMode sees every matmul/conv/attention op that actually runs (2 FLOPs per
multiply-add; elementwise ops, LayerNorm and softmax are not counted, as is usual for MFU).
Counting on the meta device costs no compute and no memory, so the full ViT-L/14 is cheap to count.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# The figure usually quoted for CLIP ViT-L/14 at 224 px (one image, forward). It leaves out the two
# attention matmuls (QK^T and AV); bench/ prints it next to the counted number for comparison.
QUOTED_VITL14_GFLOP = 155.6


@contextlib.contextmanager
def _counting():
    """FlopCounterMode with attention on its plain-matmul path. The counter has no formula for
    nn.MultiheadAttention's fused inference op nor for the CPU flash-attention kernel, and would
    silently drop the QK^T and AV matmuls."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
            yield counter
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of everything `fn` runs (forward, and backward if it calls it)."""
    with _counting() as counter:
        fn()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class StepFlops:
    """FLOPs per image of one model, split the way MFU is reported."""
    forward: int  # one forward pass
    backward: int  # the backward autograd actually runs (input gradients + gradients of trainable params)

    @property
    def train_step(self) -> int:
        return self.forward + self.backward


def forward_flops(module: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward of `module` on `example` (no autograd graph is built)."""
    with torch.no_grad():
        return count_flops(lambda: module(example))


def step_flops(module: nn.Module, example: torch.Tensor) -> StepFlops:
    """Forward and backward FLOPs with the module's current requires_grad flags.

    With only LayerNorm gamma/beta trainable (LN-tuning), autograd computes the input gradient of
    every frozen matmul but none of their weight gradients, so backward is about one more forward.
    """
    def fwd():
        return module(example)

    with _counting() as fwd_count:
        out = fwd()
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"step_flops needs a module returning a tensor, got {type(out).__name__}")
    if not out.requires_grad:
        raise ValueError("nothing in the module requires grad: there is no backward to count")
    bwd = count_flops(lambda: out.float().sum().backward())
    module.zero_grad(set_to_none=True)
    return StepFlops(forward=int(fwd_count.get_total_flops()), backward=bwd)


def meta_clip_visual(model: str = "ViT-L-14") -> nn.Module:
    """An open_clip vision tower on the meta device: exact shapes, no weights, no memory."""
    import logging

    import open_clip

    from .backbone import _register_configs
    _register_configs()
    logging.disable(logging.WARNING)  # open_clip warns that a weightless model is "initialized randomly"
    try:
        return open_clip.create_model(model, pretrained=None, force_quick_gelu=True, device="meta").visual.eval()
    finally:
        logging.disable(logging.NOTSET)


def backbone_flops(model: str = "ViT-L-14", image_size: int | None = None, trainable: str = "none",
                   layers: int | None = None) -> StepFlops:
    """Per-image FLOPs of dfdet's z_cls backbone, counted on the meta device.

    trainable: "none" (inference: backward=0) or "layernorm" (LN-tuning: every LayerNorm trains).
    layers: count only the first `layers` transformer blocks (for depth-truncated benchmarks).
    """
    from .backbone import VisionBackbone
    visual = meta_clip_visual(model)
    if layers:
        visual.transformer.resblocks = visual.transformer.resblocks[:layers]
    size = image_size or _image_size(visual)
    backbone = VisionBackbone(visual)
    x = torch.empty(1, 3, size, size, device="meta")
    if trainable == "none":
        return StepFlops(forward=forward_flops(backbone, x), backward=0)
    if trainable != "layernorm":
        raise ValueError(f"trainable must be 'none' or 'layernorm', got {trainable!r}")
    backbone.requires_grad_(False)
    for ln in backbone.layer_norms().values():
        ln.requires_grad_(True)
    backbone.train()
    return step_flops(backbone, x)


def _image_size(visual: nn.Module) -> int:
    size = visual.image_size
    return size[0] if isinstance(size, (tuple, list)) else int(size)


def analytic_vit_gflop(width: int, layers: int, tokens: int, mlp_ratio: float = 4.0, patch_pixels: int = 588,
                       attention: bool = True) -> float:
    """Textbook ViT forward GFLOP (2 per multiply-add): a cross-check for the counter, not a substitute."""
    per_block = tokens * (4 * width * width + 2 * mlp_ratio * width * width)  # qkv + out proj + MLP
    if attention:
        per_block += 2 * tokens * tokens * width  # QK^T and attention @ V
    patch = (tokens - 1) * patch_pixels * width
    return 2 * (layers * per_block + patch) / 1e9
