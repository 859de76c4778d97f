"""Who runs the frozen backbone's matmuls: PyTorch fp32 (the reference) or ONNX Runtime with int8 weights.

Only the ViT's frozen weights are exported, quantised or compiled. Every LayerNorm's gamma/beta is an
fp32 *input* of the exported graph (dfdet.multi_ln.grouped_forward), so a method's overlay and its
head stay exact, and the four methods still share one batched forward. The side-by-side measurements
that chose these two runtimes, and why the others lost, are in bench/results_cpu_runtimes.md.

An exported graph is built once and cached next to the CLIP weights (or in $DFDET_CACHE/runtime for
tagged or random weights), named by a hash of the frozen tensors it holds: new weights, new file.
A JSON sidecar records the artefact's own sha256, checked before every load. The cache folder is trusted
code (a graph in it runs as the model; whoever can write there can rewrite the sidecar too), so it is used
only when it and its files belong to this user (or root) and no one else can write them (check_trusted).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch loads lazily: the app reads this registry (--runtime choices) before the page is up
    import torch

from . import __version__
from .errors import DfdetError
from .fileio import atomic_write

log = logging.getLogger(__name__)
CACHE_ENV = "DFDET_CACHE"  # the same variable the dashboard's caches use
ARTEFACT_FORMAT = "dfdet-runtime/1"
DEFAULT_THRESHOLDS = (0.999, 0.01)  # a runtime may be the CPU default only with z_cls cosine >= and max |dp| <=


@dataclass(frozen=True)
class RuntimeSpec:
    name: str  # the value of --runtime and of the app's config
    label: str  # short name for tables and the dashboard's status line
    description: str  # one sentence: what runs the matmuls
    artefact: str | None  # "onnx-fp32" / "onnx-int8": the exported file this runtime needs; None = none
    agreement: str  # measured against torch-fp32 on ViT-L/14 (bench/results_cpu_runtimes.md); printed when chosen
    default_ok: bool  # met cosine >= 0.999 and max |dp_fake| <= 0.01 there, so it may be the CPU default
    measured_on: tuple[str, ...] = ("ViT-L-14",)  # models the agreement was measured on: "auto" picks it only there


RUNTIMES: dict[str, RuntimeSpec] = {}


def _register(spec: RuntimeSpec) -> None:
    RUNTIMES[spec.name] = spec


_register(RuntimeSpec(
    name="torch-fp32",
    label="PyTorch fp32",
    description="PyTorch eager, fp32: the reference every other runtime is measured against.",
    artefact=None,
    agreement="the reference",
    default_ok=True,
))
_register(RuntimeSpec(
    name="onnx-int8",
    label="ONNX Runtime int8",
    description="ONNX Runtime with int8 weights and dynamically quantised activations in the ViT's Linear "
                "layers (onnxruntime.quantization); LayerNorms, attention scores and heads stay fp32.",
    artefact="onnx-int8",
    agreement="z_cls cosine >= 0.99977 but max |dp_fake| 0.024 (linear probe; LN-tuning 0.015, Norm methods "
              "<= 0.0009) on 52 faces (all of FF and CDFv2, 20 DFDC), 1.7x faster than fp32",
    default_ok=False,
))


def get_runtime(name: str) -> RuntimeSpec:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise DfdetError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}") from None


def default_runtime(device: str = "cpu", model: str = "ViT-L-14") -> str:
    """The fast runtime that met the agreement bar on this model, on CPU; otherwise (and on a GPU) torch-fp32."""
    if str(device).startswith("cuda"):
        return "torch-fp32"
    fast = [n for n, s in RUNTIMES.items() if s.default_ok and s.artefact and model in s.measured_on]
    return fast[0] if fast else "torch-fp32"


def resolve_runtime(name: str | None, device: str = "cpu", model: str = "ViT-L-14") -> str:
    """'auto' (or None) -> default_runtime; a named one is checked against the device."""
    if not name or name == "auto":
        return default_runtime(device, model)
    spec = get_runtime(name)
    if spec.artefact and str(device).startswith("cuda"):
        raise DfdetError(f"runtime {name} runs on the CPU; on a GPU use --runtime torch-fp32 (or auto)")
    return name


def add_runtime_arg(p) -> None:
    """--runtime for the commands that score faces (predict, evaluate) and the app."""
    p.add_argument("--runtime", default="auto", choices=["auto", *RUNTIMES],
                   help="who runs the frozen backbone: auto = the CPU default that met the agreement bar on this "
                        "model (else torch-fp32); " + "; ".join(f"{n}: {s.description}" for n, s in RUNTIMES.items()))


def describe(name: str) -> str:
    """One line for the CLI and the dashboard: which runtime answers and how close it is to fp32."""
    spec = get_runtime(name)
    if name == "torch-fp32":
        return f"runtime: {spec.label} (reference)"
    verdict = "meets" if spec.default_ok else "does NOT meet"
    return (f"runtime: {spec.label}; agreement with fp32 on ViT-L/14: {spec.agreement} ({verdict} the default bar "
            f"z_cls cosine >= {DEFAULT_THRESHOLDS[0]}, max |dp_fake| <= {DEFAULT_THRESHOLDS[1]})")


# -- engines: (pixels [B,3,H,W], gamma/beta [n_ln,k,D]) -> z_cls [k,B,D] ------------------------------
class TorchEngine:
    """grouped_forward on the backbone itself: exact, and differentiable where callers need it."""
    name = "torch-fp32"

    def __init__(self, backbone):
        self.backbone = backbone

    def __call__(self, pixels: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        from .multi_ln import grouped_forward
        return grouped_forward(self.backbone, pixels, gamma, beta)


class OnnxEngine:
    """An exported grouped forward in an ONNX Runtime session (CPU), as many threads as torch uses."""

    def __init__(self, name: str, path: Path, threads: int | None = None):
        import onnxruntime as ort
        import torch
        self.name, self.path = name, Path(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, pixels: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        feeds = {"pixels": _np(pixels), "gamma": _np(gamma), "beta": _np(beta)}
        (z,) = self.session.run(["z"], feeds)
        import torch
        return torch.from_numpy(z).to(pixels.device)


def _np(t: torch.Tensor):
    import numpy as np
    import torch
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


# -- artefacts: export, quantise, cache ------------------------------------------------------------
def frozen_hash(backbone) -> str:
    """sha256 of every frozen tensor an artefact bakes in (not the LayerNorms: those are inputs)."""
    import torch
    from torch import nn
    ln = {f"visual.{n}" for n, m in backbone.visual.named_modules() if isinstance(m, nn.LayerNorm)}
    h = hashlib.sha256()
    for name, t in sorted(backbone.state_dict().items()):
        if name.rsplit(".", 1)[0] in ln:
            continue
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def cache_dir(weights_file: str | None = None) -> Path:
    """Beside the CLIP weights file when there is one and its folder is writable, else $DFDET_CACHE/runtime."""
    if weights_file:
        folder = Path(weights_file).resolve().parent / "dfdet-runtime"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            pass
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dfdet")
    return root / "runtime"


def export_onnx(backbone, path: str | Path) -> Path:
    """The grouped forward as ONNX, batch and group count dynamic (torch.export-based exporter)."""
    import warnings

    import torch
    from torch import nn

    from .multi_ln import grouped_forward

    class _Grouped(nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, pixels, gamma, beta):
            return grouped_forward(self.backbone, pixels, gamma, beta)
    size = backbone.visual.image_size
    hw = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    from .multi_ln import stacked_tensors
    gamma, beta = (t.detach() for t in stacked_tensors(backbone, [{}, {}]))
    x = torch.zeros(2, 3, *hw)
    b, k = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("groups", min=1, max=64)
    module = _Grouped(backbone).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(module, (x, gamma, beta), dynamic_shapes=({0: b}, {1: k}, {1: k}))
        atomic_write(path, lambda p: torch.onnx.export(
            ep, f=p, input_names=["pixels", "gamma", "beta"], output_names=["z"], external_data=False,
            optimize=True, verbose=False))
    return Path(path)


def quantize_int8(src: str | Path, dst: str | Path, weights: str = "s8-reduced") -> Path:
    """int8 weights (per output channel) and dynamically quantised activations for the MatMuls with a
    constant weight, i.e. the Linear layers; attention scores, LayerNorms and the patch conv stay fp32.

    weights: "s8-reduced" (7-bit signed range) is the default because ONNX Runtime's u8 x s8 kernel on
    CPUs without VNNI (AVX2) saturates its 16-bit pair sums with full-range s8 weights: z_cls cosine
    fell to 0.992 on the tiny model, 0.99997 with the reduced range (bench/results_cpu_runtimes.md).
    "u8" (unsigned weights, a slower kernel without that overflow) and "s8" are there for the benchmark.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    wt = QuantType.QUInt8 if weights == "u8" else QuantType.QInt8
    atomic_write(dst, lambda p: quantize_dynamic(str(src), p, weight_type=wt, per_channel=True,
                                                 reduce_range=weights == "s8-reduced",
                                                 op_types_to_quantize=["MatMul"],
                                                 extra_options={"MatMulConstBOnly": True}))
    return Path(dst)


