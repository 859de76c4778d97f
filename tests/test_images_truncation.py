"""Cut-short images: training frames decode as far as they go (the reference's rule), uploads are refused.

PIL's switch is process-wide; the app can train (demo build) and take uploads in one process, so the two
rules must hold side by side, in either order, without one leaking into the other.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import ImageFile

from dfdet.data.dataset import FaceDataset
from dfdet.errors import DataError
from dfdet.images import open_image


@pytest.fixture
def cut_png(shared, tmp_path):
    data = next((shared / "datasets").rglob("*.png")).read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


def test_a_training_decode_never_lets_a_cut_upload_through(cut_png):
    ds = FaceDataset(pd.DataFrame({"path": [cut_png.name], "label": [0]}), cut_png.parent,
                     lambda im: torch.from_numpy(np.array(im)))
    with pytest.raises(DataError, match="damaged or truncated"):
        open_image(cut_png)
    assert ds[0][0].ndim == 3  # the same file, as a training frame, decodes
    with pytest.raises(DataError, match="damaged or truncated"):
        open_image(cut_png)  # ...and the upload rule is unchanged after it
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_an_upload_is_refused_even_while_the_process_wide_switch_is_on(cut_png, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # e.g. another library set it
    with pytest.raises(DataError, match="damaged or truncated"):
        open_image(cut_png)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # put back as found
