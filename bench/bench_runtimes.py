"""CPU runtimes for the frozen ViT, side by side in one run: speed, agreement with fp32, memory, build time.

Every runtime computes the same thing, the four paper methods on a face in one grouped forward
(dfdet.multi_ln.grouped_forward: LayerNorm gamma/beta are inputs and stay fp32; heads run in torch):
  torch-fp32     PyTorch eager fp32, the reference
  torch-bf16     PyTorch eager under bf16 autocast
  torch-int8     PyTorch's own dynamic int8 Linear (fbgemm; torch.ao.nn.quantized.dynamic)
  torch-compile  torch.compile (inductor, C++ codegen) of the grouped forward, fp32
  onnx-fp32      ONNX Runtime fp32 on the exported graph
  onnx-int8      ONNX Runtime, onnxruntime.quantization.quantize_dynamic (int8 weights per channel, 7-bit range)
  onnx-int8-u8   the same with unsigned 8-bit weights (ONNX Runtime's u8 x u8 kernel)
  onnx-int8-s8   the same with full-range signed weights (saturates on AVX2 without VNNI)
  openvino-fp32  OpenVINO CPU on the exported graph
  openvino-int8  OpenVINO CPU on the int8 graph of onnx-int8 (its own int8 kernels)

Speed: alternating rounds, each round one real face, "four methods on one face" per runtime and one
bare fp32 forward; ratios are medians of per-round ratios. Agreement: every face of the set, per
method, z_cls cosine and |p_fake - p_fake(fp32)|, on ViT-L/14 random weights with checkpoints whose
LayerNorms and heads were moved off their init (bench_methods.make_checkpoints).

    python -m bench.bench_runtimes --rounds 3 --dfdc 200
"""
from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench import common
from bench.common import fmt, table

ALL = ("torch-fp32", "torch-bf16", "torch-int8", "torch-compile", "onnx-fp32", "onnx-int8", "onnx-int8-u8",
       "onnx-int8-s8", "openvino-fp32", "openvino-int8")
COS_MIN, DP_MAX = 0.999, 0.01  # the bar for the CPU default (issue #16)
GOAL_FACE = 1.5  # four methods on one face <= 1.5x one fp32 forward
FAST = 1.25  # runtimes at least this much faster than fp32 are candidates: agreement on every face


# -- memory ---------------------------------------------------------------------------------------------
def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


class PeakRss:
    """Highest RSS seen (sampled every 20 ms) while the block runs: builds allocate and free in bursts."""

    def __enter__(self):
        self.start = self.peak = rss_mb()
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._watch, daemon=True)
        self._th.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join()
        self.end = rss_mb()
        self.peak = max(self.peak, self.end)


# -- the runtimes ---------------------------------------------------------------------------------------
class Int8Block(nn.Module):
    """One open_clip block with its four Linear layers as PyTorch dynamic-int8 modules; LNs come as inputs."""

    def __init__(self, blk):
        super().__init__()
        from torch.ao.nn.quantized.dynamic import Linear as QLinear
        a = blk.attn
        self.heads = a.num_heads
        self.eps1, self.eps2 = blk.ln_1.eps, blk.ln_2.eps
        self.act = blk.mlp.gelu
        self.ls_1, self.ls_2 = blk.ls_1, blk.ls_2

        def q(weight, bias):
            lin = nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                lin.weight.copy_(weight)
                lin.bias.copy_(bias)
            lin.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
            return QLinear.from_float(lin)
        self.qkv = q(a.in_proj_weight, a.in_proj_bias)
        self.out = q(a.out_proj.weight, a.out_proj.bias)
        self.fc = q(blk.mlp.c_fc.weight, blk.mlp.c_fc.bias)
        self.proj = q(blk.mlp.c_proj.weight, blk.mlp.c_proj.bias)

    def forward(self, x, g1, b1, g2, b2):
        from dfdet.multi_ln import grouped_layer_norm
        b, n, d = x.shape
        h = grouped_layer_norm(x, g1, b1, self.eps1)
        qkv = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.ls_1(self.out(o.transpose(1, 2).reshape(b, n, d)))
        h = grouped_layer_norm(x, g2, b2, self.eps2)
        return x + self.ls_2(self.proj(self.act(self.fc(h))))


