"""``benchmarks/gpu_check.sh`` end to end on the fake CuPy (``tests/fake_cupy``: the host harness standing in
for a GPU), its pytest step included; and the check's bookkeeping."""

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cuda_host import FAKE_CUPY_PATH, host_compiler, load_fake_cupy

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


@pytest.fixture
def gpu_check(monkeypatch):
    """benchmarks/gpu/gpu_check.py imported with the fake CuPy as ``cupy``."""
    monkeypatch.setitem(sys.modules, "cupy", load_fake_cupy())
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_records_wrong_missing_and_extra_values_as_failures(gpu_check):
    failures: list[str] = []
    gpu_check.check("same", [1, 2, 3], [1, 2, 3], failures)
    assert failures == []
    gpu_check.check("one wrong", [1, 5, 3], [1, 2, 3], failures)
    gpu_check.check("one missing", [1, 2], [1, 2, 3], failures)
    gpu_check.check("one extra", [1, 2, 3, 4], [1, 2, 3], failures)
    assert failures == [
        "one wrong: 1 of 3 wrong (got 3 values)",
        "one missing: 1 of 3 wrong (got 2 values)",
        "one extra: 1 of 3 wrong (got 4 values)",
    ]


def test_every_size_gets_an_untimed_warm_up(gpu_check):
    calls = []
    milliseconds = gpu_check.measure_kernels(lambda: calls.append(len(calls)), 3)
    assert len(calls) == 4
    assert milliseconds >= 0


@pytest.mark.slow
def test_gpu_check_script_passes_on_the_fake_device(tmp_path):
    """The script as it runs on a GPU machine (package laid out in a temporary folder, pytest step, check),
    with the fake CuPy on PYTHONPATH. Run from the checkout root, where ./dphe_bench has no backends: the
    pytest step only collects because the script sets PYTHONSAFEPATH."""
    if host_compiler() is None:
        pytest.skip("no host C++ compiler to build the kernel harness")
    out = tmp_path / "out"
    environment = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": f"{FAKE_CUPY_PATH}{os.pathsep}{FAKE_CUPY_PATH.parent}",
    }
    environment.pop("OUT", None)
    arguments = ["--key-bits", "1024", "--sizes", "2", "4", "--budget-s", "10", "--check-count", "2"]
    arguments += ["--end-to-end-values", "4"]
    completed = subprocess.run(
        ["bash", str(SCRIPT), str(out), *arguments], cwd=tmp_path, env=environment, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    log = (out / "pytest.log").read_text()
    summary = log.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed, \d+ deselected in [\d.]+s( \([\d:]+\))?", summary), log[-2000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["failures"] == []
    assert result["device"]["name"] == "fake device (host harness)"
    # One compile time per configuration, and every kernel's resources as the driver reports them.
    assert [(row["limbs"], row["threads_per_number"]) for row in result["resources"]] == [(32, 4), (64, 8)]
    for row in result["resources"]:
        assert row["compile_s"] >= 0
        assert set(row["kernels"]) == {"powmod", "mulmod", "walk", "product", "crt"}
    with open(out / "gpu_check.csv") as handle:
        timed = [row for row in csv.DictReader(handle) if row["skipped"] == "False"]
    assert {(row["operation"], row["batch"]) for row in timed} == {
        (operation, batch)
        for operation in ("encrypt standard", "encrypt djn", "aggregate 5 batches", "decrypt")
        for batch in ("2", "4")
    }
    assert "correctness: all checks passed" in completed.stdout
