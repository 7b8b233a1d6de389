"""Tests for the crypto sweep (dphe_bench.bench.sweep), its python-paillier baseline and ``dphe-bench sweep``."""

import csv
import dataclasses
import secrets

import numpy as np
import pytest
from cli_helpers import call_cli

from dphe_bench import get_backend
from dphe_bench.backends import available_backends
from dphe_bench.backends.gmpy2_backend import Gmpy2Backend
from dphe_bench.bench.baseline import BASELINE_NAME, PythonPaillierBaseline
from dphe_bench.bench.sweep import (
    SWEEP_COLUMNS,
    Cell,
    Component,
    SweepError,
    SweepGrid,
    machine_info,
    read_cell_keys,
    run_cell,
    run_sweep,
    synthetic_weights,
)
from dphe_bench.schemes import SCHEMES

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")


def _tiny_grid(**overrides) -> SweepGrid:
    settings = {
        "dimension": 24,
        "users": (2,),
        "sparsities": (0.75,),
        "key_bits": (1024,),
        "schemes": (Component("plain"), Component("dense"), Component("dphe")),
        "backends": (Component("gmpy2"),),
    }
    return SweepGrid(**{**settings, **overrides})


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == SWEEP_COLUMNS
        return list(reader)


class OffByOneBackend(Gmpy2Backend):
    """gmpy2, except that every decryption is one unit of the plaintext space too high."""

    def decrypt(self, private_key, ciphertexts):
        n = private_key.public_key.n
        return [(m + 1) % n for m in super().decrypt(private_key, ciphertexts)]


def test_component_parses_name_and_typed_options():
    component = Component.parse("packed:quantization_range=4.5,quantization_bits=16,fast=true,mode=djn")
    assert component.name == "packed"
    assert dict(component.options) == {"quantization_bits": 16, "quantization_range": 4.5, "fast": True, "mode": "djn"}
    assert component.label == "packed:fast=True,mode=djn,quantization_bits=16,quantization_range=4.5"
    assert Component.parse("dphe").label == "dphe"


@pytest.mark.parametrize("text", ["", ":a=1", "dphe:precision_bits", "dphe:=3"])
def test_component_rejects_malformed_text(text):
    with pytest.raises(SweepError):
        Component.parse(text)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.956, 0.99])
def test_synthetic_weights_have_exact_sparsity_and_no_value_that_rounds_to_zero(sparsity):
    vectors = synthetic_weights(1000, 3, sparsity, seed=7)
    assert len(vectors) == 3
    for weights in vectors:
        assert weights.shape == (1000,) and weights.dtype == np.float64
        assert np.count_nonzero(weights) == round((1 - sparsity) * 1000)
        assert np.all(np.abs(weights[weights != 0]) >= 1e-6)


def test_synthetic_weights_are_fixed_by_seed_and_differ_between_users():
    first = synthetic_weights(500, 2, 0.9, seed=1)
    again = synthetic_weights(500, 2, 0.9, seed=1)
    other = synthetic_weights(500, 2, 0.9, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[0], first[1])


def test_default_grid_covers_every_registered_scheme_and_available_backend():
    grid = SweepGrid()
    assert grid.dimension == 200_000
    assert {c.name for c in grid.schemes} == set(SCHEMES)
    assert {c.name for c in grid.backends} == {n for n, s in available_backends().items() if s.available}


def test_grid_runs_unencrypted_schemes_once_and_adds_a_baseline_per_encrypted_cell():
    cells = _tiny_grid(key_bits=(1024, 2048), backends=(Component("gmpy2"), Component("python"))).cells()
    plain = [c for c in cells if c.scheme.name == "plain"]
    assert [(c.key_bits, c.backend.name) for c in plain] == [(0, "none")]
    dense = [c for c in cells if c.scheme.name == "dense"]
    assert sorted((c.key_bits, c.backend.name) for c in dense) == sorted(
        (bits, name) for bits in (1024, 2048) for name in ("gmpy2", "python", BASELINE_NAME)
    )
    assert len({c.key() for c in cells}) == len(cells)
    assert not any(c.backend.name == BASELINE_NAME for c in _tiny_grid(baseline=False).cells())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backends": (Component("no-such-backend"),)}, "unknown backend"),
        ({"schemes": (Component("no-such-scheme"),)}, "unknown scheme"),
        ({"sparsities": (1.0,)}, r"sparsity must be in \[0, 1\), got 1.0"),
        ({"users": (0,)}, "users"),
        ({"key_bits": ()}, "key_bits axis is empty"),
    ],
)
def test_grid_refuses_what_cannot_run(overrides, message):
    with pytest.raises(ValueError, match=message):
        _tiny_grid(**overrides).cells()


@pytest.mark.parametrize("scheme", [name for name, s in SCHEMES.items() if s.encrypted])
def test_every_encrypted_scheme_passes_its_correctness_check(scheme):
    cell = Cell(24, 2, 0.5, 1024, Component(scheme), Component("gmpy2"), seed=0)
    row = run_cell(cell, get_backend("gmpy2"), machine_info())
    assert 0 < row["max_abs_error"] <= row["error_bound"]
    assert row["ciphertexts"] > 0 and row["encrypt_s"] > 0
    assert row["bytes_per_user"] == row["bytes_users"] / 2


def test_dphe_cell_counts_the_nonzeros_it_encrypts():
    cell = Cell(40, 3, 0.75, 1024, Component("dphe"), Component("gmpy2"), seed=0)
    row = run_cell(cell, get_backend("gmpy2"), machine_info())
    assert row["nonzeros_per_user"] == 10
    assert row["ciphertexts_per_user"] == 10
    assert row["encrypt_per_user_s"] == pytest.approx(row["encrypt_s"] / 3)
    assert row["load_average"] >= 0.0 and row["cpu_count"] >= 1


