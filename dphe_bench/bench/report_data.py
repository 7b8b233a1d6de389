"""Read sweep, run and asv result files into tidy pandas DataFrames (one row per observation).

Recognised inputs (by content, not by name):

- sweep CSV (``dphe-bench sweep``, this version's columns or an earlier subset of them): one row per cell;
- ``runs.csv`` and ``run-*.json`` (``dphe-bench run``): one row per run (the JSON wins over its CSV row);
- asv result JSON (``.asv/results/<machine>/<commit>-<env>.json``): one row per benchmark x parameter set;
  asv's ``machine.json`` and ``benchmarks.json`` are read for units and otherwise skipped.

A folder is searched recursively for ``.csv`` and ``.json`` files; files in it that are none of these (or
that are not UTF-8 text, or not valid JSON) are skipped and listed in ``ResultTables.skipped``. A file named
explicitly must be one of them. Every file read is checked before it joins a table: a bad value is a
ReportInputError naming the file, the column and the first bad row.
"""

import ast
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dphe_bench.bench.sweep import BASELINE_NAME, CELL_COLUMNS, HEU_NAME, SWEEP_COLUMNS, is_sweep_header
from dphe_bench.crypto.paillier import KEY_SIZES
from dphe_bench.errors import DpheError, plain_list
from dphe_bench.learning.run_settings import _CONFIG_SETTINGS, NO_BACKEND, RUN_SETTINGS, run_settings
from dphe_bench.schemes import SCHEMES

RUN_CSV_REQUIRED = ("dataset", "users", "scheme", "backend", "key_bits", "accuracy_scheme", "user_sparsity_mean")
ASV_METADATA = ("machine.json", "benchmarks.json")


class ReportInputError(DpheError, ValueError):
    """A result file that cannot be read, or results that cannot make a report."""


@dataclass
class ResultTables:
    """Tidy tables of everything read.

    Attributes
    ----------
    sweep : pandas.DataFrame
        One row per sweep cell (``SWEEP_COLUMNS``), numeric columns as numbers.
    runs : pandas.DataFrame
        One row per ``dphe-bench run``: ``RUN_COLUMNS``, every setting that changes its result
        (``RUN_SETTINGS``; NaN where unset, not applying, or not recorded by an older version), then its results.
    asv : pandas.DataFrame
        One row per asv benchmark x parameter set x commit (benchmark, params, value, unit, commit, machine).
    sources : list of Path
        Files read. ``skipped``: files in the given folders that were not results.
    """

    sweep: pd.DataFrame
    runs: pd.DataFrame
    asv: pd.DataFrame
    sources: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def load_results(paths: Iterable[str | Path]) -> ResultTables:
    """Read every result file in ``paths`` (files or folders) into tidy DataFrames.

    Raises ReportInputError for a missing path, an explicitly named file of an unknown type or that cannot be
    decoded, or a file that claims a known type but lacks its columns or holds a bad value.
    """
    sweeps, run_rows, run_csvs, asv_rows = [], [], [], []
    sources, skipped = [], []
    for path in map(Path, paths):
        if not path.exists():
            raise ReportInputError(f"{path} does not exist")
        explicit = path.is_file()
        files = [path] if explicit else sorted(p for p in path.rglob("*") if p.suffix in (".csv", ".json"))
        for file in files:
            try:
                kind = _kind(file)
            except _Unreadable as exc:
                if explicit:
                    raise ReportInputError(str(exc)) from None
                skipped.append(file)
                continue
            if kind is None:
                if explicit:
                    raise ReportInputError(
                        f"{file}: unknown result file; expected a sweep CSV, runs.csv, a run-*.json file "
                        "or an asv result JSON file"
                    )
                skipped.append(file)
                continue
            if kind == "asv-metadata":
                continue
            sources.append(file)
            try:
                if kind == "sweep":
                    sweeps.append(read_sweep_file(file))
                elif kind == "runs-csv":
                    run_csvs.append(_read_runs_csv(file))
                elif kind == "run-json":
                    run_rows.append(_run_row(json.loads(file.read_text(encoding="utf-8")), file.name))
                else:
                    asv_rows += _asv_rows(json.loads(file.read_text(encoding="utf-8")), file)
            except (UnicodeDecodeError, pd.errors.ParserError) as exc:
                raise ReportInputError(f"{file} cannot be read as a {kind} result file: {exc}") from None
    return ResultTables(
        sweep=tidy_sweep(sweeps),
        runs=_tidy_runs(run_rows, run_csvs),
        asv=pd.DataFrame(asv_rows, columns=ASV_COLUMNS),
        sources=sources,
        skipped=skipped,
    )


