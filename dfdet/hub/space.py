"""What a dashboard with network fetches at start, as its owner's settings allow (nothing by default):

- the authors' released models, imported as live rows: the paper's (`yermandy/deepfake-detection`,
  a pickled Lightning checkpoint, read with torch.load(weights_only=True)) and GenD
  (`yermandy/GenD_CLIP_L_14`), when `--import-released` / `$DFDET_IMPORT_RELEASED=1`;
- dfdet checkpoints from the Hub repos in `--hub-checkpoints` / `$DFDET_HUB_CHECKPOINTS`
  (one checkpoint per repo, as `dfdet push` publishes it);
- run folders from the repos in `--hub-runs` / `$DFDET_HUB_RUNS` (as `dfdet push RUN_FOLDER` publishes them).

Each download is one named step with its own progress line; a repo that fails is skipped with a
one-line note, the others still load. Everything goes through dfdet.hub.remote (validated, staged,
never half-placed) and is reused by later starts without network.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import DfdetError
from .remote import HubError, hub_errors, is_repo_id, resolve

PAPER_REPO = "yermandy/deepfake-detection"
GEND_REPO = "yermandy/GenD_CLIP_L_14"
RELEASED = ((PAPER_REPO, "paper_authors", True), (GEND_REPO, "gend_authors", False))  # repo, folder, pickled
ENV_CHECKPOINTS = "DFDET_HUB_CHECKPOINTS"  # space- or comma-separated OWNER/NAME list
ENV_RUNS = "DFDET_HUB_RUNS"
ENV_RELEASED = "DFDET_IMPORT_RELEASED"  # "1": import the authors' models at start
RUN_FILES = ("run.json", "predictions.csv", "metrics.json", "roc.json")
_EMBEDDINGS = re.compile(r"embeddings/[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}\.npz")  # a run's embeddings files
_PROJECTIONS = re.compile(r"projections/[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}\.npz")  # its stored UMAP projections

Progress = Callable[[int, int, str], None]  # (download number from 1, downloads, what)


@dataclass
class Fetched:
    checkpoints: list[Path]  # checkpoint folders now under the checkpoints root
    runs: list[Path]  # run folders now under the runs root
    notes: list[str]  # one line per repo: fetched, reused or skipped (and why)


def repos_from(values: list[str] | None, env: str) -> list[str]:
    """The repos a setting names: the command-line list, else the environment variable's."""
    if values:
        return [v for v in values if v]
    return [v for v in os.environ.get(env, "").replace(",", " ").split() if v]


def released_wanted(flag: bool) -> bool:
    return flag or os.environ.get(ENV_RELEASED, "") in ("1", "true", "yes")


def fetch_all(checkpoint_repos: list[str], run_repos: list[str], import_released: bool,
              checkpoints_root: str | Path, runs_root: str | Path, progress: Progress | None = None,
              token: str | None = None) -> Fetched:
    """Fetch everything the settings name; never raises for one repo's failure."""
    jobs: list[tuple[str, str, Callable[[], Path]]] = []
    ck_root, runs_root = Path(checkpoints_root), Path(runs_root)
    if import_released:
        for repo, folder, pickled in RELEASED:
            jobs.append(("checkpoint", repo, lambda r=repo, f=folder, p=pickled: resolve_to(
                r, ck_root / f, import_ckpt=p, token=token)))
    for repo in checkpoint_repos:
        jobs.append(("checkpoint", repo, lambda r=repo: resolve(r, ck_root, token=token)))
    for repo in run_repos:
        jobs.append(("run", repo, lambda r=repo: pull_run(r, runs_root, token=token)))
    out = Fetched([], [], [])
    for i, (kind, repo, work) in enumerate(jobs, start=1):
        if progress is not None:
            progress(i, len(jobs), f"download {kind} {repo}")
        try:
            if not is_repo_id(repo):
                raise HubError(f"{repo!r} is not a Hub repository id (OWNER/NAME)")
            folder = work()
        except Exception as err:  # noqa: BLE001 - one bad repo (any error) is skipped; the others still load
            why = str(err) if isinstance(err, DfdetError) else f"{type(err).__name__}: {err}"
            out.notes.append(f"{kind} {repo} skipped: {' '.join(why.split())[:300]}")
            continue
        (out.checkpoints if kind == "checkpoint" else out.runs).append(folder)
        out.notes.append(f"{kind} {repo}: {folder}")
    return out


