"""A torch Dataset over manifest rows: (pixels, label, row index)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from ..errors import DataError


class FaceDataset(torch.utils.data.Dataset):
    def __init__(self, df: pd.DataFrame, data_root: str | Path, transform):
        self.df = df.reset_index(drop=True)
        self.root = Path(data_root)
        self.transform = transform
        self.labels = torch.tensor(self.df["label"].astype(int).to_numpy().copy())

    def __len__(self) -> int:
        return len(self.df)

    def __getitem__(self, i: int):
        path = self.root / self.df["path"].iloc[i]
        try:
            with Image.open(path) as im:
                pixels = self.transform(im.convert("RGB"))
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read image {path}: {err}") from None
        return pixels, self.labels[i], i
