"""Tests for the asv suite in benchmarks/: every module imports, parameters match the registries, a skip is a skip.

No timing is asserted here: speed claims come from asv and the sweep.
"""

import importlib
import inspect
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("asv_runner")
from asv_runner.benchmarks.mark import SkipNotImplemented

from dphe_bench.backends import BACKENDS, BackendStatus
from dphe_bench.schemes import SCHEMES

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (REPO / "benchmarks").glob("bench_*.py"))
PREFIXES = ("time_", "track_", "peakmem_", "mem_")


def _import(name: str):
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(f"benchmarks.{name}")


def _benchmark_classes(module) -> list[type]:
    return [
        cls
        for cls in vars(module).values()
        if inspect.isclass(cls) and cls.__module__ == module.__name__ and any(m.startswith(PREFIXES) for m in vars(cls))
    ]


def test_there_are_benchmark_modules():
    assert {"bench_paillier", "bench_schemes", "bench_learning"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_declares_parameters_its_methods_accept(name):
    module = _import(name)
    classes = _benchmark_classes(module)
    assert classes, f"{name} defines no benchmark"
    for cls in classes:
        params, names = cls.params, cls.param_names
        assert len(params) == len(names) and all(len(values) > 0 for values in params), cls.__name__
        cache = 1 if hasattr(cls, "setup_cache") else 0
        for method in [m for m in vars(cls) if m.startswith(PREFIXES)] + ["setup"] * hasattr(cls, "setup"):
            arguments = list(inspect.signature(getattr(cls, method)).parameters)[1:]
            assert len(arguments) == cache + len(names), f"{cls.__name__}.{method}"


def test_parameters_come_from_the_registries():
    seen = set()
    for name in MODULES:
        for cls in _benchmark_classes(_import(name)):
            values = dict(zip(cls.param_names, cls.params, strict=True))
            if "scheme" in values:
                assert set(values["scheme"]) == set(SCHEMES), cls.__name__
                seen.add("scheme")
            if "backend" in values:
                assert set(BACKENDS) <= set(values["backend"]), cls.__name__
                seen.add("backend")
            if "key_bits" in values:
                assert set(values["key_bits"]) <= {1024, 2048, 3072}, cls.__name__
                if values["key_bits"] == [1024, 2048, 3072]:
                    seen.add("all key sizes")
    assert seen == {"scheme", "backend", "all key sizes"}


def test_an_unavailable_backend_is_skipped_not_failed(monkeypatch):
    common = _import("common")
    statuses = {name: BackendStatus(name, False, "not on this machine") for name in BACKENDS}
    monkeypatch.setattr(common, "available_backends", lambda: statuses)
    with pytest.raises(SkipNotImplemented, match="not on this machine"):
        common.make_backend("python")


def test_scheme_round_benchmark_runs_on_a_tiny_grid(monkeypatch):
    bench = _import("bench_schemes")
    monkeypatch.setattr(bench, "KEY_BITS", [1024])
    monkeypatch.setattr(bench, "ROUND_KEY_BITS", [1024])
    monkeypatch.setattr(bench, "SPARSITIES", [0.75])
    monkeypatch.setattr(bench, "ROUND_USERS", [2])
    monkeypatch.setattr(bench, "ROUND_DIMENSION", 16)
    benchmark = bench.RoundAggregation()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache = pickle.loads(pickle.dumps(benchmark.setup_cache()))  # asv pickles the cache
    args = (cache, "dphe", "gmpy2", 1024, 0.75, 2)
    benchmark.setup(*args)
    benchmark.time_aggregate(*args)
    benchmark.time_decrypt(*args)
    assert benchmark.track_ciphertexts_per_user(*args) == 4  # 16 weights, 75 % zeros
    assert benchmark.track_bytes_per_user(*args) > 4 * 256  # four 2048-bit ciphertexts and the indices
    with pytest.raises(SkipNotImplemented):
        benchmark.setup(cache, "plain", "gmpy2", 1024, 0.75, 2)


@pytest.mark.slow
def test_asv_discovers_the_suite():
    asv = shutil.which("asv") or str(Path(sys.executable).with_name("asv"))
    if not Path(asv).exists():
        pytest.skip("asv is not installed (pip install '.[bench]')")
    completed = subprocess.run(
        [asv, "check", "--python=same"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "No problems found" in completed.stdout