class _Unreadable(Exception):
    """A file that is not UTF-8 text or not valid JSON: an error when named, skipped inside a folder."""


def _kind(file: Path) -> str | None:
    if file.name in ASV_METADATA:
        return "asv-metadata"
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _Unreadable(f"{file} is not UTF-8 text, so not a result file") from None
    if file.suffix == ".csv":
        header = text.partition("\n")[0].strip().split(",")
        if is_sweep_header(header):
            return "sweep"
        if set(RUN_CSV_REQUIRED) <= set(header):
            return "runs-csv"
        return None
    if file.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Unreadable(f"{file}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and {"config", "federated"} <= set(data):
            return "run-json"
        if isinstance(data, dict) and {"results", "commit_hash"} <= set(data):
            return "asv"
    return None


# ---- sweep ---------------------------------------------------------------------------------------------

# Sweep columns that hold text; every other column of SWEEP_COLUMNS holds numbers.
SWEEP_TEXT_COLUMNS = (
    "scheme",
    "backend",
    "scheme_name",
    "backend_name",
    "backend_config",
    "obfuscation",
    "kernel",
    "time_utc",
    "host",
    "os",
    "cpu",
    "python",
    "dphe_bench",
)
# What the report reads from every sweep file (the first version's files have all of them).
SWEEP_REQUIRED = (
    *CELL_COLUMNS,
    "scheme_name",
    "backend_name",
    "precompute_s",
    "encrypt_s",
    "aggregate_s",
    "decrypt_s",
    "ciphertexts",
    "bytes_per_user",
)
# Columns that, where present, must be finite and >= 0: times, bytes, ciphertexts and errors.
_SWEEP_NON_NEGATIVE = tuple(
    c for c in SWEEP_COLUMNS if c.endswith("_s") or c.startswith(("bytes_", "ciphertexts")) or "error" in c
)


def read_sweep_file(file: Path) -> pd.DataFrame:
    """One sweep CSV as a DataFrame (SWEEP_COLUMNS present in it; numeric columns as numbers, empty cells NaN).

    Raises ReportInputError naming the file, the column and the first bad row (numbered as the file's lines, the
    header being line 1): a column the report needs is missing, a numeric column holds text, a cell key is empty,
    a time, byte count, ciphertext count or error is negative or not finite, users < 1, key_bits neither 0 (no
    Paillier) nor a Paillier key size, sparsity outside [0, 1).
    """
    sweep = pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""])
    missing = [column for column in SWEEP_REQUIRED if column not in sweep.columns]
    if missing:
        raise ReportInputError(f"{file}: column {missing[0]} is missing; the report needs {', '.join(SWEEP_REQUIRED)}")

    def fail(column: str, index: int, problem: str) -> None:
        value = text[column].iloc[index]
        raise ReportInputError(f"{file} line {index + 2}: column {column} {problem}, got {value!r}")

    def first(mask: pd.Series) -> int | None:
        return int(np.flatnonzero(mask.to_numpy())[0]) if mask.any() else None

    text = {column: sweep[column].copy() for column in sweep.columns}
    for column in CELL_COLUMNS:
        if (row := first(sweep[column].isna())) is not None:
            fail(column, row, "must not be empty (it keys the cell)")
    for column in sweep.columns.intersection(SWEEP_COLUMNS).difference(SWEEP_TEXT_COLUMNS):
        numbers = pd.to_numeric(sweep[column], errors="coerce")
        if (row := first(numbers.isna() & sweep[column].notna())) is not None:
            fail(column, row, "must hold numbers")
        sweep[column] = numbers
    checks = [
        (column, lambda v: ~np.isfinite(v) | (v < 0), "must be finite and >= 0")
        for column in _SWEEP_NON_NEGATIVE
        if column in sweep.columns
    ]
    checks += [
        ("dimension", lambda v: (v < 1) | (v != np.floor(v)), "must be a whole number >= 1"),
        ("users", lambda v: (v < 1) | (v != np.floor(v)), "must be a whole number >= 1"),
        ("seed", lambda v: (v < 0) | (v != np.floor(v)), "must be a whole number >= 0"),
        ("sparsity", lambda v: ~((v >= 0) & (v < 1)), "must be in [0, 1)"),
        ("key_bits", lambda v: ~v.isin([0, *KEY_SIZES]), f"must be 0 (no Paillier) or one of {plain_list(KEY_SIZES)}"),
    ]
    for column, bad, problem in checks:
        present = sweep[column].notna()
        if (row := first(present & bad(sweep[column].where(present, 0)))) is not None:
            fail(column, row, problem)
    return sweep


