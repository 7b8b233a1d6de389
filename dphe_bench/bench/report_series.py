"""Comparable series: which results may share a row, a line or a ratio in the report.

A result is keyed by every setting that changes it: ``SWEEP_SETTINGS`` for sweep cells, ``RUN_SETTINGS``
(``report_data``) for ``dphe-bench run`` results. A table or figure that varies one setting holds every other
one fixed: ``comparable_series`` groups the rows by all settings but the varied one, and each group is one
series (one line of a figure, one column or block of a table). Settings equal in every series go in the
caption (``caption``); those that differ between series name them (``series_label``). Rows whose group has
too few values of the varied setting are left out, and the report says how many.

Setting values are compared as text (``setting_text``): 8 and 8.0 are one value, a missing value is "".
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Every sweep column that changes a cell's result: machine, grid point, scheme and its options, backend and
# its resolved options (``backend_config``; for files written before it existed, the backend label as given).
# The scheme label as given stays in, so that old files never merge cells that differed in a scheme option.
SWEEP_SETTINGS = (
    "host",
    "cpu",
    "dimension",
    "users",
    "seed",
    "key_bits",
    "sparsity",
    "scheme",
    "scheme_name",
    "precision_bits",
    "quantization_bits",
    "quantization_range",
    "backend_name",
    "backend_config",
    "obfuscation",
    "window_bits",
    "parallelism",
    "kernel",
)
# Settings that ``backend_text`` / ``scheme_text`` describe together.
BACKEND_SETTINGS = ("backend", "backend_name", "backend_config", "obfuscation", "window_bits", "parallelism", "kernel")
SCHEME_SETTINGS = ("scheme", "scheme_name", "precision_bits", "quantization_bits", "quantization_range")
SETTING_NAMES = {
    "host": "host",
    "cpu": "CPU",
    "dimension": "D",
    "users": "users",
    "seed": "seed",
    "key_bits": "key bits",
    "sparsity": "sparsity",
    "dataset": "dataset",
    "features": "features",
    "data_path": "data file",
    "test_fraction": "test fraction",
    "max_train_samples": "max train samples",
    "max_test_samples": "max test samples",
    "image_size": "image size",
    "engine": "feature engine",
    "rounds": "rounds",
    "split": "split",
    "dirichlet_alpha": "Dirichlet alpha",
    "dropout": "dropout",
    "min_contributors": "min contributors",
    "loss": "loss",
    "alpha": "model alpha",
    "l1_ratio": "l1 ratio",
    "local_epochs": "local epochs",
}
WORKER_WORDS = {"multiprocessing": "workers", "dask": "workers", "numba": "threads", "heu": "threads"}


@dataclass(frozen=True)
class Series:
    """Rows that share every setting but the varied one. ``key``: (setting, value text) pairs, in settings order."""

    key: tuple[tuple[str, str], ...]
    rows: pd.DataFrame

    def setting(self, name: str) -> str:
        """The value text of ``name`` in this series ("" when the results do not have that setting)."""
        return dict(self.key).get(name, "")


def setting_text(value: object) -> str:
    """One setting value as text for comparison: 8, 8.0 and "8" are "8"; NaN, None and "" are ""."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        text = repr(float(value))
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, np.integer):
        return str(int(value))
    text = str(value).strip()
    if text.endswith(".0") and text[:-2].lstrip("-").isdigit():
        return text[:-2]
    return text


def settings_frame(frame: pd.DataFrame, settings: Sequence[str]) -> pd.DataFrame:
    """The settings of every row as text (``setting_text``); settings the frame lacks are left out."""
    present = [name for name in settings if name in frame.columns]
    return frame[present].apply(lambda column: column.map(setting_text))


def comparable_series(
    frame: pd.DataFrame, varied: str, settings: Sequence[str], min_points: int = 2
) -> tuple[list[Series], pd.DataFrame]:
    """Split ``frame`` into series that differ only in ``varied``.

    Rows are grouped by every setting in ``settings`` except ``varied``; a group in which ``varied`` takes at
    least ``min_points`` distinct values is a series. Returns (series, rows left out). Rows that agree on every
    setting, ``varied`` included, are repeats of one point (the caller averages them).
    """
    if varied not in frame.columns:
        raise ValueError(f"the results have no column {varied!r}")
    if frame.empty:
        return [], frame
    text = settings_frame(frame, [name for name in settings if name != varied])
    if text.empty or not len(text.columns):
        groups = [((), frame.index)]
    else:
        groups = [
            (tuple(zip(text.columns, key if isinstance(key, tuple) else (key,), strict=True)), index)
            for key, index in text.groupby(list(text.columns), sort=True, dropna=False).groups.items()
        ]
    series, left_out = [], []
    for key, index in groups:
        rows = frame.loc[index]
        if rows[varied].map(setting_text).nunique() >= min_points:
            series.append(Series(key=key, rows=rows))
        else:
            left_out.append(rows)
    return series, (pd.concat(left_out) if left_out else frame.iloc[0:0])


