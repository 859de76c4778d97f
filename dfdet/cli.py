"""`dfdet` command line. `main(argv)` parses a list, so tests call it in-process.

Each subcommand lives in a module exposing `add_arguments(parser)` and `run(args) -> int`;
COMMANDS maps names to those modules, so a new area adds one line here and nothing else.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading

from .errors import DfdetError

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "methods": ("dfdet.commands.methods", "list the registered methods and what each trains"),
    "train": ("dfdet.commands.train", "train one method on a manifest (paper recipe by default)"),
    "evaluate": ("dfdet.commands.evaluate", "evaluate checkpoints on a manifest and write a run folder"),
    "predict": ("dfdet.commands.predict", "print p_real/p_fake of every available method for images"),
    "embed": ("dfdet.commands.embed", "write L2-normalised embeddings of a manifest for one method"),
    "manifest": ("dfdet.data.cli_manifest", "build a manifest CSV from a <dataset>/<source>/<video>/<frame> folder"),
    "split": ("dfdet.data.cli_split", "assign leak-free FF25/50/75/100 train/val/test splits to a manifest"),
    "preprocess": ("dfdet.data.cli_preprocess", "videos or images -> aligned face crops (dlib), with a report"),
    "import-checkpoint": ("dfdet.hub.cli_import", "convert the paper's (or GenD's) released checkpoint to dfdet"),
    "selfcheck": ("dfdet.commands.selfcheck", "score the paper's sample crops with its released checkpoint vs published"),
    "push": ("dfdet.hub.cli_push", "publish a dfdet checkpoint to the Hugging Face Hub"),
    "pull": ("dfdet.hub.cli_pull", "download a dfdet checkpoint from the Hugging Face Hub"),
    "explain": ("dfdet.commands.explain", "saliency maps of each method for one face, with deletion/insertion curves"),
    "robustness": ("dfdet.commands.robustness", "re-score a run's faces under JPEG, downscale, blur and crop; flip shares"),
    "project": ("dfdet.commands.project", "add UMAP projections (2-D, 3-D, per method) to a run folder, resumable"),
    "inspect": ("dfdet.commands.inspect", "per block, how far a checkpoint moved each LayerNorm's gamma/beta"),
    "geometry": ("dfdet.commands.geometry", "alignment and uniformity (Wang & Isola) of a run's embeddings"),
}


def add_backbone_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backbone")
    g.add_argument("--model", default=None, help="open_clip model name (default ViT-L-14; dfdet-tiny-vit for tests)")
    g.add_argument("--pretrained", default=None,
                   help="open_clip weights tag (default openai); 'none' = random init (speed tests, demo only)")
    g.add_argument("--clip-weights", default=None,
                   help="local CLIP weights file (.safetensors/.bin); also $DFDET_CLIP_WEIGHTS")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda")


def backbone_from_args(args: argparse.Namespace, base=None):
    from .config import BackboneConfig
    cfg = base or BackboneConfig()
    if args.model:
        cfg.model = args.model
    if args.pretrained:
        cfg.pretrained = None if args.pretrained.lower() in ("none", "random") else args.pretrained
    if args.clip_weights:
        cfg.weights = args.clip_weights
    return cfg


def resolve_device(name: str) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DfdetError("--device cuda was asked for, but no CUDA GPU is available; use --device cpu")
    return name


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="dfdet", description="Generalizable deepfake detection with CLIP ViT-L/14 (LN-tuning, Norm, SLERP).")
    parser.add_argument("--version", action="version", version=f"dfdet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        if only and name != only:
            sub.add_parser(name, help=help_, add_help=False)  # listed in --help, parsed lazily
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and module.startswith(err.name):
                continue  # that area is not installed in this version
            raise
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip(),
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=cmd if cmd in COMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    # SIGTERM (kill, a job scheduler, docker stop) unwinds like Ctrl-C: temp files are removed, what was
    # finished stays, and the same command resumes. Ctrl-C is set here too, not trusted from the parent: a
    # process started with SIGINT ignored (a background job of a non-interactive shell, some CI runners)
    # keeps SIG_IGN through exec, and Python then installs no KeyboardInterrupt handler at all.
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGTERM, _interrupted), (signal.SIGINT, signal.default_int_handler))} if in_main else {}
    try:
        rc = int(args._run(args) or 0)
        if rc == 0:
            from .distributed import finish
            finish()  # under torchrun: all ranks leave the process group together
        return rc
    except DfdetError as err:
        print(f"dfdet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only or unwritable output: one line; finished outputs stay
        if err.errno is None:
            raise
        where = f": {err.filename}" if err.filename else ""
        print(f"dfdet {args.command}: error: {err.strerror or err}{where}. Finished outputs were kept; free space "
              "or choose a writable place and re-run", file=sys.stderr)
        return 1
    except RuntimeError as err:  # under torchrun: another rank died or hung (dfdet.distributed)
        from .distributed import failure_message
        msg = failure_message(err) or _disk_full(err)
        if msg is None:
            raise
        print(f"dfdet {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - only a failed write (safetensors' own error type) is answered here
        msg = _disk_full(err)
        if msg is None:
            raise
        print(f"dfdet {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dfdet {args.command}: interrupted; finished outputs were kept, re-run to resume", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(sig, handler)


DISK_WORDS = ("No space left on device", "os error 28", "Read-only file system", "os error 30",
              "Disk quota exceeded", "file write failed")  # how torch and safetensors word a failed write


def _disk_full(err: BaseException) -> str | None:
    """The one line for a write that failed inside torch or safetensors (their errors are not OSErrors)."""
    text = str(err)
    if not any(w in text for w in DISK_WORDS):
        return None
    what = "the disk is full" if ("28" in text or "space" in text or "quota" in text) else "cannot write the output"
    return f"{what} ({text.splitlines()[0][:160]}). Finished outputs were kept; free space or choose a writable place"


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
