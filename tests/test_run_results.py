"""runs.csv and run-*.json carry every setting that changes a run's result, and the report reads the same from both."""

import csv
import dataclasses
import json
import warnings
from pathlib import Path

import pytest

from dphe_bench.backends import get_backend
from dphe_bench.learning.config import load_config
from dphe_bench.learning.pipeline import run_pipeline
from dphe_bench.learning.results import CSV_COLUMNS, CSV_NAME, check_results_destination, write_run_results
from dphe_bench.learning.run_settings import RUN_SETTINGS, run_settings

pd = pytest.importorskip("pandas")

from dphe_bench.bench.report_data import RUN_COLUMNS, ReportInputError, load_results  # noqa: E402

# Every setting away from its default, so that a column filled from the wrong option (or a default) shows.
SETTINGS = [
    "data.test_fraction=0.3",
    "data.max_train_samples=600",
    "data.max_test_samples=300",
    "federation.users=3",
    "federation.rounds=1",
    "federation.split=dirichlet",
    "federation.dirichlet_alpha=2.5",
    "federation.dropout=0.1",
    "model.loss=log_loss",
    "model.alpha=0.02",
    "model.l1_ratio=0.8",
    "model.local_epochs=1",
    "crypto.key_bits=1024",
    "crypto.precision_bits=30",
    "crypto.quantization_bits=12",
    "crypto.quantization_range=4.0",
    "crypto.window_bits=6",
    "run.seed=7",
]
# Settings of the backend as it ran: filled from its resolved options, not copied from the config.
BACKEND_SETTINGS = ("backend", "backend_config", "obfuscation", "window_bits", "parallelism")


def _run(output_dir: Path, backend: str, *extra: str):
    config = load_config(None, [*SETTINGS, f"run.output_dir={output_dir}", *extra])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "1024-bit Paillier keys")
        result = run_pipeline(config, backend=backend, progress=False)
    json_path, _ = write_run_results(result)
    return config, json_path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three real runs in one folder: dphe with standard and with djn obfuscation (else equal), and plain."""
    folder = tmp_path_factory.mktemp("runs")
    made = {
        "standard": _run(folder, "gmpy2", "crypto.obfuscation=standard"),
        "djn": _run(folder, "gmpy2", "crypto.obfuscation=djn"),
        "plain": _run(folder, "python", "crypto.scheme=plain"),
    }
    with (folder / CSV_NAME).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = {row["results_file"]: row for row in reader}
    return {
        "folder": folder,
        "config": {name: config for name, (config, _) in made.items()},
        "json": {name: path for name, (_, path) in made.items()},
        "csv": {name: rows[path.name] for name, (_, path) in made.items()},
    }


def _config_settings(config) -> dict[str, object]:
    """Setting column -> the config's value, for every setting that is a config option as written."""
    values = {}
    for section in dataclasses.fields(config):
        for option in dataclasses.fields(getattr(config, section.name)):
            column = "data_path" if (section.name, option.name) == ("data", "path") else option.name
            if column in RUN_SETTINGS and column not in BACKEND_SETTINGS:
                values[column] = getattr(getattr(config, section.name), option.name)
    return values


def _as_csv_text(value: object) -> str:
    return "" if value is None else str(value)


def test_runs_csv_has_every_setting_with_the_config_s_values(runs):
    assert set(RUN_SETTINGS) <= set(CSV_COLUMNS)
    for name, config in runs["config"].items():
        expected = _config_settings(config)
        # Every setting is checked: the config's options here, the backend's below.
        assert set(expected) | set(BACKEND_SETTINGS) == set(RUN_SETTINGS)
        row = runs["csv"][name]
        assert {column: row[column] for column in expected} == {c: _as_csv_text(v) for c, v in expected.items()}


def test_the_backend_columns_say_how_the_backend_ran(runs):
    standard, djn, plain = (runs["csv"][name] for name in ("standard", "djn", "plain"))
    assert [standard[c] for c in BACKEND_SETTINGS] == [
        "gmpy2",
        "gmpy2:obfuscation=standard,window_bits=6",
        "standard",
        "",  # window_bits applies to djn only
        "1",
    ]
    assert [djn[c] for c in BACKEND_SETTINGS] == ["gmpy2", "gmpy2:obfuscation=djn,window_bits=6", "djn", "6", "1"]
    # plain uses no Paillier backend: none, and no obfuscation, window or parallelism.
    assert [plain[c] for c in BACKEND_SETTINGS] == ["python", "none", "", "", ""]
    stored = json.loads(runs["json"]["djn"].read_text(encoding="utf-8"))
    assert stored["backend_options"] == {"obfuscation": "djn", "window_bits": 6}


def test_runs_differing_only_in_obfuscation_differ_only_in_their_backend_columns(runs):
    standard, djn = runs["csv"]["standard"], runs["csv"]["djn"]
    differing = {column for column in RUN_SETTINGS if standard[column] != djn[column]}
    assert differing == {"obfuscation", "backend_config", "window_bits"}


