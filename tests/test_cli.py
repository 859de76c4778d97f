"""The CLI, driven in-process through main(argv)."""
import subprocess
import sys

import pytest

from dfdet.cli import COMMANDS, build_parser, main
from dfdet.methods import PAPER_METHODS

TINY = ["--model", "dfdet-tiny-vit", "--pretrained", "none"]


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in ("train", "evaluate", "predict", "embed", "methods"):
        assert name in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_explains_every_option(name, capsys):
    parser = build_parser(only=name)
    sub = next(a for a in parser._actions if a.dest == "command").choices.get(name)
    if sub is None or not sub.add_help:
        pytest.skip(f"{name} is not part of this build")
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"dfdet {name} {action.option_strings} has no help text"


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "dfdet", "methods"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for m in PAPER_METHODS:
        assert m in out.stdout


def test_train_evaluate_predict_embed_end_to_end(dfdc_manifest, tmp_path, capsys, shared):
    import numpy as np
    manifest, root = dfdc_manifest
    ck = tmp_path / "checkpoints"
    assert main(["train", "--method", "ln_norm", "--manifest", str(manifest), "--data-root", str(root),
                 "--epochs", "1", "--batch-size", "16", "--set", "lr=1e-3", "--out", str(ck / "ln_norm"), *TINY]) == 0
    assert (ck / "ln_norm" / "model.safetensors").is_file()
    assert main(["evaluate", "--manifest", str(manifest), "--data-root", str(root), "--checkpoints", str(ck),
                 "--methods", "ln_norm", "--out", str(tmp_path / "run"), *TINY]) == 0
    out = capsys.readouterr().out
    assert "meaningless" in out and "AUROC" in out and (tmp_path / "run" / "run.json").is_file()
    img = str(next((root / "DFDC" / "fake").rglob("*.jpg")))
    assert main(["predict", img, img, "--checkpoints", str(ck), "--methods", "ln_norm",
                 "--csv", str(tmp_path / "p.csv"), *TINY]) == 0
    out = capsys.readouterr().out
    assert "p_fake" in out and "LN + Norm" in out and "meaningless" in out
    assert (tmp_path / "p.csv").read_text().count("\n") == 3
    assert main(["embed", "--manifest", str(manifest), "--data-root", str(root), "--method", "ln_norm",
                 "--checkpoints", str(ck), "--split", "test", "--out", str(tmp_path / "e.npz"), *TINY]) == 0
    e = np.load(tmp_path / "e.npz")
    assert e["z"].shape == (16, 64) and e["z"].dtype == np.float16


@pytest.mark.parametrize("argv,needle", [
    (["train", "--method", "ln_norm", "--manifest", "/nope.csv", *TINY], "manifest not found: /nope.csv"),
    (["predict", "/nope.png", *TINY], "nope.png: file not found"),
    (["evaluate", "--manifest", "/nope.csv", *TINY], "manifest not found"),
])
def test_bad_input_is_one_clear_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
