"""Tests for what the report's readers (dphe_bench.bench.report_data) accept: bad files are refused with the file,
column and row named; runs whose settings were not recorded, and sweep cells of other machines or options, are
never merged with others."""

import csv
import json
import math
import re
import warnings
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")

from cli_helpers import call_cli  # noqa: E402

from dphe_bench.bench.report_data import ReportInputError, load_results, not_recorded, tidy_sweep  # noqa: E402
from dphe_bench.bench.sweep import SWEEP_COLUMNS, Component, SweepGrid, run_sweep  # noqa: E402
from dphe_bench.learning.config import load_config  # noqa: E402
from dphe_bench.learning.pipeline import run_pipeline  # noqa: E402
from dphe_bench.learning.results import CSV_NAME, write_run_results  # noqa: E402
from dphe_bench.learning.run_settings import RUN_SETTINGS  # noqa: E402


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory) -> Path:
    """A real sweep file: plain and dphe (gmpy2, standard obfuscation, 1024-bit) at one point, no baseline."""
    out = tmp_path_factory.mktemp("sweep") / "sweep.csv"
    grid = SweepGrid(
        dimension=16,
        users=(2,),
        sparsities=(0.5,),
        key_bits=(1024,),
        schemes=(Component("plain"), Component("dphe")),
        backends=(Component("gmpy2"),),
        obfuscations=("standard",),
        baseline=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_sweep(grid, out, progress=False)
    return out


@pytest.fixture(scope="module")
def run_file(tmp_path_factory) -> Path:
    """One real dphe run (gmpy2, 1024-bit keys, 3 users, 1 round) with its runs.csv next to it."""
    folder = tmp_path_factory.mktemp("runs")
    config = load_config(
        None, ["crypto.key_bits=1024", "federation.users=3", "federation.rounds=1", f"run.output_dir={folder}"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        json_path, _ = write_run_results(run_pipeline(config, backend="gmpy2", progress=False))
    return json_path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, rows: list[dict[str, object]], columns) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _one_group_per_run(runs: pd.DataFrame) -> bool:
    """Whether every run differs from every other in some setting (NaN equal to NaN, as a groupby with dropna
    False keys them)."""
    return len(runs.groupby(list(RUN_SETTINGS), dropna=False)) == len(runs)


# ---- runs whose settings were not recorded -----------------------------------------------------------------------


OLD_CSV_LACKS = ("alpha", "backend_config", "obfuscation", "window_bits", "parallelism", "seed")


def test_runs_of_an_old_runs_csv_never_pair_in_a_setting_it_did_not_record(run_file, tmp_path):
    (row,) = _rows(run_file.parent / CSV_NAME)
    columns = [c for c in row if c not in OLD_CSV_LACKS]
    # Two runs alike in every recorded setting (their model alphas may have differed), and a plain run.
    rows = [{**row, "results_file": "run-a.json"}, {**row, "results_file": "run-b.json", "accuracy_scheme": "0.5"}]
    rows.append({**row, "results_file": "run-plain.json", "scheme": "plain", "backend": "python"})
    runs = load_results([_write_rows(tmp_path / CSV_NAME, rows, columns)]).runs.set_index("results_file")
    for name in ("run-a.json", "run-b.json"):
        for column in OLD_CSV_LACKS:
            assert runs.loc[name, column] == not_recorded(name)
    assert _one_group_per_run(runs.reset_index())
    # What does not apply stays empty: plain has no Paillier backend.
    assert runs.loc["run-plain.json", "backend_config"] == "none"
    assert all(pd.isna(runs.loc["run-plain.json", c]) for c in ("obfuscation", "window_bits", "parallelism"))
    assert runs.loc["run-plain.json", "alpha"] == not_recorded("run-plain.json")
    # Recorded numbers stay numbers.
    assert runs["users"].tolist() == [3, 3, 3] and runs.loc["run-b.json", "accuracy_scheme"] == 0.5


def test_window_bits_of_an_old_runs_csv_is_empty_only_where_obfuscation_says_it_does_not_apply(run_file, tmp_path):
    (row,) = _rows(run_file.parent / CSV_NAME)
    columns = [c for c in row if c != "window_bits"]
    rows = [{**row, "results_file": "run-std.json"}, {**row, "results_file": "run-djn.json", "obfuscation": "djn"}]
    runs = load_results([_write_rows(tmp_path / CSV_NAME, rows, columns)]).runs.set_index("results_file")
    assert pd.isna(runs.loc["run-std.json", "window_bits"])
    assert runs.loc["run-djn.json", "window_bits"] == not_recorded("run-djn.json")


def test_a_run_json_without_a_setting_or_its_backend_options_never_pairs_in_it(run_file, tmp_path):
    data = json.loads(run_file.read_text(encoding="utf-8"))
    for name in ("run-x.json", "run-y.json"):
        old = json.loads(json.dumps(data))
        del old["config"]["model"]["alpha"]
        del old["backend_options"]
        (tmp_path / name).write_text(json.dumps(old), encoding="utf-8")
    plain = json.loads(json.dumps(data))
    plain["config"]["crypto"]["scheme"] = "plain"
    del plain["backend_options"]
    (tmp_path / "run-plain.json").write_text(json.dumps(plain), encoding="utf-8")
    runs = load_results([tmp_path]).runs.set_index("results_file")
    for name in ("run-x.json", "run-y.json"):
        assert runs.loc[name, "alpha"] == runs.loc[name, "backend_config"] == not_recorded(name)
        assert runs.loc[name, "parallelism"] == not_recorded(name)
        # The config still says the obfuscation, and standard has no window.
        assert runs.loc[name, "obfuscation"] == "standard" and pd.isna(runs.loc[name, "window_bits"])
    assert runs.loc["run-plain.json", "backend_config"] == "none"
    assert pd.isna(runs.loc["run-plain.json", "parallelism"])
    assert _one_group_per_run(runs.reset_index())


# ---- bad run files -----------------------------------------------------------------------------------------------


def _edit_config(data: dict, edit: str) -> None:
    if edit == "config-list":
        data["config"] = [1, 2]
    elif edit == "section-text":
        data["config"]["model"] = "elastic"
    elif edit == "users-text":
        data["config"]["federation"]["users"] = "five"
    elif edit == "scheme-number":
        data["config"]["crypto"]["scheme"] = 3
    elif edit == "accuracy-nan":
        data["centralised_accuracy"] = math.nan
    elif edit == "accuracy-above-1":
        data["federated"]["dphe"]["accuracy"] = 1.5
    elif edit == "federated-list":
        data["federated"] = []
    elif edit == "backend-options-text":
        data["backend_options"] = "fast"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("config-list", "config is a list"),
        ("section-text", "config section 'model' is a str"),
        ("users-text", "users must be a number, got 'five'"),
        ("scheme-number", ""),
        ("accuracy-nan", r"accuracy_centralised must be a number in \[0, 1\], got nan"),
        ("accuracy-above-1", r"accuracy_scheme must be a number in \[0, 1\], got 1.5"),
        ("federated-list", "federated is a list"),
        ("backend-options-text", "backend_options is a str"),
    ],
)
def test_a_run_json_of_the_wrong_shape_or_types_is_refused_naming_the_file(run_file, tmp_path, edit, message):
    data = json.loads(run_file.read_text(encoding="utf-8"))
    _edit_config(data, edit)
    bad = tmp_path / "run-bad.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportInputError, match=rf"^run-bad\.json: .*{message}"):
        load_results([bad])


