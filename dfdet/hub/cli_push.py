"""Publish a dfdet checkpoint folder, or a run folder, to the Hugging Face Hub, with a generated card.

A run folder (run.json, predictions, metrics, ROC, embeddings: what `dfdet evaluate` writes) is
published whole, so every dashboard started with `--hub-runs OWNER/NAME` shows it.

Uploads model.safetensors, dfdet.json (and backbone.safetensors of an imported model) plus a
README.md model card stating method, backbone, training data and validation metrics, all read
from dfdet.json. Needs network and a token with write access (`hf auth login` or --token).
"""
from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="dfdet checkpoint folder (model.safetensors + dfdet.json), or a run folder "
                                      "written by `dfdet evaluate` (run.json ...)")
    p.add_argument("repo_id", help="Hub model repository, OWNER/NAME; created if it does not exist")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", default=None, help="Hugging Face token (if unset: the logged-in one or $HF_TOKEN)")
    p.add_argument("--revision", default=None, help="branch to push to (if unset: main)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--card-only", action="store_true", help="print the generated model card and upload nothing")


def run(args) -> int:
    from pathlib import Path

    from .remote import push
    if (Path(args.checkpoint) / "run.json").is_file():
        from .space import push_run
        url = push_run(args.checkpoint, args.repo_id, private=args.private or None, token=args.token,
                       message=args.message)
        print(f"pushed run {args.checkpoint} to {args.repo_id}: {url}")
        return 0
    if args.card_only:
        from ..checkpoint import read_meta
        from .card import model_card
        print(model_card(read_meta(args.checkpoint), args.repo_id))
        return 0
    url = push(args.checkpoint, args.repo_id, private=args.private or None, token=args.token,
               revision=args.revision, message=args.message)
    print(f"pushed {args.checkpoint} to {args.repo_id}: {url}")
    return 0