BUILDERS: dict[str, Callable[[object, Path, Path], Path]] = {}  # artefact kind -> (backbone, fp32, out) -> out


def _build_fp32(backbone, fp32: Path, out: Path) -> Path:
    return export_onnx(backbone, out)


def _build_int8(backbone, fp32: Path, out: Path, weights: str = "s8-reduced") -> Path:
    kind = out.name.rsplit("-onnx-", 1)[-1]
    cached = out.with_name(out.name.replace(f"-onnx-{kind}", "-onnx-fp32.onnx"))
    if cached.is_file():  # an fp32 export of the same weights (named by their hash) is already here
        return quantize_int8(cached, out, weights)
    export_onnx(backbone, fp32)
    try:
        return quantize_int8(fp32, out, weights)
    finally:
        fp32.unlink(missing_ok=True)  # only the int8 file is kept


BUILDERS["onnx-fp32"] = _build_fp32
BUILDERS["onnx-int8"] = _build_int8


@dataclass
class Artefact:
    path: Path  # the .onnx file
    built: bool  # built in this call (False: found in the cache and verified)
    seconds: float  # build (or verification) time

    @property
    def meta(self) -> dict:
        """The sidecar: what the artefact was built from, with what, and how long the build took."""
        return _read_meta(self.path.with_suffix(".json"))