@pytest.mark.parametrize(("column", "value"), [("accuracy_scheme", "1.2"), ("accuracy_plain", "-0.1"), ("users", "x")])
def test_a_runs_csv_with_a_bad_number_names_the_file_line_and_column(run_file, tmp_path, column, value):
    (row,) = _rows(run_file.parent / CSV_NAME)
    bad = _write_rows(tmp_path / CSV_NAME, [row, {**row, "results_file": "run-2.json", column: value}], row)
    with pytest.raises(ReportInputError, match=f"{re.escape(str(bad))} line 3: column {column} must hold numbers"):
        load_results([bad])


# ---- sweep cells -------------------------------------------------------------------------------------------------


def test_sweep_cells_of_other_hosts_or_resolved_options_are_kept_and_repeats_dropped(sweep_file):
    rows = load_results([sweep_file]).sweep
    dphe = rows[rows["scheme"] == "dphe"]
    other_host = dphe.assign(host="other-machine", encrypt_s=dphe["encrypt_s"] * 2)
    two_threads = dphe.assign(backend_config=dphe["backend_config"] + ",threads=2")
    repeat = dphe.assign(encrypt_s=dphe["encrypt_s"] * 3)
    merged = tidy_sweep([rows[list(SWEEP_COLUMNS)], *(f[list(SWEEP_COLUMNS)] for f in (other_host, two_threads))])
    assert len(merged) == len(rows) + 2
    assert sorted(merged["host"].unique()) == sorted({*rows["host"], "other-machine"})
    again = tidy_sweep([rows[list(SWEEP_COLUMNS)], repeat[list(SWEEP_COLUMNS)]])
    assert len(again) == len(rows)
    assert again[again["scheme"] == "dphe"]["encrypt_s"].tolist() == pytest.approx(repeat["encrypt_s"].tolist())


