"""What the server does after its page is up: load CLIP and the checkpoints, or build demo mode.

Everything here runs in background threads, so every view is served meanwhile; the status line
says what is happening (named steps, an estimate). Demo mode is built at most once per process,
by the server: a visitor can ask for it, but never start a second build or restart one.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DfdetError, WeightsUnavailable
from .store import WEIGHTS_ENV, ModelStatus, Store, md_escape

log = logging.getLogger(__name__)
SERVER_FOLDERS = re.compile(r"(?<![\w.~:/])/(?:[^/\s'\"`<>]+/)+")  # the folders of an absolute path


def hide_folders(text: str) -> str:
    """`/srv/app/checkpoints/ln_norm` -> `ln_norm`: names stay, the server's layout does not."""
    return SERVER_FOLDERS.sub("", text)
PAPER_URL = "https://arxiv.org/abs/2503.19683"
CODE_URL = "https://github.com/yermandy/deepfake-detection"


@dataclass
class DemoProgress:
    """The demo build as the status line shows it."""
    state: str = "idle"  # idle, building, done, failed
    step: int = 0  # 1-based step being run
    steps: int = 0
    name: str = ""  # the step being run, in words
    eta_s: float | None = None  # estimated seconds left at the start of this step (None: no estimate)
    started: float = 0.0  # time.monotonic() of the step's start
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def left_s(self) -> float | None:
        return None if self.eta_s is None else max(0.0, self.eta_s - (time.monotonic() - self.started))

    def estimate(self) -> str:
        """The words after a step: never a count of seconds the build has already overrun."""
        left = self.left_s()
        if left is None:
            return ""
        return f" (about {max(1.0, left):.0f} s left)" if left > 0 else " (longer than estimated: still working)"


