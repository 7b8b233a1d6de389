"""Tests for the crypto sweep (dphe_bench.bench.sweep), its python-paillier baseline and ``dphe-bench sweep``."""

import csv
import dataclasses
import secrets

import numpy as np
import pytest
from cli_helpers import call_cli

from dphe_bench import get_backend
from dphe_bench.backends import OBFUSCATIONS, available_backends
from dphe_bench.backends.gmpy2_backend import Gmpy2Backend
from dphe_bench.bench.baseline import BASELINE_NAME, PythonPaillierBaseline
from dphe_bench.bench.sweep import (
    CELL_COLUMNS,
    SWEEP_COLUMNS,
    Cell,
    Component,
    SweepError,
    SweepGrid,
    backend_settings,
    machine_info,
    quick_grid,
    read_cell_keys,
    run_cell,
    run_sweep,
    synthetic_weights,
)
from dphe_bench.crypto.encoding import DEFAULT_PRECISION_BITS
from dphe_bench.schemes import SCHEMES
from dphe_bench.schemes.federation import Federation
from dphe_bench.schemes.packed import DEFAULT_QUANTIZATION_BITS

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")


def _tiny_grid(**overrides) -> SweepGrid:
    settings = {
        "dimension": 24,
        "users": (2,),
        "sparsities": (0.75,),
        "key_bits": (1024,),
        "schemes": (Component("plain"), Component("dense"), Component("dphe")),
        "backends": (Component("gmpy2"),),
        "obfuscations": ("standard",),
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
    assert {(r["scheme"], r["backend"]) for r in rows} >= {
        ("dphe", BASELINE_NAME),
        ("dense", "gmpy2:obfuscation=standard"),
    }
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
    assert "to run" in stdout and "dphe/gmpy2:obfuscation=djn 1024-bit s=0.9 N=2 D=32" in stdout
    assert not out.exists()


def test_cli_sweep_writes_results_and_reports_bad_arguments(tmp_path):
    out = tmp_path / "sweep.csv"
    argv = ["sweep", "--quick", "--no-progress", "--out", str(out), "--dimension", "16", "--key-bits", "1024"]
    argv += ["--sparsity", "0.5", "--scheme", "dphe", "--backend", "gmpy2", "--obfuscation", "pool", "--no-baseline"]
    code, stdout, stderr = call_cli(argv)
    assert code == 0, stderr
    assert "ran 1 cells" in stdout
    assert [(r["scheme"], r["backend"], r["obfuscation"]) for r in _rows(out)] == [
        ("dphe", "gmpy2:obfuscation=pool", "pool")
    ]

    code, _, stderr = call_cli([*argv[:4], str(tmp_path / "x.txt")])
    assert code == 2 and "CSV" in stderr
    code, _, stderr = call_cli(["sweep", "--quick", "--dry-run", "--backend", "nope"])
    assert code == 2 and "unknown backend 'nope'" in stderr
    code, _, stderr = call_cli(["sweep", "--quick", "--dry-run", "--obfuscation", "djn", "--obfuscation", "paillier"])
    assert code == 2 and "'paillier'" in stderr and "--obfuscation" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_rows_record_every_setting_resolved_and_the_warm_up_apart(tmp_path):
    out = tmp_path / "sweep.csv"
    grid = _tiny_grid(schemes=(Component("plain"), Component("dense"), Component.parse("packed:quantization_range=4")))
    run_sweep(grid, out, progress=False)
    rows = {(r["scheme_name"], r["backend_name"]): r for r in _rows(out)}
    dense = rows["dense", "gmpy2"]
    assert dense["backend"] == "gmpy2:obfuscation=standard"
    assert dense["backend_config"] == "gmpy2:obfuscation=standard,window_bits=8"
    assert (dense["obfuscation"], dense["window_bits"], dense["parallelism"], dense["kernel"]) == (
        "standard",
        "",
        "1",
        "",
    )
    assert (dense["precision_bits"], dense["quantization_bits"], dense["quantization_range"]) == (
        str(DEFAULT_PRECISION_BITS),
        "",
        "",
    )
    packed = rows["packed", "gmpy2"]
    assert (packed["precision_bits"], packed["quantization_bits"], packed["quantization_range"]) == (
        "",
        str(DEFAULT_QUANTIZATION_BITS),
        "4",
    )
    baseline = rows["dense", BASELINE_NAME]
    assert (baseline["backend_config"], baseline["obfuscation"], baseline["parallelism"]) == (BASELINE_NAME, "", "1")
    plain = rows["plain", "none"]
    assert (plain["backend_config"], plain["parallelism"], plain["warm_up_s"], plain["precision_bits"]) == (
        "none",
        "",
        "",
        "",
    )
    # One warm-up per backend, shown on each of its rows, apart from the phases of the cell.
    assert float(dense["warm_up_s"]) > 0 and dense["warm_up_s"] == packed["warm_up_s"]
    assert float(baseline["warm_up_s"]) > 0 and baseline["warm_up_s"] != dense["warm_up_s"]
    assert float(dense["tables_s"]) == 0.0 and float(packed["precompute_s"]) == 0.0


def test_backend_settings_resolve_workers_threads_and_kernels(monkeypatch):
    def settings(label, backend):
        component = Component.parse(label)
        return backend_settings(Cell(8, 2, 0.5, 1024, Component("dense"), component, seed=0), backend)

    found = settings(
        "multiprocessing:workers=3,obfuscation=djn,window_bits=4",
        get_backend("multiprocessing", workers=3, obfuscation="djn", window_bits=4),
    )
    assert found == {
        "backend_config": "multiprocessing:inner=gmpy2,obfuscation=djn,start_method=fork,window_bits=4,workers=3",
        "obfuscation": "djn",
        "window_bits": 4,
        "parallelism": 3,
        "kernel": "",
    }
    monkeypatch.setenv("YACL_NUM_THREADS", "3")
    found = settings("heu:variant=ZPaillier", get_backend("gmpy2"))
    assert (found["backend_config"], found["parallelism"], found["obfuscation"]) == (
        "heu:threads=3,variant=ZPaillier",
        3,
        "",
    )
    if available_backends()["numba"].available:
        import numba

        numba_backend = get_backend("numba", obfuscation="pool")
        found = settings("numba:obfuscation=pool", numba_backend)
        threads = numba.get_num_threads()
        assert found["parallelism"] == threads and found["kernel"] == numba_backend.kernel in ("ifma", "narrow")
        assert found["backend_config"] == (
            f"numba:kernel={numba_backend.kernel},obfuscation=pool,threads={threads},window_bits=8"
        )
        assert settings("numba:threads=1", get_backend("numba", threads=1))["parallelism"] == 1
    if available_backends()["dask"].available:
        found = settings("dask:workers=3", get_backend("dask", workers=3))  # no cluster starts until work is sent
        assert found["parallelism"] == 3 and "scheduler" not in found["backend_config"]


def test_obfuscation_axis_expands_bare_backends_and_keeps_explicit_ones():
    grid = _tiny_grid(
        backends=(Component("gmpy2"), Component.parse("python:window_bits=4,obfuscation=djn")),
        obfuscations=("standard", "djn", "pool"),
        schemes=(Component("plain"), Component("dphe")),
    )
    assert [c.label for c in grid.expanded_backends()] == [
        "gmpy2:obfuscation=standard",
        "gmpy2:obfuscation=djn",
        "gmpy2:obfuscation=pool",
        "python:obfuscation=djn,window_bits=4",
    ]
    cells = grid.cells()
    assert [c.backend.label for c in cells] == [
        "none",
        "gmpy2:obfuscation=standard",
        "gmpy2:obfuscation=djn",
        "gmpy2:obfuscation=pool",
        "python:obfuscation=djn,window_bits=4",
        BASELINE_NAME,
    ]
    only_djn = dataclasses.replace(
        grid, obfuscations=("djn",), backends=(Component("gmpy2"), Component.parse("gmpy2:obfuscation=djn"))
    )
    assert [c.label for c in only_djn.expanded_backends()] == ["gmpy2:obfuscation=djn"]  # no cell twice
    with pytest.raises(SweepError, match="unknown obfuscation 'paillier'"):
        dataclasses.replace(grid, obfuscations=("standard", "paillier")).cells()
    with pytest.raises(SweepError, match="obfuscation axis is empty"):
        dataclasses.replace(grid, obfuscations=()).cells()


@pytest.mark.parametrize("scheme", ["dense", "dphe", "packed"])
def test_djn_tables_are_built_at_set_up_and_timed_apart_from_encryption(scheme):
    backend = get_backend("gmpy2", obfuscation="djn", window_bits=4)
    federation = Federation(scheme, 12, 2, backend, key_bits=1024)
    assert backend.table_nbytes() > 0  # before any round: encrypt will find the table built
    weights = dict(enumerate(synthetic_weights(12, 2, 0.5, seed=3)))
    first, second = federation.run_round(weights), federation.run_round(weights)
    assert first.timings["tables"] > 0 and second.timings["tables"] == 0.0
    assert second.timings["setup"] == 0.0

    djn = run_cell(
        Cell(12, 2, 0.5, 1024, Component(scheme), Component("gmpy2:obfuscation=djn"), seed=0), backend, machine_info()
    )
    standard_backend = get_backend("gmpy2")
    standard = Cell(12, 2, 0.5, 1024, Component(scheme), Component("gmpy2:obfuscation=standard"), seed=0)
    row = run_cell(standard, standard_backend, machine_info())
    assert djn["tables_s"] > 0 and row["tables_s"] == 0.0
    assert standard_backend.table_nbytes() == 0


def test_the_quick_grid_touches_every_scheme_backend_and_obfuscation_mode():
    cells = quick_grid().cells()
    available = {name for name, scheme in SCHEMES.items() if scheme.unavailable_reason() is None}
    assert {c.scheme.name for c in cells} == available
    pairs = {(c.backend.name, dict(c.backend.options).get("obfuscation")) for c in cells}
    for name in (n for n, status in available_backends().items() if status.available):
        assert {(name, mode) for mode in OBFUSCATIONS} <= pairs
    assert (BASELINE_NAME, None) in pairs
    paillier = {name for name in available if SCHEMES[name].paillier}
    for backend in {c.backend.label for c in cells} - {"none"}:
        assert {c.scheme.name for c in cells if c.backend.label == backend} == paillier


def test_a_file_written_before_the_obfuscation_axis_resumes(tmp_path):
    """Old rows name bare backends (``gmpy2``: standard obfuscation) and lack the new columns; they still count."""
    out = tmp_path / "sweep.csv"
    grid = _tiny_grid(schemes=(Component("dphe"),), baseline=False)
    run_sweep(grid, out, progress=False)
    (row,) = _rows(out)
    old_columns = [c for c in SWEEP_COLUMNS if c not in ("backend_config", "obfuscation", "warm_up_s", "tables_s")]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerow({**row, "backend": "gmpy2"})
    assert read_cell_keys(out) == {grid.cells()[0].key()}
    summary = run_sweep(dataclasses.replace(grid, obfuscations=("standard", "pool")), out, progress=False)
    assert (summary.ran, summary.skipped) == (1, 1)
    old, new = _rows(out)
    assert (old["backend"], old["obfuscation"], new["backend"], new["obfuscation"]) == (
        "gmpy2",
        "",
        "gmpy2:obfuscation=pool",
        "pool",
    )
    assert all(old[c] == row[c] for c in CELL_COLUMNS if c != "backend")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("key_bits", "big", "column key_bits holds 'big', not a number"),
        ("sparsity", "", "column sparsity is empty"),
        ("users", "2.5", "column users holds '2.5', not a number"),
        ("backend", "", "column backend is empty"),
    ],
)
def test_resume_names_the_file_line_and_column_of_a_bad_key(tmp_path, column, value, message):
    out = tmp_path / "sweep.csv"
    grid = _tiny_grid(schemes=(Component("plain"), Component("dphe")), baseline=False)
    run_sweep(grid, out, progress=False)
    rows = _rows(out)
    rows[1][column] = value
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SWEEP_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(SweepError, match=f"{out} line 3: {message}"):
        read_cell_keys(out)
    code, _, stderr = call_cli(["sweep", "--quick", "--dry-run", "--out", str(out)])
    assert code == 2 and message in stderr and "Traceback" not in stderr


def test_an_empty_results_file_holds_no_cells_and_a_sweep_fills_it(tmp_path):
    out = tmp_path / "sweep.csv"
    out.touch()
    assert read_cell_keys(out) == set()
    grid = _tiny_grid(schemes=(Component("plain"),), baseline=False)
    assert run_sweep(grid, out, progress=False).ran == len(grid.cells()) == len(_rows(out)) == 1


def test_cli_sweep_dry_run_refuses_an_out_that_is_not_csv(tmp_path):
    out = tmp_path / "sweep.txt"
    code, stdout, stderr = call_cli(["sweep", "--quick", "--dry-run", "--out", str(out)])
    assert code == 2 and "does not end in .csv" in stderr and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()
