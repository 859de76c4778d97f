"""`dfdet push` / `dfdet pull` and the model card.

The Hub is replaced at the boundary only: `huggingface_hub.HfApi` becomes a folder-backed stand-in
with the same methods; everything above it (validation, staging, conversion, the card) runs for real.
Offline behaviour is tested with the real huggingface_hub in offline mode.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import httpx
import huggingface_hub
import pytest
import torch
from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from dfdet.checkpoint import load_tensors, read_meta, save_checkpoint
from dfdet.cli import main
from dfdet.hub.card import model_card
from dfdet.hub.remote import HubError, is_repo_id, pull, push, resolve
from dfdet.methods import get_method
from dfdet.model import build_model, trainable_state


class LocalHub:
    """HfApi stand-in: each repo is a folder under `root`; records every call."""
    root: Path
    calls: list

    def __init__(self, token=None):
        self.token = token

    def _repo(self, repo_id: str) -> Path:
        path = self.root / repo_id
        if not path.is_dir():
            req = httpx.Request("GET", f"https://huggingface.co/api/models/{repo_id}")
            raise RepositoryNotFoundError(f"404 {repo_id}", response=httpx.Response(404, request=req))
        return path

    def create_repo(self, repo_id, *, private=None, exist_ok=False, repo_type=None):
        self.calls.append(("create_repo", repo_id, private))
        (self.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, revision=None, commit_message=None):
        self.calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
        shutil.copytree(folder_path, self._repo(repo_id), dirs_exist_ok=True)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/abc")

    def list_repo_files(self, repo_id, *, revision=None, repo_type=None):
        self.calls.append(("list_repo_files", repo_id))
        root = self._repo(repo_id)
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def snapshot_download(self, repo_id, *, revision=None, repo_type=None, allow_patterns=None, local_dir=None):
        self.calls.append(("snapshot_download", repo_id, sorted(allow_patterns)))
        root = self._repo(repo_id)
        for p in root.rglob("*"):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and (allow_patterns is None or rel in allow_patterns):
                (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, Path(local_dir) / rel)
        return str(local_dir)


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    root.mkdir()
    cls = type("Hub", (LocalHub,), {"root": root, "calls": []})
    monkeypatch.setattr(huggingface_hub, "HfApi", cls)
    return cls


def trained_checkpoint(clip, folder: Path, method: str = "ln_norm") -> Path:
    """A checkpoint as the trainer writes it (tensors = the method's trainable parameters)."""
    model = build_model(clip, method)
    torch.manual_seed(0)
    with torch.no_grad():
        model.head.weight.normal_()
    meta = {"method": method, "label": get_method(method).label,
            "backbone": {"model": clip.config.model, "weights": clip.weights_id},
            "config": {"manifest": "data_manifests/ff.csv", "train_split": "train", "val_split": "val",
                       "datasets": ["FF"]},
            "manifests": {"data_manifests/ff.csv": "a" * 64},
            "val_metrics": {"auroc": 0.8123, "frame": {"eer": 0.25}, "n": 40}, "best_epoch": 3,
            "trainable_params": 898}
    return save_checkpoint(folder, trainable_state(model), meta)


def test_push_then_pull_round_trip(tmp_path, tiny_clip, hub):
    ckpt = trained_checkpoint(tiny_clip, tmp_path / "runs" / "ln_norm")
    assert main(["push", str(ckpt), "me/dfdet-ln-norm"]) == 0
    repo = hub.root / "me/dfdet-ln-norm"
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "dfdet.json", "model.safetensors"]
    assert (repo / "model.safetensors").read_bytes() == (ckpt / "model.safetensors").read_bytes()

    out = tmp_path / "checkpoints" / "ln_norm"
    assert main(["pull", "me/dfdet-ln-norm", "--out", str(out)]) == 0
    assert (out / "model.safetensors").read_bytes() == (ckpt / "model.safetensors").read_bytes()
    pulled, original = read_meta(out), read_meta(ckpt)
    assert pulled.pop("hub") == {"repo": "me/dfdet-ln-norm", "revision": None}
    assert pulled == original
    assert "## Validation metrics" in (out / "README.md").read_text()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_model_card_states_method_backbone_data_and_metrics(tmp_path, tiny_clip):
    meta = read_meta(trained_checkpoint(tiny_clip, tmp_path / "c"))
    card = model_card(meta, "me/repo")
    spec = get_method("ln_norm")
    assert card.startswith("---\nlibrary_name: dfdet\n")
    assert spec.label in card and spec.description in card
    assert "open_clip `dfdet-tiny-vit`, weights `random-init-seed0`" in card
    assert "randomly initialised" in card  # a random backbone is never presented as a detector
    assert "`data_manifests/ff.csv`" in card and "a" * 64 in card and "Datasets: FF" in card
    assert "| auroc | 0.8123 |" in card and "| frame.eer | 0.2500 |" in card and "| n | 40 |" in card
    assert "best epoch 3" in card and "dfdet pull me/repo" in card


