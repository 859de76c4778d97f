"""Every GPU benchmark in one command, under 8 minutes, no weights needed (random ViT-L/14, synthetic
JPEGs, the shared crops). Started by bench/gpu_suite.sh; writes <out-dir>/results_<stage>_<device>.md
per stage and a summary <out-dir>/results_gpu_suite_<device>.md (stage, status, seconds, command).

On a GPU each stage is its own process with its own time limit (together 480 s), so peak memory is
per stage and a stage that fails or runs out of time is marked and the next one runs; torch.compile,
the slowest and least certain, runs last. `--tiny` runs the same stages at toy sizes in this one
process (a smoke run that measures nothing; tests/test_gpu_suite.py).
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
TOTAL_LIMIT_S = 480


def stages(device: str, tiny: bool, out: Path) -> list[tuple[str, int, list[str]]]:
    """(name, time limit in s, python -m arguments) of each stage, in run order."""
    def o(name: str) -> list[str]:
        return ["--out", str(out / f"results_{name}_{device}.md")]
    d = ["--device", device, "--model", "dfdet-tiny-vit" if tiny else "ViT-L-14"]
    if tiny:
        d += ["--rounds", "1", "--warmup", "0"]
        return [
            ("inference", 120, ["bench.bench_inference", *d, "--precisions", "bf16", "--batch-sizes", "1,2",
                                "--variants", "dfdet,paper_hf", "--no-profile", *o("inference")]),
            ("train", 120, ["bench.bench_train", *d, "--precision", "bf16", "--batch", "2", "--steps", "1",
                            "--in-process", *o("train")]),
            ("methods", 120, ["bench.bench_methods", *d, "--precision", "bf16", "--batch", "2", *o("methods")]),
            ("evaluate", 120, ["bench.bench_evaluate", *d, "--precision", "bf16", "--images", "8", "--shared", "4",
                               "--batch", "4", *o("evaluate")]),
            # compiling on CPU takes minutes: the smoke run checks the stage's plumbing without the compiled variant
            ("compile", 120, ["bench.bench_inference", *d, "--precisions", "bf16", "--batch-sizes", "2",
                              "--variants", "dfdet", "--no-profile", *o("compile")]),
        ]
    return [
        ("inference", 100, ["bench.bench_inference", *d, "--precisions", "bf16", "--batch-sizes", "1,32,256",
                            "--variants", "dfdet,paper_hf", "--rounds", "5", "--warmup", "2", "--budget-s", "90",
                            *o("inference")]),
        ("train", 110, ["bench.bench_train", *d, "--precision", "bf16", "--batch", "128", "--steps", "10",
                        "--warmup", "3", "--rounds", "2", *o("train")]),
        ("methods", 50, ["bench.bench_methods", *d, "--precision", "bf16", "--batch", "64", "--rounds", "5",
                         "--warmup", "2", *o("methods")]),
        ("evaluate", 90, ["bench.bench_evaluate", *d, "--precision", "bf16", "--images", "4096", "--shared", "256",
                          "--batch", "256", "--rounds", "2", "--warmup", "1", *o("evaluate")]),
        ("compile", 130, ["bench.bench_inference", *d, "--precisions", "bf16", "--batch-sizes", "256",
                          "--variants", "dfdet,dfdet_compiled", "--rounds", "5", "--warmup", "2", "--budget-s", "150",
                          "--no-profile", *o("compile")]),
    ]


def run_stage(args: list[str], limit: int, in_process: bool) -> str:
    if in_process:
        try:
            importlib.import_module(args[0]).main(args[1:])
            return "ok"
        except BaseException as err:  # noqa: BLE001 - one stage's failure is recorded, the next one runs
            if isinstance(err, KeyboardInterrupt):
                raise
            return f"FAILED ({type(err).__name__}: {str(err)[:200]})"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    try:
        rc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, timeout=limit).returncode
    except subprocess.TimeoutExpired:
        return f"TIMED OUT after {limit} s"
    return "ok" if rc == 0 else f"FAILED (exit {rc})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run")
    p.add_argument("--tiny", action="store_true", help="toy sizes, every stage in this process (smoke run)")
    p.add_argument("--out-dir", default=str(REPO / "bench"), help="where the results files go")
    args = p.parse_args(argv)
    import torch
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_suite: no CUDA device visible; for a CPU smoke run pass --device cpu --tiny", file=sys.stderr)
        return 2
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0, rows, failed = time.monotonic(), [], False
    for name, limit, stage_args in stages(args.device, args.tiny, out):
        cmd = "python -m " + shlex.join(stage_args)
        print(f"== {name} (limit {limit} s): {cmd}", file=sys.stderr, flush=True)
        s = time.monotonic()
        status = run_stage(stage_args, limit, in_process=args.tiny)
        failed |= status != "ok"
        rows.append(f"| {name} | {status} | {time.monotonic() - s:.0f} | `{cmd}` |")
    total = time.monotonic() - t0
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    text = "\n".join([
        f"# GPU benchmark suite ({args.device}{', tiny smoke run: measures nothing' if args.tiny else ''})", "",
        f"- command: `bench/gpu_suite.sh --device {args.device}{' --tiny' if args.tiny else ''}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; GPU: {gpu}; "
        f"total {total:.0f} s (target < {TOTAL_LIMIT_S} s)", "",
        "| stage | status | seconds | command |", "|---|---|---|---|", *rows, ""])
    summary = out / f"results_gpu_suite_{args.device}.md"
    summary.write_text(text)
    print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
