"""The model card (README.md) published with a dfdet checkpoint, generated from its dfdet.json.

Everything on the card comes from the sidecar and the method registry, so the card cannot claim
more than the checkpoint records: method, backbone, training data, validation metrics.
"""
from __future__ import annotations

from typing import Any

import yaml

from .. import __version__
from ..checkpoint import META_FILE, WEIGHTS_FILE
from ..methods import get_method
from .imported import BACKBONE_FILE, OPENAI_HF_NAMES

CARD_FILE = "README.md"


def _flat_metrics(metrics: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested metric dicts -> (dotted name, scalar) rows, in the order recorded."""
    if isinstance(metrics, dict):
        rows = []
        for k, v in metrics.items():
            rows += _flat_metrics(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}")
        return rows
    if isinstance(metrics, (int, float)) and not isinstance(metrics, bool):
        return [(prefix.rstrip("."), metrics)]
    return []


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _training_data(meta: dict) -> list[str]:
    cfg = meta.get("config") or {}
    lines = []
    if meta.get("source"):
        lines.append(f"- {meta['source'][0].upper()}{meta['source'][1:]}"
                     f"{' (' + meta['imported']['file'] + ')' if meta.get('imported', {}).get('file') else ''}.")
    if cfg.get("manifest"):
        lines.append(f"- Manifest: `{cfg['manifest']}`, split `{cfg.get('train_split', 'train')}` for training, "
                     f"`{cfg.get('val_split', 'val')}` for choosing the epoch.")
    if cfg.get("datasets"):
        lines.append(f"- Datasets: {', '.join(map(str, cfg['datasets']))}.")
    for path, sha in (meta.get("manifests") or {}).items():
        lines.append(f"- `{path}` sha256 `{sha}`.")
    files = cfg.get("trn_files")
    if files:
        names = files if isinstance(files, list) else [f"{k}: {v}" for k, v in files.items()]
        lines.append(f"- Training file lists of the source config: {', '.join(f'`{n}`' for n in names[:12])}"
                     f"{' ...' if len(names) > 12 else ''}.")
    return lines or ["- Not recorded in the checkpoint."]


def model_card(meta: dict, repo_id: str | None = None) -> str:
    spec = get_method(meta["method"])
    bb = meta.get("backbone") or {}
    title = meta.get("display_name") or spec.label
    hf_base = next((hf for hf, arch in OPENAI_HF_NAMES.items() if arch == bb.get("model")), None)
    front = {"library_name": "dfdet", "pipeline_tag": "image-classification",
             "tags": ["deepfake-detection", "clip", "dfdet", spec.name]}
    if bb.get("weights") == "openai" and hf_base:
        front["base_model"] = hf_base
    out = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {title}", ""]
    if str(bb.get("weights", "")).startswith("random-init"):
        out += ["> **Warning:** trained on a randomly initialised CLIP backbone (tests and demos only). "
                "Its outputs are not deepfake detections.", ""]
    out += ["A deepfake detector made with dfdet, which reproduces \"Unlocking the Hidden Potential of CLIP in "
            "Generalizable Deepfake Detection\" (arXiv 2503.19683, code: yermandy/deepfake-detection). "
            "Output: p(real), p(fake) for a face crop; label 0 = real, 1 = fake.", "",
            "## Method", "", f"**{spec.label}** (`{spec.name}`): {spec.description}", ""]
    if meta.get("trainable_params"):
        out.append(f"Trainable parameters: {int(meta['trainable_params']):,}.")
    out += ["", "## Backbone", "",
            f"open_clip `{bb.get('model')}`, weights `{bb.get('weights')}`. Feature: the [CLS] token after "
            "`ln_post`, before the projection (z_cls).", ""]
    if meta.get("backbone_file"):
        out += [f"`{BACKBONE_FILE}` holds the full vision tower this checkpoint runs on, in open_clip layout.", ""]
    out += ["## Training data", "", *_training_data(meta), "", "## Validation metrics", ""]
    rows = _flat_metrics(meta.get("val_metrics"))
    if rows:
        epoch = f" (best epoch {meta['best_epoch']})" if meta.get("best_epoch") else ""
        out += [f"On the validation split{epoch}:", "", "| metric | value |", "|---|---|"]
        out += [f"| {k} | {_fmt(v)} |" for k, v in rows]
    else:
        out.append("Not recorded in the checkpoint" + (" (the imported source ships none)." if meta.get("imported")
                                                       else "."))
    where = repo_id or "REPO_ID"
    local = f"checkpoints/{where.split('/')[-1]}"
    weights = f" --clip-weights {local}/{BACKBONE_FILE}" if meta.get("backbone_file") else ""
    out += ["", "## Use", "", "```bash", f"dfdet pull {where} --out {local}",
            f"dfdet predict --checkpoints checkpoints{weights} face.png", "```", "",
            "## Files", "", f"- `{WEIGHTS_FILE}`: the trained tensors (safetensors).",
            f"- `{META_FILE}`: what they are (method, backbone, config, metrics)."]
    if meta.get("backbone_file"):
        out.append(f"- `{BACKBONE_FILE}`: the vision backbone.")
    out += ["", f"_Card generated by dfdet {meta.get('code_version', __version__)} from `{META_FILE}`._", ""]
    return "\n".join(out)