def resolve_to(repo: str, folder: Path, **kw) -> Path:
    """A released model pulled (and converted) into `folder`, or reused from an earlier start."""
    from ..checkpoint import read_meta
    from .remote import pull
    if folder.is_dir():
        try:
            if read_meta(folder).get("hub", {}).get("repo") == repo:
                return folder
        except DfdetError:
            pass
    return pull(repo, folder, force=True, **kw)


def pull_run(repo: str, runs_root: Path, token: str | None = None) -> Path:
    """A run folder published with `dfdet push RUN`: downloaded, checked with load_run, then placed whole."""
    from ..artifacts import load_run
    from .remote import _api
    out = runs_root / repo.split("/")[-1]
    origin = out / ".hub_repo"
    if out.is_dir() and origin.is_file() and origin.read_text().strip() == repo:
        return out  # pulled before: no network needed
    if out.exists() and any(out.iterdir()):
        raise HubError(f"{out} exists and is not a pull of {repo}; move it away first")
    api = _api(token)
    with hub_errors("pull", repo):
        files = set(api.list_repo_files(repo, repo_type="model"))
    if not set(RUN_FILES) <= files:
        raise HubError(f"{repo} holds no dfdet run folder ({', '.join(RUN_FILES)}); files: {sorted(files)[:12]}")
    wanted = [f for f in files if f in RUN_FILES or _EMBEDDINGS.fullmatch(f)  # never "..", never a subfolder
              or _PROJECTIONS.fullmatch(f)]
    runs_root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=runs_root, prefix=f".{out.name}.pull-"))
    try:
        with hub_errors("pull", repo):
            api.snapshot_download(repo, repo_type="model", allow_patterns=wanted, local_dir=str(stage))
        try:
            load_run(stage)  # a damaged or foreign folder is refused before it is listed
        except Exception as err:  # noqa: BLE001 - run.json of [], a bad CSV...: not a run this dfdet reads
            why = str(err) if isinstance(err, DfdetError) else f"{type(err).__name__}: {err}"
            raise HubError(f"{repo} is not a readable dfdet run folder ({' '.join(why.split())[:200]})") from None
        (stage / ".hub_repo").write_text(repo + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


def push_run(folder: str | Path, repo_id: str, *, private: bool | None = None, token: str | None = None,
             message: str | None = None) -> str:
    """Publish a run folder (what the dashboard reads) to a Hub repo; returns the commit URL."""
    from ..artifacts import load_run
    from .remote import _api, check_repo_id
    folder = Path(folder)
    run = load_run(folder)
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="dfdet-push-run-") as stage:
        stage = Path(stage)
        for name in RUN_FILES:
            shutil.copy2(folder / name, stage / name)
        if (folder / "embeddings").is_dir():
            shutil.copytree(folder / "embeddings", stage / "embeddings",
                            ignore=lambda d, names: [n for n in names if not n.endswith(".npz")])
        if (folder / "projections").is_dir():  # a Space then shows the run without fitting UMAP at start
            shutil.copytree(folder / "projections", stage / "projections",
                            ignore=lambda d, names: [n for n in names if not n.endswith(".npz") or n.startswith(".")])
        bb = run.info.get("backbone", {})
        (stage / "README.md").write_text(
            f"---\ntags: [dfdet, deepfake-detection, evaluation-run]\n---\n# dfdet run {folder.name}\n\n"
            f"Evaluation run written by `dfdet evaluate`: {len(run.predictions)} faces, methods "
            f"{', '.join(run.methods)}, backbone {bb.get('model')} ({bb.get('weights')})."
            + (" DEMO: random-weight backbone, the scores are meaningless." if run.info.get("demo") else "")
            + "\n\nShow it in the dashboard: `python app.py --hub-runs " + repo_id + "`.\n")
        api = _api(token)
        with hub_errors("push to", repo_id):
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            info = api.upload_folder(repo_id=repo_id, folder_path=str(stage), repo_type="model",
                                     commit_message=message or f"dfdet run {folder.name}")
    return str(getattr(info, "commit_url", info))
