"""bench/gpu_suite.sh runs end to end at toy sizes on CPU (--device cpu --tiny), so it is ready for a GPU.

Timing is not asserted (nothing here is a GPU); what is checked is that every stage ran and wrote its
results file with the command that made it, and that the summary says so.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("inference", "train", "methods", "evaluate", "compile")


def test_gpu_suite_cpu_smoke(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(["bash", str(REPO / "bench" / "gpu_suite.sh"), "--device", "cpu", "--tiny", "--out-dir",
                          str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    summary = tmp_path / "results_gpu_suite_cpu.md"
    assert summary.is_file(), res.stderr[-3000:]
    text = summary.read_text()
    assert res.returncode == 0, text + res.stderr[-3000:]
    for stage in STAGES:
        assert f"| {stage} | ok |" in text
        report = (tmp_path / f"results_{stage}_cpu.md").read_text()
        assert report.startswith("# ") and "- command: `python -m bench." in report


def test_gpu_suite_refuses_cuda_without_a_gpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run(["bash", str(REPO / "bench" / "gpu_suite.sh"), "--out-dir", str(tmp_path)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "no CUDA device visible" in res.stderr
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.gpu
def test_gpu_decode_matches_cpu_preprocessing_closely():
    """On a GPU: decode_jpeg(device=cuda) + GPU resize stays close to PIL's CLIP preprocessing."""
    import torch
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from torchvision.io import read_file

    from bench.bench_evaluate import gpu_preprocess, synthetic_jpegs
    from dfdet.backbone import clip_transform
    from PIL import Image
    paths = synthetic_jpegs(Path(os.environ.get("TMPDIR", "/tmp")) / "dfdet_gpu_decode", 4)
    gpu = gpu_preprocess([read_file(str(p)) for p in paths], torch.device("cuda"), 224).cpu()
    cpu = torch.stack([clip_transform(224)(Image.open(p).convert("RGB")) for p in paths])
    assert gpu.shape == cpu.shape and (gpu - cpu).abs().mean() < 0.02