BAD_SWEEP_VALUES = [
    ("key_bits", "big", "must hold numbers"),
    ("encrypt_s", "fast", "must hold numbers"),
    ("scheme", "", "must not be empty"),
    ("seed", "", "must not be empty"),
    ("users", "0", "must be a whole number >= 1"),
    ("key_bits", "1234", "must be 0 .* or one of"),
    ("sparsity", "1.0", r"must be in \[0, 1\)"),
    ("sparsity", "-0.1", r"must be in \[0, 1\)"),
    ("encrypt_s", "-1", "must be finite and >= 0"),
    ("bytes_per_user", "inf", "must be finite and >= 0"),
    ("max_abs_error", "-1e-9", "must be finite and >= 0"),
    ("ciphertexts", "-3", "must be finite and >= 0"),
    ("load_average", "high", "must hold numbers"),
    ("window_bits", "eight", "must hold numbers"),
]


@pytest.mark.parametrize(("column", "value", "message"), BAD_SWEEP_VALUES)
def test_a_bad_sweep_value_names_the_file_line_and_column(sweep_file, tmp_path, column, value, message):
    rows = _rows(sweep_file)
    rows[1][column] = value
    bad = _write_rows(tmp_path / "sweep.csv", rows, SWEEP_COLUMNS)
    with pytest.raises(ReportInputError, match=f"^{re.escape(str(bad))} line 3: column {column} {message}"):
        load_results([tmp_path / "sweep.csv", sweep_file])
    # The same file in a folder is refused too: it is a sweep file, only a bad one.
    with pytest.raises(ReportInputError, match=f"line 3: column {column}"):
        load_results([tmp_path])


def test_a_sweep_file_missing_a_column_the_report_needs_is_named(sweep_file, tmp_path):
    rows = _rows(sweep_file)
    bad = _write_rows(tmp_path / "sweep.csv", rows, [c for c in SWEEP_COLUMNS if c != "encrypt_s"])
    with pytest.raises(ReportInputError, match=f"^{re.escape(str(bad))}: column encrypt_s is missing"):
        load_results([bad])


def test_a_sweep_file_of_good_values_reads_as_numbers(sweep_file):
    sweep = load_results([sweep_file]).sweep
    assert len(sweep) == 2 and set(sweep["key_bits"]) == {0, 1024}
    assert sweep["encrypt_s"].dtype.kind == "f" and (sweep["encrypt_s"] >= 0).all()


# ---- folders -----------------------------------------------------------------------------------------------------


def test_undecodable_files_in_a_folder_are_skipped_and_named_files_are_errors(sweep_file, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "sweep.csv").write_bytes(sweep_file.read_bytes())
    (folder / "latin1.csv").write_bytes("dimension,users\n\xe9\n".encode("latin-1"))
    (folder / "broken.json").write_text("{not json", encoding="utf-8")
    loaded = load_results([folder])
    assert sorted(p.name for p in loaded.skipped) == ["broken.json", "latin1.csv"]
    assert len(loaded.sweep) == 2
    with pytest.raises(ReportInputError, match=r"latin1\.csv is not UTF-8 text"):
        load_results([folder / "latin1.csv"])
    with pytest.raises(ReportInputError, match=r"broken\.json: not valid JSON"):
        load_results([folder / "broken.json"])


# ---- through the CLI ---------------------------------------------------------------------------------------------


def test_cli_report_refuses_bad_inputs_in_one_line(sweep_file, run_file, tmp_path):
    pytest.importorskip("matplotlib")
    rows = _rows(sweep_file)
    rows[0]["key_bits"] = "big"
    bad_sweep = _write_rows(tmp_path / "sweep.csv", rows, SWEEP_COLUMNS)
    data = json.loads(run_file.read_text(encoding="utf-8"))
    data["config"]["model"] = "elastic"
    bad_run = tmp_path / "run-bad.json"
    bad_run.write_text(json.dumps(data), encoding="utf-8")
    for bad, message in ((bad_sweep, "line 2: column key_bits must hold numbers"), (bad_run, "run-bad.json: config")):
        code, _, stderr = call_cli(["report", str(bad), "--out", str(tmp_path / "report")])
        assert code == 2 and message in stderr
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
