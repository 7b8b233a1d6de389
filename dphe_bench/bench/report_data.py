"""Read sweep, run and asv result files into tidy pandas DataFrames (one row per observation).

Recognised inputs (by content, not by name):

- sweep CSV (``dphe-bench sweep``, this version's columns or an earlier subset of them): one row per cell;
- ``runs.csv`` and ``run-*.json`` (``dphe-bench run``): one row per run (the JSON wins over its CSV row);
- asv result JSON (``.asv/results/<machine>/<commit>-<env>.json``): one row per benchmark x parameter set;
  asv's ``machine.json`` and ``benchmarks.json`` are read for units and otherwise skipped.

A folder is searched recursively for ``.csv`` and ``.json`` files; files in it that are none of these are
skipped (and listed in ``ResultTables.skipped``). A file named explicitly must be one of them.
"""

import ast
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dphe_bench.bench.sweep import BASELINE_NAME, HEU_NAME, SWEEP_COLUMNS, is_sweep_header
from dphe_bench.errors import DpheError
from dphe_bench.learning.run_settings import RUN_SETTINGS, run_settings

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

    Raises ReportInputError for a missing path, an explicitly named file of an unknown type, or a file
    that claims a known type but lacks its columns.
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
            except UnicodeDecodeError:
                raise ReportInputError(f"{file} is not UTF-8 text, so not a result file") from None
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
                    sweeps.append(pd.read_csv(file))
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


def _kind(file: Path) -> str | None:
    if file.name in ASV_METADATA:
        return "asv-metadata"
    if file.suffix == ".csv":
        with file.open(encoding="utf-8") as f:
            header = f.readline().strip().split(",")
        if is_sweep_header(header):
            return "sweep"
        if set(RUN_CSV_REQUIRED) <= set(header):
            return "runs-csv"
        return None
    if file.suffix == ".json":
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReportInputError(f"{file}: not valid JSON ({exc})") from exc
        if isinstance(data, dict) and {"config", "federated"} <= set(data):
            return "run-json"
        if isinstance(data, dict) and {"results", "commit_hash"} <= set(data):
            return "asv"
    return None


# ---- sweep ---------------------------------------------------------------------------------------------


def tidy_sweep(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate sweep tables, drop repeated cells (the last measurement wins) and add derived columns.

    Derived: ``encrypt_per_ciphertext_s`` and ``decrypt_per_ciphertext_s`` (decryption per ciphertext of
    the aggregate), ``baseline`` (True for python-paillier and HEU rows).
    """
    if not frames:
        return pd.DataFrame(columns=[*SWEEP_COLUMNS, "encrypt_per_ciphertext_s", "baseline"])
    sweep = pd.concat(frames, ignore_index=True).reindex(columns=SWEEP_COLUMNS)
    keys = ["dimension", "users", "sparsity", "key_bits", "scheme", "backend", "seed"]
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


def _run_row(data: dict, name: str) -> dict:
    """One run JSON (``PipelineResult.to_dict``) as a flat row of RUN_COLUMNS; NaN where the file does not say."""
    try:
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
    except (KeyError, TypeError) as exc:
        raise ReportInputError(f"{name}: run results lack {exc}") from exc
    except ValueError as exc:
        raise ReportInputError(f"{name}: {exc}") from exc
    return {column: np.nan if value is None else value for column, value in {**settings, **results}.items()}


def _read_runs_csv(file: Path) -> pd.DataFrame:
    """A runs.csv as written: only empty cells are missing (``none``, ``NA`` and the like stay text).

    Raises ReportInputError naming the column when a number column holds text.
    """
    runs = pd.read_csv(file, keep_default_na=False, na_values=[""], dtype=dict.fromkeys(_RUN_TEXT_COLUMNS, str))
    for column in set(RUN_COLUMNS).intersection(runs.columns).difference(_RUN_TEXT_COLUMNS):
        try:
            runs[column] = pd.to_numeric(runs[column])
        except ValueError as exc:
            raise ReportInputError(f"{file}: column {column} must hold numbers ({exc})") from None
    return runs


def _tidy_runs(json_rows: list[dict], csvs: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per run (a run's JSON wins over its runs.csv row), RUN_COLUMNS with the same types from both.

    A runs.csv written by an earlier version lacks columns: they are NaN (features: ``pixels``, the only kind
    then).
    """
    runs = pd.DataFrame(json_rows, columns=RUN_COLUMNS)
    if csvs:
        from_csv = pd.concat(csvs, ignore_index=True).reindex(columns=RUN_COLUMNS)
        from_csv["features"] = from_csv["features"].astype(object).fillna("pixels")
        seen = set(runs["results_file"])
        from_csv = from_csv[~from_csv["results_file"].isin(seen)]
        runs = pd.concat([df for df in (runs, from_csv) if not df.empty], ignore_index=True)
        runs = runs.reindex(columns=RUN_COLUMNS)
    runs = runs.drop_duplicates(subset="results_file", keep="first").reset_index(drop=True)
    for column in RUN_COLUMNS:
        if column in _RUN_TEXT_COLUMNS:
            runs[column] = runs[column].astype(object).where(runs[column].notna(), np.nan)
        else:
            try:
                runs[column] = pd.to_numeric(runs[column])
            except (ValueError, TypeError) as exc:
                raise ReportInputError(f"run results: {column} must be a number ({exc})") from None
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
