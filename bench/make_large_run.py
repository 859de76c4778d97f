"""Write a synthetic run folder of N faces in the real layout, for large-run tests and benchmarks.

    python bench/make_large_run.py N OUT [--dim 1024] [--seed 0]

The faces are the real crops of ../shared/datasets, reused by path (real crops for real rows, fake
crops for fakes). Videos are 32 frames (the paper's sampling) spread over four datasets and their
sources. Embeddings and scores carry class, dataset, source and video structure so every view has
something to show; they are synthetic, and run.json says so (demo flag: every figure is labelled).
Vectorised and streamed: embeddings go to each method's npz chunk by chunk (stored, uncompressed,
so the dashboard can memory-map them), memory stays ~O(N) scalars. 10^6 faces x 1024-d: ~8 GB disk.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAMES = 32  # frames per video, as the paper samples
DATASETS = {  # dataset -> (share of videos, sources); a source containing "real" is real
    "FF": (0.15, ["real", "DF", "F2F", "FS", "NT"]),
    "CDFv2": (0.10, ["Celeb-real", "YouTube-real", "Celeb-synthesis"]),
    "DFD": (0.30, ["real", "fake"]),
    "DFDC": (0.45, ["real", "fake"]),
}
METHODS = {  # column -> (registry method, separation per dataset in logit units)
    "linear_probe": ("linear_probe", {"FF": 2.2, "CDFv2": 1.0, "DFD": 1.4, "DFDC": 0.7}),
    "ln_tuning": ("ln_tuning", {"FF": 3.0, "CDFv2": 1.6, "DFD": 2.0, "DFDC": 1.0}),
    "ln_norm": ("ln_norm", {"FF": 3.3, "CDFv2": 2.0, "DFD": 2.3, "DFDC": 1.2}),
    "ln_norm_slerp": ("ln_norm_slerp", {"FF": 3.5, "CDFv2": 2.2, "DFD": 2.4, "DFDC": 1.3}),
}
CHUNK = 1 << 16  # embedding rows generated and written at a time


def shared_root() -> Path:
    env = os.environ.get("DFDET_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def crop_pools(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Relative paths of the real and the fake crops under root (dataset/source/video/frame)."""
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*/*/*") if p.is_file())
    if not files:
        raise SystemExit(f"no face crops under {root}: set DFDET_SHARED to the shared/ folder")
    real = np.array([f for f in files if "real" in f.split("/")[1].lower()])
    fake = np.array([f for f in files if "real" not in f.split("/")[1].lower()])
    return real, fake


def table(n: int, rng: np.random.Generator, real: np.ndarray, fake: np.ndarray):
    """predictions.csv without scores, each row's (dataset, source) group and video number."""
    n_vid = -(-n // FRAMES)
    names = list(DATASETS)
    share = np.array([DATASETS[d][0] for d in names])
    ds_of_vid = rng.choice(len(names), n_vid, p=share / share.sum())
    src_of_vid = np.floor(rng.random(n_vid) * np.array([len(DATASETS[d][1]) for d in names])[ds_of_vid]).astype(int)
    vid = np.repeat(np.arange(n_vid), FRAMES)[:n]
    frame = np.tile(np.arange(FRAMES), n_vid)[:n]
    d_idx, s_idx = ds_of_vid[vid], src_of_vid[vid]
    dataset = np.array(names)[d_idx]
    src_names = {(i, j): s for i, d in enumerate(names) for j, s in enumerate(DATASETS[d][1])}
    pair = d_idx * 8 + s_idx
    source = np.empty(n, dtype=object)
    for (i, j), s in src_names.items():
        source[pair == i * 8 + j] = s
    label = np.isin(pair, [i * 8 + j for (i, j), s in src_names.items() if "real" not in s.lower()]).astype(np.int64)
    pick = vid * 7 + frame
    path = np.where(label == 1, fake[pick % len(fake)], real[pick % len(real)])
    return pd.DataFrame({"path": path, "dataset": dataset, "source": source,
                         "video": np.char.add("v", np.char.zfill(vid.astype(str), 6)), "label": label,
                         "split": "test"}), pair, vid


def scores(df: pd.DataFrame, vid: np.ndarray, rng: np.random.Generator, sep: dict[str, float]) -> np.ndarray:
    """p_fake: a per-dataset separation, a per-video effect (videos are hard or easy) and frame noise."""
    y = df["label"].to_numpy()
    s = df["dataset"].map(sep).to_numpy(dtype=np.float64)
    video = rng.normal(0, 1.0, vid.max() + 1)[vid]
    logit = (2 * y - 1) * s / 2 + video + rng.normal(0, 0.8, len(y))
    return np.round(1 / (1 + np.exp(-logit)), 6)


def write_embeddings(path: Path, pair: np.ndarray, vid: np.ndarray, y: np.ndarray, p: np.ndarray, dim: int,
                     rng: np.random.Generator) -> None:
    """z: float16 unit rows = class + dataset/source + video directions + a p_fake-aligned axis + noise."""
    n = len(pair)
    basis = rng.normal(size=(3, dim)).astype(np.float32)
    groups = rng.normal(size=(pair.max() + 1, dim)).astype(np.float32) * 0.55
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("z.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, {"descr": "<f2", "fortran_order": False, "shape": (n, dim)})
            vid_seed = rng.integers(1 << 31)
            for s in range(0, n, CHUNK):
                e = min(n, s + CHUNK)
                r = np.random.default_rng([vid_seed, s])
                v = np.unique(vid[s:e])
                vrows = np.random.default_rng([vid_seed, int(v[0])]).normal(size=(len(v), dim)).astype(np.float32)
                z = r.standard_normal((e - s, dim), dtype=np.float32) * 0.9
                z += groups[pair[s:e]]
                z += vrows[vid[s:e] - v[0]] * 0.5
                z += np.outer((2 * y[s:e] - 1) * 0.6 + (p[s:e] - 0.5) * 1.2, basis[0])
                z /= np.linalg.norm(z, axis=1, keepdims=True)
                f.write(z.astype("<f2").tobytes())
        with zf.open("norm.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, (rng.normal(24, 2, n)).astype(np.float32))
    os.replace(tmp, path)


def make(n: int, out: Path, dim: int = 1024, seed: int = 0, metrics: bool = True) -> Path:
    from dfdet.artifacts import LAYOUT_VERSION, PRED_PREFIX, write_json
    if n < 1:
        raise SystemExit("N must be at least 1")
    root = shared_root() / "datasets"
    real, fake = crop_pools(root)
    rng = np.random.default_rng(seed)
    df, pair, vid = table(n, rng, real, fake)
    y = df["label"].to_numpy()
    out.mkdir(parents=True, exist_ok=True)
    for col, (_, sep) in METHODS.items():
        df[PRED_PREFIX + col] = scores(df, vid, rng, sep)
        write_embeddings(out / "embeddings" / f"{col}.npz", pair, vid, y, df[PRED_PREFIX + col].to_numpy(), dim, rng)
    df.to_csv(out / "predictions.csv", index=False)
    recs, rocs = [], []
    if metrics:
        from dfdet.metrics import metric_table
        recs, rocs = metric_table(df, list(METHODS), PRED_PREFIX, 0.5)
    write_json(out / "metrics.json", recs)
    write_json(out / "roc.json", rocs)
    info = {"layout_version": LAYOUT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "demo": True, "synthetic": "bench/make_large_run.py: synthetic scores and embeddings over real crops",
            "backbone": {"model": "ViT-L-14", "weights": "synthetic"}, "data_root": str(root.resolve()),
            "split": "test", "threshold": 0.5, "manifest": "", "n_faces": n,
            "methods": {c: {"method": m} for c, (m, _) in METHODS.items()}}
    (out / "run.json").write_text(json.dumps(info, indent=1))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, help="faces (rows) to write, 10^3 to 10^6")
    ap.add_argument("out", type=Path, help="run folder to write")
    ap.add_argument("--dim", type=int, default=1024, help="embedding width (ViT-L/14: 1024)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-metrics", action="store_true", help="skip metrics.json/roc.json (empty lists)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    make(a.n, a.out, a.dim, a.seed, not a.no_metrics)
    print(f"wrote {a.n} faces to {a.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
