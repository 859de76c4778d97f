"""How far a checkpoint moved each LayerNorm: per block, mean |Δγ| and |Δβ| and their size relative to
the values it was trained from (CLIP's, or the seeded random backbone's in demo/test checkpoints).

The backbone is rebuilt from the checkpoint's own record (dfdet.json), so the comparison is against
exactly what training started from; the first line says what that is."""
from __future__ import annotations

import json

from ..learn.stack import inspect_checkpoint


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="a dfdet checkpoint folder (model.safetensors + dfdet.json)")
    p.add_argument("--clip-weights", default=None,
                   help="the CLIP weights file the checkpoint was trained from, when not found by its tag")
    p.add_argument("--json", action="store_true", help="print the table as JSON records")


def run(args) -> int:
    ins = inspect_checkpoint(args.checkpoint, args.clip_weights)
    if args.json:
        print(json.dumps({"checkpoint": str(ins.folder), "method": ins.method, "backbone": ins.model,
                          "weights": ins.weights, "compared_with": ins.reference,
                          "layers": ins.table.to_dict("records")}, indent=1, default=str))
        return 0
    print(f"{ins.folder}: {ins.method} on {ins.model} ({ins.weights})")
    print(f"Δ = checkpoint − {ins.reference}")
    print(format_table(ins.table))
    return 0


def format_table(df) -> str:
    """Fixed-width table; 'n/a' where a relative size has no base (β₀ = 0)."""
    cols = list(df.columns)
    cells = [[_cell(r[c]) for c in cols] for _, r in df.iterrows()]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))]
    for row in cells:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1e-4 or v == 0 else f"{v:.2e}"
    return str(v)