class Startup:
    def __init__(self, store: Store):
        self.store = store
        self.demo = DemoProgress()
        self._demo_lock = threading.Lock()
        self.loaded = threading.Event()  # set when model loading (and a demo build it started) has ended
        self.warmup_done = threading.Event()
        self.warmup_seconds: float | None = None
        self.notes: list[str] = []  # one line each: Hub downloads, imports, what was skipped
        self.hub_steps: list[str] = []  # the downloads started, in order ("i of n: what")
        self.runtime_note = ""  # the fast runtime being built, or why it could not be

    @property
    def cfg(self):
        return self.store.cfg

    def loading_message(self) -> str:
        bb = self.cfg.backbone
        return (f"loading {bb.model} ({bb.weights or bb.pretrained or 'random'} weights; the first start downloads "
                "them when there is network)")

    def busy(self) -> bool:
        """Models are loading or demo mode is being built: a model request can wait instead of failing."""
        return self.store.status.mode == "loading" or self.demo.state == "building"

    def busy_reason(self) -> str:
        """What a waiting model request waits for, in words (only true while busy())."""
        if self.demo.state == "building":
            return f"demo mode is built ({self.demo_line()})"
        return f"the models have loaded ({self.store.status.message})"

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for busy() to end; True when it has."""
        end = time.monotonic() + timeout
        while self.busy() and time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))
        return not self.busy()

    # -- models --------------------------------------------------------------------------------
    def load_models(self, clip=None) -> None:
        """CLIP + checkpoints; without weights, demo mode when the settings allow it (built here, once)."""
        from ..backbone import load_clip
        from ..inference import DetectorBank
        try:
            self.fetch_from_hub()
            try:
                clip = clip or load_clip(self.cfg.backbone, self.cfg.device)
            except WeightsUnavailable as err:
                self.store.status = ModelStatus("none", str(err))
                if self.cfg.demo == "auto" or (self.cfg.demo == "offer" and self._demo_built()):
                    self.build_demo()
                return
            self.use_bank(DetectorBank(clip, self.cfg.checkpoints, self.cfg.methods or None, self.cfg.device),
                          self.cfg.checkpoints)
        finally:
            self.loaded.set()
        self.switch_runtime()

    def switch_runtime(self) -> None:
        """The configured fast runtime, built after the page already answers with fp32 (its first build takes
        minutes for ViT-L/14); a runtime that cannot be built leaves fp32 in place, with the reason."""
        from ..runtime import describe, resolve_runtime
        bank = self.store.bank
        if bank is None:
            return
        try:
            name = resolve_runtime(self.cfg.runtime, self.cfg.device, bank.clip.config.model)
            if name == bank.runtime:
                return
            self.runtime_note = f"building the {name} runtime (once; scores meanwhile come from fp32)"
            bank.use_runtime(name, progress=lambda msg: log.info(msg))
            self.runtime_note = ""
        except Exception as err:  # noqa: BLE001 - fp32 keeps answering; the status says why it stayed
            log.exception("runtime %s could not be built", self.cfg.runtime)
            self.runtime_note = f"runtime {self.cfg.runtime} unavailable ({type(err).__name__}: {err}); using fp32"
        if self.store.status.mode in ("live", "demo"):
            self.store.status.message = self.store.status.message.split(" · runtime:")[0] + \
                " · " + describe(bank.runtime) + (f" ({self.runtime_note})" if self.runtime_note else "")

    def fetch_from_hub(self) -> None:
        """The Space settings' downloads (dfdet.hub.space), each a named step; nothing when none is set."""
        from ..hub.space import ENV_CHECKPOINTS, ENV_RUNS, fetch_all, released_wanted, repos_from
        ck = repos_from(self.cfg.hub_checkpoints, ENV_CHECKPOINTS)
        runs = repos_from(self.cfg.hub_runs, ENV_RUNS)
        released = released_wanted(self.cfg.import_released)
        if not (ck or runs or released):
            return

        def progress(i: int, n: int, what: str) -> None:
            self.hub_steps.append(f"{i} of {n}: {what}")
            self.store.status = ModelStatus("loading", f"from the Hugging Face Hub, {i} of {n}: {what}")
            log.info("hub: %d of %d: %s", i, n, what)
        got = fetch_all(ck, runs, released, self.cfg.checkpoints, self.cfg.runs, progress)
        self.notes += got.notes
        if got.runs:
            self.store.reload_runs()

    def load_models_async(self) -> threading.Thread:
        """Load in the background; views that need a model say so until then."""
        self.store.status = ModelStatus("loading", self.loading_message())

        def work():
            try:
                self.load_models()
            except Exception as err:  # noqa: BLE001 - any failure must end "loading" with a message
                log.exception("model loading failed")
                self.store.status = ModelStatus("none", f"loading the models failed: {type(err).__name__}: {err}")
        th = threading.Thread(target=work, name="dfdet-load-models", daemon=True)
        th.start()
        return th

    def use_bank(self, bank, checkpoints: str | Path) -> None:
        cfg = bank.clip.config
        ready = [bank.entries[n].label for n in bank.ready]
        if bank.demo:
            status = ModelStatus("demo", f"{cfg.model} with random weights (seed {cfg.seed}), checkpoints from "
                                         f"{checkpoints}; ready: {', '.join(ready) or 'none'}")
        else:
            status = ModelStatus("live", f"{cfg.model} ({bank.clip.weights_id}), checkpoints from {checkpoints}; "
                                         f"ready: {', '.join(ready) or 'none'}")
        with self.store.model_lock:
            self.store.bank = bank
            self.store.status = status

    # -- demo mode -----------------------------------------------------------------------------
    def demo_root(self) -> Path:
        from ..demo import default_root
        return Path(self.cfg.demo_root) if self.cfg.demo_root else default_root()

    def _demo_built(self) -> bool:
        from ..demo import read_stamp
        return read_stamp(self.demo_root()) is not None

    def request_demo(self) -> str:
        """A visitor's "start demo mode": starts the one build if the settings allow and none ran yet."""
        mode = self.store.status.mode
        if mode == "live":
            return "Real CLIP weights are loaded; demo mode is not needed."
        if mode == "demo":
            return "Demo mode is on: every score shown is meaningless (random-weight backbone)."
        if self.cfg.demo == "off":
            return "Demo mode is turned off on this server (--demo off)."
        if self.demo.state == "building":
            return f"Demo mode is being built: {self.demo_line()}"
        if self.demo.state == "failed":
            return f"Demo mode could not be built ({self.demo.error}); the server's log has the details."
        if mode == "loading":
            return "The models are still loading; demo mode starts by itself if no weights are found."
        threading.Thread(target=self._demo_quietly, name="dfdet-demo", daemon=True).start()
        return "Demo mode is being built; the status line shows its progress."

    def _demo_quietly(self) -> None:
        try:
            self.build_demo()
        except Exception:  # noqa: BLE001 - recorded in self.demo and the log
            log.exception("demo build failed")

    def build_demo(self) -> None:
        """Build (or reuse) the tiny random-backbone demo and switch every view to it. Runs once per process."""
        with self._demo_lock:
            if self.demo.state in ("building", "done", "failed"):
                return
            self.demo.state = "building"
        from ..backbone import load_clip
        from ..demo import ensure_demo
        from ..inference import DetectorBank
        weights_msg = self.store.status.message
        self.store.status = ModelStatus("loading", "demo mode is being built (no CLIP weights here: a tiny "
                                                   "random-weight backbone; scores will be meaningless)")

        def progress(step: int, steps: int, name: str, eta: float | None) -> None:
            self.demo.step, self.demo.steps, self.demo.name = step, steps, name
            self.demo.eta_s, self.demo.started = eta, time.monotonic()
            log.info("demo mode: step %d of %d: %s%s", step, steps, name, self.demo.estimate())
        t0 = time.perf_counter()
        try:
            assets = ensure_demo(self.demo_root(), progress=progress)
            self.demo.name, self.demo.eta_s = "load the demo models", None
            clip = load_clip(assets.backbone_cfg, self.cfg.device)
            bank = DetectorBank(clip, assets.checkpoints_dir, self.cfg.methods or None, self.cfg.device)
        except BaseException as err:
            self.demo.state, self.demo.error = "failed", f"{type(err).__name__}: {err}"
            self.store.status = ModelStatus("none", weights_msg)
            self.demo.done.set()
            raise
        self.store.add_run("demo", Path(assets.run_dir))
        if self.store.samples is None or self.store.samples.empty:
            self.store.load_samples()
        self.use_bank(bank, assets.checkpoints_dir)
        if weights_msg:
            self.store.status.message += f". Real weights: {weights_msg}"
        self.demo.state = "done"
        log.info("demo mode ready in %.1f s", time.perf_counter() - t0)
        self.demo.done.set()
        if self.cfg.warm_up:  # the demo run's projections and thumbnails, before a visitor asks
            self.warm_runs()

    def demo_line(self) -> str:
        d = self.demo
        if not d.steps:
            return "starting"
        return f"step {d.step} of {d.steps}: {d.name}{d.estimate()}"

    # -- what the visitor reads ------------------------------------------------------------------
    def status_line(self) -> str:
        """One line, always on top: live, demo, building, or what is missing. HTML-escaped."""
        s = self.store.status
        if self.demo.state == "building":
            return f"<span class='badge building'>⏳ Building demo mode</span> {md_escape(self.demo_line())}. " \
                + self.run_views_line()
        if s.mode == "loading":
            return f"<span class='badge building'>⏳ Loading models</span> {md_escape(s.message)}. " \
                + self.run_views_line()
        if s.mode == "live":
            bank = self.store.bank
            n = len(bank.ready) if bank else 0
            return (f"<span class='badge live'>● Live</span> {md_escape(bank.clip.config.model)} "
                    f"({md_escape(bank.clip.weights_id)}): {n} method{'s' if n != 1 else ''} ready.")
        if s.mode == "demo":
            return ("<span class='badge demo'>⚠ DEMO MODE: every score is meaningless</span> random-weight tiny "
                    "backbone, so the views can be explored.")
        return ("<span class='badge none'>No CLIP weights</span> Compare needs them; the run views work. "
                "See “Details”.")

    def run_views_line(self) -> str:
        """Only true words: the run views work when there is a run to show."""
        if self.store.runs:
            return "The run views already work."
        if self.demo.state == "building":
            return "The run views open with the demo run when it is built."
        return "The run views need a run (none yet)."

    def details(self) -> str:
        """The long form behind the status line (collapsed): what is loaded, missing, skipped. Markdown."""
        s = self.store.status
        lines = [f"**Models:** {md_escape(s.message.rstrip('.')) or 'none'}."]
        if s.mode == "demo":
            lines.append("DEMO MODE: every score is meaningless. The backbone has random weights; the checkpoints "
                         "were trained for a few steps on it only so that the views can be explored.")
        if s.mode == "none":
            lines.append(f"CLIP weights are not available. **To provide them:** `python app.py --clip-weights PATH` "
                         f"or `{WEIGHTS_ENV}=PATH` (an open_clip checkpoint file), then restart. The run views work "
                         "from the artifacts on disk.")
        if s.mode == "none" and self.cfg.demo == "offer" and self.demo.state == "idle":
            lines.append("You can also start **demo mode** (button below): a tiny random-weight backbone that makes "
                         "every view explorable, with scores that are meaningless.")
        if self.demo.state == "failed":
            lines.append(f"**Demo mode could not be built:** {md_escape(self.demo.error)}")
        bank = self.store.bank
        missing = [e for e in (bank.entries.values() if bank else []) if e.status != "ready"]
        if missing:
            lines.append("**Not available:**\n" + "\n".join(f"- {md_escape(e.label)}: {md_escape(e.message)}"
                                                             for e in missing))
        if self.store.skipped_runs:
            lines.append("**Run folders not shown:**\n" + "\n".join(
                f"- {md_escape(folder)}: {md_escape(why)}" for folder, why in self.store.skipped_runs.items()))
        lines += [md_escape(n) for n in self.notes]
        return hide_folders("\n\n".join(lines))  # visitors read names, never the server's folders

    def banner(self) -> str:
        """Status line and details in one Markdown text (the /status API's first value)."""
        return self.status_line() + "\n\n" + self.details()

    def public_status(self) -> tuple[str, str]:
        """(banner, details) for the /status API: the server's folders are no visitor's business, so every
        absolute path is cut to its last part (the log keeps the full paths)."""
        return hide_folders(self.banner()), hide_folders(self.details())

    # -- warm-up ---------------------------------------------------------------------------------
    def start_warm_up(self) -> threading.Thread:
        """In the background: compile numba, fit missing 2-D projections, make hover thumbnails."""
        from .umap_cache import warm_up

        def work():
            t0 = time.perf_counter()
            try:
                warm_up()
                self.warm_runs()
            except Exception:  # warm-up is an optimisation; a failure shows up again, with its message, on use
                log.exception("warm-up failed")
            finally:
                self.warmup_seconds = time.perf_counter() - t0
                self.warmup_done.set()
        th = threading.Thread(target=work, name="dfdet-warm-up", daemon=True)
        th.start()
        return th

    def warm_runs(self) -> None:
        for name, run in list(self.store.runs.items()):
            self.store.thumbnails(name)
            for m in run.methods:
                try:
                    self.store.projection(name, m, 2)
                except DfdetError as err:
                    log.warning("no projection for %s/%s: %s", name, m, err)
