"""Benchmark: video -> aligned face crops on this machine, and where the time goes.

Input: the 8 real videos in ../shared/videos (FaceForensics++ and DFDC, 480p to 1080p, 300-750 frames).
Two parts, medians over --repeats runs:

A. Stage breakdown, in one process: decode (exact vs fast), detect (dlib HOG on a <=640 px copy,
   one retry with upsampling), align (68 landmarks + similarity warp), write (PNG). For each
   stage it gives wall time and CPU time (process_time). CPU time barely moves when other
   processes share the cores, so it is the robust number on a busy machine.
B. End to end: `preprocess()` (the `dfdet preprocess` code path) with 1 and 2 worker processes,
   as frames per second of wall time, process start-up included.
C. The two named profiles side by side (--profiles): "dfb" (the default, DeepfakeBench's
   preprocessing) and "fast", each run in this process (workers=1), alternating per repeat.

    python bench/bench_preprocess.py --profiles-only --frames 4   # part C only

    python bench/bench_preprocess.py                  # the run in bench/results_preprocess.md
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

from dfdet.data.faces import AlignConfig, FaceAligner  # noqa: E402
from dfdet.data.manifest import shared_dir  # noqa: E402
from dfdet.data.preprocess import PROFILES, _save_atomic, preprocess, profile_config  # noqa: E402
from dfdet.data.video import iter_frames, plan_indices, probe  # noqa: E402

STAGES = ("decode", "detect", "align", "write")


class Clock:
    """Adds wall and CPU seconds of a block to a per-stage tally."""

    def __init__(self):
        self.wall = {k: 0.0 for k in STAGES}
        self.cpu = {k: 0.0 for k in STAGES}

    def add(self, stage, w0, c0):
        self.wall[stage] += time.perf_counter() - w0
        self.cpu[stage] += time.process_time() - c0


def stage_run(videos: list[Path], n_frames: int, fast: bool, aligner: FaceAligner, out: Path) -> tuple[Clock, int, int]:
    clock, frames, crops = Clock(), 0, 0
    for v in videos:
        idx, _ = plan_indices(probe(v).n_frames, n_frames)
        it = iter_frames(v, idx, fast)
        while True:
            w0, c0 = time.perf_counter(), time.process_time()
            item = next(it, None)
            clock.add("decode", w0, c0)
            if item is None:
                break
            i, rgb = item
            frames += 1
            w0, c0 = time.perf_counter(), time.process_time()
            boxes = aligner.detect(rgb)
            clock.add("detect", w0, c0)
            if not boxes:
                continue
            w0, c0 = time.perf_counter(), time.process_time()
            from PIL import Image
            crop = Image.fromarray(aligner.align(rgb, aligner.landmarks(rgb, boxes[0])))
            clock.add("align", w0, c0)
            w0, c0 = time.perf_counter(), time.process_time()
            _save_atomic(crop, out / v.stem / f"{i:03d}.png", "png")
            clock.add("write", w0, c0)
            crops += 1
    return clock, frames, crops


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=str(shared_dir() / "videos"), help="folder of videos")
    ap.add_argument("--frames", type=int, default=32, help="frames per video (DeepfakeBench default 32)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting; medians are reported")
    ap.add_argument("--profiles-only", action="store_true", help="run only part C (dfb vs fast profile)")
    args = ap.parse_args(argv)
    src = Path(args.videos)
    videos = sorted(src.rglob("*.mp4"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          f"load average (1 min) at start: {os.getloadavg()[0]:.1f}")
    if args.profiles_only:
        profiles(src, args.frames, args.repeats)
        return 0
    print(f"input: {src} ({len(videos)} videos), {args.frames} frames per video, HOG detector, "
          f"224 px crops, median of {args.repeats} runs\n")

    print("A. stage breakdown, one process (ms per sampled frame; wall / CPU)\n")
    print("| decode mode | decode | detect | align | write | total | CPU-bound fps (1 core) |")
    print("|---|---|---|---|---|---|---|")
    aligner = FaceAligner(AlignConfig())
    for fast in (False, True):
        runs = []
        for _ in range(args.repeats):
            out = Path(tempfile.mkdtemp(prefix="bench_pp_"))
            try:
                runs.append(stage_run(videos, args.frames, fast, aligner, out))
            finally:
                shutil.rmtree(out, ignore_errors=True)
        n = runs[0][1]
        wall = {k: statistics.median(r[0].wall[k] for r in runs) * 1000 / n for k in STAGES}
        cpu = {k: statistics.median(r[0].cpu[k] for r in runs) * 1000 / n for k in STAGES}
        cells = " | ".join(f"{wall[k]:.0f} / {cpu[k]:.0f}" for k in STAGES)
        print(f"| {'fast (default)' if fast else 'exact'} | {cells} | {sum(wall.values()):.0f} / "
              f"{sum(cpu.values()):.0f} | {1000 / sum(cpu.values()):.1f} |", flush=True)
    print(f"\nframes per run: {n}, crops: {runs[0][2]}\n")

    print("B. end to end, preprocess() (the fast profile)\n")
    print("| workers | wall s | frames/s | crops/s |")
    print("|---|---|---|---|")
    for workers in (1, 2):
        walls, frames, crops = [], 0, 0
        for _ in range(args.repeats):
            out = Path(tempfile.mkdtemp(prefix="bench_pp_"))
            try:
                t = time.perf_counter()
                rep = preprocess(src, out, profile_config("fast", n_frames=args.frames, workers=workers),
                                 progress=False)
                walls.append(time.perf_counter() - t)
            finally:
                shutil.rmtree(out, ignore_errors=True)
            frames = sum(r["frames"] for r in rep.records)
            crops = sum(r["crops"] for r in rep.records)
        w = statistics.median(walls)
        print(f"| {workers} | {w:.1f} | {frames / w:.1f} | {crops / w:.1f} |", flush=True)
    print(f"\nload average (1 min) at end: {os.getloadavg()[0]:.1f}\n")
    profiles(src, args.frames, args.repeats)
    return 0


def profiles(src: Path, frames: int, repeats: int) -> None:
    """Part C: each named profile end to end in this process, alternating, medians of wall and CPU time."""
    print(f"C. profiles side by side, preprocess() in one process, {frames} frames per video\n")
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.1f}\n")
    res: dict[str, list[tuple[float, float, int, int]]] = {p: [] for p in PROFILES}
    for _ in range(repeats):
        for name in PROFILES:
            out = Path(tempfile.mkdtemp(prefix="bench_pp_"))
            try:
                t, c = time.perf_counter(), time.process_time()
                rep = preprocess(src, out, profile_config(name, n_frames=frames, workers=1), progress=False)
                res[name].append((time.perf_counter() - t, time.process_time() - c,
                                  sum(r["frames"] for r in rep.records), sum(r["crops"] for r in rep.records)))
            finally:
                shutil.rmtree(out, ignore_errors=True)
    print("| profile | wall s | CPU s | frames | crops | CPU ms / frame | frames/s (CPU, 1 core) |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in res.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        n, crops = runs[0][2], runs[0][3]
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {n} | {crops} | {1000 * cpu / n:.0f} | {n / cpu:.2f} |")
    ratio = statistics.median(r[1] for r in res["dfb"]) / statistics.median(r[1] for r in res["fast"])
    print(f"\ndfb / fast CPU time: {ratio:.1f}x; load average (1 min) at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
