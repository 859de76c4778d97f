"""A torch Dataset over manifest rows: (pixels, label, row index).

`augment` (training only, see dfdet.data.augment) runs on the PIL image before `transform`, as in
the reference's dataset (src/dataset/base.py:44-50). It draws from torch's global RNG, so a seeded
process (or a DataLoader with a seeded generator) yields the same augmented batches.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..errors import DataError
from ..images import truncated_images


def reference_val_subset(df: pd.DataFrame, limit: int, seed: int = 42) -> pd.DataFrame:
    """The reference's validation subset (src/dataset/deepfake.py:125-147, run.py:115-117): frame folders
    (videos) sorted, shuffled by np.random.RandomState(42), taken whole in that order with their frames in
    path order until `limit` frames are reached, the last video cut at the limit."""
    if not limit or len(df) <= limit:
        return df
    paths = df["path"].astype(str)
    folders = paths.map(lambda p: p[: p.rfind("/") + 1])
    videos = list(np.unique(folders.to_numpy()))
    np.random.RandomState(seed).shuffle(videos)
    by_folder = {v: g.sort_values("path", kind="mergesort").index for v, g in df.assign(_f=folders).groupby("_f")}
    picked: list = []
    for v in videos:
        picked.extend(by_folder[v])
        if len(picked) >= limit:
            break
    return df.loc[picked[:limit]].reset_index(drop=True)


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
            # A frame cut short on disk is decoded as far as it goes, as the reference does
            # (src/dataset/deepfake.py:18); only here, never for a user's upload (dfdet.images).
            with truncated_images(True), Image.open(path) as im:
                image = im.convert("RGB")
            if self.augment is not None:
                image = self.augment(image)
            pixels = self.transform(image)
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read image {path}: {err}") from None
        return pixels, self.labels[i], i
