"""Text methods from the companion thesis: zero-shot class descriptions and text-guided fine-tuning.

Importing this package registers the family's model builder (dfdet.model.MODEL_BUILDERS["text"])
and, when the core trainer exists, its trainer (dfdet.train.TRAINERS["text"]).
"""
from __future__ import annotations

from ..model import CHECKPOINT_LOADERS, MODEL_BUILDERS
from .descriptions import THESIS_SETS, Descriptions, from_files, load_descriptions
from .model import TextDetector, build_text_model, load_text_checkpoint
from .thesis import THESIS_REPORTED_AUROC, THESIS_TITLE
from .train import TextTrainConfig, train_textguided

MODEL_BUILDERS["text"] = build_text_model
CHECKPOINT_LOADERS["text"] = load_text_checkpoint

try:
    from ..train import TRAINERS
except ImportError:  # a core without a trainer registry: the trainer is still usable directly
    TRAINERS = None
if TRAINERS is not None:
    TRAINERS["text"] = (TextTrainConfig, train_textguided)

__all__ = ["THESIS_REPORTED_AUROC", "THESIS_SETS", "THESIS_TITLE", "Descriptions", "TextDetector",
           "TextTrainConfig", "build_text_model", "from_files", "load_descriptions", "load_text_checkpoint",
           "train_textguided"]
