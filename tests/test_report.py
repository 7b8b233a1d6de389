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
    accuracy_vs_sparsity_table,
    accuracy_vs_users_table,
    headline_encryption_table,
    main_slice,
    markdown_table,
    scheme_cost_table,
    speedup_summary,
    speedup_table,
    with_derived,
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
        obfuscations=("standard", "djn"),
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
    assert len(results.sweep) == 2 + 2 * 2 * 3  # plain per sparsity + (dense, dphe) x 2 x (2 gmpy2 modes, baseline)
    assert set(results.sweep["backend"]) == {
        "none",
        "gmpy2:obfuscation=standard",
        "gmpy2:obfuscation=djn",
        BASELINE_NAME,
    }
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
    assert len(loaded.sweep) == 14


@pytest.fixture(scope="module")
def sweep(results):
    return with_derived(results.sweep)


def test_speedup_pairs_each_cell_with_the_baseline_on_the_same_values(sweep):
    speedups = speedup_table(sweep)
    assert len(speedups) == 2 * 2 * 2  # (dense, dphe) x 2 sparsities x (standard, djn)
    assert set(speedups["configuration"]) == {"gmpy2 standard (1 core)", "gmpy2 djn (8-bit windows, 1 core)"}
    for _, row in speedups.iterrows():
        same = sweep[
            (sweep["scheme"] == row["scheme"]) & np.isclose(sweep["sparsity"], float(row["sparsity"]))
        ].set_index("backend_config")
        ours = same.loc[row["backend_config"], "encryption_per_user_s"]
        theirs = same.loc[BASELINE_NAME, "encryption_per_user_s"]
        assert row["speedup"] == pytest.approx(theirs / ours)
    summary = speedup_summary(speedups)
    assert len(summary) == 2 and set(summary["cells"]) == {4}
    assert summary["HEU cells"].tolist() == [0, 0] and summary["vs HEU (geometric mean)"].isna().all()


def test_vs_heu_is_a_geometric_mean_over_exactly_the_cells_counted_beside_it():
    cells = [  # (sparsity, backend_name, backend label, encrypt_s)
        (0.5, "gmpy2", "gmpy2", 2.0),
        (0.5, BASELINE_NAME, BASELINE_NAME, 20.0),
        (0.5, "heu", "heu:variant=ZPaillier", 3.0),
        (0.5, "heu", "heu:variant=IPCL", 12.0),
        (0.9, "gmpy2", "gmpy2", 1.0),
        (0.9, BASELINE_NAME, BASELINE_NAME, 8.0),
    ]
    sweep = _frame(
        [
            {"sparsity": s, "backend_name": name, "backend": label, "backend_config": label, "encrypt_s": seconds}
            for s, name, label, seconds in cells
        ]
    )
    table = speedup_table(sweep)
    assert table["speedup"].tolist() == [10.0, 8.0]
    assert table["vs_heu"].iloc[0] == 1.5 and np.isnan(table["vs_heu"].iloc[1])
    summary = speedup_summary(table).iloc[0]
    assert (summary["vs HEU (geometric mean)"], summary["HEU cells"], summary["cells"]) == (1.5, 1, 2)
    assert summary["speed-up (geometric mean)"] == pytest.approx(np.sqrt(80.0))


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Sweep rows through the report's own reader (tidy_sweep) with every other column at a common value."""
    from dphe_bench.bench.report_data import tidy_sweep

    common = {
        "dimension": 100,
        "users": 1,
        "sparsity": 0.5,
        "key_bits": 2048,
        "scheme": "dense",
        "scheme_name": "dense",
        "seed": 0,
        "host": "h",
        "cpu": "c",
        "precompute_s": 0.0,
        "ciphertexts": 100,
        "load_average": 1.0,
        "time_utc": "2026-11-29T00:00:00Z",
    }
    return with_derived(tidy_sweep([pd.DataFrame([{**common, **row} for row in rows])]))


def test_the_headline_takes_each_backend_fastest_configuration_and_says_what_is_projected():
    rows = []
    for mode, dense_s, dphe_s in (("standard", 50.0, 40.0), ("djn", 5.0, 4.0)):
        config = f"gmpy2:obfuscation={mode},window_bits=8"
        common = {"backend_name": "gmpy2", "backend": config, "backend_config": config, "obfuscation": mode}
        common["window_bits"] = 8 if mode == "djn" else np.nan
        rows.append({**common, "scheme": "dense", "scheme_name": "dense", "dimension": 2000, "encrypt_s": dense_s})
        rows.append(
            {
                **common,
                "scheme": "dphe",
                "scheme_name": "dphe",
                "dimension": 200_000,
                "sparsity": 0.956,
                "encrypt_s": dphe_s,
            }
        )
    table = headline_encryption_table(_frame(rows))
    paper = table.iloc[0]
    assert (paper["dense (s)"], paper["dphe at 95.6 % (s)"], paper["dense / dphe"]) == (620.0, 62.0, 10.0)
    (ours,) = table[table["source"] == "ours"].to_dict("records")
    assert ours["configuration"] == "gmpy2 djn (8-bit windows)"
    assert ours["dphe at 95.6 % (s)"] == 4.0 and ours["dense (s)"] == pytest.approx(5.0 * 100)
    assert ours["basis"] == "dense: projected from D = 2,000 (1 user; x100); dphe: measured at D = 200,000 (1 user)"


