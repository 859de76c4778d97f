"""The one place dfdet talks to the Hugging Face Hub (through `huggingface_hub.HfApi`).

A pushed repo holds exactly a dfdet checkpoint folder plus a generated model card; a pull downloads
into a staging folder, validates (or converts) it, and only then moves it into place, so a failed or
interrupted pull never leaves a half checkpoint where the dashboard would list it. Hub failures
become `HubError`s that say what to do (offline, not found, not logged in), never tracebacks.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from pathlib import Path

from ..checkpoint import META_FILE, WEIGHTS_FILE, load_tensors, read_meta
from ..errors import CheckpointError, DfdetError
from .card import CARD_FILE, model_card
from .imported import BACKBONE_FILE

DFDET_FILES = (WEIGHTS_FILE, META_FILE, BACKBONE_FILE, CARD_FILE)  # what a dfdet repo holds
GEND_FILES = ("model.safetensors", "config.json")
PAPER_CKPT = "model.ckpt"
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class HubError(DfdetError):
    """The Hub could not be reached or refused the request."""


def is_repo_id(ref: str) -> bool:
    """'owner/name' that is not a local path: what the app treats as a Hub reference."""
    return bool(_REPO_ID.match(ref)) and not Path(ref).exists()


def _api(token: str | None = None):
    from huggingface_hub import HfApi
    return HfApi(token=token)


@contextlib.contextmanager
def hub_errors(action: str, repo_id: str):
    """Turn huggingface_hub / network exceptions into one actionable message."""
    from huggingface_hub import errors as E
    try:
        yield
    except E.OfflineModeIsEnabled:
        raise HubError(f"cannot {action} {repo_id}: offline mode is on (HF_HUB_OFFLINE=1), so the Hugging Face Hub "
                       "is not contacted. Unset HF_HUB_OFFLINE on a machine with network, or use a local "
                       "checkpoint folder instead.") from None
    except E.GatedRepoError:
        raise HubError(f"cannot {action} {repo_id}: the repository is gated; accept its terms on "
                       f"https://huggingface.co/{repo_id} and log in with `hf auth login` (or pass --token)") from None
    except E.RepositoryNotFoundError:
        raise HubError(f"cannot {action} {repo_id}: repository not found, or private and you are not logged in. "
                       "Check the name, or log in with `hf auth login` (or pass --token).") from None
    except E.RevisionNotFoundError:
        raise HubError(f"cannot {action} {repo_id}: that revision does not exist") from None
    except E.LocalTokenNotFoundError:
        raise HubError(f"cannot {action} {repo_id}: not logged in to the Hugging Face Hub; run `hf auth login` "
                       "or pass --token") from None
    except E.HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubError(f"cannot {action} {repo_id}: the Hub refused the request ({status}); log in with "
                           "`hf auth login` with a token that can write to it, or pass --token") from None
        raise HubError(f"cannot {action} {repo_id}: the Hub answered {status}: {str(err).splitlines()[0]}") from None
    except DfdetError:
        raise
    except (E.LocalEntryNotFoundError, ConnectionError, TimeoutError, OSError) as err:
        from huggingface_hub import constants
        if constants.HF_HUB_OFFLINE:
            raise HubError(f"cannot {action} {repo_id}: offline mode is on (HF_HUB_OFFLINE=1) and it is not in the "
                           "local cache. Unset HF_HUB_OFFLINE on a machine with network, or use a local checkpoint "
                           "folder instead.") from None
        raise HubError(f"cannot {action} {repo_id}: the Hugging Face Hub (huggingface.co) cannot be reached "
                       f"({type(err).__name__}). Check the network connection (or HF_ENDPOINT); offline, use a "
                       "local checkpoint folder instead.") from None
    except Exception as err:  # httpx transport errors (ConnectError, timeouts) are not OSErrors
        if type(err).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
            raise HubError(f"cannot {action} {repo_id}: the Hugging Face Hub (huggingface.co) cannot be reached "
                           f"({type(err).__name__}). Check the network connection; offline, use a local "
                           "checkpoint folder instead.") from None
        raise


def _validate(folder: Path) -> dict:
    meta = read_meta(folder)
    load_tensors(folder)
    return meta


def check_repo_id(repo_id: str) -> None:
    """Refuse anything but OWNER/NAME before a push stages files."""
    if not _REPO_ID.match(repo_id):
        raise HubError(f"{repo_id!r} is not a Hub repository id; expected OWNER/NAME")


def push(folder: str | Path, repo_id: str, *, private: bool | None = None, token: str | None = None,
         revision: str | None = None, message: str | None = None) -> str:
    """Upload a checkpoint folder with a generated model card; returns the commit URL."""
    folder = Path(folder)
    meta = _validate(folder)
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="dfdet-push-") as stage:
        stage = Path(stage)
        for name in (WEIGHTS_FILE, META_FILE, BACKBONE_FILE):
            if (folder / name).is_file():
                shutil.copy2(folder / name, stage / name)
        (stage / CARD_FILE).write_text(model_card(meta, repo_id))
        api = _api(token)
        with hub_errors("push to", repo_id):
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            info = api.upload_folder(repo_id=repo_id, folder_path=str(stage), repo_type="model", revision=revision,
                                     commit_message=message or f"dfdet {meta['method']} checkpoint")
    return str(getattr(info, "commit_url", info))


def pull(repo_id: str, out: str | Path, *, revision: str | None = None, token: str | None = None,
         force: bool = False, import_ckpt: bool = False) -> Path:
    """Download a dfdet checkpoint (or convert a GenD one) from the Hub into `out`."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise CheckpointError(f"{out} already exists and is not empty; choose another --out or pass --force")
    api = _api(token)
    with hub_errors("pull", repo_id):
        files = set(api.list_repo_files(repo_id, revision=revision, repo_type="model"))
    if {WEIGHTS_FILE, META_FILE} <= files:
        kind, wanted = "dfdet", [f for f in DFDET_FILES if f in files]
    elif set(GEND_FILES) <= files:
        kind, wanted = "gend", list(GEND_FILES)
    elif PAPER_CKPT in files and import_ckpt:
        kind, wanted = "paper", [PAPER_CKPT]
    elif PAPER_CKPT in files:
        raise HubError(f"{repo_id} holds a PyTorch Lightning checkpoint ({PAPER_CKPT}), not a dfdet one. It is a "
                       "pickle, so dfdet converts it only when asked: add --import-ckpt (it is then read with "
                       "torch.load(weights_only=True) and converted like `dfdet import-checkpoint`).")
    else:
        raise HubError(f"{repo_id} holds no dfdet checkpoint ({WEIGHTS_FILE} + {META_FILE}); files: "
                       f"{sorted(files)[:12]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    download = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.pull-"))
    try:
        with hub_errors("pull", repo_id):
            api.snapshot_download(repo_id, revision=revision, repo_type="model", allow_patterns=wanted,
                                  local_dir=str(download))
        missing = [f for f in wanted if not (download / f).is_file()]
        if missing:
            raise HubError(f"pull {repo_id}: the download lacks {missing}")
        if kind == "dfdet":
            _validate(download)
            _place(download, out)
        elif kind == "gend":
            from .gend import import_gend
            import_gend(download, out, force=force)
        else:
            from .paper import import_paper
            import_paper(download / PAPER_CKPT, out, force=force)
        _note_origin(out, repo_id, revision)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return out


