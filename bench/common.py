"""What every benchmark shares: machine description, peak FLOP/s, alternating timers, the paper's
model path, profiles and the results file.

Ratios come from alternating runs (A B, then B A, ...) so slow drift on a shared machine hits both
sides; each ratio is the median of per-round ratios, each time a median over rounds.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import math
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent

# Dense (no sparsity) peak TFLOP/s from the vendors' data sheets, by a substring of the device name.
GPU_PEAK_TFLOPS = {  # name fragment: (bf16, fp32 [non-tensor-core])
    "H200": (989.4, 66.9),
    "H100 SXM": (989.4, 66.9),
    "H100 80GB HBM3": (989.4, 66.9),  # the SXM part reports itself this way
    "H100 PCIe": (756.5, 51.2),
    "H100 NVL": (835.5, 60.0),
    "H100": (756.5, 51.2),  # unknown H100 variant: the lower (PCIe) figure, so MFU is not overstated
    "A100": (312.0, 19.5),
    "L40S": (362.05, 91.6),
    "L4": (121.0, 30.3),
    "A10": (125.0, 31.2),
    "RTX 4090": (165.2, 82.6),
}


# -- machine -----------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_mhz() -> float | None:
    try:
        vals = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())]
        return max(vals) if vals else None
    except OSError:
        return None


def cpu_peak_flops(dtype: torch.dtype) -> tuple[float | None, str]:
    """Theoretical FLOP/s of the cores torch uses: threads x FMA units x SIMD lanes x 2 x clock.

    Assumes 2 FMA pipes per core (true of Zen 2-4 and Intel server cores since Skylake-SP). bf16
    without AVX512-BF16/AMX is computed by converting to fp32, so its peak is the fp32 one.
    """
    mhz, flags = cpu_mhz(), cpu_flags()
    if not mhz:
        return None, "clock unknown"
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    per_cycle = 2 * 2 * lanes  # 2 FMA pipes, 2 FLOPs per FMA
    how = f"{torch.get_num_threads()} threads x {per_cycle} fp32 FLOP/cycle x {mhz / 1000:.2f} GHz"
    if dtype == torch.bfloat16:
        if "amx_bf16" in flags:
            per_cycle, how = 1024, how.replace("fp32", "bf16 (AMX)").replace(f" {2 * 2 * lanes} ", " 1024 ")
        elif "avx512_bf16" in flags:
            per_cycle, how = 2 * per_cycle, how.replace(f"{2 * 2 * lanes} fp32", f"{4 * 2 * lanes} bf16")
        else:
            how += " (no native bf16 on this CPU: bf16 math runs through fp32)"
    return torch.get_num_threads() * per_cycle * mhz * 1e6, how


def gpu_peak_flops(dtype: torch.dtype, device: torch.device) -> tuple[float | None, str]:
    name = torch.cuda.get_device_name(device)
    for frag, (bf16, fp32) in GPU_PEAK_TFLOPS.items():
        if frag in name:
            val = bf16 if dtype in (torch.bfloat16, torch.float16) else fp32
            return val * 1e12, f"{name}: {val} TFLOP/s dense {'bf16' if dtype != torch.float32 else 'fp32'} (data sheet)"
    return None, f"{name}: peak unknown (pass --peak-tflops)"


def peak_flops(device: torch.device, dtype: torch.dtype, override_tflops: float | None = None) -> tuple[float | None, str]:
    if override_tflops:
        return override_tflops * 1e12, f"{override_tflops} TFLOP/s (given with --peak-tflops)"
    if device.type == "cuda":
        return gpu_peak_flops(dtype, device)
    return cpu_peak_flops(dtype)


def best_peak(device: torch.device, dtype: torch.dtype, override_tflops: float | None = None) -> tuple[float, str]:
    """The peak MFU is quoted against: max(vendor/clock estimate, measured square GEMM).

    A CPU's clock can boost past the nominal one /proc/cpuinfo shows, so the measured GEMM can beat
    the estimate; taking the larger keeps utilisation figures from exceeding 100%.
    """
    theory, how = peak_flops(device, dtype, override_tflops)
    n = 2048 if dtype == torch.float32 or device.type == "cuda" else 256
    gemm = measured_gemm_flops(device, dtype, n=n)
    if override_tflops:
        return theory, how
    peak = max(theory or 0.0, gemm)
    return peak, (f"{peak / 1e9:.1f} GFLOP/s = max(estimate {fmt(theory and theory / 1e9, 1)} GFLOP/s [{how}], "
                  f"measured {n}^2 GEMM {gemm / 1e9:.1f} GFLOP/s)")


def measured_gemm_flops(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 3) -> float:
    """FLOP/s of the best of `reps` square matmuls: what the BLAS reaches here and now."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


