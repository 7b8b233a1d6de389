"""Tests for the report (dphe_bench.bench.report, report_data, report_figures) and ``dphe-bench report``."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from cli_helpers import call_cli  # noqa: E402

from dphe_bench.bench import report_figures  # noqa: E402
from dphe_bench.bench.baseline import BASELINE_NAME  # noqa: E402
from dphe_bench.bench.report import (  # noqa: E402
    markdown_table,
    paper_encryption_table,
    paper_sparsity_table,
    paper_users_table,
    speedup_table,
    write_report,
)
from dphe_bench.bench.report_data import ReportInputError, load_results  # noqa: E402
from dphe_bench.bench.sweep import Component, SweepGrid, run_sweep  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> Path:
    """A small set of real results: a sweep, three runs (one real, two edited copies) and an asv result."""
    root = tmp_path_factory.mktemp("results")
    grid = SweepGrid(
        dimension=20,
        users=(2,),
        sparsities=(0.5, 0.956),
        key_bits=(1024,),
        schemes=(Component("plain"), Component("dense"), Component("dphe")),
        backends=(Component("gmpy2"),),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_sweep(grid, root / "sweep.csv", progress=False)

    runs = root / "runs"
    overrides = ["crypto.key_bits=1024", "federation.users=3", "federation.rounds=1", f"run.output_dir={runs}"]
    code, _, stderr = call_cli(
        ["run", "--no-progress", "--backend", "gmpy2", *(x for o in overrides for x in ("--set", o))]
    )
    assert code == 0, stderr
    (real,) = runs.glob("run-*.json")
    for users, alpha, accuracy in ((10, 0.01, 0.91), (100, 0.1, 0.85)):
        data = json.loads(real.read_text())
        data["config"]["federation"]["users"] = users
        data["config"]["model"]["alpha"] = alpha
        data["federated"]["dphe"]["accuracy"] = accuracy
        (runs / f"run-edited-{users}-dphe-gmpy2.json").write_text(json.dumps(data))

    asv = root / "asv" / "machine-a"
    asv.mkdir(parents=True)
    (asv / "machine.json").write_text(json.dumps({"machine": "machine-a", "version": 1}))
    (root / "asv" / "benchmarks.json").write_text(
        json.dumps(
            {
                "bench_paillier.PaillierOps.time_encrypt": {"unit": "seconds", "param_names": ["backend", "key_bits"]},
                "version": 2,
            }
        )
    )
    (asv / "0123456789abcdef-existing.json").write_text(
        json.dumps(
            {
                "commit_hash": "0123456789abcdef",
                "date": 1_700_000_000_000,
                "params": {"machine": "machine-a"},
                "result_columns": ["result", "params", "version"],
                "results": {
                    "bench_paillier.PaillierOps.time_encrypt": [
                        [0.1, 0.8, None, 1.2],
                        [["'gmpy2'", "'python'"], ["1024", "2048"]],
                        "v1",
                    ]
                },
                "version": 2,
            }
        )
    )
    return root


@pytest.fixture(scope="module")
def results(fixture_dir):
    return load_results([fixture_dir])


def test_load_results_sorts_every_file_into_its_table(results):
    assert len(results.sweep) == 2 + 2 * 2 * 2  # plain per sparsity + (dense, dphe) x (gmpy2, baseline) x 2
    assert set(results.sweep["backend"]) == {"none", "gmpy2", BASELINE_NAME}
    assert sorted(results.runs["users"]) == [3, 10, 100]
    assert set(results.runs["dataset"]) == {"digits"}
    assert len(results.asv) == 4
    row = results.asv[results.asv["params"] == "backend=gmpy2, key_bits=2048"].iloc[0]
    assert (row["value"], row["unit"], row["commit"]) == (0.8, "seconds", "01234567")
    assert results.asv["value"].isna().sum() == 1  # the skipped combination


def test_runs_csv_rows_of_runs_already_read_from_json_are_not_counted_twice(fixture_dir):
    runs = load_results([fixture_dir / "runs"]).runs
    assert len(runs) == 3
    only_csv = load_results([fixture_dir / "runs" / "runs.csv"]).runs
    assert len(only_csv) == 1


def test_unknown_or_missing_inputs_are_clear_errors(tmp_path, fixture_dir):
    stray = tmp_path / "notes.csv"
    stray.write_text("x,y\n1,2\n")
    with pytest.raises(ReportInputError, match="unknown result file"):
        load_results([stray])
    with pytest.raises(ReportInputError, match="does not exist"):
        load_results([tmp_path / "missing.csv"])
    with pytest.raises(ReportInputError, match="unknown result file"):
        load_results([tmp_path / "notes.csv", fixture_dir / "sweep.csv"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ReportInputError, match="not valid JSON"):
        load_results([tmp_path / "bad.json"])
    # Inside a folder, files that are not results are skipped and listed.
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(stray, folder / "notes.csv")
    shutil.copy(fixture_dir / "sweep.csv", folder / "sweep.csv")
    loaded = load_results([folder])
    assert [p.name for p in loaded.skipped] == ["notes.csv"]
    assert len(loaded.sweep) == 10


def test_speedup_pairs_each_cell_with_the_baseline_on_the_same_values(results):
    speedups = speedup_table(results.sweep)
    assert len(speedups) == 4  # (dense, dphe) x 2 sparsities, gmpy2 only
    assert set(speedups["backend"]) == {"gmpy2"}
    sweep = results.sweep.set_index(["scheme", "sparsity", "backend"])
    for _, row in speedups.iterrows():
        ours = sweep.loc[(row["scheme"], row["sparsity"], "gmpy2"), "encrypt_s"]
        theirs = sweep.loc[(row["scheme"], row["sparsity"], BASELINE_NAME), "encrypt_s"]
        assert row["speedup"] == pytest.approx(theirs / ours)


def test_paper_encryption_table_has_the_paper_row_and_labels_projections(results):
    table = paper_encryption_table(results.sweep)
    paper = table.iloc[0]
    assert (paper["dense (s)"], paper["dphe at 95.6 % (s)"], paper["dense / dphe"]) == (620.0, 62.0, 10.0)
    ours = table[table["source"] == "ours"].set_index("backend")
    assert set(ours.index) == {"gmpy2", BASELINE_NAME}
    assert ours.loc["gmpy2", "basis"] == "projected from D = 20"
    dense = results.sweep.query("scheme == 'dense' and backend == 'gmpy2'")["encrypt_per_user_s"].median()
    assert ours.loc["gmpy2", "dense (s)"] == pytest.approx(dense * 10_000)

    measured = results.sweep.assign(dimension=200_000)
    assert set(paper_encryption_table(measured)["basis"][1:]) == {"measured at D = 200,000"}


def test_paper_accuracy_tables_put_our_runs_next_to_the_paper(results):
    users = paper_users_table(results.runs).set_index("users")
    assert users.loc[5, "paper: Caltech101 (%)"] == 89.3
    assert users.loc[100, "paper: Caltech101 (%)"] == 85.6
    # The users series is the one at alpha 0.01 (3 and 10 users); the 100-user run varied alpha too.
    ours = "ours: digits / pixels, dphe, alpha 0.01 (%)"
    assert list(users.columns) == ["paper: Caltech101 (%)", ours]
    assert users.loc[10, ours] == pytest.approx(91.0)
    assert np.isnan(users.loc[5, ours]) and np.isnan(users.loc[100, ours])

    sparsity = paper_sparsity_table(results.runs, results.sweep)
    assert list(sparsity["accuracy (%)"][:2]) == [89.7, 88.2]
    assert len(sparsity) == 2 + 3
    assert sparsity["dphe encryption of 200k weights (s)"][2:].notna().all()
    assert "gmpy2, 1024-bit keys" in sparsity.attrs["projection"]


def test_write_report_writes_markdown_figures_and_tables(fixture_dir, tmp_path):
    written = write_report([fixture_dir], tmp_path / "report")
    text = written.markdown.read_text()
    for heading in ("Paper table 1", "Paper table 2", "Paper table 3", "Speed-up over python-paillier", "asv"):
        assert heading in text
    assert "What differs from the paper's setting" in text
    names = {p.name for p in written.figures}
    assert names == {
        "encryption_time_vs_sparsity.png",
        "bytes_per_user_vs_sparsity.png",
        "encryption_time_vs_key_size.png",
        "speedup_over_python_paillier.png",
        "accuracy_vs_users.png",
        "accuracy_vs_sparsity.png",
    }
    for path in written.figures:
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert f"](figures/{path.name})" in text
    paper = pd.read_csv(tmp_path / "report" / "tables" / "paper_encryption.csv")
    assert paper["source"].tolist()[0] == "paper"


def test_report_of_nothing_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match="no sweep, run or asv results"):
        write_report([tmp_path / "empty"], tmp_path / "out")


def test_figures_have_labelled_axes_and_log_scales_for_wide_ranges(results):
    fig = report_figures.encryption_time_vs_sparsity(results.sweep[results.sweep["key_bits"] > 0])
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("sparsity") and "(s)" in ax.get_ylabel()
    assert ax.get_yscale() == "log"  # dense vs dphe at 95.6 % spans more than a decade
    fig = report_figures.accuracy_vs_users(results.runs, [(5, 89.3), (100, 85.6)])
    assert fig.axes[0].get_xscale() == "log"  # 3 to 100 users
    assert "(%)" in fig.axes[0].get_ylabel()
    with pytest.raises(ReportInputError, match="missing column"):
        report_figures.encryption_time_vs_key_size(results.runs)


def test_markdown_table_formats_numbers_and_escapes_pipes():
    table = pd.DataFrame({"a": [1.234567, np.nan], "b": ["x|y", "z"]})
    assert markdown_table(table).splitlines() == ["| a | b |", "| --- | --- |", "| 1.235 | x\\|y |", "|  | z |"]


def test_cli_report_writes_the_report_and_refuses_unknown_files(fixture_dir, tmp_path):
    code, stdout, stderr = call_cli(["report", str(fixture_dir / "sweep.csv"), "--out", str(tmp_path / "r")])
    assert code == 0, stderr
    assert (tmp_path / "r" / "report.md").exists() and "figure" in stdout
    (tmp_path / "x.txt").write_text("hello")
    code, _, stderr = call_cli(["report", str(tmp_path / "x.txt"), "--out", str(tmp_path / "r2")])
    assert code == 2 and "unknown result file" in stderr


def test_scheme_cost_table_puts_each_scheme_cost_next_to_its_leakage(results):
    from dphe_bench.bench.report import main_slice, scheme_cost_table
    from dphe_bench.schemes import SCHEMES

    costs = scheme_cost_table(results.sweep)
    main = main_slice(results.sweep, encrypted_only=False)
    assert len(costs) == int((~main["baseline"]).sum())
    assert "python-paillier" not in set(costs["backend"])
    for _, row in costs.iterrows():
        assert row["the aggregator learns"] == SCHEMES[row["scheme"].split(":")[0]].leakage
    dphe = costs[costs["scheme"] == "dphe"]
    assert (dphe.sort_values("sparsity")["ciphertexts / user"].diff().dropna() <= 0).all()
