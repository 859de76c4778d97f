"""Maps as pictures: a patch-grid map over the face crop the model saw, and the CLI's figure.

Patches are drawn as blocks (nearest upsampling): a smoothed map would suggest a resolution the
ViT does not have.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..backbone import CLIP_MEAN, CLIP_STD

DEMO_NOTE = "DEMO: random-weight backbone, maps and scores are meaningless"


def model_view(pixels: torch.Tensor) -> Image.Image:
    """The preprocessed [3, H, W] tensor back to the RGB crop the model saw."""
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    x = (pixels.detach().float().cpu() * std + mean).clamp(0, 1)
    return Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def colorize(saliency: np.ndarray, size: int, diverging: bool = False) -> np.ndarray:
    """[g, g] map -> [size, size, 3] float RGB; [0, 1] on 'inferno', a difference in [-1, 1] on 'RdBu_r'."""
    from matplotlib import colormaps
    m = np.asarray(saliency, dtype=np.float32)
    if diverging:
        rgb = colormaps["RdBu_r"]((np.clip(m, -1, 1) + 1) / 2)[..., :3]
    else:
        rgb = colormaps["inferno"](np.clip(m, 0, 1))[..., :3]
    img = Image.fromarray((rgb * 255).astype(np.uint8)).resize((size, size), Image.NEAREST)
    return np.asarray(img, dtype=np.float32) / 255


def overlay(face: Image.Image, saliency: np.ndarray, alpha: float = 0.55, diverging: bool = False) -> Image.Image:
    """The map blended over the crop (both at the crop's size)."""
    face = face.convert("RGB")
    base = np.asarray(face, dtype=np.float32) / 255
    heat = colorize(saliency, face.size[0], diverging)
    if face.size[0] != face.size[1]:
        heat = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(face.size, Image.NEAREST)) / 255
    return Image.fromarray(((1 - alpha) * base + alpha * heat).clip(0, 1).__mul__(255).round().astype(np.uint8))


def figure(face: Image.Image, maps: dict[str, np.ndarray], p_fake: dict[str, float], kind: str,
           out: str | Path, curves: dict[str, dict] | None = None, diff: tuple[str, str] | None = None,
           demo: bool = False) -> Path:
    """One PNG: a column per method (map over the face, p_fake in the title), an optional difference
    column, and under each map its deletion/insertion curves against random order."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = list(maps) + (["diff"] if diff else [])
    rows = 2 if curves else 1
    fig, axes = plt.subplots(rows, len(cols), figsize=(3.2 * len(cols), 3.4 * rows + (0.4 if demo else 0)),
                             squeeze=False)
    for j, name in enumerate(cols):
        ax = axes[0][j]
        if name == "diff":
            a, b = diff
            ax.imshow(overlay(face, maps[a] - maps[b], diverging=True))
            ax.set_title(f"{a}\nminus {b}", fontsize=9)
        else:
            ax.imshow(overlay(face, maps[name]))
            ax.set_title(f"{name}\np_fake {p_fake.get(name, float('nan')):.3f}", fontsize=9)
        ax.axis("off")
        if curves:
            cx = axes[1][j]
            c = curves.get(name)
            if c is None:
                cx.axis("off")
                continue
            x = c["fractions"]
            cx.plot(x, c["deletion"], color="#d62728", label=f"deletion {c['auc']['deletion']:.3f}")
            cx.plot(x, c["deletion_random"], color="#d62728", ls=":",
                    label=f"random {c['auc']['deletion_random']:.3f}")
            cx.plot(x, c["insertion"], color="#1f77b4", label=f"insertion {c['auc']['insertion']:.3f}")
            cx.plot(x, c["insertion_random"], color="#1f77b4", ls=":",
                    label=f"random {c['auc']['insertion_random']:.3f}")
            cx.set_xlabel("share of patches removed / inserted", fontsize=8)
            cx.set_ylabel("p_fake", fontsize=8)
            cx.set_ylim(-0.02, 1.02)
            cx.legend(fontsize=7, title="AUC", title_fontsize=7)
            cx.tick_params(labelsize=7)
    title = f"saliency: {kind}"
    if demo:
        title += f"\n{DEMO_NOTE}"
    fig.suptitle(title, fontsize=10, color="#b00020" if demo else "black")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
