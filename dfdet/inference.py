"""Every available method on one shared backbone: what the CLI's `predict` and the dashboard call.

The LN methods differ only in LayerNorm gamma/beta and the head (~0.4 MB each), so one ViT is
loaded and each method's overlay is swapped in before its forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .backbone import LoadedClip, VisionBackbone
from .checkpoint import apply_overlay, check_compatible, check_tensors, load_tensors, read_meta
from .errors import CheckpointError, DfdetError
from .methods import METHODS, MethodSpec, get_method
from .model import CHECKPOINT_LOADERS, Detector, build_model, trainable_count, trainable_state

PARAM_COUNTS_NOTE = "trainable parameters of the method on this backbone"


@dataclass
class Entry:
    """One row of the model table: a method with its checkpoint, or the reason it has none."""
    name: str  # display key: the method name, or the checkpoint folder name for extra checkpoints
    spec: MethodSpec
    status: str  # "ready" | "missing" | "error"
    message: str = ""  # for missing/error: what is wrong and the command that fixes it
    folder: Path | None = None
    meta: dict = field(default_factory=dict)
    tensors: dict | None = None
    model: torch.nn.Module | None = None  # non-LN families keep their own module
    trainable_params: int = 0

    @property
    def label(self) -> str:
        """The method's label; a checkpoint in a folder of another name says which folder it is."""
        if self.meta.get("display_name"):
            return self.meta["display_name"]
        return self.spec.label if self.name == self.spec.name else f"{self.spec.label} ({self.name})"


def train_command(method: str) -> str:
    return f"dfdet train --method {method} --manifest data_manifests/<your manifest>.csv --out checkpoints/{method}"