def _place(stage: Path, out: Path) -> None:
    """Move a validated download into `out` in one rename (replacing an old `out` only after that)."""
    keep = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.new-"))
    for name in DFDET_FILES:
        if (stage / name).is_file():
            shutil.move(str(stage / name), keep / name)
    from ..swap import swap_folder
    swap_folder(keep, out)  # the old or the new checkpoint in place at every instant


def _note_origin(folder: Path, repo_id: str, revision: str | None) -> None:
    """Record the Hub repo a checkpoint was pulled from in its sidecar (atomic rewrite)."""
    from ..fileio import atomic_write
    meta = read_meta(folder)
    meta["hub"] = {"repo": repo_id, "revision": revision}
    atomic_write(folder / META_FILE,
                        lambda p: Path(p).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str)))


def resolve(ref: str, root: str | Path = "checkpoints", **kw) -> Path:
    """A local checkpoint folder, or a Hub repo id pulled into `root/<name>` (reused if already there)."""
    if Path(ref).is_dir():
        return Path(ref)
    if not is_repo_id(ref):
        raise CheckpointError(f"{ref!r} is neither a checkpoint folder nor a Hub repository id (OWNER/NAME)")
    out = Path(root) / ref.split("/")[-1]
    if out.is_dir():
        try:
            if read_meta(out).get("hub", {}).get("repo") == ref:
                return out  # pulled before: no network needed
        except CheckpointError:
            pass
        if any(out.iterdir()):
            raise CheckpointError(f"{out} exists and is not a pull of {ref}; move it away or pull with --out")
    return pull(ref, out, force=True, **kw)
