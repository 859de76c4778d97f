"""dfdet dashboard: CLIP deepfake detectors side by side.

    python app.py                       # ViT-L/14 openai weights + checkpoints/ + runs/; without weights,
                                        # demo mode is built in the background (random weights, meaningless)
    python app.py --clip-weights PATH   # local open_clip weights file (also $DFDET_CLIP_WEIGHTS)
    python app.py --demo off            # never build demo mode

Tabs: Compare, Hypersphere, ROC browser, Errors, About. The page is wired in the `ui` package
(one module per tab); everything it shows is computed by dfdet.viz (testable without gradio).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the ui package beside this file, however it is run

import gradio as gr  # noqa: E402

from dfdet.config import BackboneConfig  # noqa: E402
from dfdet.viz.media import MAX_UPLOAD_MB, app_temp_dir  # noqa: E402
from dfdet.viz.session import AppConfig, Session  # noqa: E402
from ui.assets import CSS, HEAD  # noqa: E402
from ui.common import MODEL_QUEUE, display_table, friendly, scrub  # noqa: E402,F401 - the app's public names
from ui.guards import fair_queue, guard_file_inputs, guard_image_upload, is_file_input, upload_gate  # noqa: E402,F401,E501
from ui.page import DELETE_CACHE, build_app  # noqa: E402,F401

log = logging.getLogger("dfdet.app")
QUEUE_MAX_SIZE = 64  # requests waiting at once (all events); beyond it a request is refused with a message
VIEW_CONCURRENCY = 4  # non-model events run this many at a time
STATE_SESSIONS = 300  # visitors whose last outputs gradio keeps in memory (~1.5 MB each); older ones are dropped


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", default="runs", help="folder of run folders written by `dfdet evaluate`")
    p.add_argument("--checkpoints", default="checkpoints", help="folder holding one checkpoint folder per method")
    p.add_argument("--methods", nargs="*", default=[], help="only these registry methods (default: all)")
    p.add_argument("--model", default="ViT-L-14", help="open_clip model (ViT-L-14; dfdet-tiny-vit, "
                   "dfdet.backbone.TINY_MODEL, for tests)")
    p.add_argument("--pretrained", default="openai", help="open_clip weights tag; 'none' = random init")
    p.add_argument("--clip-weights", default=None, help="local CLIP weights file; also $DFDET_CLIP_WEIGHTS")
    p.add_argument("--manifest", default="", help="sample-face manifest for Compare (default: the shared one)")
    p.add_argument("--data-root", default="", help="folder the manifest's paths are relative to")
    p.add_argument("--cache-dir", default="", help="UMAP/thumbnail cache (default $DFDET_CACHE or ~/.cache/dfdet)")
    p.add_argument("--demo", choices=["auto", "offer", "off"], default="auto",
                   help="without CLIP weights: build demo mode in the background at start (auto), offer a "
                        "button that builds it once (offer), or never (off). Kept in $DFDET_DEMO_DIR or "
                        "<cache>/demo and reused by later starts")
    p.add_argument("--hub-checkpoints", nargs="*", default=[], metavar="OWNER/NAME",
                   help="dfdet checkpoint repos on the Hub to pull into --checkpoints at start (network needed; "
                        "reused offline later); also $DFDET_HUB_CHECKPOINTS, space-separated")
    p.add_argument("--hub-runs", nargs="*", default=[], metavar="OWNER/NAME",
                   help="run-folder repos (`dfdet push RUN_FOLDER`) to pull into --runs at start; also $DFDET_HUB_RUNS")
    p.add_argument("--import-released", action="store_true",
                   help="import the authors' released models (the paper's yermandy/deepfake-detection and "
                        "yermandy/GenD_CLIP_L_14) as live rows at start; also $DFDET_IMPORT_RELEASED=1")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    from dfdet.runtime import add_runtime_arg
    add_runtime_arg(p)
    p.add_argument("--no-warm-up", action="store_true", help="skip compiling numba / fitting UMAPs at start")
    p.add_argument("--upload-client-mb", type=float, default=None, help="MB of uploads one visitor (IP address) may "
                   "have in flight and kept on disk (default 200; $DFDET_UPLOAD_CLIENT_MB)")
    p.add_argument("--upload-total-mb", type=float, default=None, help="the same for all visitors together "
                   "(default 2000; $DFDET_UPLOAD_TOTAL_MB)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME"), help="bind address ($GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT")
                                                   or 7860), help="port ($PORT or $GRADIO_SERVER_PORT)")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> AppConfig:
    pretrained = None if str(args.pretrained).lower() in ("none", "random") else args.pretrained
    bb = BackboneConfig(model=args.model, pretrained=pretrained, weights=args.clip_weights)
    return AppConfig(runs=args.runs, checkpoints=args.checkpoints, methods=list(args.methods), backbone=bb,
                     manifest=args.manifest, data_root=args.data_root, cache_dir=args.cache_dir, demo=args.demo,
                     device=args.device, warm_up=not args.no_warm_up, hub_checkpoints=list(args.hub_checkpoints),
                     hub_runs=list(args.hub_runs), import_released=args.import_released, runtime=args.runtime)


def launch(app: gr.Blocks, upload_limits=None, **kw):
    """Launch with the safety limits of a public app: upload size (per file, and the bytes per visitor and in all,
    dfdet.uploads.UploadLimits), queue size, model concurrency, and the number of visitors' sessions held in
    memory. Every file input goes through the one upload guard."""
    guard_file_inputs(app)
    app.queue(default_concurrency_limit=VIEW_CONCURRENCY, max_size=QUEUE_MAX_SIZE)
    fair_queue(app)  # each visitor's share of the model queue; views never wait behind it (ui/guards.py)
    return app.launch(max_file_size=f"{MAX_UPLOAD_MB}mb", state_session_capacity=STATE_SESSIONS, head=HEAD, css=CSS,
                      show_error=True, footer_links=["api"], app_kwargs=upload_gate(app, upload_limits), **kw)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    from dfdet.errors import DataError
    from dfdet.uploads import UploadLimits
    try:
        limits = UploadLimits.from_env(client_mb=args.upload_client_mb, total_mb=args.upload_total_mb)
    except DataError as err:
        sys.exit(f"app.py: {err}")
    # gradio's uploads and outputs go to this instance's own folder: the next start deletes it after a kill -9
    os.environ["GRADIO_TEMP_DIR"] = str(app_temp_dir())
    from dfdet import heap
    heap.limit_arenas()  # before the worker threads exist; with the trimmer below, freed memory goes back (dfdet.heap)
    session = Session(config_from_args(args), load_models=False)
    app = build_app(session)
    launch(app, upload_limits=limits, server_name=args.host, server_port=args.port, prevent_thread_lock=True)
    # Slow work starts once the page is served: the status line follows the model loading / demo build.
    session.load_models_async()
    if session.cfg.warm_up:
        session.start_warm_up()
    heap.start_trimmer()
    serve_until_stopped(app)


def serve_until_stopped(app: gr.Blocks) -> None:
    """Serve until Ctrl-C or SIGTERM (how Spaces and docker stop a container), then close properly:
    open event streams end and the shutdown deletes every upload and output of the cache."""
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    try:
        while app.is_running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        log.info("stopping: closing the server and deleting its temp files")
    finally:
        app.close()


if __name__ == "__main__":
    main(sys.argv[1:])