class DetectorBank:
    """Loads every method it can from `checkpoints_dir` over one CLIP backbone."""

    def __init__(self, clip: LoadedClip, checkpoints_dir: str | Path = "checkpoints",
                 methods: list[str] | None = None, device: str = "cpu", runtime: str = "torch-fp32",
                 progress=None):
        """runtime: who runs the frozen backbone for the LN family (dfdet.runtime); its artefact is built
        (once, cached) here, so a bad choice fails at load, not at the first face."""
        self.clip = clip
        self.device = torch.device(device)
        self.demo = clip.config.pretrained is None and clip.config.weights is None
        self.backbone = VisionBackbone(clip.model.visual).to(self.device).eval()
        self._det = Detector(self.backbone, get_method("ln_tuning")).to(self.device).eval()
        # The LayerNorms as loaded (not as another bank over the same model may have left them).
        self._base_ln = {f"backbone.visual.{k}": v.to(self.device) for k, v in clip.pristine.items()}
        self.entries: dict[str, Entry] = {}
        self._scan(Path(checkpoints_dir), methods)
        self.runtime, self.engine = "torch-fp32", None
        self.use_runtime(runtime, progress)

    def use_runtime(self, runtime: str, progress=None) -> None:
        """Switch who runs the frozen backbone (building and caching its artefact first: minutes for ViT-L/14
        the first time). Until it returns, the bank keeps answering with the runtime it had."""
        from .runtime import build_engine
        engine = build_engine(runtime, self.backbone, self.clip.config.weights, self.clip.config.model,
                              progress=progress)
        self.engine, self.runtime = engine, runtime

    # -- discovery ---------------------------------------------------------------------------
    def _scan(self, root: Path, methods: list[str] | None) -> None:
        wanted = methods or list(METHODS)
        found: dict[str, list[Path]] = {}
        if root.is_dir():
            from .swap import recover_swaps
            import logging
            for note in recover_swaps(root):  # a replacement killed midway: the old checkpoint goes back
                logging.getLogger("dfdet.inference").warning("%s", note)
            # hidden folders are staging (.X.pull-*, .X.new-*, .X.retrain, .X.replaced): never a row
            for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                try:
                    meta = read_meta(folder)
                except CheckpointError as err:
                    if (folder / "dfdet.json").exists() or any(folder.iterdir()):  # (its method is unknown)
                        self.entries[folder.name] = Entry(folder.name, get_method(wanted[0]), "error", str(err),
                                                          folder=folder, meta={"display_name": folder.name})
                    continue
                if methods is not None and meta["method"] not in wanted:
                    continue  # `--methods X`: other checkpoints are neither loaded nor scored
                if not meta.get("source"):  # an imported model is its own row, not the method's own checkpoint
                    found.setdefault(meta["method"], []).append(folder)
                self._add_checkpoint(folder, meta)
        for name in wanted:
            spec = get_method(name)
            if name in self.entries or name in found:
                continue
            if not spec.trainable:
                self._add_untrained(spec)
            else:
                self.entries[name] = Entry(name, spec, "missing",
                                           f"not trained yet: {train_command(name)}")

    def _add_checkpoint(self, folder: Path, meta: dict) -> None:
        name = folder.name
        try:
            spec = get_method(meta.get("method", ""))
        except KeyError as err:
            self.entries[name] = Entry(name, get_method("linear_probe"), "error", str(err), folder=folder,
                                       meta={"display_name": name})  # unknown method: named by its folder
            return
        try:
            check_compatible(meta, self.clip.config.model, self.clip.weights_id, folder)
            tensors = load_tensors(folder)
            entry = Entry(name, spec, "ready", folder=folder, meta=meta)
            if spec.family == "ln":
                probe = Detector(self.backbone, spec)  # shares the backbone; only for the expected set and counts
                expected = {k: tuple(v.shape) for k, v in trainable_state(probe).items()}
                check_tensors(tensors, folder, expected, spec.name)
                dtypes = {k: v.dtype for k, v in probe.named_parameters()}
                entry.tensors = {k: v.to(self.device, dtypes[k]) for k, v in tensors.items()}
                entry.trainable_params = trainable_count(probe)
            else:
                build_model(self.clip, spec, only_register=True)
                loader = CHECKPOINT_LOADERS.get(spec.family)
                if loader is not None:
                    model = loader(folder, self.clip, self.device)
                else:
                    model = build_model(self.clip, spec)
                    apply_overlay(model, tensors, folder)
                entry.model = model.to(self.device).eval()
                entry.trainable_params = int(meta.get("trainable_params", trainable_count(model)))
            self.entries[name] = entry
        except Exception as err:  # noqa: BLE001 - one bad folder makes only its own row unavailable
            message = str(err) if isinstance(err, DfdetError) else (
                f"{folder}: could not be loaded ({type(err).__name__}: {err})")
            self.entries[name] = Entry(name, spec, "error", message, folder=folder, meta=meta)

    def _add_untrained(self, spec: MethodSpec) -> None:
        try:
            model = build_model(self.clip, spec).to(self.device).eval()
            self.entries[spec.name] = Entry(spec.name, spec, "ready", model=model, trainable_params=0)
        except DfdetError as err:
            self.entries[spec.name] = Entry(spec.name, spec, "error", str(err))

    # -- use -----------------------------------------------------------------------------------
    @property
    def ready(self) -> list[str]:
        return [n for n, e in self.entries.items() if e.status == "ready"]

    def _select(self, name: str) -> torch.nn.Module:
        e = self.entries[name]
        if e.status != "ready":
            raise DfdetError(f"{name}: {e.message}")
        if e.model is not None:
            return e.model
        self._det.spec = e.spec
        with torch.no_grad():
            params = dict(self._det.named_parameters())
            for k, v in self._base_ln.items():
                params[k].copy_(v)
            for k, v in e.tensors.items():
                params[k].copy_(v)
        return self._det

    def method_model(self, name: str) -> torch.nn.Module:
        """A method's own model (its overlay and head loaded into the shared Detector), e.g. for gradients."""
        return self._select(name)

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self.clip.preprocess(im) for im in images]).to(self.device)

    fused: bool = True  # LN methods share one batched forward (dfdet.multi_ln; bench/results_methods_cpu.md)

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """p_fake per ready method for a batch of preprocessed images."""
        ln_entries = [n for n in (names or self.ready) if self.entries[n].model is None]
        if self.fused and (len(ln_entries) > 1 or (ln_entries and self.runtime != "torch-fp32")):
            from .multi_ln import bank_predict
            return bank_predict(self, pixels, names)
        out = {}
        for name in names or self.ready:
            logits = self._select(name)(pixels)
            out[name] = F.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
        return out

    @torch.no_grad()
    def score_and_embed_all(self, pixels: torch.Tensor, names: list[str] | None = None
                            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """score_and_embed for several methods, the LN family in one batched forward on the runtime."""
        from .multi_ln import bank_forward
        return bank_forward(self, pixels, list(names or self.ready), features=True)

    @torch.no_grad()
    def score_and_embed(self, pixels: torch.Tensor, name: str) -> tuple[np.ndarray, np.ndarray]:
        """p_fake and the features the head sees, from one forward pass."""
        if self.entries[name].model is None and self.runtime != "torch-fp32":
            return self.score_and_embed_all(pixels, [name])[name]
        model = self._select(name)
        feats = model.embed(pixels)
        p = F.softmax(model.classify(feats).float(), dim=-1)[:, 1]
        return p.cpu().numpy(), feats.float().cpu().numpy()

    @torch.no_grad()
    def embed(self, pixels: torch.Tensor, name: str) -> np.ndarray:
        return self._select(name).embed(pixels).float().cpu().numpy()

    @torch.no_grad()
    def head_p_fake(self, name: str, features: np.ndarray) -> np.ndarray:
        """p_fake of a method's head on given features (e.g. points along a SLERP path)."""
        model = self._select(name)
        z = torch.as_tensor(np.asarray(features, dtype=np.float32), device=self.device)
        return F.softmax(model.classify(z).float(), dim=-1)[:, 1].cpu().numpy()

