"""Data-parallel runs launched the way users launch them: `torchrun --nproc-per-node 2 -m dfdet ...`
on CPU (gloo), against one plain process. Tiny model, real DFDC crops from ../shared."""
from __future__ import annotations

import os
import re
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
    # the single-process embed also uses the GPU path's DataLoader worker processes (2, here on CPU)
    assert main([*emb, "--workers", "2", "--out", str(tmp_path / "one.npz")]) == 0
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


def _train_args(dfdc_manifest, out: Path, *extra: str) -> list[str]:
    manifest, root = dfdc_manifest
    return ["train", "--method", "ln_tuning", "--manifest", str(manifest), "--data-root", str(root), "--lr", "1e-2",
            "--batch-size", "8", "--out", str(out), *TINY, *extra]


def _tensors(folder: Path) -> dict:
    from dfdet.checkpoint import load_tensors
    return load_tensors(folder)


def test_two_process_training_follows_one_process(dfdc_manifest, tmp_path):
    """3 steps of batch 8: 1 process, 1 process accumulating 2 x 4, and 2 processes (DDP) accumulating
    2 x 2 each end with the same trainable tensors; rank 0 alone writes the run folder."""
    steps = ["--epochs", "1", "--max-steps", "3"]
    assert main(_train_args(dfdc_manifest, tmp_path / "one", *steps)) == 0
    assert main(_train_args(dfdc_manifest, tmp_path / "accum", *steps, "--micro-batch", "4")) == 0
    res = _ok(torchrun(_train_args(dfdc_manifest, tmp_path / "ddp", *steps, "--micro-batch", "2")))
    assert res.stdout.count("checkpoint written to") == 1
    one, accum, ddp = (_tensors(tmp_path / k) for k in ("one", "accum", "ddp"))
    assert len(one) == 6 * 2 + 2  # 6 LayerNorms (gamma, beta) + head weight and bias
    start = _tensors_at_init()
    for k in one:
        assert not np.allclose(one[k].numpy(), start[k].numpy()), f"{k} did not train"
        np.testing.assert_allclose(accum[k].numpy(), one[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
        np.testing.assert_allclose(ddp[k].numpy(), one[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    import json
    logs = [json.loads((tmp_path / k / "train_log.jsonl").read_text()) for k in ("one", "ddp")]
    assert logs[0]["step"] == logs[1]["step"] == 3
    assert abs(logs[0]["train_loss"] - logs[1]["train_loss"]) < 1e-5  # the log holds the all-rank mean
    assert not list((tmp_path / "ddp").glob("*.tmp"))


def _tensors_at_init() -> dict:
    """The trainable tensors before any step (same seeding as dfdet.train)."""
    from dfdet.backbone import load_clip
    from dfdet.config import BackboneConfig
    from dfdet.model import build_model, trainable_state
    from dfdet.train import seed_everything
    clip = load_clip(BackboneConfig(model="dfdet-tiny-vit", pretrained=None))
    seed_everything(42)
    return {k: v.clone() for k, v in trainable_state(build_model(clip, "ln_tuning")).items()}


def test_batch_that_does_not_split_over_processes_is_refused():
    from dfdet.errors import DataError
    from dfdet.train import micro_batches
    assert micro_batches(128, 8) == (16, 1) and micro_batches(128, 8, 4) == (4, 4) and micro_batches(128, 1) == (128, 1)
    with pytest.raises(DataError, match="multiple of 3"):
        micro_batches(128, 3)
    with pytest.raises(DataError, match="must divide"):
        micro_batches(128, 2, 48)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _rank_pid(launcher: int, rank: int) -> int | None:
    for pid in _children(launcher):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    return None


def test_a_killed_rank_fails_the_run_with_a_message(dfdc_manifest, tmp_path):
    """Rank 1 is killed once the run has saved its first epoch; the job ends (no hang) with a non-zero
    status, says which rank failed, and keeps the state to resume from."""
    import signal
    import time
    out = tmp_path / "run"
    proc = subprocess.Popen(_torchrun_cmd(_train_args(dfdc_manifest, out, "--epochs", "1000"), 2), env=_env(),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 150
        while not (out / "resume.safetensors").exists():  # known progress: epoch 1 is saved
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.1)
        victim = _rank_pid(proc.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)  # DFDET_DIST_TIMEOUT=60 bounds any wait on the dead rank
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    # torchrun names the killed rank; rank 0 says why it stopped (or was stopped by torchrun first)
    assert re.search(r"rank\s*:\s*1 \(local_rank.*\n\s*exitcode\s*:\s*-9", err) and "SIGKILL" in err, err[-3000:]
    assert "another process of this job died or stopped answering" in err or "interrupted" in err, err[-3000:]
    assert (out / "resume.safetensors").is_file() and not (out / "model.safetensors").exists()


def test_a_finished_run_leaves_the_process_group(tmp_path):
    """A successful command ends with every rank leaving the group (barrier, then destroy), so no rank
    tears gloo down under a peer still using it."""
    import torch.distributed as dist
    from dfdet import distributed
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    distributed.finish()
    assert not dist.is_initialized()
    distributed.finish()  # idempotent: a plain process has no group to leave
