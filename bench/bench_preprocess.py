"""Benchmark: video -> aligned face crops (dfdet preprocess) on this machine, and where the time goes.

Runs the real pipeline on ../shared/videos (8 FaceForensics++ / DFDC videos, 480p to 1080p) into a
temporary folder, several times per setting, and prints a Markdown table of medians:
end-to-end frames per second and crops per second, plus the per-stage split
(decode, detect = HOG face detection, align = 68 landmarks + similarity warp, write = PNG).

    python bench/bench_preprocess.py                 # full run (a few minutes on 2 cores)
    python bench/bench_preprocess.py --repeats 1 --frames 8   # quick look
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfdet.data.faces import AlignConfig  # noqa: E402
from dfdet.data.manifest import shared_dir  # noqa: E402
from dfdet.data.preprocess import PreprocessConfig, preprocess  # noqa: E402

STAGES = ("decode", "detect", "align", "write")


def one_run(src: Path, cfg: PreprocessConfig) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench_pp_"))
    try:
        t = time.perf_counter()
        report = preprocess(src, out, cfg, progress=False)
        wall = time.perf_counter() - t
    finally:
        shutil.rmtree(out, ignore_errors=True)
    frames = sum(r["frames"] for r in report.records)
    crops = sum(r["crops"] for r in report.records)
    stage = {k: sum(r["seconds"].get(k, 0.0) for r in report.records) for k in STAGES}
    return {"wall": wall, "frames": frames, "crops": crops, **stage}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(shared_dir() / "videos"), help="folder of videos")
    ap.add_argument("--frames", type=int, default=32, help="frames per video (DeepfakeBench default 32)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting; medians are reported")
    args = ap.parse_args(argv)
    src = Path(args.videos)
    settings = [
        ("1 worker, exact decode", PreprocessConfig(n_frames=args.frames, workers=1, fast=False)),
        ("1 worker, fast decode (default)", PreprocessConfig(n_frames=args.frames, workers=1)),
        ("2 workers, exact decode", PreprocessConfig(n_frames=args.frames, workers=2, fast=False)),
        ("2 workers, fast decode (default)", PreprocessConfig(n_frames=args.frames, workers=2)),
        ("1 worker, fast, detect at full resolution",
         PreprocessConfig(n_frames=args.frames, workers=1, align=AlignConfig(detect_max_side=0))),
    ]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"input: {src} ({len(list(src.rglob('*.mp4')))} videos), {args.frames} frames per video, "
          f"HOG detector, 224 px crops, median of {args.repeats} runs\n")
    print("| setting | wall s | frames/s | crops/s | decode s | detect s | align s | write s | decode share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, cfg in settings:
        runs = [one_run(src, cfg) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        busy = sum(med[k] for k in STAGES)
        print(f"| {name} | {med['wall']:.1f} | {med['frames'] / med['wall']:.1f} | {med['crops'] / med['wall']:.1f} "
              f"| {med['decode']:.1f} | {med['detect']:.1f} | {med['align']:.2f} | {med['write']:.2f} "
              f"| {med['decode'] / busy:.0%} |", flush=True)
    print(f"\nframes sampled per run: {runs[0]['frames']}, crops: {runs[0]['crops']}; "
          f"load average after: {os.getloadavg()[0]:.1f}")
    print("stage seconds are summed over videos (CPU time of the worker processes, so with 2 workers "
          "they can exceed the wall time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