def test_the_headline_names_heu_and_python_paillier_rows_as_baselines_not_ours():
    rows = [
        {"backend_name": name, "backend": label, "backend_config": label, "dimension": 200_000, "encrypt_s": seconds}
        for name, label, seconds in (
            ("gmpy2", "gmpy2", 100.0),
            ("heu", "heu:threads=1,variant=ZPaillier", 80.0),
            (BASELINE_NAME, BASELINE_NAME, 120.0),
        )
    ]
    table = headline_encryption_table(_frame(rows)).set_index("backend")
    assert table.loc["heu", "source"] == "SecretFlow HEU" and table.loc["heu", "configuration"] == "heu ZPaillier"
    assert table.loc[BASELINE_NAME, "source"] == "baseline" and table.loc["gmpy2", "source"] == "ours"
    assert table.loc["gmpy2", "dense (s)"] == 100.0
    assert table.loc["gmpy2", "basis"] == "dense: measured at D = 200,000 (1 user); dphe: no cell at 95.6 %"


def test_paper_accuracy_tables_put_comparable_runs_next_to_the_paper(results, sweep):
    users, series, _, text = accuracy_vs_users_table(results.runs)
    users = users.set_index("users")
    assert users.loc[5, "paper: Caltech101 (%)"] == 89.3 and users.loc[100, "paper: Caltech101 (%)"] == 85.6
    # The users series is the runs at model alpha 0.01 (3 and 10 users); the 100-user run differs in alpha too.
    assert len(series) == 1 and sorted(series[0].rows["users"]) == [3, 10]
    (ours,) = [c for c in users.columns if c.startswith("ours")]
    assert users.loc[10, ours] == pytest.approx(91.0)
    assert np.isnan(users.loc[5, ours]) and np.isnan(users.loc[100, ours])
    assert "model alpha 0.01" in text and "1 run(s) left out" in text

    sparsity, series, _, text = accuracy_vs_sparsity_table(results.runs, sweep)
    assert list(sparsity["accuracy (%)"][:2]) == [89.7, 88.2]
    assert len(series) == 0 and len(sparsity) == 2  # no two runs differ only in model.alpha
    assert "3 run(s) left out" in text
    assert "no DPHE cell at D = 200,000" in sparsity.attrs["projection"]


def _edited_runs(tmp_path: Path, real: Path, changes: dict[str, tuple]) -> Path:
    """Copies of the run ``real``: for each name, users 3 and 10 with (config section, key, value, accuracy)."""
    folder = tmp_path / "runs"
    folder.mkdir()
    for name, (section, key, value, accuracy) in changes.items():
        for users in (3, 10):
            data = json.loads(real.read_text())
            data["config"]["federation"]["users"] = users
            data["config"][section][key] = value
            if key == "obfuscation":
                data["backend_options"] = {**data.get("backend_options", {}), "obfuscation": value}
            if key == "scheme":
                data["federated"][value] = (
                    data["federated"].pop(data["config"]["crypto"]["scheme"], None) or data["federated"]["dphe"]
                )
            data["federated"][data["config"]["crypto"]["scheme"]]["accuracy"] = accuracy + users / 1000
            (folder / f"run-{name}-{users}.json").write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize(
    "changes",
    [
        {"a": ("crypto", "obfuscation", "standard", 0.5), "b": ("crypto", "obfuscation", "djn", 0.9)},
        {"a": ("crypto", "scheme", "dphe", 0.5), "b": ("crypto", "scheme", "dense", 0.9)},
        {"a": ("federation", "split", "iid", 0.5), "b": ("federation", "split", "dirichlet", 0.9)},
    ],
    ids=["obfuscation", "scheme", "split"],
)
def test_runs_that_differ_in_one_setting_never_share_a_row_or_a_line(fixture_dir, tmp_path, changes):
    (real,) = (fixture_dir / "runs").glob("run-2*.json")
    runs = load_results([_edited_runs(tmp_path, real, changes)]).runs
    assert len(runs) == 4
    table, series, labels, _ = accuracy_vs_users_table(runs)
    assert len(series) == 2 and len(set(labels)) == 2
    ours = [c for c in table.columns if c.startswith("ours")]
    values = {column: sorted(table[column].dropna().round(6)) for column in ours}
    # Each column holds one variant's two runs and nothing averaged across the variants.
    assert sorted(values.values()) == [[50.3, 51.0], [90.3, 91.0]]
    fig = report_figures.accuracy_lines(series, labels, "users", "users", "t")
    drawn = sorted(sorted(np.round(line.get_ydata(), 6)) for line in fig.axes[0].lines if line.get_linestyle() == "-")
    assert drawn == [[50.3, 51.0], [90.3, 91.0]]
    _assert_distinct_styles(fig)


