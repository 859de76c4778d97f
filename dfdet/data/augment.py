"""Training-image augmentation, as the paper's data module applies it.

The reference (yermandy/deepfake-detection, src/dataset/base.py:69-78, used for the training
dataset only in src/dataset/deepfake.py:241-247) composes five torchvision.transforms.v2 ops on the
PIL image before CLIP's preprocessing. They are built here from the same torchvision classes, in the
same order, so a change of torchvision semantics is inherited rather than re-implemented.
Validation and test images are never augmented.

Note: `GaussianBlur(kernel_size=(3, 7))` is a fixed 3-wide, 7-tall kernel (torchvision reads the
pair as (x, y)), not a range of sizes; sigma is drawn from [0.1, 2.0] for every image, so the blur
is always on.
"""
from __future__ import annotations

from typing import Callable

from ..errors import DataError

AUGMENTS = ("paper", "gend", "none")  # values of TrainConfig.augment


def paper_augmentation():
    """The reference's train-time pipeline (src/dataset/base.py:69-78)."""
    from torchvision.transforms import v2 as T
    return T.Compose([
        T.RandomHorizontalFlip(p=0.5),
        T.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        T.GaussianBlur(kernel_size=(3, 7), sigma=(0.1, 2.0)),
        T.ColorJitter(brightness=0.1, contrast=0.1),
        T.JPEG([40, 100]),
    ])


def gend_augmentation():
    """GenD's train-time pipeline (yermandy/GenD src/dataset/augmentations.py:6-69 with the defaults of
    src/config.py:107-121): the paper's, except the blur is a 7x7 kernel applied to 10% of images."""
    from torchvision.transforms import v2 as T
    return T.Compose([
        T.RandomHorizontalFlip(p=0.5),
        T.RandomAffine(degrees=10, translate=[0.1, 0.1], scale=[0.9, 1.1]),
        T.RandomApply([T.GaussianBlur(kernel_size=7, sigma=[0.1, 2.0])], p=0.1),
        T.ColorJitter(brightness=0.1, contrast=0.1),
        T.JPEG([40, 100]),
    ])


class OneThread:
    """Run a PIL transform with one torch thread: on small crops thread hand-off costs more than it saves
    (GaussianBlur on a 256 px crop: ~2.5x faster on a busy 2-core machine). DataLoader workers already
    run with one thread; this makes the in-process path (num_workers=0) match."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        import torch
        n = torch.get_num_threads()
        if n == 1:
            return self.transform(image)
        torch.set_num_threads(1)
        try:
            return self.transform(image)
        finally:
            torch.set_num_threads(n)


def build_augmentation(name: str) -> Callable | None:
    """PIL -> PIL transform for training images, or None for "none"."""
    if name == "paper":
        return OneThread(paper_augmentation())
    if name == "gend":
        return OneThread(gend_augmentation())
    if name == "none":
        return None
    raise DataError(f"unknown augment {name!r}; choose one of {', '.join(AUGMENTS)}")


def describe(name: str) -> str:
    """One line for checkpoint metadata and logs."""
    if name == "none":
        return "none"
    if name == "gend":
        return ("gend (torchvision v2: RandomHorizontalFlip(0.5), RandomAffine(10, translate=(0.1, 0.1), "
                "scale=(0.9, 1.1)), RandomApply([GaussianBlur(7, sigma=(0.1, 2.0))], p=0.1), ColorJitter(0.1, 0.1), "
                "JPEG([40, 100])); training images only")
    return ("paper (torchvision v2: RandomHorizontalFlip(0.5), RandomAffine(10, translate=(0.1, 0.1), "
            "scale=(0.9, 1.1)), GaussianBlur((3, 7), sigma=(0.1, 2.0)), ColorJitter(0.1, 0.1), JPEG([40, 100])); "
            "training images only")
