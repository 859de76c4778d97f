"""Write one method's L2-normalised embeddings of a manifest (float16 .npz: z, norm, path)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..cli import add_backbone_args, backbone_from_args, resolve_device
from ..errors import DataError


def add_arguments(p) -> None:
    p.add_argument("--manifest", required=True, help="manifest CSV")
    p.add_argument("--data-root", help="folder the manifest paths are relative to (default: the manifest's folder)")
    p.add_argument("--split", default="all", help="split to embed, or 'all'")
    p.add_argument("--method", required=True, help="method (or checkpoint folder name) whose features to write")
    p.add_argument("--checkpoints", default="checkpoints", help="folder holding one checkpoint folder per method")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--workers", type=int, default=-1,
                   help="DataLoader worker processes per process (-1 = auto: 0 on CPU, up to 8 on CUDA)")
    add_backbone_args(p)


def run(args) -> int:
    from ..backbone import load_clip
    from ..data.dataset import FaceDataset
    from ..data.manifest import default_data_root, read_manifest
    from ..data.loader import loader_kwargs
    from ..distributed import barrier, gather_rows, init, shard
    from ..fileio import atomic_write
    from ..inference import DetectorBank
    w, device = init(resolve_device(args.device))
    root = Path(args.data_root) if args.data_root else default_data_root(args.manifest)
    df = read_manifest(args.manifest, root)
    if args.split != "all":
        df = df[df["split"] == args.split].reset_index(drop=True)
    if df.empty:
        raise DataError(f"{args.manifest}: no rows for split {args.split!r}")
    bank = DetectorBank(load_clip(backbone_from_args(args), device), args.checkpoints, None, device)
    if args.method not in bank.entries or bank.entries[args.method].status != "ready":
        msg = bank.entries[args.method].message if args.method in bank.entries else "unknown method"
        raise DataError(f"{args.method}: {msg}; ready: {', '.join(bank.ready) or 'none'}")
    # under torchrun each rank embeds its shard of whole batches; rank 0 gathers them in manifest order
    mine = torch.utils.data.Subset(FaceDataset(df, root, bank.clip.preprocess), shard(len(df), args.batch_size, w))
    loader = torch.utils.data.DataLoader(mine, batch_size=args.batch_size,
                                         **loader_kwargs(device, args.workers, w.size))
    feats = [np.zeros((0, 0), np.float32)]
    feats += [bank.embed(x.to(device, non_blocking=True), args.method)
              for x, _, _ in tqdm(loader, desc="embed", disable=None if w.main else True)]
    f = gather_rows(np.concatenate(feats[1:] or feats))
    if not w.main:
        barrier()
        return 0
    norm = np.linalg.norm(f, axis=1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    z = (f / np.maximum(norm, 1e-12)[:, None]).astype(np.float16)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, z=z, norm=norm.astype(np.float32), path=df["path"].to_numpy().astype(str))
    atomic_write(out, write)
    barrier()
    print(f"{len(f)} embeddings ({f.shape[1]}-d) of {args.method} written to {out}")
    return 0