def test_cells_that_differ_only_in_obfuscation_are_separate_rows_and_lines(sweep):
    from dphe_bench.bench.report import encryption_vs_sparsity_figure

    summary = speedup_summary(speedup_table(sweep))
    assert len(summary) == len(set(summary["configuration"])) == 2
    fig, text = encryption_vs_sparsity_figure(sweep)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"gmpy2 standard (1 core)", "gmpy2 djn (8-bit windows, 1 core)", f"{BASELINE_NAME} (1 core)"} <= set(legend)
    assert "D 20" in text and "users 2" in text
    for ax in fig.axes:
        assert len(ax.lines) == 3  # per scheme panel: two gmpy2 modes and the baseline, never merged
    _assert_distinct_styles(fig)


def _assert_distinct_styles(fig) -> None:
    """No two legend entries share a colour-and-marker pair; every drawn marker line has a legend entry's style."""
    from matplotlib.colors import to_hex

    handles = fig.legends[0].legend_handles
    pairs = [(to_hex(h.get_color()), h.get_marker()) for h in handles]
    assert len(pairs) == len(set(pairs))
    for ax in fig.axes:
        for line in ax.lines:
            if line.get_marker() not in ("None", "", None):
                assert (to_hex(line.get_color()), line.get_marker()) in pairs


@pytest.mark.parametrize("count", [1, 2, 13, 20, 21, 100, report_figures.MAX_SERIES])
def test_series_styles_give_every_series_its_own_colour_and_marker(count):
    styles = report_figures.series_styles([f"s{i}" for i in range(count)])
    pairs = {(style["color"], style["marker"]) for style in styles.values()}
    assert len(pairs) == count
    with pytest.raises(ReportInputError, match="too many"):
        report_figures.series_styles([f"s{i}" for i in range(report_figures.MAX_SERIES + 1)])