class TorchInt8:
    """The grouped forward with every block's Linear layers in PyTorch's dynamic int8 (built block by block)."""

    def __init__(self, backbone):
        self.v = backbone.visual
        self.blocks = [Int8Block(b).eval() for b in self.v.transformer.resblocks]

    @torch.inference_mode()
    def __call__(self, pixels, gamma, beta):
        from dfdet.multi_ln import grouped_layer_norm
        v, k, b = self.v, gamma.shape[1], pixels.shape[0]
        x = v.conv1(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([v.class_embedding.expand(b, 1, -1), x], dim=1) + v.positional_embedding
        x = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
        x = grouped_layer_norm(x, gamma[0], beta[0], v.ln_pre.eps)
        for i, blk in enumerate(self.blocks):
            x = blk(x, gamma[2 * i + 1], beta[2 * i + 1], gamma[2 * i + 2], beta[2 * i + 2])
        return grouped_layer_norm(x[:, 0], gamma[-1], beta[-1], v.ln_post.eps).view(k, b, -1)


class OpenVino:
    def __init__(self, onnx_path: Path):
        import openvino as ov
        core = ov.Core()
        cfg = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
               "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        self.model = core.compile_model(core.read_model(str(onnx_path)), "CPU", cfg)
        self.req = self.model.create_infer_request()

    def __call__(self, pixels, gamma, beta):
        out = self.req.infer({"pixels": pixels.numpy(), "gamma": gamma.numpy(), "beta": beta.numpy()})
        return torch.from_numpy(np.array(out[self.model.output(0)]))


EXPORTS: dict = {}  # runtime -> dfdet.runtime.Artefact it loaded


def build(name: str, backbone, cache: Path, example: tuple, model: str = "ViT-L-14") -> Callable:
    """The runtime's callable (pixels, gamma, beta) -> z [k, B, D]; compiled ones run `example` once."""
    from dfdet import runtime as rt
    if name == "torch-fp32":
        return rt.TorchEngine(backbone)
    if name == "torch-bf16":
        eng = rt.TorchEngine(backbone)

        def bf16(p, g, b):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return eng(p, g, b).float()
        return bf16
    if name == "torch-int8":
        return TorchInt8(backbone)
    if name == "torch-compile":
        from dfdet.multi_ln import grouped_forward
        fn = torch.compile(lambda p, g, b: grouped_forward(backbone, p, g, b), dynamic=False)
        with torch.inference_mode():
            fn(*example)  # compiling happens on the first call: part of the build time
        return fn
    if name in ("onnx-int8-u8", "onnx-int8-s8"):
        rt.BUILDERS.setdefault(name, lambda bb, fp32, out: rt._build_int8(bb, fp32, out, name.rsplit("-", 1)[-1]))
    if name.startswith("onnx-"):
        art = rt.ensure_artefact(name, backbone, model_name=model, folder=cache)
        EXPORTS[name] = art
        return rt.OnnxEngine(name, art.path)
    if name.startswith("openvino"):
        art = rt.ensure_artefact(name.replace("openvino", "onnx"), backbone, model_name=model, folder=cache)
        return OpenVino(art.path)
    raise SystemExit(f"unknown runtime {name}")


# -- the faces --------------------------------------------------------------------------------------------
def face_paths(shared: Path, n_dfdc: int) -> list[Path]:
    """All of CDFv2 and FF, plus n_dfdc DFDC faces (half real, half fake, in name order)."""
    root = shared / "datasets"
    out = sorted((root / "FF").rglob("*.png")) + sorted((root / "CDFv2").rglob("*.png"))
    real, fake = sorted((root / "DFDC" / "real").rglob("*.jpg")), sorted((root / "DFDC" / "fake").rglob("*.jpg"))
    out += real[: (n_dfdc + 1) // 2] + fake[: n_dfdc // 2]
    return out


def main(argv: list[str] | None = None) -> Path:
    p = common.base_parser("CPU runtimes side by side: speed, agreement, memory, build time",
                           "results_cpu_runtimes.md")
    p.add_argument("--runtimes", nargs="*", default=list(ALL), help=f"which of {', '.join(ALL)}")
    p.add_argument("--dfdc", type=int, default=200, help="DFDC faces added to all of CDFv2 and FF")
    p.add_argument("--faces", type=int, default=0, help="agreement on only the first N faces (0 = all)")
    p.add_argument("--every", type=int, default=1, help="take every k-th face of the set (time-bound runs)")
    p.add_argument("--slow-faces", type=int, default=8,
                   help=f"agreement faces for runtimes not {FAST}x faster than torch-fp32 in the timed rounds")
    p.add_argument("--layers", type=int, default=0,
                   help="keep only the first N blocks (0 = all): for slow builds (torch.compile); the report says so")
    p.add_argument("--batch", type=int, default=8, help="faces per agreement forward (x4 methods)")
    p.add_argument("--shared", default=str(common.REPO.parent / "shared"), help="the shared data folder")
    p.add_argument("--cache", default="", help="artefact folder to reuse (default: a new, empty one); the build "
                   "time of a reused artefact is the one its sidecar recorded when it was built")
    p.set_defaults(rounds=3, warmup=1)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    device = common.setup(args)
    t_start = time.perf_counter()
    names = [n for n in args.runtimes if n in ALL]  # in the order given: the candidates first
    if names[0] != "torch-fp32":
        names = ["torch-fp32"] + names

    from PIL import Image

    from bench.bench_methods import make_checkpoints
    from dfdet.inference import DetectorBank
    from dfdet.methods import PAPER_METHODS
    from dfdet.multi_ln import _head, stacked_tensors
    rss0 = rss_mb()
    clip, _ = common.load_backbone(args.model, device, args.layers or None)
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoints(clip, Path(tmp))
        bank = DetectorBank(clip, tmp, methods=list(PAPER_METHODS), device=str(device))
    backbone = bank.backbone
    rss_fp32 = rss_mb() - rss0
    overlays = [{**bank._base_ln, **bank.entries[n].tensors} for n in PAPER_METHODS]
    gamma, beta = (t.detach() for t in stacked_tensors(backbone, overlays))

    paths = face_paths(Path(args.shared), args.dfdc)
    if not paths:
        raise SystemExit(f"no faces under {args.shared}/datasets")
    paths = paths[:: max(1, args.every)]
    if args.faces:
        paths = paths[: args.faces]
    pixels = torch.stack([bank.clip.preprocess(Image.open(f).convert("RGB")) for f in paths])
    print(f"{len(paths)} faces; load average {common.load_average()}", flush=True)

    cache = Path(args.cache or tempfile.mkdtemp(prefix="dfdet-bench-runtimes-"))  # default cold: real builds
    ref = build("torch-fp32", backbone, cache, None)

    def heads(z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """[k, B, D] -> p_fake [k, B] and z [k, B, D] as numpy."""
        ps = [_head(z[i].float(), bank.entries[m].tensors, bank.entries[m].spec.normalize)[0]
              for i, m in enumerate(PAPER_METHODS)]
        return torch.stack(ps).numpy(), z.float().numpy()

    def run_faces(engine, idx: list[int], into: dict) -> None:
        for s in range(0, len(idx), args.batch):
            chunk = idx[s:s + args.batch]
            with torch.inference_mode():
                pf, z = heads(engine(pixels[chunk], gamma, beta))
            for j, i in enumerate(chunk):
                into[i] = (pf[:, j:j + 1], z[:, j:j + 1])

    # The reference on every face first; then one runtime at a time (built, timed against fp32 in alternating
    # rounds, checked, freed), so at most one extra copy of the ViT is in memory at any time.
    outs: dict[str, dict[int, tuple]] = {"torch-fp32": {}}
    t = time.perf_counter()
    run_faces(ref, list(range(len(paths))), outs["torch-fp32"])
    print(f"reference on {len(paths)} faces in {time.perf_counter() - t:.0f} s", flush=True)
    rounds = min(args.rounds, len(paths))
    one = (gamma[:, :1].contiguous(), beta[:, :1].contiguous())  # the base LNs only: a bare forward
    pairs: dict[str, dict[str, list[float]]] = {}
    builds: dict[str, tuple] = {"torch-fp32": (0.0, 0.0, 0.0, "")}
    def report() -> Path:
        """The results file as of now: written after each runtime, so a cut-short run still leaves its table."""
        names = ["torch-fp32"] + list(pairs)  # noqa: F841 - the runtimes measured so far
        fp_all = [x for p in pairs.values() for x in p["fp32"]]
        bare_all = [x for p in pairs.values() for x in p["bare"]]

        class _Tm:  # the table's view of the paired rounds
            def median(self, n):
                return statistics.median(fp_all if n == "torch-fp32" else pairs[n]["rt"])

            def ratio(self, n, to):
                a = pairs[n]["rt"] if n != "torch-fp32" else fp_all
                if to == "torch-fp32":
                    return 1.0 if n == "torch-fp32" else statistics.median(x / y for x, y in zip(a, pairs[n]["fp32"]))
                b = pairs[n]["bare"] if n != "torch-fp32" else bare_all
                return statistics.median(x / y for x, y in zip(a, b))

            def raw(self):
                return "\n".join(f"- {n}: " + "; ".join(f"{v} " + ", ".join(f"{x:.2f}" for x in xs) for v, xs in p.items())
                                 for n, p in pairs.items())
        tm = _Tm()
        tm.runs = {"1 bare fp32 forward": bare_all}

        def agreement(n):
            common_idx = sorted(set(outs[n]) & set(outs["torch-fp32"]))
            pf = np.concatenate([outs[n][i][0] for i in common_idx], axis=1)
            rf = np.concatenate([outs["torch-fp32"][i][0] for i in common_idx], axis=1)
            z = np.concatenate([outs[n][i][1] for i in common_idx], axis=1)
            zr = np.concatenate([outs["torch-fp32"][i][1] for i in common_idx], axis=1)
            cos = (z * zr).sum(-1) / (np.linalg.norm(z, axis=-1) * np.linalg.norm(zr, axis=-1))
            dp = np.abs(pf - rf)
            return len(common_idx), cos, dp

        rows, agree_rows, verdicts = [], [], {}
        for n in names:
            cnt, cos, dp = agreement(n)
            ok = cos.min() >= COS_MIN and dp.max() <= DP_MAX
            verdicts[n] = ok
            b_s, b_peak, b_steady, err = builds[n]
            if n in EXPORTS and not EXPORTS[n].built:  # reused from --cache: the recorded cold build time
                b_s = EXPORTS[n].meta.get("build_seconds") or b_s
            rows.append([n, fmt(tm.median(n), 2), fmt(tm.ratio(n, "torch-fp32"), 3),
                         fmt(tm.ratio(n, "1 bare fp32 forward"), 2), fmt(b_s, 0),
                         fmt(b_peak, 0), fmt(b_steady, 0), str(cnt), f"{cos.min():.6f}",
                         f"{dp.max():.4f}", "yes" if ok else "no"])
            agree_rows.append([n, str(cnt)] + [f"{dp[i].max():.4f} / {dp[i].mean():.5f}" for i in range(len(PAPER_METHODS))]
                              + [f"{cos.min():.6f} / {cos.mean():.6f}"])
        for n, (b_s, _, _, err) in builds.items():
            if err:
                rows.append([n, "failed", "", "", fmt(b_s, 0), "", "", "", "", "", err])
        bare_t = statistics.median(bare_all)
        body = [
            f"Model: {args.model}{f' (first {args.layers} blocks only)' if args.layers else ''}, random weights; four methods ({', '.join(PAPER_METHODS)}) from checkpoints whose "
            "LayerNorms and heads were moved off their init. LayerNorm gamma/beta are fp32 inputs of every runtime "
            "and the heads run in torch fp32: only the frozen backbone differs.",
            "",
            f"Faces: {len(paths)}: every {args.every}. face of all of FF and CDFv2 + {args.dfdc} DFDC (`--dfdc {args.dfdc}`"
            f"{f', --faces {args.faces}' if args.faces else ''}). Agreement on every face for torch-fp32 and the two fastest "
            f"runtimes (if at least {FAST}x faster than fp32), on the first {args.slow_faces} for the others (column `faces`).",
            "",
            f"Speed: one runtime at a time (built, timed, checked, freed: at most one extra ViT in memory), "
            f"{rounds} alternating rounds (runtime, torch-fp32, one bare fp32 forward; order flipped each round; each "
            f"round a different face) after {args.warmup} warm-up; "
            "`s / 4 methods` = median seconds for the four methods on one face; `vs fp32` = median per-round "
            "ratio to torch-fp32 (same four methods, same rounds); `vs 1 fwd` = the same against one bare fp32 forward "
            f"(median {bare_t:.2f} s; goal <= {GOAL_FACE}). Memory: RSS added while building (peak) and after "
            f"(steady), over the fp32 model already loaded ({rss_fp32:.0f} MB). Build = cold, from no cache.",
            "",
            table(["runtime", "s / 4 methods", "vs fp32", "vs 1 fwd", "build s", "build peak MB", "steady MB",
                   "faces", "min z_cls cos", "max abs dp", f"default bar (cos>={COS_MIN}, dp<={DP_MAX})"], rows),
            "",
            "## Agreement per method: max / mean |p_fake - p_fake(fp32)|, and z_cls cosine min / mean",
            "",
            table(["runtime", "faces"] + list(PAPER_METHODS) + ["z_cls cosine"], agree_rows),
            "",
            f"- process peak RSS: {PeakRss_max():.0f} MB; wall time of this run: {time.perf_counter() - t_start:.0f} s",
            "",
            "## Raw runs (s, in round order)",
            "",
            tm.raw(),
        ]
        return common.write_report(args.out, "CPU runtimes side by side", common.command_line("bench.bench_runtimes", argv),
                                   device, "\n".join(body))


    for n in names[1:]:
        gc.collect()
        t = time.perf_counter()
        try:
            with PeakRss() as mem:
                engine = build(n, backbone, cache, (pixels[:1], gamma, beta), args.model)
            builds[n] = (time.perf_counter() - t, mem.peak - mem.start, mem.end - mem.start, "")
        except Exception as err:  # a runtime that cannot run here is a result, not a crash
            builds[n] = (time.perf_counter() - t, None, None, f"{type(err).__name__}: {str(err)[:200]}")
            print(f"{n}: {builds[n][3]}", flush=True)
            continue
        print(f"built {n} in {builds[n][0]:.0f} s (load {common.load_average()})", flush=True)
        outs[n], pairs[n] = {}, {"rt": [], "fp32": [], "bare": []}
        calls = {"rt": lambda i: outs[n].__setitem__(i, heads(engine(pixels[i:i + 1], gamma, beta))),
                 "fp32": lambda i: ref(pixels[i:i + 1], gamma, beta), "bare": lambda i: ref(pixels[i:i + 1], *one)}
        for r in range(-args.warmup, rounds):
            i = max(r, 0)
            for v in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                t = time.perf_counter()
                with torch.inference_mode():
                    calls[v](i)
                if r >= 0:
                    pairs[n][v].append(time.perf_counter() - t)
            print(f"  {n} round {r}: " + ", ".join(f"{v} {x[-1]:.1f}" for v, x in pairs[n].items() if x), flush=True)
        fast = statistics.median(a / b for a, b in zip(pairs[n]["fp32"], pairs[n]["rt"])) >= FAST
        limit = len(paths) if fast else min(len(paths), max(args.slow_faces, rounds))
        t = time.perf_counter()
        run_faces(engine, [i for i in range(rounds, limit)], outs[n])
        print(f"agreement {n}: {len(outs[n])} faces ({time.perf_counter() - t:.0f} s, load {common.load_average()})",
              flush=True)
        del engine, calls
        report()
    return report()


def PeakRss_max() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    print(main())
