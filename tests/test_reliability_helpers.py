"""The dashboard served for the reliability tests, and a CLI runner with a deadline.

The app is the real app.py launched in-process on 127.0.0.1 with the tiny random-weight
backbone and seeded checkpoints for the four paper methods (no run is needed for Compare).
"""
from __future__ import annotations

import contextlib
import io
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path

from dfdet.backbone import TINY_MODEL, load_clip
from dfdet.cli import main
from dfdet.methods import PAPER_METHODS

TINY_ARGS = ["--model", TINY_MODEL, "--pretrained", "none", "--device", "cpu"]


@dataclass
class Served:
    app: object  # gradio Blocks, launched
    client: object  # gradio_client.Client
    session: object  # dfdet.viz.session.Session
    module: object  # app.py as a module
    checkpoints: Path
    upload_dir: Path  # GRADIO_TEMP_DIR of this server

    def close(self) -> None:
        self.app.close()


def serve(tmp: Path, tiny_cfg, runs: Path | None = None, checkpoints: Path | None = None,
          app_attrs: dict | None = None, **cfg_kw) -> Served:
    """app_attrs: module-level settings of app.py to replace before the app is built (e.g. DELETE_CACHE)."""
    import os

    from gradio_client import Client

    from dfdet.viz.session import AppConfig, Session
    from test_app_helpers import load_app_module, make_checkpoints
    ck = checkpoints or make_checkpoints(load_clip(tiny_cfg), tmp / "checkpoints")
    cfg = AppConfig(runs=str(runs or tmp / "runs"), checkpoints=str(ck), methods=list(PAPER_METHODS),
                    backbone=tiny_cfg, cache_dir=str(tmp / "cache"), demo="off", warm_up=False, **cfg_kw)
    session = Session(cfg, clip=load_clip(tiny_cfg))
    mod = load_app_module()
    for k, v in (app_attrs or {}).items():
        assert hasattr(mod, k), k
        setattr(mod, k, v)
    app = mod.build_app(session)
    mod.launch(app, prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    client = Client(app.local_url, verbose=False, download_files=str(tmp / "downloads"))
    return Served(app, client, session, mod, Path(ck), Path(os.environ["GRADIO_TEMP_DIR"]))


class Deadline(Exception):
    """A call ran past its time limit: a hang."""


@contextlib.contextmanager
def deadline(seconds: int):
    """Raise Deadline in the main thread after `seconds` (SIGALRM): a hang fails the test instead of the suite."""
    def on_alarm(signum, frame):
        raise Deadline(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class CliResult:
    rc: int
    out: str
    err: str
    crashed: str = ""  # the traceback, when main() raised instead of answering

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err


def run_cli(argv: list[str], seconds: int = 60) -> CliResult:
    """dfdet.cli.main(argv) in-process, capturing what a user would see; never lets an exception escape."""
    out, err = io.StringIO(), io.StringIO()
    crashed = ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            with deadline(seconds):
                rc = main(argv)
        except SystemExit as e:  # argparse errors
            rc = int(e.code or 0)
        except Exception:  # noqa: BLE001 - a crash is what the caller asserts against
            rc, crashed = -1, traceback.format_exc()
    return CliResult(rc, out.getvalue(), err.getvalue(), crashed)
