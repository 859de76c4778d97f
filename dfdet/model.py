"""A detector = the CLIP vision backbone + a 2-way head, with what is trainable set by the method."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import LoadedClip, VisionBackbone
from .methods import MethodSpec, get_method


class Detector(nn.Module):
    """z_cls -> (optional L2 norm) -> Linear(width, 2); logits for (real, fake)."""

    def __init__(self, backbone: VisionBackbone, spec: MethodSpec):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.head = nn.Linear(backbone.width, 2)
        set_trainable(self)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The feature the head sees: z_cls, on the unit sphere for the Norm methods."""
        z = self.backbone(images)
        return F.normalize(z, dim=-1) if self.spec.normalize else z

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(images))


def set_trainable(model: Detector) -> None:
    """Freeze everything, then unfreeze what the method trains (head; plus LayerNorm gamma/beta)."""
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    if model.spec.trains == "layernorm":
        for ln in model.backbone.layer_norms().values():
            ln.requires_grad_(True)
    elif model.spec.trains not in ("head",):
        raise ValueError(f"Detector cannot train {model.spec.trains!r} (method {model.spec.name})")


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint must hold: exactly the trainable parameters."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# Builders by method family. Families other than "ln" (the text-guided methods) add themselves here.
MODEL_BUILDERS: dict[str, Callable[[LoadedClip, MethodSpec], nn.Module]] = {}


def _build_ln(clip: LoadedClip, spec: MethodSpec) -> Detector:
    return Detector(VisionBackbone(clip.model.visual), spec)


MODEL_BUILDERS["ln"] = _build_ln

# Families whose checkpoints carry more than tensors (e.g. the descriptions a text model was trained
# with) register a loader: (folder, clip, device) -> module with the checkpoint applied.
CHECKPOINT_LOADERS: dict[str, Callable] = {}


def build_model(clip: LoadedClip, method: str | MethodSpec, only_register: bool = False) -> nn.Module | None:
    spec = get_method(method) if isinstance(method, str) else method
    if spec.family not in MODEL_BUILDERS:
        import importlib
        importlib.import_module(f"dfdet.{spec.family}")  # a family module registers its builder on import
    return None if only_register else MODEL_BUILDERS[spec.family](clip, spec)