def test_card_of_an_openai_backbone_names_its_base_model():
    meta = {"method": "ln_norm_slerp", "backbone": {"model": "ViT-L-14", "weights": "openai"},
            "display_name": "Paper (authors' model)", "source": "imported from the paper's checkpoint",
            "imported": {"file": "model.ckpt"}, "val_metrics": None, "backbone_file": {"file": "backbone.safetensors"}}
    card = model_card(meta)
    assert "base_model: openai/clip-vit-large-patch14" in card and "randomly initialised" not in card
    assert "# Paper (authors' model)" in card and "Imported from the paper's checkpoint (model.ckpt)." in card
    assert "the imported source ships none" in card
    assert "--clip-weights checkpoints/REPO_ID/backbone.safetensors" in card


def test_push_refuses_a_folder_that_is_not_a_checkpoint(tmp_path, hub, capsys):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "weights.bin").write_bytes(b"x")
    assert main(["push", str(tmp_path / "junk"), "me/x"]) == 2
    assert "not a dfdet checkpoint" in capsys.readouterr().err
    assert hub.calls == []  # nothing was sent


def test_pull_converts_a_gend_repository(tmp_path, hub):
    from test_hub_synthetic import save_gend
    save_gend(hub.root / "yermandy/GenD_tiny")
    out = pull("yermandy/GenD_tiny", tmp_path / "checkpoints" / "gend")
    meta = read_meta(out)
    assert meta["method"] == "ln_norm" and meta["hub"]["repo"] == "yermandy/GenD_tiny"
    assert meta["imported"]["dropped_keys"] == 0 and (out / "backbone.safetensors").is_file()


def test_pull_of_a_pickled_checkpoint_needs_an_explicit_request(tmp_path, hub, capsys):
    from test_hub_synthetic import PaperModel, hyper_parameters, save_paper_ckpt
    (hub.root / "yermandy/deepfake-detection").mkdir(parents=True)
    save_paper_ckpt(hub.root / "yermandy/deepfake-detection/model.ckpt", PaperModel(True, True),
                    hyper_parameters(True, True, True))
    out = tmp_path / "checkpoints" / "paper"
    assert main(["pull", "yermandy/deepfake-detection", "--out", str(out)]) == 2
    assert "--import-ckpt" in capsys.readouterr().err and not out.exists()
    assert not any(c[0] == "snapshot_download" for c in hub.calls)  # the pickle was not even downloaded
    assert main(["pull", "yermandy/deepfake-detection", "--out", str(out), "--import-ckpt"]) == 0
    assert read_meta(out)["method"] == "ln_norm_slerp"


