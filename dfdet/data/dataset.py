"""A torch Dataset over manifest rows: (pixels, label, row index).

`augment` (training only, see dfdet.data.augment) runs on the PIL image before `transform`, as in
the reference's dataset (src/dataset/base.py:44-50). It draws from torch's global RNG, so a seeded
process (or a DataLoader with a seeded generator) yields the same augmented batches.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from ..errors import DataError


class FaceDataset(torch.utils.data.Dataset):
    def __init__(self, df: pd.DataFrame, data_root: str | Path, transform, augment=None):
        self.df = df.reset_index(drop=True)
        self.root = Path(data_root)
        self.transform = transform
        self.augment = augment
        self.labels = torch.tensor(self.df["label"].astype(int).to_numpy().copy())

    def __len__(self) -> int:
        return len(self.df)

    def __getitem__(self, i: int):
        path = self.root / self.df["path"].iloc[i]
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
                if self.augment is not None:
                    image = self.augment(image)
                pixels = self.transform(image)
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read image {path}: {err}") from None
        return pixels, self.labels[i], i
