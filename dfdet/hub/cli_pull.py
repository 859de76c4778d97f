"""Download a dfdet checkpoint from the Hugging Face Hub into a checkpoint folder.

A dfdet repository (model.safetensors + dfdet.json) is validated and placed in --out. A GenD
repository (model.safetensors + config.json, e.g. yermandy/GenD_CLIP_L_14) is converted like
`dfdet import-checkpoint`. The paper's repository holds a pickled Lightning checkpoint; it is
converted only with --import-ckpt. Nothing lands in --out unless it is complete and valid.
"""
from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("repo_id", help="Hub model repository, OWNER/NAME")
    p.add_argument("--out", default=None, help="checkpoint folder to write (if unset: checkpoints/NAME)")
    p.add_argument("--revision", default=None, help="branch, tag or commit (if unset: main)")
    p.add_argument("--token", default=None, help="Hugging Face token for private repositories")
    p.add_argument("--force", action="store_true", help="replace --out if it already holds files")
    p.add_argument("--import-ckpt", action="store_true",
                   help="allow converting a Lightning model.ckpt (read with torch.load(weights_only=True))")


def run(args) -> int:
    from pathlib import Path

    from ..checkpoint import read_meta
    from .remote import pull
    out = Path(args.out or Path("checkpoints") / args.repo_id.split("/")[-1])
    folder = pull(args.repo_id, out, revision=args.revision, token=args.token, force=args.force,
                  import_ckpt=args.import_ckpt)
    meta = read_meta(folder)
    print(f"{args.repo_id} -> {folder}/: {meta.get('display_name') or meta['label']} ({meta['method']}), "
          f"backbone {meta['backbone']['model']}/{meta['backbone']['weights']}")
    return 0