_START_LOAD = load_average()  # taken when a bench script imports this module, i.e. at its start


def machine(device: torch.device) -> dict[str, str]:
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{kb / 2 ** 20:.0f} GiB RAM"
    info = {
        "cpu": f"{cpu_model()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}, "
               f"SIMD {torch.backends.cpu.get_cpu_capability()}, {mem}",
        "software": f"Python {platform.python_version()}, torch {torch.__version__}, "
                    f"open_clip {_version('open_clip')}, transformers {_version('transformers')}, "
                    f"peft {_version('peft')}",
        "load average (1/5/15 min) at start": _START_LOAD,
    }
    if device.type == "cuda":
        info["gpu"] = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    return info


def _version(mod: str) -> str:
    try:
        return __import__(mod).__version__
    except Exception:  # not installed or no version: the report says so instead of failing
        return "n/a"


# -- timing -----------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timings:
    """Seconds per run for each variant, collected round by round in alternating order."""
    runs: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.runs[name])

    def raw(self) -> str:
        """Every run in seconds, so the spread behind each median can be judged."""
        return "\n".join(f"- {n}: " + ", ".join(f"{t:.3f}" for t in ts) for n, ts in self.runs.items())

    def ratio(self, slow: str, fast: str) -> float:
        """Median over rounds of time(slow)/time(fast): how many times faster `fast` is."""
        return statistics.median(a / b for a, b in zip(self.runs[slow], self.runs[fast]))


def alternate(variants: dict[str, Callable[[], object]], rounds: int, warmup: int,
              device: torch.device) -> Timings:
    """Time each variant once per round; the order flips every round (AB, BA, AB, ...)."""
    names = list(variants)
    for _ in range(warmup):
        for n in names:
            variants[n]()
        sync(device)
    out = Timings({n: [] for n in names})
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            t = time.perf_counter()
            variants[n]()
            sync(device)
            out.runs[n].append(time.perf_counter() - t)
    return out


