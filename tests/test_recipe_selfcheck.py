"""§9 `dfdet selfcheck` and §8 preprocessing parity with the reference's HF CLIPImageProcessor.

Without the paper's weights, the self-check runs on a synthetic checkpoint of the paper's layout
(tests/test_hub_synthetic.py): its "published" values are what the reference pipeline (HF
CLIPImageProcessor + the transformers/peft model) computes for the 12 crops, so a pass means dfdet's
import, preprocessing and scoring reproduce the reference's pipeline. The `weights` test runs it
against the real published numbers when $DFDET_PAPER_CKPT names the paper's model.ckpt.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("peft")

from dfdet.backbone import clip_transform  # noqa: E402
from dfdet.cli import main  # noqa: E402
from dfdet.selfcheck import CKPT_ENV, PUBLISHED, run_selfcheck  # noqa: E402
from test_hub_synthetic import PaperModel, hyper_parameters, save_paper_ckpt  # noqa: E402


def reference_processor():
    """The image processor the reference used: transformers 4.50's CLIPImageProcessor (PIL backend).
    transformers 5 renamed it CLIPImageProcessorPil; its default CLIPImageProcessor resizes with torchvision
    and differs by up to one grey level."""
    try:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
        return CLIPImageProcessorPil()
    except ImportError:
        from transformers import CLIPImageProcessor
        return CLIPImageProcessor()


@pytest.mark.parametrize("size", [(256, 256), (300, 256), (256, 300), (641, 479)])
def test_preprocessing_equals_hf_clip_image_processor(shared, size):
    im = Image.open(shared / "datasets" / "CDFv2" / "YouTube-real" / "00000" / "000.png").convert("RGB").resize(size)
    ref = torch.as_tensor(reference_processor()(images=im, return_tensors="np")["pixel_values"][0])
    ours = clip_transform(224)(im)
    assert ours.shape == ref.shape == (3, 224, 224)
    assert (ours - ref).abs().max().item() < 1e-5


def test_shared_crops_are_the_reference_repos_samples(shared):
    digests = {
        "CDFv2/Celeb-synthesis/id0_id1_0000/000.png": "cae26283688b2e18",
        "CDFv2/YouTube-real/00000/043.png": "37adad8dd2df6a8d",
        "CDFv2/Celeb-real/id0_0000/000.png": "33a652cb6ad545d4",
    }  # sha256 prefixes of yermandy/deepfake-detection datasets/CDFv2/... at 0b872f7
    for path, digest in digests.items():
        assert hashlib.sha256((shared / "datasets" / path).read_bytes()).hexdigest()[:16] == digest
    assert len(PUBLISHED) == 12 and sum(v is not None for _, v in PUBLISHED) == 11


@pytest.fixture(scope="module")
def synthetic(shared, tmp_path_factory):
    """A tiny paper-layout checkpoint and the p(fake) the reference pipeline gives the 12 crops."""
    model = PaperModel(normalize=True, ln_tuning=True, seed=11)
    ckpt = save_paper_ckpt(tmp_path_factory.mktemp("paper") / "model.ckpt", model, hyper_parameters(True, True, True))
    proc = reference_processor()
    root = shared / "datasets"
    x = torch.stack([torch.as_tensor(proc(images=Image.open(root / p), return_tensors="np")["pixel_values"][0])
                     for p, _ in PUBLISHED])
    with torch.no_grad():
        p_fake = torch.softmax(model(x), -1)[:, 1]
    expected = tuple((p, round(float(v), 4)) for (p, _), v in zip(PUBLISHED, p_fake))
    return ckpt, root, expected


def test_selfcheck_reproduces_the_reference_pipeline(synthetic):
    ckpt, root, expected = synthetic
    result = run_selfcheck(ckpt, root, expected=expected, tolerance=1e-3)
    assert result.passed and result.compared == 12, result.table()
    assert max(abs(r["diff"]) for r in result.rows) <= 5.1e-5 + 1e-5  # only the 4-decimal rounding remains
    shifted = tuple((p, None if v is None else min(1.0, v + 0.05)) for p, v in expected)
    bad = run_selfcheck(ckpt, root, expected=shifted, tolerance=0.02)
    assert not bad.passed and "FAIL" in bad.table() and "NO" in bad.table()


def test_selfcheck_without_weights_says_what_it_needs(capsys, monkeypatch):
    monkeypatch.delenv(CKPT_ENV, raising=False)
    assert main(["selfcheck"]) == 2
    out = capsys.readouterr().out
    assert "model.ckpt" in out and "huggingface.co/yermandy/deepfake-detection" in out


@pytest.mark.weights
@pytest.mark.skipif(not os.environ.get(CKPT_ENV), reason=f"${CKPT_ENV} does not name the paper's model.ckpt")
def test_selfcheck_matches_the_published_numbers(shared, capsys):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    code = main(["selfcheck", "--checkpoint", os.environ[CKPT_ENV], "--device", device])
    out = capsys.readouterr().out
    assert code == 0, out
