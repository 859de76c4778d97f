"""Data parallelism on torch.distributed, as started by torchrun. One process is world size 1.

`torchrun --nproc-per-node N -m dfdet <command>` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR;
`init()` joins that process group (NCCL on GPUs, gloo on CPU). Plain `dfdet <command>` sets none of
them: nothing is initialised and every helper below is the identity, so both run the same code.

Evaluation shards frames in whole batches (`shard`), so each batch a rank runs is the very batch one
process would run, and results gathered back in rank order are the single-process results.
"""
from __future__ import annotations

import atexit
import datetime
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .errors import DfdetError

TIMEOUT_ENV = "DFDET_DIST_TIMEOUT"  # seconds a rank waits on the others in one collective before it fails
DEFAULT_TIMEOUT_S = 1800  # a rank's first batch can wait on another rank's model load and compile


@dataclass(frozen=True)
class World:
    """This process's place in the job."""
    rank: int = 0  # global rank, 0..size-1
    size: int = 1  # number of processes
    local_rank: int = 0  # rank on this node: the GPU index

    @property
    def main(self) -> bool:
        """Rank 0: the only one that writes files and prints results."""
        return self.rank == 0


def launched() -> bool:
    """Whether torchrun (or SLURM through torchrun) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def init(device: str) -> tuple[World, str]:
    """Join torchrun's process group (once per process); returns the world and this rank's device.

    device "cuda" becomes "cuda:<LOCAL_RANK>", one GPU per process.
    """
    if not launched():
        return World(), device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if torch.cuda.device_count() <= local:
            raise DfdetError(f"LOCAL_RANK {local} needs GPU {local}, but this node has "
                             f"{torch.cuda.device_count()}; start at most that many processes per node")
        torch.cuda.set_device(local)
        device, backend = f"cuda:{local}", "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        dist.init_process_group(backend, timeout=timeout)
        atexit.register(_shutdown)
    return world(), device


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def finish() -> None:
    """End a successful run: every rank waits for the others, then leaves the group together.

    A rank that tears gloo down while its peer is still in a collective or still tearing down can
    abort at exit ("terminate called without an active exception") after its work is written.
    """
    if dist.is_available() and dist.is_initialized():
        if world().size > 1:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if world().size > 1:
        dist.barrier()


def shard(n: int, batch_size: int, w: World | None = None) -> range:
    """This rank's rows of n, in whole batches: contiguous, in order, ranks concatenated = range(n)."""
    w = w or world()
    batches = math.ceil(n / batch_size)
    lo, hi = batches * w.rank // w.size, batches * (w.rank + 1) // w.size
    return range(min(lo * batch_size, n), min(hi * batch_size, n))


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_rows(a: np.ndarray, to_all: bool = False) -> np.ndarray | None:
    """Concatenate every rank's rows (1-D or 2-D, same dtype) in rank order: on rank 0 (others get
    None) or on all ranks. A rank with no rows may pass an empty array of any width.

    Numbers only, moved as tensors (nothing is pickled). World size 1 returns `a` itself.
    """
    w = world()
    if w.size == 1:
        return a
    dev = _comm_device()
    t = torch.from_numpy(np.ascontiguousarray(a)).to(dev)
    shape = torch.tensor([t.shape[0], t.shape[1] if t.dim() == 2 else -1], device=dev)
    shapes = [torch.zeros_like(shape) for _ in range(w.size)]
    dist.all_gather(shapes, shape)
    rows = int(max(s[0].item() for s in shapes))
    cols = int(max(s[1].item() for s in shapes))
    padded = torch.zeros((rows, cols) if cols >= 0 else (rows,), dtype=t.dtype, device=dev)
    if t.shape[0]:
        padded[:t.shape[0]] = t
    bufs = [torch.empty_like(padded) for _ in range(w.size)] if (to_all or w.main) else None
    if to_all:
        dist.all_gather(bufs, padded)
    else:
        dist.gather(padded, bufs, dst=0)
        if not w.main:
            return None
    return torch.cat([b[:int(s[0].item())] for b, s in zip(bufs, shapes)]).cpu().numpy()


def broadcast_tensors(tensors: list[torch.Tensor]) -> None:
    """Copy rank 0's values into every rank's tensors, in place (e.g. a resumed state)."""
    if world().size == 1:
        return
    dev = _comm_device()
    for t in tensors:
        buf = t.detach().to(dev)
        dist.broadcast(buf, src=0)
        with torch.no_grad():
            t.copy_(buf.to(t.device))


def failure_message(err: BaseException) -> str | None:
    """A one-line explanation when `err` means another rank of this job died or stopped answering."""
    if not (dist.is_available() and dist.is_initialized() and world().size > 1):
        return None
    text = str(err)
    lost = isinstance(err, getattr(dist, "DistError", ())) or any(s in text for s in (
        "Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out", "timed out",
        "NCCL", "Gloo", "gloo", "ProcessGroup"))
    if not lost:
        return None
    w = world()
    first = text.strip().splitlines()[0][:300] if text.strip() else type(err).__name__
    return (f"rank {w.rank}/{w.size}: another process of this job died or stopped answering ({first}); "
            f"stopping. torchrun's summary names the failed rank. Re-run the same command to resume "
            f"(a hung rank fails after ${TIMEOUT_ENV}={os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)} s)")