def precision_ctx(device: torch.device, precision: str):
    """fp32, or bf16 autocast (the paper trains with bf16 mixed precision)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


# -- models -----------------------------------------------------------------------------------------
def load_backbone(model: str, device: torch.device, layers: int | None = None):
    """dfdet's path: open_clip ViT with seeded random weights, read up to z_cls.

    layers: keep only the first `layers` blocks. Every block of a ViT costs the same, so a
    depth-truncated model gives the same per-block ratios in a fraction of the time; reports say so.
    """
    from dfdet.backbone import VisionBackbone, load_clip
    from dfdet.config import BackboneConfig
    clip = load_clip(BackboneConfig(model=model, pretrained=None, seed=0), device)
    if layers:
        blocks = clip.model.visual.transformer.resblocks
        if not 0 < layers <= len(blocks):
            raise SystemExit(f"--layers must be in 1..{len(blocks)} for {model}")
        clip.model.visual.transformer.resblocks = blocks[:layers]
    return clip, VisionBackbone(clip.model.visual).eval()


def image_size(model: str) -> int:
    import open_clip

    from dfdet.backbone import _register_configs
    _register_configs()
    size = open_clip.get_model_config(model)["vision_cfg"]["image_size"]
    return size[0] if isinstance(size, (tuple, list)) else int(size)


def paper_twin(visual: torch.nn.Module, device: torch.device, share: bool = True):
    """The paper's path: transformers CLIPVisionModel built from a config (no download) with the
    same weights as `visual`, read at `pooler_output`. Same weights, so outputs can be compared.

    share=True lets HF tensors alias open_clip's where the layout allows (saves memory for inference);
    training benches pass share=False so the two models never write each other's LayerNorms.
    """
    import transformers

    from dfdet.hf_convert import find_tower_prefix, hf_vision_config, open_clip_to_hf
    cfg = hf_vision_config(visual)
    with torch.device("meta"):
        hf = transformers.CLIPVisionModel(cfg)
    tower, _ = open_clip_to_hf(visual.state_dict())
    prefix = find_tower_prefix(hf.state_dict())
    state = {prefix + k: (v if share else v.clone()).to(device) for k, v in tower.items()}
    hf.load_state_dict(state, strict=True, assign=True)
    for mod in hf.modules():  # non-persistent buffers are not in the state dict: rebuild them off meta
        for name, buf in list(mod.named_buffers(recurse=False)):
            if buf.is_meta:
                if name != "position_ids":
                    raise RuntimeError(f"paper_twin: no rule to rebuild buffer {name}")
                mod.register_buffer(name, torch.arange(buf.shape[-1], device=device).expand(buf.shape),
                                    persistent=False)
    return hf.eval()


# -- profiles ---------------------------------------------------------------------------------------
def profile_table(fn: Callable[[], object], device: torch.device, top: int = 12) -> str:
    """Markdown table of the operators that take the most (self) time in one call of `fn`."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)
    total = sum(getattr(e, key, 0) for e in events) or 1
    rows = [[e.key, str(e.count), f"{getattr(e, key) / 1e3:.1f}", f"{100 * getattr(e, key) / total:.1f}%"]
            for e in events[:top]]
    return table(["operator", "calls", f"self {'GPU' if device.type == 'cuda' else 'CPU'} ms", "share"], rows)


# -- reporting --------------------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def command_line(module: str, argv: list[str]) -> str:
    return " ".join(["python", "-m", module] + [shlex.quote(a) for a in argv])


def write_report(path: str | Path, title: str, command: str, device: torch.device, body: str) -> Path:
    """The results file: what ran, where, when, then the tables. Written atomically."""
    path = Path(path)
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    head = [f"# {title}", "", f"- command: `{command}`", f"- date: {now}"]
    head += [f"- {k}: {v}" for k, v in machine(device).items()]
    head.append(f"- load average (1/5/15 min) at end: {load_average()}")
    text = "\n".join(head) + "\n\n" + body.rstrip() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}"


def secs(x: float | None) -> str:
    """A duration: 2 decimals from 1 s up, 3 significant digits below, so that a fast machine's 40 ms never
    prints as 0.0 (CI's runners are faster than this one)."""
    if x is None or x <= 0:
        return fmt(x)
    return f"{x:.{max(2, 2 - math.floor(math.log10(x)))}f}"


def pct(frac: float | None) -> str:
    """A share as a percentage: one decimal from 1% up, two significant digits below (a tiny model's
    0.04% MFU must not print as 0.0%)."""
    if frac is None:
        return "n/a"
    x = 100 * frac
    return f"{x:.1f}%" if abs(x) >= 1 else f"{x:.2g}%"


def base_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--model", default="ViT-L-14", help="open_clip architecture (random weights); "
                   "dfdet-tiny-vit for smoke runs")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per variant (alternating order)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of every variant first")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave torch's default)")
    p.add_argument("--out", default=str(BENCH_DIR / default_out), help="results markdown file")
    return p


def setup(args) -> torch.device:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda given but no CUDA device is visible")
    return device