def ensure_artefact(kind: str, backbone, weights_file: str | None = None, model_name: str = "vit",
                    folder: str | Path | None = None, progress: Callable[[str], None] | None = None) -> Artefact:
    """The cached artefact for these frozen weights, built first if missing, stale or tampered with."""
    t0 = time.perf_counter()
    digest = frozen_hash(backbone)
    folder = Path(folder) if folder else cache_dir(weights_file)
    stem = f"{model_name}-{digest[:16]}-{kind}"
    path, meta_path = folder / f"{stem}.onnx", folder / f"{stem}.json"
    check_trusted(folder, path, meta_path)  # its sha256 proves integrity only against whoever cannot write here
    meta = _read_meta(meta_path)
    if path.is_file() and meta.get("weights_sha256") == digest and meta.get("format") == ARTEFACT_FORMAT:
        from .checkpoint import file_sha256
        if file_sha256(path) == meta.get("sha256"):
            return Artefact(path, False, time.perf_counter() - t0)
        log.warning("%s does not match its recorded sha256: rebuilding it", path)
    if progress:
        progress(f"building the {kind} runtime for {model_name} (once; cached in {folder})")
    folder.mkdir(parents=True, exist_ok=True)
    BUILDERS[kind](backbone, folder / f".{stem}.fp32.onnx", path)
    from .checkpoint import file_sha256
    import onnxruntime
    import torch
    record = {"format": ARTEFACT_FORMAT, "kind": kind, "model": model_name, "weights_sha256": digest,
              "sha256": file_sha256(path), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
              "dfdet": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "build_seconds": round(time.perf_counter() - t0, 1)}
    atomic_write(meta_path, lambda p: Path(p).write_text(json.dumps(record, indent=2)))
    return Artefact(path, True, time.perf_counter() - t0)


def check_trusted(folder: Path, *files: Path) -> None:
    """The runtime cache is trusted code: a graph in it runs as the model, and an attacker who can write the
    folder can also rewrite the sidecar's sha256. So the folder and its artefacts must belong to this user
    (or root) and be writable by no one else; otherwise nothing in it is loaded or built (DfdetError)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    for item in (folder, *files):
        try:
            st = item.stat() if item == folder else item.lstat()  # the folder may be reached through a link
        except FileNotFoundError:
            continue
        except OSError as err:
            raise DfdetError(f"runtime cache {item}: cannot check it ({err.strerror})") from None
        import stat
        problem = ""
        if stat.S_ISLNK(st.st_mode):
            problem = "is a symlink"
        elif uid is not None and st.st_uid not in (uid, 0):
            problem = f"belongs to another user (uid {st.st_uid})"
        elif st.st_mode & 0o022:
            problem = "is writable by other users"
        if problem:
            raise DfdetError(f"runtime cache {item} {problem}: a graph there would run as the model, so it is not "
                             f"used. Make it private (chmod go-w, owned by you) or point ${CACHE_ENV} at a folder "
                             "only you can write; or use --runtime torch-fp32")


def _read_meta(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def build_engine(name: str, backbone, weights_file: str | None = None, model_name: str = "vit",
                 folder: str | Path | None = None, progress: Callable[[str], None] | None = None):
    """The engine for runtime `name` over this backbone (building and caching its artefact if needed)."""
    spec = get_runtime(name)
    if spec.artefact is None:
        return TorchEngine(backbone)
    if next(backbone.parameters()).device.type != "cpu":
        raise DfdetError(f"runtime {name} runs on the CPU; use --runtime torch-fp32 with --device cuda")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise DfdetError(f"runtime {name} needs onnxruntime: pip install -r requirements.txt") from None
    art = ensure_artefact(spec.artefact, backbone, weights_file, model_name, folder, progress)
    return OnnxEngine(name, art.path)
