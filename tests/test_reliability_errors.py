"""Clear one-line errors instead of tracebacks (issue #11 §4): configs, --set values, YAML tags and aliases,
output paths that cannot be written, and the right words for symlink loops and unreadable files."""
from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

import pytest
from PIL import Image

from test_reliability_helpers import TINY_ARGS, run_cli

BILLION_LAUGHS = "a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
    f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def train(tmp: Path, *extra: str):
    return run_cli(["train", "--method", "linear_probe", "--manifest", str(tmp / "m.csv"), "--out", str(tmp / "out"),
                    *extra, *TINY_ARGS], seconds=120)  # a hang guard only: a loaded CI machine is slow


CONFIGS = {  # --config file text: what the one-line error must say
    "unknown-key": ("lr: 1e-4\nlearning_rate: 3\n", r"unknown config key\(s\) learning_rate"),
    "unknown-nested-key": ("backbone:\n  modle: x\n", r"unknown config key\(s\) backbone.modle"),
    "syntax": ("lr: [1e-4\nepochs: 2\n", r"not valid YAML at line \d+, column \d+"),
    "python-tag": ("lr: !!python/object/apply:os.system ['echo PWNED']\n", r"no tags such as !!python/object"),
    "billion-laughs": (BILLION_LAUGHS, r"YAML aliases \(\*name\) are not allowed"),
    "top-level-list": ("- 1\n- 2\n", r"expected a mapping at the top level"),
    "wrong-type": ("epochs: ten\n", r"config field 'epochs' expects int, got 'ten'"),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_a_bad_config_file_is_one_line(tmp_path, case):
    text, message = CONFIGS[case]
    (tmp_path / "c.yaml").write_text(text)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, hard))  # an alias bomb must fail, not eat the machine
    try:
        r = train(tmp_path, "--config", str(tmp_path / "c.yaml"))
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert r.rc == 2 and not r.crashed and "Traceback" not in r.text, r.crashed[-800:]
    assert __import__("re").search(message, r.err), r.err
    assert not (tmp_path / "out").exists()


SETS = {  # --set value: the message
    "lr=abc": "'lr' expects float, got 'abc'", "epochs=1.5": "'epochs' expects int, got 1.5",
    "epochs=true": "'epochs' expects int, got True", "batch_size=[1]": "'batch_size' expects int, got [1]",
    "betas=abc": "'betas' expects 2 values", "betas=[1,2,3]": "'betas' expects 2 values",
    "slerp_t=[a, b]": "'slerp_t' expects float, got 'a'", "backbone=5": "'backbone' is a group of settings",
    "augment=5": "'augment' expects str, got 5", "datasets=x": "'datasets' expects a list",
    "seed=": "'seed' expects int, got None", "lr={a": "not valid YAML",
    "lr=!!python/object/apply:os.system [x]": "no tags such as !!python/object", "nokey": "must look like key=value",
    "backbone.model.x=1": "model is not a group of settings",
}


@pytest.mark.parametrize("item", list(SETS))
def test_a_bad_set_value_is_one_line(tmp_path, item):
    r = train(tmp_path, "--set", item)
    assert r.rc == 2 and not r.crashed and "Traceback" not in r.text, r.crashed[-800:]
    assert SETS[item] in r.err, r.err


@pytest.mark.parametrize("target", ["folder", "proc"])
@pytest.mark.parametrize("command", ["split", "manifest"])
def test_an_output_that_cannot_be_written_is_one_line_and_leaves_nothing(dfdc_manifest, tmp_path, command, target):
    manifest, root = dfdc_manifest
    out = tmp_path / "outdir" if target == "folder" else Path("/proc/dfdet_x")
    if target == "folder":
        out.mkdir()
    data = tmp_path / "data"
    for rel in ("DS/real/v0/000.png", "DS/fake/v1/000.png"):
        (data / rel).parent.mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(data / rel)
    argv = (["split", str(manifest), "-o", str(out)] if command == "split"
            else ["manifest", str(data), "-o", str(out)])
    r = run_cli(argv)
    assert r.rc == 2 and not r.crashed, r.crashed[-800:]
    assert f"cannot write {out}: " in r.err, r.err
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_symlink_loop_is_named_as_one(tmp_path):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    r = run_cli(["predict", str(loop), *TINY_ARGS])
    assert "loop.png: a symlink loop" in r.err and "not found" not in r.err, r.err


def test_a_permission_error_is_not_called_damage(tmp_path, monkeypatch):
    """As root a chmod 000 file is still readable, so the refusal the OS would give is raised where PIL opens it."""
    from dfdet import images
    img = tmp_path / "face.png"
    Image.new("RGB", (64, 64)).save(img)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(img))
    monkeypatch.setattr(images.Image, "open", denied)
    with pytest.raises(images.DataError) as err:
        images.open_image(img)
    assert "permission denied" in str(err.value) and "damaged" not in str(err.value)