def test_pull_of_an_unknown_repository_says_so(tmp_path, hub, capsys):
    assert main(["pull", "me/nothing-here", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "hf auth login" in err and "Traceback" not in err


def test_incomplete_download_leaves_nothing_behind(tmp_path, tiny_clip, hub, monkeypatch):
    trained_checkpoint(tiny_clip, hub.root / "me/broken")
    (hub.root / "me/broken/model.safetensors").write_bytes(b"truncated")
    out = tmp_path / "checkpoints" / "broken"
    with pytest.raises(Exception, match="not a valid safetensors"):
        pull("me/broken", out)
    assert not out.exists() and not list((tmp_path / "checkpoints").iterdir())


def test_existing_folder_needs_force(tmp_path, tiny_clip, hub):
    trained_checkpoint(tiny_clip, hub.root / "me/ok")
    out = tmp_path / "ok"
    pull("me/ok", out)
    with pytest.raises(Exception, match="--force"):
        pull("me/ok", out)
    assert pull("me/ok", out, force=True) == out and load_tensors(out)


def test_resolve_reuses_a_previous_pull_without_network(tmp_path, tiny_clip, hub, monkeypatch):
    trained_checkpoint(tiny_clip, hub.root / "me/app-model")
    root = tmp_path / "checkpoints"
    first = resolve("me/app-model", root)
    n_calls = len(hub.calls)
    assert resolve("me/app-model", root) == first and len(hub.calls) == n_calls
    assert resolve(str(first)) == first  # a local folder is used as is
    assert is_repo_id("me/app-model") and not is_repo_id(str(first)) and not is_repo_id("a/b/c")


@pytest.mark.parametrize("command", [["pull", "yermandy/GenD_CLIP_L_14"], ["push", "CKPT", "me/x"]])
def test_offline_says_so_clearly(tmp_path, tiny_clip, monkeypatch, capsys, command):
    """The real huggingface_hub in offline mode: no request leaves, and the message names the cause."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    ckpt = trained_checkpoint(tiny_clip, tmp_path / "ckpt")
    argv = [str(ckpt) if a == "CKPT" else a for a in command]
    assert main(argv + (["--out", str(tmp_path / "out")] if argv[0] == "pull" else [])) == 2
    err = capsys.readouterr().err
    assert "offline" in err and "HF_HUB_OFFLINE" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_unreachable_hub_says_so(tmp_path, monkeypatch, capsys):
    class Down:
        def __init__(self, token=None):
            pass

        def list_repo_files(self, *a, **k):
            raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", Down)
    assert main(["pull", "me/x", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "cannot be reached" in err and "ConnectError" in err and "Traceback" not in err


def test_rejected_token_says_how_to_log_in(tmp_path, tiny_clip, monkeypatch):
    class NoAuth:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **k):
            req = httpx.Request("POST", "https://huggingface.co/api/repos/create")
            raise HfHubHTTPError("401 Unauthorized", response=httpx.Response(401, request=req))

    monkeypatch.setattr(huggingface_hub, "HfApi", NoAuth)
    with pytest.raises(HubError, match="hf auth login"):
        push(trained_checkpoint(tiny_clip, tmp_path / "c"), "me/x")


def test_push_uploads_the_backbone_of_an_imported_checkpoint(tmp_path, hub):
    from dfdet.hub.paper import convert_paper
    from dfdet.hub.imported import write_imported
    from test_hub_synthetic import PaperModel, hyper_parameters, lightning_checkpoint
    model = PaperModel(True, True, seed=9)
    folder = write_imported(convert_paper(lightning_checkpoint(model, hyper_parameters(True, True, True))),
                            tmp_path / "paper")
    push(folder, "me/paper", private=True)
    assert ("create_repo", "me/paper", True) in hub.calls
    assert sorted(p.name for p in (hub.root / "me/paper").iterdir()) == \
        ["README.md", "backbone.safetensors", "dfdet.json", "model.safetensors"]
    out = pull("me/paper", tmp_path / "pulled")
    assert (out / "backbone.safetensors").read_bytes() == (folder / "backbone.safetensors").read_bytes()