def test_the_report_reads_the_same_run_from_its_json_and_from_runs_csv(runs):
    folder = runs["folder"]
    from_json = load_results(sorted(folder.glob("run-*.json"))).runs
    from_csv = load_results([folder / CSV_NAME]).runs
    from_folder = load_results([folder]).runs  # both: each run's JSON wins over its CSV row
    assert list(from_json.columns) == list(RUN_COLUMNS) and len(from_json) == 3
    by_file = [frame.sort_values("results_file").reset_index(drop=True) for frame in (from_json, from_csv, from_folder)]
    pd.testing.assert_frame_equal(by_file[0], by_file[1], check_exact=True)
    pd.testing.assert_frame_equal(by_file[0], by_file[2], check_exact=True)
    # And the settings are the CSV row's, cell by cell (empty cells are NaN).
    for name, path in runs["json"].items():
        row = from_json.set_index("results_file").loc[path.name]
        for column in RUN_SETTINGS:
            value, written = row[column], runs["csv"][name][column]
            if written == "":
                assert pd.isna(value), column
            elif isinstance(value, str):
                assert value == written, column
            else:
                assert float(value) == float(written), column


def test_an_old_run_json_loads_without_guessing_what_it_did_not_record(runs, tmp_path):
    """A run written before backend_options (and before some options existed) loads; what it did not record is
    ``not recorded (<its file>)``, never a value another run could share."""
    for name in ("standard", "djn"):
        data = json.loads(runs["json"][name].read_text(encoding="utf-8"))
        del data["backend_options"]
        del data["config"]["federation"]["dropout"]
        del data["config"]["data"]["features"]
        (tmp_path / f"run-old-{name}.json").write_text(json.dumps(data), encoding="utf-8")
    old = load_results([tmp_path]).runs.set_index("results_file")
    for name in ("standard", "djn"):
        row = old.loc[f"run-old-{name}.json"]
        unknown = f"not recorded (run-old-{name}.json)"
        assert row["backend_config"] == row["parallelism"] == row["dropout"] == unknown
        # What the config says is kept: the obfuscation, djn's window, and pixels (the only features then).
        assert row["obfuscation"] == name and row["features"] == "pixels" and row["users"] == 3
    assert old.loc["run-old-djn.json", "window_bits"] == 6
    assert pd.isna(old.loc["run-old-standard.json", "window_bits"])


def test_a_runs_csv_with_an_older_header_is_refused_for_writing_and_still_read(runs, tmp_path):
    old_columns = [c for c in CSV_COLUMNS if c not in ("backend_config", "parallelism", "seed")]
    with (tmp_path / CSV_NAME).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=old_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerow(runs["csv"]["standard"])
    with pytest.raises(ValueError, match="has different columns than this version writes; move it aside"):
        check_results_destination(tmp_path)
    (row,) = load_results([tmp_path / CSV_NAME]).runs.to_dict("records")
    unknown = f"not recorded ({row['results_file']})"
    assert row["backend_config"] == row["parallelism"] == row["seed"] == unknown
    assert (row["obfuscation"], row["users"], row["alpha"]) == ("standard", 3, 0.02)


def test_text_in_a_number_column_of_runs_csv_is_named(runs, tmp_path):
    rows = (runs["folder"] / CSV_NAME).read_text(encoding="utf-8").splitlines()
    header = rows[0].split(",")
    cells = next(csv.reader([rows[1]]))
    cells[header.index("users")] = "three"
    with (tmp_path / CSV_NAME).open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, cells])
    with pytest.raises(ReportInputError, match="column users must hold numbers"):
        load_results([tmp_path / CSV_NAME])


def test_parallelism_is_the_workers_or_threads_the_backend_resolved(runs):
    data = json.loads(runs["json"]["standard"].read_text(encoding="utf-8"))
    with get_backend("multiprocessing", workers=3) as pool:
        data.update(backend="multiprocessing", backend_options=pool.resolved_options())
    settings = run_settings(data)
    assert settings["parallelism"] == 3
    assert settings["backend_config"] == (
        f"multiprocessing:inner=gmpy2,obfuscation=standard,start_method={pool.start_method},window_bits=8,workers=3"
    )


def test_numba_s_default_threads_are_written_as_the_count_numba_runs_on(runs):
    numba = pytest.importorskip("numba")
    backend = get_backend("numba")
    assert backend.options()["threads"] is None
    options = backend.resolved_options()
    assert options["threads"] == numba.get_num_threads() >= 1
    data = json.loads(runs["json"]["standard"].read_text(encoding="utf-8"))
    data.update(backend="numba", backend_options=options)
    assert run_settings(data)["parallelism"] == numba.get_num_threads()
    assert f"threads={numba.get_num_threads()}" in run_settings(data)["backend_config"]
