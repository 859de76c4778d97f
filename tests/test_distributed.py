"""Data-parallel runs launched the way users launch them: `torchrun --nproc-per-node 2 -m dfdet ...`
on CPU (gloo), against one plain process. Tiny model, real DFDC crops from ../shared."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dfdet.cli import main
from dfdet.distributed import World, shard

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "dfdet-tiny-vit", "--pretrained", "none", "--device", "cpu"]


def torchrun(args: list[str], nproc: int = 2, timeout: float = 180, **popen) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node N -m dfdet ARGS` (torchrun is torch.distributed.run)."""
    return subprocess.run(_torchrun_cmd(args, nproc), env=_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, **popen)


def _torchrun_cmd(args: list[str], nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "dfdet", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "DFDET_DIST_TIMEOUT": "60", "HF_HUB_OFFLINE": "1"}


def _ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, f"rc {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res


def test_shards_are_whole_batches_in_order():
    for n, b, size in [(80, 16, 2), (5, 2, 4), (3, 4, 2), (0, 8, 3), (1000, 64, 8)]:
        parts = [shard(n, b, World(r, size)) for r in range(size)]
        assert [i for p in parts for i in p] == list(range(n))  # ranks concatenated = manifest order
        assert all(p.start % b == 0 for p in parts if len(p))  # each rank runs the batches one process runs
        assert max(map(len, parts)) - min(map(len, parts)) <= b + (n % b)


def test_two_process_evaluate_and_embed_equal_one_process(tiny_checkpoints, dfdc_manifest, tmp_path):
    manifest, root = dfdc_manifest
    common = ["--manifest", str(manifest), "--data-root", str(root), "--split", "all", "--batch-size", "16", *TINY]
    ev = ["evaluate", *common, "--checkpoints", str(tiny_checkpoints)]
    emb = ["embed", *common, "--checkpoints", str(tiny_checkpoints), "--method", "ln_norm_slerp"]
    assert main([*ev, "--out", str(tmp_path / "one")]) == 0
    assert main([*emb, "--out", str(tmp_path / "one.npz")]) == 0
    res = _ok(torchrun([*ev, "--out", str(tmp_path / "two")]))
    assert res.stdout.count("AUROC (frame level)") == 1  # rank 0 reports, once
    _ok(torchrun([*emb, "--out", str(tmp_path / "two.npz")]))

    one, two = tmp_path / "one", tmp_path / "two"
    assert (one / "predictions.csv").read_bytes() == (two / "predictions.csv").read_bytes()
    assert (one / "metrics.json").read_text() == (two / "metrics.json").read_text()
    assert (one / "roc.json").read_text() == (two / "roc.json").read_text()
    for f in sorted((one / "embeddings").glob("*.npz")):
        with np.load(f) as a, np.load(two / "embeddings" / f.name) as b:
            assert np.array_equal(a["z"], b["z"]) and np.array_equal(a["norm"], b["norm"])
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        assert a["z"].shape == (80, 64)
        for k in ("z", "norm", "path"):
            assert np.array_equal(a[k], b[k]), k
    import json
    assert json.loads((two / "run.json").read_text())["processes"] == 2