def test_a_wrong_result_raises_and_is_never_recorded(tmp_path, monkeypatch):
    cell = Cell(24, 2, 0.5, 1024, Component("dense"), Component("gmpy2"), seed=0)
    with pytest.raises(SweepError, match="off by"):
        run_cell(cell, OffByOneBackend(), machine_info())
    monkeypatch.setattr("dphe_bench.bench.sweep._build_backend", lambda component: OffByOneBackend())
    out = tmp_path / "sweep.csv"
    with pytest.raises(SweepError):
        run_sweep(_tiny_grid(schemes=(Component("dense"),), baseline=False), out, progress=False)
    assert not out.exists()


def test_sweep_appends_one_row_per_cell_and_resumes(tmp_path):
    out = tmp_path / "sweep.csv"
    grid = _tiny_grid()
    first = run_sweep(grid, out, progress=False)
    rows = _rows(out)
    assert first.ran == len(grid.cells()) == len(rows) == 5  # plain + (dense, dphe) x (gmpy2, baseline)
    assert {(r["scheme"], r["backend"]) for r in rows} >= {("dphe", BASELINE_NAME), ("dense", "gmpy2")}
    assert {r["key_bits"] for r in rows if r["scheme"] == "plain"} == {"0"}

    second = run_sweep(grid, out, progress=False)
    assert (second.ran, second.skipped) == (0, 5)
    assert _rows(out) == rows

    text = out.read_text().splitlines()
    out.write_text("\n".join(text[:-1]) + "\n")  # lose the last cell
    third = run_sweep(grid, out, progress=False)
    assert (third.ran, third.skipped) == (1, 4)
    assert len(_rows(out)) == 5


def test_sweep_refuses_a_file_of_another_format(tmp_path):
    out = tmp_path / "sweep.csv"
    out.write_text("a,b\n1,2\n")
    with pytest.raises(SweepError, match="not a sweep file"):
        read_cell_keys(out)
    with pytest.raises(SweepError, match="not a sweep file"):
        run_sweep(_tiny_grid(), out, progress=False)
    with pytest.raises(SweepError, match="CSV"):
        run_sweep(_tiny_grid(), tmp_path / "sweep.parquet", progress=False)


def test_a_file_from_an_earlier_version_is_upgraded_when_a_cell_is_appended(tmp_path):
    out = tmp_path / "sweep.csv"
    grid = _tiny_grid(schemes=(Component("dphe"),), baseline=False)
    run_sweep(grid, out, progress=False)
    (old,) = _rows(out)
    older_columns = [c for c in SWEEP_COLUMNS if c != "load_average"]  # as if that column came later
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=older_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerow(old)
    assert read_cell_keys(out) == {grid.cells()[0].key()}
    run_sweep(dataclasses.replace(grid, sparsities=(0.75, 0.5)), out, progress=False)
    first, second = _rows(out)  # _rows checks the header is the current one
    assert first["load_average"] == "" and second["load_average"] != ""
    assert {k: v for k, v in first.items() if k != "load_average"} == {
        k: v for k, v in old.items() if k != "load_average"
    }


def test_scheme_options_reach_the_scheme_and_the_label(tmp_path):
    out = tmp_path / "sweep.csv"
    grid = _tiny_grid(schemes=(Component.parse("dphe:precision_bits=8"),), baseline=False)
    run_sweep(grid, out, progress=False)
    (row,) = _rows(out)
    assert row["scheme"] == "dphe:precision_bits=8"
    assert row["scheme_name"] == "dphe"
    # 8 fractional bits: the error can reach 2**-9, far above what 32 bits would allow.
    assert 1e-6 < float(row["max_abs_error"]) <= float(row["error_bound"]) <= 2**-9 + 1e-12


def test_baseline_ciphertexts_interoperate_with_ours(keypair_1024):
    public_key, private_key = keypair_1024
    baseline, ours = PythonPaillierBaseline(), get_backend("gmpy2")
    values = [0, 1, public_key.n - 1, *(secrets.randbelow(public_key.n) for _ in range(5))]
    assert ours.decrypt(private_key, baseline.encrypt(public_key, values)) == values
    assert baseline.decrypt(private_key, ours.encrypt(public_key, values)) == values
    total = baseline.aggregate(public_key, [baseline.encrypt(public_key, values), ours.encrypt(public_key, values)])
    assert ours.decrypt(private_key, total) == [2 * v % public_key.n for v in values]


def test_cli_sweep_dry_run_lists_cells_and_runs_nothing(tmp_path):
    out = tmp_path / "sweep.csv"
    code, stdout, _ = call_cli(["sweep", "--quick", "--dry-run", "--out", str(out), "--scheme", "dphe"])
    assert code == 0
    assert "to run" in stdout and "dphe/gmpy2 2048-bit s=0.956 N=2 D=200" in stdout
    assert not out.exists()


def test_cli_sweep_writes_results_and_reports_bad_arguments(tmp_path):
    out = tmp_path / "sweep.csv"
    argv = ["sweep", "--quick", "--no-progress", "--out", str(out), "--dimension", "16", "--key-bits", "1024"]
    argv += ["--sparsity", "0.5", "--scheme", "dphe", "--backend", "gmpy2", "--no-baseline"]
    code, stdout, stderr = call_cli(argv)
    assert code == 0, stderr
    assert "ran 1 cells" in stdout
    assert [r["scheme"] for r in _rows(out)] == ["dphe"]

    code, _, stderr = call_cli([*argv[:4], str(tmp_path / "x.txt")])
    assert code == 2 and "CSV" in stderr
    code, _, stderr = call_cli(["sweep", "--quick", "--dry-run", "--backend", "nope"])
    assert code == 2 and "unknown backend 'nope'" in stderr
