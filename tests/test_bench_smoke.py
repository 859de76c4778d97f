"""Every bench script runs end to end at tiny sizes, so the benchmarks cannot rot.

No timing is asserted here (timing targets live in bench/ results files); what is checked is
that each script measures what it says: both paths compute the same thing, the report carries
command, date and machine, and the tables hold finite numbers for every variant.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

TINY = "dfdet-tiny-vit"


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0] == first_cell:
            rows.append(cells)
    return rows


def number(cell: str) -> float:
    return float(cell.rstrip("%"))


def check_header(text: str, module: str) -> None:
    assert text.startswith("# ")
    assert f"- command: `python -m bench.{module} " in text
    assert re.search(r"- date: \d{4}-\d\d-\d\d \d\d:\d\d", text)
    assert "- cpu: " in text and "torch " in text


@pytest.mark.parametrize("seconds, shown", [(0.04, "0.0400"), (0.00012345, "0.000123"), (0.5, "0.500"),
                                             (1.0, "1.00"), (12.5, "12.50"), (0.0, "0.00"), (None, "n/a")])
def test_a_duration_keeps_three_significant_digits(seconds, shown):
    """A fast runner's 40 ms first score once printed as 0.0 and failed a `> 0` check in CI."""
    from bench.common import secs
    assert secs(seconds) == shown


def test_bench_inference_smoke(tmp_path):
    from bench import bench_inference
    out = bench_inference.main(["--model", TINY, "--batch-sizes", "1,2", "--precisions", "fp32,bf16", "--rounds", "1",
                                "--warmup", "0", "--out", str(tmp_path / "inf.md")])
    text = Path(out).read_text()
    check_header(text, "bench_inference")
    diffs = dict(re.findall(r"(open_clip_mha|paper_hf) ([0-9.]+e[+-]\d+)", text.split("Same function:")[1].splitlines()[0]))
    assert set(diffs) == {"open_clip_mha", "paper_hf"}
    assert all(float(v) < 1e-4 for v in diffs.values()), diffs  # the three paths compute the same z_cls
    for precision in ("fp32", "bf16"):
        rows = [r for r in table_rows(text, precision) if len(r) == 9]  # the throughput table, not the target one
        variants = {(r[1], r[2]) for r in rows}
        assert variants == {(b, v) for b in ("1", "2") for v in ("dfdet", "open_clip_mha", "paper_hf")}
        for r in rows:
            assert all(math.isfinite(number(c)) and number(c) >= 0 for c in r[3:9])
            assert number(r[4]) > 0 and number(r[8]) >= 1.0  # img/s; no variant beats the fastest one
    assert "## Profile: dfdet" in text and "## Profile: paper_hf" in text
    assert "aten::" in text


def test_bench_methods_smoke(tmp_path):
    from bench import bench_methods
    out = bench_methods.main(["--model", TINY, "--rounds", "1", "--warmup", "0", "--out", str(tmp_path / "m.md")])
    text = Path(out).read_text()
    check_header(text, "bench_methods")
    diff = float(re.search(r"bank\.predict\)\| = ([0-9.]+e[+-]\d+)", text).group(1))
    assert diff < 1e-5  # the batched multi-LN path gives DetectorBank.predict's probabilities
    for name in ("4 bare forwards", "bank.predict", "bank_predict (multi_ln)", "1 bare forward"):
        (row,) = [r for r in table_rows(text, name) if r[-1] not in ("met", "MISSED")]
        assert all(math.isfinite(number(c)) and number(c) > 0 for c in row[1:])
    assert "## Target" in text


def test_bench_train_smoke(tmp_path):
    """One subprocess run per path, as the real benchmark does (so peak memory is per run)."""
    from bench import bench_train
    out = bench_train.main(["--model", TINY, "--rounds", "1", "--steps", "1", "--warmup", "1", "--batch", "2",
                            "--out", str(tmp_path / "t.md")])
    text = Path(out).read_text()
    check_header(text, "bench_train")
    rows = {r[0]: r for r in table_rows(text, "dfdet") + table_rows(text, "paper_hf_peft")}
    assert set(rows) == {"dfdet", "paper_hf_peft"}
    # both train exactly the LayerNorms + a 2-way head: PEFT's LN-tuning and dfdet's Detector agree on the count
    assert rows["dfdet"][8] == rows["paper_hf_peft"][8] == "898"
    for r in rows.values():
        assert r[-1] == "yes"  # finite losses
        assert all(math.isfinite(number(c)) and number(c) > 0 for c in (r[3], r[4], r[5], r[7], r[9], r[10]))


def test_bench_linear_probe_smoke(tmp_path):
    from dfdet.data.manifest import shared_dir
    if not (shared_dir() / "datasets" / "DFDC").is_dir():
        pytest.skip("../shared face crops not found")
    from bench import bench_linear_probe
    out = bench_linear_probe.main(["--model", TINY, "--images", "4", "--batch", "2", "--epochs", "3",
                                   "--out", str(tmp_path / "lp.md")])
    text = Path(out).read_text()
    check_header(text, "bench_linear_probe")
    assert "2 real, 2 fake" in text
    for name in ("cached (augment=none)", "fresh, augmented (paper, default)"):
        (row,) = table_rows(text, name)
        assert all(math.isfinite(float(c)) and float(c) > 0 for c in row[1:])
    assert len(table_rows(text, "sum of epochs 2..3")) == 1
