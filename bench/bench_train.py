"""LN-tuning training step: dfdet's Detector against the paper's HF CLIP + PEFT LN-tuning.

Each run is its own subprocess (so peak memory is that run's alone), and runs alternate between
the two paths. A run builds the model, takes warm-up steps, then times steps of
forward -> cross-entropy -> backward -> AdamW on random images.
  dfdet          dfdet.model.build_model(clip, "ln_tuning"): open_clip ViT, LayerNorm gamma/beta +
                 head trainable; the loss is dfdet.train.head_loss under dfdet.train.autocast
  paper_hf_peft  transformers CLIPVisionModel + peft LNTuningConfig on every LayerNorm, pooler_output
                 -> Linear(width, 2), as the paper's code trains it
MFU counts forward + backward FLOPs as autograd runs them with only LayerNorms trainable: every
frozen matmul's input gradient, no weight gradients (dfdet.flops.backbone_flops(trainable="layernorm")).

    python -m bench.bench_train --device cpu
    python -m bench.bench_train --device cuda --precision bf16 --batch 128 --steps 10 --warmup 3 \
        --out bench/results_train_cuda.md
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from bench import common
from bench.common import fmt, pct, secs, table

PATHS = ("dfdet", "paper_hf_peft")


def saved_activation_bytes(fn, modules: list[torch.nn.Module]) -> int:
    """Bytes autograd keeps for backward during `fn` (each storage once), parameters excluded.

    Unlike RSS this does not depend on the allocator or on other processes: the activation memory
    a training step needs, by construction.
    """
    params = {p.untyped_storage().data_ptr() for m in modules for p in m.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


class RssSampler:
    """Peak resident memory of this process while active, sampled every few ms from /proc."""

    def __init__(self, every_s: float = 0.005):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def __enter__(self):
        self.start = self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())
        return False


def build(path: str, model: str, device: torch.device, layers: int | None = None):
    """(step function taking (pixels, labels, precision) -> loss, trainable parameter count, all modules)."""
    from dfdet.config import TrainConfig
    from dfdet.model import build_model, trainable_count
    from dfdet.train import autocast, head_loss
    clip, bb = common.load_backbone(model, device, layers=layers)
    cfg = TrainConfig(method="ln_tuning")
    if path == "dfdet":
        det = build_model(clip, cfg.method).to(device).train()
        gen = torch.Generator().manual_seed(0)
        opt = torch.optim.AdamW([p for p in det.parameters() if p.requires_grad], lr=cfg.lr,
                                betas=cfg.betas, weight_decay=cfg.weight_decay)

        def step(x, y, precision):
            with autocast(device, precision):
                feats = det.embed(x).float()
            loss = head_loss(det, feats, y, cfg, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
        return step, trainable_count(det), [det]
    if path == "paper_hf_peft":
        from peft import LNTuningConfig, get_peft_model

        from dfdet.hf_convert import HF_LN_MODULES
        hf = common.paper_twin(bb.visual, device, share=False)
        width = bb.width
        del clip, bb  # only the HF copy stays, so both paths start from one set of weights in memory
        import gc
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        vision = get_peft_model(hf, LNTuningConfig(target_modules=list(HF_LN_MODULES))).train()
        head = torch.nn.Linear(width, 2).to(device)
        params = [p for p in vision.parameters() if p.requires_grad] + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)

        def step(x, y, precision):
            with autocast(device, precision):
                z = vision(pixel_values=x).pooler_output
            loss = F.cross_entropy(head(z.float()), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
        return step, sum(p.numel() for p in params), [vision, head]
    raise SystemExit(f"unknown path {path!r}")


def worker(path: str, model: str, device: torch.device, batch: int, precision: str, steps: int,
           warmup: int, layers: int | None = None) -> dict:
    """One run: build, warm up, time `steps` steps; peak memory over all steps and its rise over the memory
    held before the first one."""
    step, trainable, modules = build(path, model, device, layers)
    size = common.image_size(model)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    y = torch.randint(0, 2, (batch,), generator=g).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    losses, times = [], []
    with RssSampler() as rss:  # from before the first step: activations, gradients and optimizer state
        for i in range(warmup + steps):
            common.sync(device)
            t = time.perf_counter()
            losses.append(float(step(x, y, precision).detach()))
            common.sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t)
    out = {"path": path, "times": times, "trainable": trainable, "losses": losses,
           "saved_mb": saved_activation_bytes(lambda: step(x, y, precision), modules) / 2 ** 20}
    if device.type == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        out["extra_mb"] = (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20
        out["memory"] = "torch.cuda.max_memory_allocated"
    else:
        out["peak_mb"] = rss.peak / 2 ** 20
        out["extra_mb"] = (rss.peak - rss.start) / 2 ** 20
        out["memory"] = "peak RSS during the steps"
    return out


def run_subprocess(args, path: str) -> dict:
    cmd = [sys.executable, "-m", "bench.bench_train", "--worker", path, "--model", args.model, "--device", args.device,
           "--batch", str(args.batch), "--precision", args.precision, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--layers", str(args.layers)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(common.REPO), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(cmd, cwd=common.REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"worker {path} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> Path | None:
    p = common.base_parser("LN-tuning training step vs the paper's HF + PEFT", "results_train_cpu.md")
    p.set_defaults(rounds=2, warmup=1)
    p.add_argument("--batch", type=int, default=2, help="images per step (paper: 128 on GPU)")
    p.add_argument("--precision", default="auto", help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16")
    p.add_argument("--steps", type=int, default=2, help="timed steps per run")
    p.add_argument("--in-process", action="store_true",
                   help="run every run in this process (fast smoke runs; memory figures then share one process)")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--layers", type=int, default=0, help="keep only the first N transformer blocks (0 = all)")
    p.add_argument("--worker", choices=PATHS, help=argparse.SUPPRESS)  # internal: one run, JSON on stdout
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    device = common.setup(args)
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, device, args.batch, args.precision, args.steps,
                                args.warmup, args.layers or None)))
        return None
    t_start = time.perf_counter()
    precision = args.precision if args.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    args.precision = precision

    from dfdet.flops import backbone_flops
    f = backbone_flops(args.model, trainable="layernorm", layers=args.layers or None)
    dtype = common.DTYPES[precision]
    peak, peak_how = common.best_peak(device, dtype, args.peak_tflops)

    runs: dict[str, list[dict]] = {p_: [] for p_ in PATHS}
    for r in range(args.rounds):
        for path in (PATHS if r % 2 == 0 else PATHS[::-1]):
            if args.in_process:
                res = worker(path, args.model, device, args.batch, precision, args.steps, args.warmup,
                             args.layers or None)
            else:
                res = run_subprocess(args, path)
            runs[path].append(res)

    med = {p_: [statistics.median(r_["times"]) for r_ in runs[p_]] for p_ in PATHS}
    rows = []
    for p_ in PATHS:
        m = statistics.median(med[p_])
        ips = args.batch / m
        mfu = f.train_step * ips / peak
        ratio = statistics.median(a / b for a, b in zip(med["paper_hf_peft"], med[p_]))
        rows.append([p_, args.batch, precision, secs(m), fmt(ips, 3),
                     fmt(statistics.median(r_["peak_mb"] for r_ in runs[p_]), 0),
                     fmt(statistics.median(r_["extra_mb"] for r_ in runs[p_]), 0),
                     fmt(runs[p_][0]["saved_mb"], 0), runs[p_][0]["trainable"],
                     pct(mfu), fmt(ratio, 3),
                     "yes" if all(all(map(_finite, r_["losses"])) for r_ in runs[p_]) else "NO"])
    mem_note = runs["dfdet"][0]["memory"] + ("" if device.type == "cuda" else
                                             " (whole process: weights + activations + optimizer state)")
    body = [
        f"Model: {args.model}, random weights"
        + (f", **depth-truncated to its first {args.layers} transformer blocks** (--layers)" if args.layers else "")
        + f"; batch {args.batch}; precision {precision}; "
        f"{args.rounds} alternating runs per path ({'in one process' if args.in_process else 'one subprocess each'}), "
        f"each {args.warmup} warm-up step(s) then {args.steps} timed step(s); the table gives the median over runs of "
        "each run's median step.",
        "",
        f"FLOPs per image (counted, dfdet.flops): forward {f.forward / 1e9:.2f} G + backward {f.backward / 1e9:.2f} G "
        f"(input gradients of every frozen matmul; no weight gradients) = {f.train_step / 1e9:.2f} G. "
        f"Peak: {peak_how}.",
        "",
        table(["path", "batch", "precision", "s/step", "img/s", "peak MB", "step MB", "saved MB", "trainable params",
               "MFU",
               "paper / this", "losses finite"], rows),
        "",
        f"- peak MB: {mem_note}; step MB: that peak minus the memory held just before the first step "
        "(activations + gradients + optimizer state); saved MB: tensors autograd keeps for backward in one step "
        "(activations; parameters excluded; each storage once), which unlike RSS does not depend on the "
        "allocator or on other processes",
        "- `paper / this`: median over rounds of time(paper_hf_peft)/time(path); > 1 means faster than the paper's.",
        f"- wall time of this run: {time.perf_counter() - t_start:.0f} s",
        "",
        "## Raw runs (s per timed step, runs in order)",
        "",
        *[f"- {p_}: " + "; ".join(", ".join(f"{t:.3f}" for t in r_["times"]) for r_ in runs[p_]) for p_ in PATHS],
    ]
    return common.write_report(args.out, "LN-tuning training step", common.command_line("bench.bench_train", argv),
                               device, "\n".join(body))


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


if __name__ == "__main__":
    out = main()
    if out is not None:
        print(out)