def test_write_report_opens_with_the_headline_and_writes_figures_and_tables(fixture_dir, tmp_path):
    written = write_report([fixture_dir], tmp_path / "report")
    text = written.markdown.read_text()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert len(headings) == len(set(headings))
    assert headings[1] == "## Headline: the paper's three results next to ours"
    for heading in ("paper table 1", "paper table 2", "paper table 3", "Speed-up over python-paillier", "asv"):
        assert heading in text
    assert "What differs from the paper's setting" in text
    assert "e+0" not in text.split("## asv")[0]  # seconds and bytes in human units, not 5.13e+04
    names = {p.name for p in written.figures}
    assert names == {
        "encryption_time_vs_sparsity.png",
        "bytes_per_user_vs_sparsity.png",
        "speedup_over_python_paillier.png",
        "accuracy_vs_users.png",
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


def test_figures_have_labelled_axes_human_units_and_legends_outside(sweep):
    from dphe_bench.bench.report import bytes_vs_sparsity_figure, encryption_vs_sparsity_figure

    fig, _ = encryption_vs_sparsity_figure(sweep)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("sparsity") and ax.get_ylabel() == "encryption per user"
    assert ax.get_yscale() == "log"  # dense vs dphe at 95.6 % spans more than a decade
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(label.endswith((" s", " ms", " µs", " min")) for label in labels)
    legend = fig.legends[0].get_window_extent()
    for axes in fig.axes:
        assert not legend.overlaps(axes.get_window_extent())
    fig, _ = bytes_vs_sparsity_figure(sweep)
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert labels and all(label.endswith(("B", "KiB", "MiB")) for label in labels)


def test_markdown_table_writes_human_units_and_escapes_pipes():
    table = pd.DataFrame(
        {
            "a": [1.234567, np.nan],
            "b": ["x|y", "z"],
            "t (s)": [0.0153, 754.0],
            "sent (bytes)": [52_530, 512],
            "key bits": [2048, np.nan],
        }
    )
    assert markdown_table(table).splitlines() == [
        "| a | b | t | sent | key bits |",
        "| --- | --- | --- | --- | --- |",
        "| 1.23 | x\\|y | 15.3 ms | 51.3 KiB | 2048 |",
        "|  | z | 12.6 min | 512 B |  |",
    ]


def test_cli_report_writes_the_report_and_refuses_unknown_files(fixture_dir, tmp_path):
    code, stdout, stderr = call_cli(["report", str(fixture_dir / "sweep.csv"), "--out", str(tmp_path / "r")])
    assert code == 0, stderr
    assert (tmp_path / "r" / "report.md").exists() and "figure" in stdout
    (tmp_path / "x.txt").write_text("hello")
    code, _, stderr = call_cli(["report", str(tmp_path / "x.txt"), "--out", str(tmp_path / "r2")])
    assert code == 2 and "unknown result file" in stderr


def test_scheme_cost_table_takes_each_scheme_at_its_fastest_configuration_next_to_its_leakage(sweep):
    from dphe_bench.schemes import SCHEMES

    costs = scheme_cost_table(sweep)
    main = main_slice(sweep, encrypted_only=False)
    assert len(costs) == 3 * 2  # plain, dense, dphe x 2 sparsities
    assert not costs["fastest configuration"].str.contains(BASELINE_NAME).any()
    for _, row in costs.iterrows():
        name = row["scheme"].split(" ")[0]
        assert row["the aggregator learns"] == SCHEMES[name].leakage
        same = main[(main["scheme_name"] == name) & np.isclose(main["sparsity"], row["sparsity"]) & ~main["baseline"]]
        assert row["encryption / user (s)"] == same["encryption_per_user_s"].min()
    dphe = costs[costs["scheme"].str.startswith("dphe")]
    assert (dphe.sort_values("sparsity")["ciphertexts / user"].diff().dropna() <= 0).all()


def test_a_new_report_replaces_the_old_one_whole_and_a_failed_one_leaves_it(fixture_dir, tmp_path):
    out = tmp_path / "r"
    write_report([fixture_dir / "runs"], out)
    assert (out / "figures" / "accuracy_vs_users.png").exists()
    (out / "notes.txt").write_text("mine")
    (out / "figures" / "my-plot.png").write_bytes(PNG_MAGIC)
    written = write_report([fixture_dir / "sweep.csv"], out)
    assert (out / "figures" / "my-plot.png").read_bytes() == PNG_MAGIC  # not the report's: never removed
    (out / "figures" / "my-plot.png").unlink()
    # The run-only figure and tables of the first report are gone; what the user put there is not.
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(p.name for p in written.figures)
    assert sorted(p.name for p in (out / "tables").iterdir()) == sorted(p.name for p in written.tables)
    assert (out / "notes.txt").read_text() == "mine"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"config": [], "federated": {}}))
    with pytest.raises(ReportInputError):
        write_report([fixture_dir / "sweep.csv", bad], out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".report-staging")]


def test_a_configuration_keeps_its_style_in_every_figure_and_headers_escape_pipes(fixture_dir, tmp_path):
    import re

    written = write_report([fixture_dir], tmp_path / "r")
    text = written.markdown.read_text()
    for block in re.findall(r"(\| .+ \|\n\| (?:--- \| )*--- \|)", text):
        header, rule = block.split("\n")
        assert len(re.split(r"(?<!\\)\|", header)) == len(rule.split("|"))  # as many cells as the rule row
    from dphe_bench.bench.report import bytes_vs_sparsity_figure, encryption_vs_sparsity_figure

    registry: dict = {}
    sweep = with_derived(load_results([fixture_dir / "sweep.csv"]).sweep)
    first, _ = encryption_vs_sparsity_figure(sweep, registry)
    second, _ = bytes_vs_sparsity_figure(sweep, registry)
    styles = {}
    for fig in (first, second):
        for handle, label in zip(fig.legends[0].legend_handles, fig.legends[0].get_texts(), strict=True):
            style = (handle.get_color(), handle.get_marker())
            assert styles.setdefault(label.get_text(), style) == style
    assert len(set(styles.values())) == len(styles)


def test_settings_that_do_not_apply_do_not_split_runs_into_series():
    from dphe_bench.bench.report import applicable_runs

    runs = pd.DataFrame(
        {
            "split": ["iid", "iid", "dirichlet", "dirichlet"],
            "dirichlet_alpha": [0.5, 0.1, 0.5, 0.1],
            "scheme": ["dphe"] * 4,
            "quantization_bits": [16, 8, 16, 8],
            "obfuscation": ["standard"] * 4,
            "backend_config": ["gmpy2:obfuscation=standard,window_bits=8", "gmpy2:obfuscation=standard,window_bits=12"]
            * 2,
        }
    )
    cleaned = applicable_runs(runs)
    assert cleaned["dirichlet_alpha"].isna().tolist() == [True, True, False, False]
    assert cleaned["quantization_bits"].isna().all()
    assert set(cleaned["backend_config"]) == {"gmpy2:obfuscation=standard"}