def fixed_and_differing(series: Iterable[Series]) -> tuple[dict[str, str], list[str]]:
    """Settings equal in every series (name -> value text) and the names of those that differ, in key order."""
    series = list(series)
    if not series:
        return {}, []
    names = [name for name, _ in series[0].key]
    fixed, differing = {}, []
    for name in names:
        values = {s.setting(name) for s in series}
        if len(values) == 1:
            fixed[name] = values.pop()
        else:
            differing.append(name)
    return fixed, differing


def series_label(series: Series, differing: Sequence[str], omit: Iterable[str] = ()) -> str:
    """A short name for ``series`` from the settings that differ between series (minus ``omit``); "" if none do."""
    shown = [name for name in differing if name not in set(omit)]
    row = series.rows.iloc[0]
    parts = []
    if any(name in BACKEND_SETTINGS for name in shown):
        parts.append(backend_text(row))
    if any(name in SCHEME_SETTINGS for name in shown):
        parts.append(scheme_text(row))
    parts += [
        f"{SETTING_NAMES.get(name, name)} {series.setting(name) or '(none)'}"
        for name in shown
        if name not in BACKEND_SETTINGS and name not in SCHEME_SETTINGS
    ]
    return ", ".join(parts)


def caption(fixed: dict[str, str], omit: Iterable[str] = (), row: pd.Series | None = None) -> str:
    """``Held fixed: scheme dphe (32-bit fixed point), backend gmpy2 djn (...), D 200, users 2.`` for the settings
    in ``fixed`` that have a value (minus ``omit``). The scheme and backend are written as ``scheme_text`` and
    ``backend_text`` of ``row`` (any row of the series) when all their settings are fixed."""
    omit = set(omit)
    parts = []
    described = ((SCHEME_SETTINGS, "scheme", scheme_text), (BACKEND_SETTINGS, "backend", backend_text))
    for names, name, describe in described if row is not None else ():
        if all(n in fixed for n in names if n in row.index) and not omit & set(names) and describe(row):
            parts.append(f"{name} {describe(row)}")
    parts += [
        f"{SETTING_NAMES.get(name, name)} {value}"
        for name, value in fixed.items()
        if value and name not in omit and name not in BACKEND_SETTINGS and name not in SCHEME_SETTINGS
    ]
    return "Held fixed: " + ", ".join(parts) + "." if parts else ""


def parse_config(label: str) -> tuple[str, dict[str, str]]:
    """``numba:kernel=narrow,threads=2`` -> ("numba", {"kernel": "narrow", "threads": "2"})."""
    name, _, rest = setting_text(label).partition(":")
    options = dict(item.partition("=")[::2] for item in rest.split(",") if "=" in item)
    return name, options


# Options that ``backend_text`` writes in words; any other option of backend_config is written as ``name value``.
DESCRIBED_OPTIONS = ("obfuscation", "window_bits", "threads", "workers", "kernel", "variant", "inner")


def backend_text(row: pd.Series) -> str:
    """What ran the crypto, for a reader: ``numba djn (8-bit windows, 2 threads, narrow kernels)``,
    ``multiprocessing standard (2 workers of gmpy2, start_method spawn)``.

    Reads backend_name (sweep) or backend (runs), obfuscation, window_bits, parallelism, kernel, and the options of
    backend_config (HEU's variant, a process pool's inner backend, and any other option, written as it is).
    ``none`` for results that used no Paillier backend.
    """
    name = setting_text(row.get("backend_name", "")) or setting_text(row.get("backend", "")).partition(":")[0]
    config_name, options = parse_config(row.get("backend_config", ""))
    if name in ("", "none") or config_name == "none":
        return "none"
    obfuscation = setting_text(row.get("obfuscation", ""))
    details = []
    if obfuscation == "djn" and setting_text(row.get("window_bits", "")):
        details.append(f"{setting_text(row['window_bits'])}-bit windows")
    parallelism = setting_text(row.get("parallelism", ""))
    if parallelism:
        unit = WORKER_WORDS.get(name, "cores")
        count = "1 core" if parallelism == "1" and unit == "cores" else f"{parallelism} {unit}"
        details.append(count + (f" of {options['inner']}" if "inner" in options else ""))
    if setting_text(row.get("kernel", "")):
        details.append(f"{setting_text(row['kernel'])} kernels")
    details += [f"{key} {value}" for key, value in sorted(options.items()) if key not in DESCRIBED_OPTIONS]
    head = " ".join(part for part in (name, options.get("variant", ""), obfuscation) if part)
    return head + (f" ({', '.join(details)})" if details else "")


def scheme_text(row: pd.Series) -> str:
    """The scheme and its encoding: ``dphe (32-bit fixed point)``, ``packed (16-bit over +-8)``, ``plain``."""
    name = setting_text(row.get("scheme_name", "")) or setting_text(row.get("scheme", "")).partition(":")[0]
    precision = setting_text(row.get("precision_bits", ""))
    bits, span = setting_text(row.get("quantization_bits", "")), setting_text(row.get("quantization_range", ""))
    if name == "packed" and bits:
        return f"packed ({bits}-bit over +-{span})"
    if name in ("dense", "dphe") and precision:
        return f"{name} ({precision}-bit fixed point)"
    return name