def tidy_sweep(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate sweep tables, drop repeated cells (the last measurement wins) and add derived columns.

    A repeated cell has the same CELL_COLUMNS, host, cpu and resolved ``backend_config``.

    Derived: ``encrypt_per_ciphertext_s`` and ``decrypt_per_ciphertext_s`` (decryption per ciphertext of
    the aggregate), ``baseline`` (True for python-paillier and HEU rows).
    """
    if not frames:
        return pd.DataFrame(columns=[*SWEEP_COLUMNS, "encrypt_per_ciphertext_s", "baseline"])
    sweep = pd.concat(frames, ignore_index=True).reindex(columns=SWEEP_COLUMNS)
    # A cell is the same measurement only on the same machine with the same resolved backend options: the label
    # alone does not say the host, nor numba's thread count. (Empty in files written before they were recorded.)
    keys = [*CELL_COLUMNS, "host", "cpu", "backend_config"]
    sweep = sweep.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)
    ciphertexts = sweep["ciphertexts"].where(sweep["ciphertexts"] > 0)
    return sweep.assign(
        encrypt_per_ciphertext_s=sweep["encrypt_s"] / ciphertexts,
        baseline=sweep["backend_name"].isin([BASELINE_NAME, HEU_NAME]),
    )


# ---- runs ----------------------------------------------------------------------------------------------

RUN_RESULTS = (
    "dimension",
    "accuracy_centralised",
    "accuracy_plain",
    "accuracy_scheme",
    "max_abs_diff_vs_plain",
    "user_sparsity_mean",
    "union_sparsity",
    "encrypt_s",
    "time_utc",
    "results_file",
)
RUN_COLUMNS = (*RUN_SETTINGS, *RUN_RESULTS)
"""The runs table's columns: every setting that changes a run's result (``RUN_SETTINGS``), then its results."""

# Columns of the runs table that hold text; every other column is read as numbers, whichever file it came from.
_RUN_TEXT_COLUMNS = (
    "dataset",
    "features",
    "data_path",
    "engine",
    "split",
    "loss",
    "scheme",
    "backend",
    "backend_config",
    "obfuscation",
    "time_utc",
    "results_file",
)


_ACCURACIES = ("accuracy_centralised", "accuracy_plain", "accuracy_scheme")
# Settings that belong to the Paillier backend: they do not apply to a scheme without one (plain, ckks).
_BACKEND_SETTINGS = ("backend_config", "obfuscation", "window_bits", "parallelism")


def not_recorded(run: str) -> str:
    """The value of a setting that ``run`` (its results file) did not record: text unique to the run, so that the
    run never looks like another run in that setting (an unknown alpha is not the same alpha)."""
    return f"not recorded ({run})"


def _is_not_recorded(value: object) -> bool:
    return isinstance(value, str) and value.startswith("not recorded (")


def _run_row(data: dict, name: str) -> dict:
    """One run JSON (``PipelineResult.to_dict``) as a flat row of RUN_COLUMNS.

    NaN where a setting does not apply or a result is absent; ``not_recorded(name)`` for a setting the run's config
    does not hold (written by an earlier version). Raises ReportInputError naming ``name`` for a part that is
    missing or of the wrong type, or an accuracy that is not a number in [0, 1].
    """
    try:
        _check_structure(data)
        settings = run_settings(data)
        scheme = settings["scheme"]
        outcome = data["federated"][scheme]
        plain = data["federated"].get("plain")
        sparsities = outcome["user_sparsity"]
        results = {
            "dimension": data["dimension"],
            "accuracy_centralised": data["centralised_accuracy"],
            "accuracy_plain": plain["accuracy"] if plain else None,
            "accuracy_scheme": outcome["accuracy"],
            "max_abs_diff_vs_plain": data.get("max_abs_diff_vs_plain"),
            "user_sparsity_mean": sum(sparsities) / len(sparsities) if sparsities else None,
            "union_sparsity": outcome["union_sparsity"],
            "encrypt_s": outcome["timings_s"]["encrypt"],
            "time_utc": data.get("environment", {}).get("time_utc"),
            "results_file": name,
        }
    except KeyError as exc:
        raise ReportInputError(f"{name}: run results lack {exc}") from None
    except (TypeError, AttributeError, ValueError) as exc:
        raise ReportInputError(f"{name}: {exc}") from None
    settings.update(_unrecorded_settings(data, settings, name))
    row = {**settings, **results}
    for column, value in row.items():
        _check_run_value(column, value, name)
    return {column: np.nan if value is None else value for column, value in row.items()}


def _check_structure(data: dict) -> None:
    """Raise TypeError when the run's config, one of its sections, or its results are not dicts."""
    for part in ("config", "federated"):
        if not isinstance(data[part], dict):
            raise TypeError(f"{part} is a {type(data[part]).__name__}, not a table of values")
    for section, values in data["config"].items():
        if not isinstance(values, dict):
            raise TypeError(f"config section {section!r} is a {type(values).__name__}, not a table of values")
    for part in ("backend_options", "environment"):
        if data.get(part) is not None and not isinstance(data[part], dict):
            raise TypeError(f"{part} is a {type(data[part]).__name__}, not a table of values")


def _unrecorded_settings(data: dict, settings: dict, name: str) -> dict:
    """The settings a run's JSON does not hold, as ``not_recorded(name)`` (none that do not apply to it)."""
    config = data["config"]
    marker = not_recorded(name)
    unrecorded = {
        column: marker
        for column, (section, key) in _CONFIG_SETTINGS.items()
        if column != "features" and key not in config.get(section, {})
    }
    if settings["backend_config"] is None and SCHEMES[settings["scheme"]].paillier:
        crypto = config.get("crypto", {})
        unrecorded.update(backend_config=marker, parallelism=marker)
        if "obfuscation" not in crypto:
            unrecorded.update(obfuscation=marker, window_bits=marker)
        elif crypto["obfuscation"] == "djn" and "window_bits" not in crypto:
            unrecorded["window_bits"] = marker
    return unrecorded


def _check_run_value(column: str, value: object, name: str) -> None:
    """Raise ReportInputError naming ``name`` when a run's value has the wrong type or an accuracy is not in [0, 1]."""
    if value is None or _is_not_recorded(value):
        return
    if column in _RUN_TEXT_COLUMNS:
        if not isinstance(value, str):
            raise ReportInputError(f"{name}: {column} must be text, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportInputError(f"{name}: {column} must be a number, got {value!r}")
    if column in _ACCURACIES and not 0 <= value <= 1:
        raise ReportInputError(f"{name}: {column} must be a number in [0, 1], got {value!r}")


def _read_runs_csv(file: Path) -> pd.DataFrame:
    """A runs.csv as written: only empty cells are missing (``none``, ``NA`` and the like stay text).

    A setting column that the file lacks (written by an earlier version) is ``not_recorded(results_file)`` in each
    row, except where it does not apply (the backend settings of plain and ckks, window_bits of a run whose
    obfuscation is not djn: NaN) and ``features`` (``pixels``, the only kind before it was an option).
    Raises ReportInputError naming the file, the column and the first bad row (file lines, header = 1) when a
    number column holds text, an accuracy is outside [0, 1], or a scheme is one this version does not know.
    """
    runs = pd.read_csv(file, keep_default_na=False, na_values=[""], dtype=dict.fromkeys(_RUN_TEXT_COLUMNS, str))
    lines = pd.Series([f"{file.name} line {i + 2}" for i in range(len(runs))], index=runs.index)

    def fail(column: str, row: int, problem: str) -> None:
        raise ReportInputError(f"{file} line {row + 2}: column {column} {problem}, got {runs[column].iloc[row]!r}")

    unknown = ~runs["scheme"].isin(list(SCHEMES))
    if unknown.any():
        fail("scheme", int(np.flatnonzero(unknown)[0]), "must name a scheme this version knows")
    for column in set(RUN_COLUMNS).intersection(runs.columns).difference(_RUN_TEXT_COLUMNS):
        numbers = pd.to_numeric(runs[column], errors="coerce")
        bad = numbers.isna() & runs[column].notna()
        if column in _ACCURACIES:
            bad |= numbers.notna() & ~numbers.between(0, 1)
        if bad.any():
            fail(
                column,
                int(np.flatnonzero(bad)[0]),
                "must hold numbers" + (" in [0, 1]" if column in _ACCURACIES else ""),
            )
        runs[column] = numbers
    marker = ("not recorded (" + runs.get("results_file", lines).fillna(lines) + ")").astype(object)
    paillier = runs["scheme"].map(lambda scheme: SCHEMES[scheme].paillier).astype(bool)
    obfuscation_recorded = "obfuscation" in runs.columns
    for column in (c for c in RUN_SETTINGS if c not in runs.columns):
        if column == "features":
            runs[column] = "pixels"
        elif column == "backend_config":
            runs[column] = marker.where(paillier, NO_BACKEND)
        elif column == "window_bits" and obfuscation_recorded:
            not_djn = runs["obfuscation"].notna() & (runs["obfuscation"] != "djn")
            runs[column] = marker.where(paillier & ~not_djn, np.nan)
        elif column in _BACKEND_SETTINGS:
            runs[column] = marker.where(paillier, np.nan)
        else:
            runs[column] = marker
    return runs


def _tidy_runs(json_rows: list[dict], csvs: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per run (a run's JSON wins over its runs.csv row), RUN_COLUMNS with the same types from both.

    A number column that holds ``not_recorded(...)`` for some run stays an object column: numbers and that text.
    """
    runs = pd.DataFrame(json_rows, columns=RUN_COLUMNS)
    if csvs:
        from_csv = pd.concat(csvs, ignore_index=True).reindex(columns=RUN_COLUMNS)
        seen = set(runs["results_file"])
        from_csv = from_csv[~from_csv["results_file"].isin(seen)]
        runs = pd.concat([df for df in (runs, from_csv) if not df.empty], ignore_index=True)
        runs = runs.reindex(columns=RUN_COLUMNS)
    runs = runs.drop_duplicates(subset="results_file", keep="first").reset_index(drop=True)
    for column in RUN_COLUMNS:
        if column in _RUN_TEXT_COLUMNS:
            runs[column] = runs[column].astype(object).where(runs[column].notna(), np.nan)
            continue
        unrecorded = runs[column].map(_is_not_recorded).astype(bool)
        numbers = pd.to_numeric(runs[column].where(~unrecorded))
        runs[column] = numbers.astype(object).where(~unrecorded, runs[column]) if unrecorded.any() else numbers
    return runs


# ---- asv -----------------------------------------------------------------------------------------------

ASV_COLUMNS = ("benchmark", "params", "value", "unit", "commit", "machine", "date")


def _asv_rows(data: dict, file: Path) -> list[dict]:
    """One row per benchmark x parameter combination of one asv result file (format version 2)."""
    if data.get("version") != 2:
        raise ReportInputError(f"{file}: asv result format version {data.get('version')}; this reads version 2")
    columns = data.get("result_columns", [])
    units = _asv_units(file)
    rows = []
    for benchmark, entry in data["results"].items():
        record = dict(zip(columns, entry, strict=False))
        values = record.get("result")
        params = record.get("params") or []
        if values is None:
            continue
        combos = list(itertools.product(*params)) if params else [()]
        names = units.get(benchmark, {}).get("param_names", [f"p{i}" for i in range(len(params))])
        for combo, value in zip(combos, values, strict=False):
            rows.append(
                {
                    "benchmark": benchmark,
                    "params": ", ".join(f"{n}={_asv_param(v)}" for n, v in zip(names, combo, strict=False)),
                    "value": np.nan if value is None else float(value),
                    "unit": units.get(benchmark, {}).get("unit", _default_unit(benchmark)),
                    "commit": data["commit_hash"][:8],
                    "machine": data.get("params", {}).get("machine", ""),
                    "date": pd.to_datetime(data.get("date"), unit="ms") if data.get("date") else pd.NaT,
                }
            )
    return rows


def _asv_units(result_file: Path) -> dict[str, dict]:
    """Units and parameter names from the ``benchmarks.json`` asv keeps next to the machine folders."""
    for folder in (result_file.parent.parent, result_file.parent):
        index = folder / "benchmarks.json"
        if index.exists():
            data = json.loads(index.read_text(encoding="utf-8"))
            return {name: b for name, b in data.items() if isinstance(b, dict)}
    return {}


def _asv_param(text: str) -> str:
    try:
        return str(ast.literal_eval(text))
    except (ValueError, SyntaxError):
        return text


def _default_unit(benchmark: str) -> str:
    method = benchmark.rsplit(".", 1)[-1]
    if method.startswith("time_"):
        return "seconds"
    if method.startswith(("peakmem_", "mem_")):
        return "bytes"
    return ""
