"""The dashboard's back end in one object: the shared store, the start-up work and one service per view.

The UI (the `ui` package beside app.py) talks to the services directly (session.compare,
session.sphere, session.roc, session.errors); the few methods kept here are the names scripts and
tests used before the split, each a one-line delegation.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .services.compare import CompareService, video_faces  # noqa: F401 - re-exported (benches import it here)
from .services.errors import ErrorsService
from .services.explain import ExplainService
from .services.roc import RocService
from .services.sphere import SphereService, single_threaded  # noqa: F401 - re-exported
from .startup import Startup
from .store import COLOR_BY, SAMPLES, WEIGHTS_ENV, AppConfig, ModelStatus, Store, md_escape  # noqa: F401

if TYPE_CHECKING:
    from ..backbone import LoadedClip


class Session:
    def __init__(self, cfg: AppConfig, clip: LoadedClip | None = None, load_models: bool = True):
        """load_models=False leaves the models to load_models_async(), so a server can answer first."""
        self.cfg = cfg
        self.store = Store(cfg)
        self.startup = Startup(self.store)
        self.compare = CompareService(self.store)
        self.sphere = SphereService(self.store)
        self.roc = RocService(self.store)
        self.errors = ErrorsService(self.store)
        self.explain = ExplainService(self.store)  # saliency maps and the robustness probe (Compare)
        if load_models:
            self.startup.load_models(clip)
        else:
            self.store.status = ModelStatus("loading", self.startup.loading_message())

    # -- shared state, read through ---------------------------------------------------------------
    @property
    def status(self) -> ModelStatus:
        return self.store.status

    @property
    def bank(self):
        return self.store.bank

    @property
    def runs(self):
        return self.store.runs

    @property
    def samples(self):
        return self.store.samples

    @property
    def warmup_done(self):
        return self.startup.warmup_done

    @property
    def warmup_seconds(self):
        return self.startup.warmup_seconds

    # -- the pre-split names ------------------------------------------------------------------------
    def load_models_async(self):
        return self.startup.load_models_async()

    def start_warm_up(self):
        return self.startup.start_warm_up()

    def enable_demo(self) -> str:
        """Build demo mode now, in this thread (tests, scripts); the server builds it in the background."""
        self.startup.build_demo()
        return self.startup.request_demo()

    def banner(self) -> str:
        return self.startup.banner()

    def load_samples(self) -> None:
        self.store.load_samples()

    def reload_runs(self) -> None:
        self.store.reload_runs()

    def run(self, name):
        return self.store.run(name)

    def run_is_demo(self, run) -> bool:
        return self.store.run_is_demo(run)

    def run_label(self, name: str) -> str:
        return self.store.run_label(name)

    def face(self, source: str, row):
        return self.store.face(source, row)

    def describe(self, rec: dict) -> str:
        return self.store.describe(rec)

    def _align(self, image):
        return self.store.align(image)

    def analyse_image(self, path):
        return self.compare.image(path).prediction

    def analyse_video(self, path):
        return self.compare.video(path).prediction

    def analyse_sample(self, source: str, row):
        return self.compare.sample(source, row).prediction

    def random_row(self, dataset="any", source="any", label="any", seed=None) -> int:
        return self.compare.random_row(dataset, source, label, seed)

    def thumbnails(self, run_name):
        return self.store.thumbnails(run_name)

    def projection(self, run_name, method, dims=2):
        return self.store.projection(run_name, method, dims)

    def hypersphere(self, run_name, method, color_by="label", dims=2):
        return self.sphere.figure(run_name, method, color_by, dims)

    def point(self, run_name, row):
        image, text, _ = self.sphere.point(run_name, row)
        return image, text

    def random_pair(self, run_name, kind="different class", seed=None):
        return self.sphere.random_pair(run_name, kind, seed)

    def slerp_path(self, run_name, method, a, b, color_by="label", dims=2, steps=41):
        r = self.sphere.slerp(run_name, method, a, b, color_by, dims, steps)
        return r.sphere, r.curve, r.text

    def error_cases(self, run_name, method, dataset="all", threshold=0.5, k=12):
        return self.errors.cases(run_name, method, dataset, threshold, k, one_per_video=False).items

    def sample_filters(self):
        return self.store.sample_filters()
