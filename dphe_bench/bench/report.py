"""The performance report: the paper's results next to ours, speed-ups, costs and figures, comparable rows only.

``write_report(inputs, out_dir)`` reads the results (``report_data``), builds tidy tables (functions below),
draws the figures (``report_figures``) and writes ``report.md``, ``figures/*.png`` and ``tables/*.csv`` under
``out_dir``. Every table or figure that varies one setting holds every other setting fixed (``report_series``):
results that differ in anything else are separate rows or lines, or are left out with a note. The tables'
CSV files keep numbers in seconds and bytes; ``report.md`` writes them in human units.
"""

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dphe_bench.bench import report_figures
from dphe_bench.bench.report_data import RUN_SETTINGS, ReportInputError, ResultTables, load_results
from dphe_bench.bench.report_series import (
    BACKEND_SETTINGS,
    SCHEME_SETTINGS,
    SWEEP_SETTINGS,
    Series,
    backend_text,
    caption,
    comparable_series,
    fixed_and_differing,
    parse_config,
    scheme_text,
    series_label,
    setting_text,
    settings_frame,
)
from dphe_bench.bench.report_units import format_value, human_seconds, human_value, reader_column
from dphe_bench.bench.sweep import BASELINE_NAME, DEFAULT_OUT, HEU_NAME
from dphe_bench.errors import plain_list
from dphe_bench.files import prepare_folder, write_atomically, write_text_atomically
from dphe_bench.learning.run_settings import backend_label
from dphe_bench.schemes import SCHEMES

# Yonetani, Boddeti, Kitani, Sato, "Privacy-Preserving Visual Learning with Doubly-Permuted Homomorphic
# Encryption", ICCV 2017: Python + GMP, Caltech101 with ResNet features, 101 classes x 2048 features.
PAPER_DIMENSION = 200_000
PAPER_SPARSITY = 0.956
PAPER_ENCRYPTION_S = {"dense": 620.0, "dphe": 62.0}
PAPER_ACCURACY_VS_USERS = ((5, 89.3), (10, 88.9), (100, 85.6))
PAPER_ACCURACY_VS_SPARSITY = ((0.01, 89.7), (0.956, 88.2))
PAPER_SETTING = "Caltech101, ResNet features (D = 101 x 2048), Python + GMP on the authors' machine"
PROJECTION_KEY_BITS = 2048
# The list of figures and tables a report wrote, kept in its folder: the next report removes only those.
MANIFEST = ".dphe-report-files.json"
# asv modules whose results appear in report.md (all of them go to tables/asv.csv).
ASV_SUMMARY_MODULES = ("bench_paillier.", "bench_learning.")
# What identifies a machine, and a backend configuration on it.
MACHINE = ("host", "cpu")
CONFIGURATION = (*MACHINE, "key_bits", *BACKEND_SETTINGS)
# The settings of a sweep cell that bytes depend on: everything but the backend, plus whose serialisation.
BYTES_SETTINGS = (*(s for s in SWEEP_SETTINGS if s not in BACKEND_SETTINGS), "serialisation")


@dataclass
class WrittenReport:
    """Paths of what ``write_report`` wrote."""

    markdown: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)


def default_inputs() -> list[Path]:
    """The default result locations that exist: the sweep CSV, reports/runs/ and .asv/results/."""
    candidates = [DEFAULT_OUT, DEFAULT_OUT.parent, Path(".asv/results")]
    found = [p for p in candidates if p.exists()]
    if not found:
        raise ReportInputError(
            f"no results found at the default locations ({', '.join(map(str, candidates))}); "
            "run `dphe-bench sweep`, `dphe-bench run` or asv first, or name result files"
        )
    # reports/runs/ holds the default sweep CSV too: read it once.
    return [p for p in found if p != DEFAULT_OUT or DEFAULT_OUT.parent not in found]


# ---- derived columns -----------------------------------------------------------------------------------


def with_derived(sweep: pd.DataFrame) -> pd.DataFrame:
    """The sweep with the columns the report compares.

    ``encryption_per_user_s``: a user's whole encryption work, (precompute_s + encrypt_s) / users (``pool``'s
    offline obfuscators included; one-time costs, ``tables_s`` and ``warm_up_s``, are not).
    ``encryption_per_ciphertext_s``: the same per ciphertext. ``configuration``: ``backend_text`` of the row.
    ``serialisation``: whose bytes (``heu`` for HEU cells, ``ours`` otherwise). ``backend_config`` falls back
    to the backend label for files written before it was a column, and drops ``window_bits`` outside ``djn``
    (the only mode with a table), as ``normalised_config`` does; ``precompute_s`` outside ``pool`` and
    ``tables_s`` outside ``djn`` become NaN (they do not apply, rather than taking 0 s).
    """
    sweep = sweep.copy()
    if sweep.empty:
        for column in ("encryption_per_user_s", "encryption_per_ciphertext_s", "configuration", "serialisation"):
            sweep[column] = pd.Series(dtype=object)
        return sweep
    precompute = sweep["precompute_s"].fillna(0.0) if "precompute_s" in sweep else 0.0
    work = precompute + sweep["encrypt_s"]
    ciphertexts = sweep["ciphertexts"].where(sweep["ciphertexts"] > 0)
    configs = sweep["backend_config"].where(sweep["backend_config"].notna(), sweep["backend"])
    sweep["backend_config"] = [normalised_config(c, o) for c, o in zip(configs, sweep["obfuscation"], strict=True)]
    sweep["precompute_s"] = sweep["precompute_s"].where(sweep["obfuscation"] == "pool")
    if "tables_s" in sweep:
        sweep["tables_s"] = sweep["tables_s"].where(sweep["obfuscation"] == "djn")
    sweep["encryption_per_user_s"] = work / sweep["users"]
    sweep["encryption_per_ciphertext_s"] = work / ciphertexts
    sweep["configuration"] = [backend_text(row) for _, row in sweep.iterrows()]
    sweep["serialisation"] = np.where(sweep["backend_name"] == HEU_NAME, "heu", "ours")
    return sweep


def normalised_config(config: object, obfuscation: object) -> object:
    """``backend_config`` without ``window_bits`` unless the obfuscation is ``djn``: the window of a table that is
    never built does not change a result, so two such cells are one configuration."""
    if setting_text(obfuscation) == "djn" or not setting_text(config):
        return config
    name, options = parse_config(config)
    options.pop("window_bits", None)
    return backend_label(name, options)


# Run settings that apply only under a condition on another setting: (setting, applies(row)).
RUN_CONDITIONS = (
    ("dirichlet_alpha", lambda row: setting_text(row.get("split")) == "dirichlet"),
    ("image_size", lambda row: setting_text(row.get("features")) != "pixels"),
    ("engine", lambda row: setting_text(row.get("features")) != "pixels"),
    ("precision_bits", lambda row: setting_text(row.get("scheme")) in ("dense", "dphe")),
    ("quantization_bits", lambda row: setting_text(row.get("scheme")) == "packed"),
    ("quantization_range", lambda row: setting_text(row.get("scheme")) == "packed"),
    ("key_bits", lambda row: setting_text(row.get("scheme")) in ("dense", "dphe", "packed")),
)


def applicable_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with settings that do not apply to them emptied (NaN): the Dirichlet alpha of an IID split, the
    image size and engine of pixel features, a scheme's options under another scheme, key bits without Paillier,
    and the window bits inside ``backend_config`` outside ``djn``. Two runs that differ only there are one
    configuration, and captions do not name settings that played no part."""
    runs = runs.copy()
    for setting, applies in RUN_CONDITIONS:
        if setting in runs:
            keep = [bool(applies(row)) for _, row in runs.iterrows()]
            runs[setting] = runs[setting].astype(object).where(keep)
    if "backend_config" in runs and "obfuscation" in runs:
        runs["backend_config"] = [
            normalised_config(c, o) for c, o in zip(runs["backend_config"], runs["obfuscation"], strict=True)
        ]
    return runs


def main_slice(sweep: pd.DataFrame, encrypted_only: bool = True) -> pd.DataFrame:
    """The rows of the (machine, D, users) with the most encrypted cells: the sweep's main grid."""
    encrypted = sweep[sweep["key_bits"] > 0]
    if encrypted.empty:
        return encrypted
    keys = [*MACHINE, "dimension", "users"]
    text = settings_frame(encrypted, keys)
    best = text.value_counts().idxmax()
    rows = encrypted if encrypted_only else sweep
    chosen = (settings_frame(rows, keys) == pd.Series(best, index=keys)).all(axis=1)
    return rows[chosen]


# ---- headline: the paper's three results next to ours ------------------------------------------------


def headline_encryption_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Paper table 1: one user's encryption of 200,000 weights, dense vs DPHE at 95.6 % sparsity.

    ``sweep``: ``with_derived`` rows. Per machine, backend and key size, the configuration with the fastest DPHE
    cell (measured at D = 200,000 before projected ones, then by time) and, for that same configuration, the
    dense time: measured at D = 200,000 where that cell exists, else scaled linearly from the largest D measured
    (encryption is linear in the number of ciphertexts), and the basis says which. Times are
    ``encryption_per_user_s``. Where some cell is at D = 200,000, only the key sizes that have one are shown.
    """
    rows = [
        {
            "source": "paper",
            "backend": "python-paillier + GMP",
            "configuration": "the authors' machine (2017)",
            "key bits": np.nan,
            "dense (s)": PAPER_ENCRYPTION_S["dense"],
            "dphe at 95.6 % (s)": PAPER_ENCRYPTION_S["dphe"],
            "dense / dphe": PAPER_ENCRYPTION_S["dense"] / PAPER_ENCRYPTION_S["dphe"],
            "basis": "measured (paper)",
        }
    ]
    cells = sweep[(sweep["key_bits"] > 0) & sweep["scheme_name"].isin(["dense", "dphe"])]
    cells = cells[(cells["scheme_name"] == "dense") | np.isclose(cells["sparsity"], PAPER_SPARSITY)]
    measured_sizes = set(cells.loc[cells["dimension"] == PAPER_DIMENSION, "key_bits"])
    if measured_sizes:  # key sizes with no 200,000-weight cell would be projections only: the speed-up table has them
        cells = cells[cells["key_bits"].isin(measured_sizes)]
    if cells.empty:
        return pd.DataFrame(rows)
    candidates = []
    for _, group in _groups(cells, CONFIGURATION):
        dense = _at_paper_size(group[group["scheme_name"] == "dense"])
        dphe = _at_paper_size(group[group["scheme_name"] == "dphe"])
        first = group.iloc[0]
        rank = [(0 if part[2] else 1, part[0]) if part else (2, np.inf) for part in (dphe, dense)]
        candidates.append((first, dense, dphe, rank))
    for _, choices in pd.Series(candidates).groupby(
        [f"{c[0]['host']}|{c[0]['backend_name']}|{int(c[0]['key_bits'])}" for c in candidates], sort=True
    ):
        first, dense, dphe, _ = min(choices, key=lambda c: c[3])
        name = first["backend_name"]
        basis = [
            f"{scheme}: {part[1] if part else 'no cell' + (' at 95.6 %' if scheme == 'dphe' else '')}"
            for scheme, part in (("dense", dense), ("dphe", dphe))
        ]
        rows.append(
            {
                "source": {BASELINE_NAME: "baseline", HEU_NAME: "SecretFlow HEU"}.get(name, "ours"),
                "backend": name,
                "configuration": first["configuration"],
                "key bits": int(first["key_bits"]),
                "dense (s)": dense[0] if dense else np.nan,
                "dphe at 95.6 % (s)": dphe[0] if dphe else np.nan,
                "dense / dphe": dense[0] / dphe[0] if dense and dphe else np.nan,
                "basis": "; ".join(basis),
                "host": setting_text(first["host"]),
            }
        )
    return _integer_key_bits(pd.DataFrame(rows))


def _integer_key_bits(table: pd.DataFrame) -> pd.DataFrame:
    """The ``key bits`` column as integers with blanks (pandas Int64), so the CSV says 2048, not 2048.0."""
    return table.assign(**{"key bits": table["key bits"].astype("Int64")}) if "key bits" in table else table


def _at_paper_size(cells: pd.DataFrame) -> tuple[float, str, bool] | None:
    """(seconds per user at D = 200,000, basis, measured?) from cells of one configuration and scheme."""
    if cells.empty:
        return None
    exact = cells[cells["dimension"] == PAPER_DIMENSION]
    if not exact.empty:
        return float(exact["encryption_per_user_s"].median()), f"measured at D = 200,000 ({_users(exact)})", True
    largest = cells[cells["dimension"] == cells["dimension"].max()]
    dimension = int(largest["dimension"].iloc[0])
    scaled = float(largest["encryption_per_user_s"].median()) * PAPER_DIMENSION / dimension
    return scaled, f"projected from D = {dimension:,} ({_users(largest)}; x{PAPER_DIMENSION / dimension:,.0f})", False


def _users(cells: pd.DataFrame) -> str:
    counts = sorted({int(u) for u in cells["users"]})
    return "/".join(map(str, counts)) + (" user" if counts == [1] else " users")


def accuracy_vs_users_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[Series], list[str], str]:
    """Paper table 2: accuracy (%) against users, the paper's column next to one column per comparable series.

    Returns (table, series, their labels, caption). A series: runs that differ only in ``users``.
    """
    table = pd.DataFrame({"users": [u for u, _ in PAPER_ACCURACY_VS_USERS]})
    table["paper: Caltech101 (%)"] = [a for _, a in PAPER_ACCURACY_VS_USERS]
    series, labels, text = _run_series(runs, "users")
    for one, label in zip(series, labels, strict=True):
        column = f"ours: {label} (%)"
        means = one.rows.groupby("users")["accuracy_scheme"].mean().mul(100.0).rename(column).reset_index()
        table = table.merge(means, on="users", how="outer")
    return table.sort_values("users").reset_index(drop=True), series, labels, text


def accuracy_vs_sparsity_table(
    runs: pd.DataFrame, sweep: pd.DataFrame
) -> tuple[pd.DataFrame, list[Series], list[str], str]:
    """Paper table 3: accuracy against the users' weight sparsity (elastic-net ``model.alpha`` varied).

    Our rows: one per (series, model alpha), mean over repeats. The encryption column projects one user's DPHE
    encryption of 200,000 weights at that sparsity from the fastest DPHE configuration measured at D = 200,000
    and 2048-bit keys (its seconds per ciphertext; ``table.attrs["projection"]`` says which); the paper's
    value is measured.
    """
    rows = [
        {
            "source": "paper: Caltech101",
            "model alpha": np.nan,
            "sparsity": sparsity,
            "accuracy (%)": accuracy,
            "dphe encryption of 200k weights (s)": PAPER_ENCRYPTION_S["dphe"] if sparsity == PAPER_SPARSITY else np.nan,
        }
        for sparsity, accuracy in PAPER_ACCURACY_VS_SPARSITY
    ]
    per_ciphertext, projection = _dphe_seconds_per_ciphertext(sweep)
    series, labels, text = _run_series(runs, "alpha")
    for one, label in zip(series, labels, strict=True):
        points = one.rows.groupby("alpha")[["user_sparsity_mean", "accuracy_scheme"]].mean()
        for alpha, point in points.iterrows():
            rows.append(
                {
                    "source": f"ours: {label}",
                    "model alpha": alpha,
                    "sparsity": point["user_sparsity_mean"],
                    "accuracy (%)": 100.0 * point["accuracy_scheme"],
                    "dphe encryption of 200k weights (s)": per_ciphertext
                    * PAPER_DIMENSION
                    * (1.0 - point["user_sparsity_mean"]),
                }
            )
    table = pd.DataFrame(rows)
    table.attrs["projection"] = projection
    return table, series, labels, text


def _dphe_seconds_per_ciphertext(sweep: pd.DataFrame) -> tuple[float, str]:
    """The fastest measured DPHE seconds per ciphertext at D = 200,000 and 2048-bit keys (ours, not baselines)."""
    cells = sweep[
        (sweep["scheme_name"] == "dphe")
        & (sweep["key_bits"] == PROJECTION_KEY_BITS)
        & (sweep["dimension"] == PAPER_DIMENSION)
        & ~sweep["baseline"]
    ].dropna(subset=["encryption_per_ciphertext_s"])
    if cells.empty:
        return np.nan, f"no DPHE cell at D = 200,000 and {PROJECTION_KEY_BITS}-bit keys to project from"
    best = cells.loc[cells["encryption_per_ciphertext_s"].idxmin()]
    seconds = float(best["encryption_per_ciphertext_s"])
    return seconds, (
        f"{human_seconds(seconds)} per ciphertext: {best['configuration']}, {PROJECTION_KEY_BITS}-bit keys, "
        f"measured at D = 200,000, sparsity {setting_text(best['sparsity'])}"
    )


def _run_series(runs: pd.DataFrame, varied: str) -> tuple[list[Series], list[str], str]:
    """Comparable series of runs over ``varied``, their labels and the caption (fixed settings, left-out runs)."""
    series, left_out = comparable_series(runs, varied, RUN_SETTINGS)
    fixed, differing = fixed_and_differing(series)
    labels = unique_labels(series, differing)
    text = caption(fixed, row=series[0].rows.iloc[0]) if series else ""
    if len(left_out):
        text += (
            f" {len(left_out)} run(s) left out: no other run differs from them only in "
            f"{SETTING_WORDS.get(varied, varied)}."
        )
    return series, labels, text.strip()


SETTING_WORDS = {"alpha": "model.alpha", "users": "federation.users", "sparsity": "sparsity", "key_bits": "key size"}


def unique_labels(series: Sequence[Series], differing: Sequence[str], omit: Sequence[str] = ()) -> list[str]:
    """``series_label`` of each series (``backend_text`` where no setting differs). Series that differ only in
    ``omit`` (the panels' settings) share a label;
    where others would, the raw values of the settings that tell them apart follow."""
    shown = [name for name in differing if name not in set(omit)]
    labels = [series_label(one, differing, omit) or backend_text(one.rows.iloc[0]) for one in series]
    for label in set(labels):
        members = [i for i, text in enumerate(labels) if text == label]
        apart = [name for name in shown if len({series[i].setting(name) for i in members}) > 1]
        for i in members if apart else ():
            labels[i] = label + " [" + ", ".join(f"{name}={series[i].setting(name)}" for name in apart) + "]"
    return labels


# ---- speed-ups, one-time costs, schemes ----------------------------------------------------------------

PAIR_KEYS = (*MACHINE, "dimension", "users", "sparsity", "key_bits", "scheme", "seed")


def speedup_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Every encrypted cell of ours against python-paillier on the same values, same machine, same grid point.

    ``sweep``: ``with_derived`` rows. Columns: the pair keys, ``configuration`` and ``backend_config``,
    ``encryption_s`` (ours, per user, pool's precompute included), ``encrypt_s`` (online only),
    ``baseline_s``, ``speedup`` (baseline_s / encryption_s), ``online_speedup`` (baseline_s / online
    encryption per user), ``heu_s`` and ``vs_heu`` (the fastest HEU cell on the same values; NaN where none ran),
    ``heu_configuration``, ``load_average`` and ``baseline_load`` (1-minute load averages of the two cells),
    ``time_utc``.
    """
    keys = list(PAIR_KEYS)
    encrypted = sweep[(sweep["key_bits"] > 0) & (sweep["encryption_per_user_s"] > 0)].copy()
    encrypted[keys] = settings_frame(encrypted, keys)
    baseline = encrypted[encrypted["backend_name"] == BASELINE_NAME][[*keys, "encryption_per_user_s", "load_average"]]
    baseline = baseline.rename(columns={"encryption_per_user_s": "baseline_s", "load_average": "baseline_load"})
    baseline = baseline.drop_duplicates(keys, keep="last")
    heu_cells = encrypted[encrypted["backend_name"] == HEU_NAME].sort_values("encryption_per_user_s")
    heu = heu_cells.drop_duplicates(keys, keep="first")[[*keys, "encryption_per_user_s", "configuration"]]
    heu = heu.rename(columns={"encryption_per_user_s": "heu_s", "configuration": "heu_configuration"})
    ours = encrypted[~encrypted["baseline"]]
    ours = ours.assign(
        encryption_s=ours["encryption_per_user_s"], online_s=ours["encrypt_s"] / ours["users"].astype(float)
    )
    merged = ours[
        [*keys, "configuration", "backend_config", "encryption_s", "online_s", "load_average", "time_utc"]
    ].merge(baseline, on=keys)
    merged = merged.merge(heu, on=keys, how="left")
    merged["speedup"] = merged["baseline_s"] / merged["encryption_s"]
    merged["online_speedup"] = merged["baseline_s"] / merged["online_s"]
    merged["vs_heu"] = merged["heu_s"] / merged["encryption_s"]
    return merged.sort_values([*keys, "configuration"]).reset_index(drop=True)


def speedup_summary(speedups: pd.DataFrame) -> pd.DataFrame:
    """One row per machine, D, users, key size and backend configuration: geometric means over its cells.

    ``vs HEU`` is the geometric mean over the cells that have an HEU cell on the same values, and ``HEU cells``
    counts them (so both numbers describe the same cells). ``online only``: the same without ``pool``'s
    offline precomputation (equal to the speed-up for the other modes). ``load``: the 1-minute load average
    range of the cells and of their python-paillier partners, ``date``: their UTC dates.
    """
    if speedups.empty:
        return pd.DataFrame()
    rows = []
    keys = [*MACHINE, "dimension", "users", "key_bits", "backend_config"]
    for _, group in speedups.groupby(keys, sort=True):
        with_heu = group["vs_heu"].dropna()
        first = group.iloc[0]
        load = pd.to_numeric(pd.concat([group["load_average"], group["baseline_load"]]), errors="coerce").dropna()
        dates = sorted({str(t)[:10] for t in group["time_utc"].dropna()})
        rows.append(
            {
                "configuration": first["configuration"],
                "key bits": int(float(first["key_bits"])),
                "D": int(float(first["dimension"])),
                "users": int(float(first["users"])),
                "speed-up (geometric mean)": _geometric_mean(group["speedup"]),
                "min": group["speedup"].min(),
                "max": group["speedup"].max(),
                "online only": _geometric_mean(group["online_speedup"]),
                "cells": len(group),
                "vs HEU (geometric mean)": _geometric_mean(with_heu) if len(with_heu) else np.nan,
                "HEU cells": len(with_heu),
                "load": _range(load),
                "date": " to ".join(dict.fromkeys([dates[0], dates[-1]])) if dates else "",
                "host": first["host"],
            }
        )
    return pd.DataFrame(rows).sort_values(["host", "D", "users", "key bits", "speed-up (geometric mean)"])


def _range(values: pd.Series) -> str:
    """``1.1-2.3``, or ``1.3`` when every value rounds alike; "" for none."""
    if not len(values):
        return ""
    low, high = f"{values.min():.1f}", f"{values.max():.1f}"
    return low if low == high else f"{low}-{high}"


def _geometric_mean(values: pd.Series) -> float:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(np.exp(np.log(values).mean())) if len(values) else np.nan


def one_time_costs_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """One-time costs per machine, backend configuration and key size, kept apart from per-round times.

    ``warm-up (s)``: the backend's warm-up in the sweep process (kernels compiled or loaded, workers started);
    ``djn table (s)``: building the fixed-base table for one key (median over the cells that built one).
    """
    if "warm_up_s" not in sweep or "tables_s" not in sweep:
        return pd.DataFrame()
    encrypted = sweep[(sweep["key_bits"] > 0) & ~sweep["baseline"]]
    rows = []
    for _, group in _groups(encrypted, CONFIGURATION):
        tables = group["tables_s"][group["tables_s"] > 0]
        warm = group["warm_up_s"].dropna()
        if warm.empty and tables.empty:
            continue
        rows.append(
            {
                "configuration": group["configuration"].iloc[0],
                "key bits": int(group["key_bits"].iloc[0]),
                "warm-up (s)": warm.median() if len(warm) else np.nan,
                "djn table (s)": tables.median() if len(tables) else np.nan,
                "cells": len(group),
                "host": group["host"].iloc[0],
            }
        )
    return pd.DataFrame(rows).sort_values(["host", "configuration", "key bits"]) if rows else pd.DataFrame()


def scheme_cost_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Each scheme at its fastest configuration on the main grid, next to what it leaks.

    One row per (scheme and its options, key bits, sparsity) of ``main_slice``: the fastest backend
    configuration's encryption per user (and which it is), ciphertexts and bytes per user (the same on every
    backend), and the scheme's leakage (``Scheme.leakage``). Baselines are left out.
    """
    rows = main_slice(sweep, encrypted_only=False)
    rows = rows[~rows["baseline"]]
    out = []
    for _, group in _groups(rows, [*SCHEME_SETTINGS, "key_bits", "sparsity"]):
        best = group.loc[group["encryption_per_user_s"].idxmin()]
        out.append(
            {
                "scheme": scheme_text(best),
                "key bits": int(best["key_bits"]) or np.nan,
                "sparsity": best["sparsity"],
                "encryption / user (s)": best["encryption_per_user_s"],
                "fastest configuration": best["configuration"] if best["key_bits"] > 0 else "no Paillier",
                "ciphertexts / user": best["ciphertexts_per_user"],
                "sent / user (bytes)": best["bytes_per_user"],
                "the aggregator learns": SCHEMES[best["scheme_name"]].leakage if best["scheme_name"] in SCHEMES else "",
            }
        )
    if not out:
        return pd.DataFrame()
    return _integer_key_bits(pd.DataFrame(out).sort_values(["scheme", "key bits", "sparsity"], na_position="first"))


def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Every cell with its settings and costs (seconds and bytes; ``report.md`` writes them in human units)."""
    columns = {
        "host": "host",
        "dimension": "D",
        "users": "users",
        "key_bits": "key bits",
        "sparsity": "sparsity",
        "scheme_text": "scheme",
        "configuration": "configuration",
        "encryption_per_user_s": "encryption / user (s)",
        "precompute_s": "precompute, all users (s)",
        "tables_s": "djn table (s)",
        "aggregate_s": "aggregate (s)",
        "decrypt_s": "decrypt (s)",
        "ciphertexts_per_user": "ciphertexts / user",
        "bytes_per_user": "sent / user (bytes)",
        "max_abs_error": "max |error|",
        "error_bound": "bound",
        "load_average": "load",
    }
    table = sweep.assign(
        scheme_text=[scheme_text(row) for _, row in sweep.iterrows()],
        key_bits=sweep["key_bits"].where(sweep["key_bits"] > 0),
    )
    present = [c for c in columns if c in table.columns]
    order = ["host", "dimension", "users", "key_bits", "sparsity", "scheme_text", "configuration"]
    return table.sort_values(order, na_position="first")[present].rename(columns=columns).reset_index(drop=True)


def asv_table(asv: pd.DataFrame) -> pd.DataFrame:
    """The latest asv result per benchmark and parameter set."""
    if asv.empty:
        return asv
    latest = asv.sort_values("date").groupby(["benchmark", "params"], as_index=False).last()
    return latest[["benchmark", "params", "value", "unit", "commit", "machine"]]


def _groups(frame: pd.DataFrame, settings: Sequence[str]):
    """(key, rows) for each combination of ``settings`` (compared as text, missing values included)."""
    text = settings_frame(frame, settings)
    if frame.empty:
        return []
    return [(key, frame.loc[index]) for key, index in text.groupby(list(text.columns), dropna=False).groups.items()]


# ---- sweep figures -------------------------------------------------------------------------------------


def encryption_vs_sparsity_figure(
    sweep: pd.DataFrame, registry: dict[str, dict[str, object]] | None = None
) -> tuple[object, str] | None:
    """Encryption per user against sparsity on the main grid: a panel per scheme and key size, a line per
    configuration (every other setting equal). Returns (figure, caption) or None without two sparsities."""
    rows = main_slice(sweep)
    series, left_out = comparable_series(rows, "sparsity", SWEEP_SETTINGS)
    if not series:
        return None
    _, differing = fixed_and_differing(series)
    panel_settings = (*SCHEME_SETTINGS, "key_bits")
    labels = unique_labels(series, differing, omit=panel_settings)
    panels: dict[tuple[str, int], list[int]] = {}
    for i, one in enumerate(series):
        first = one.rows.iloc[0]
        panels.setdefault((scheme_text(first), int(first["key_bits"])), []).append(i)
    figure = report_figures.lines_over(
        series,
        labels,
        x="sparsity",
        y="encryption_per_user_s",
        panels=[(f"{scheme}, {bits}-bit keys", members) for (scheme, bits), members in sorted(panels.items())],
        xlabel="sparsity (share of zero weights)",
        ylabel="encryption per user",
        title="Encryption per user vs sparsity",
        unit="s",
        ncols=len({bits for _, bits in panels}),
        registry=registry,
    )
    note = "A user's whole encryption work (`pool`'s precomputation included, one-time costs not)."
    return figure, _figure_caption(series, left_out, "sparsity", f"{note} {outside_main_note(sweep)}")


def bytes_vs_sparsity_figure(
    sweep: pd.DataFrame, registry: dict[str, dict[str, object]] | None = None
) -> tuple[object, str] | None:
    """Bytes one user sends against sparsity on the main grid, a line per scheme and serialisation, a panel
    per key size (schemes without Paillier in every panel). Bytes do not depend on the backend."""
    rows = main_slice(sweep, encrypted_only=False)
    rows = rows[rows["backend_name"] != BASELINE_NAME]
    per_point = rows.drop_duplicates([s for s in BYTES_SETTINGS if s in rows.columns])
    series, left_out = comparable_series(per_point, "sparsity", BYTES_SETTINGS)
    if not series:
        return None
    _, differing = fixed_and_differing(series)
    labels = [
        label + (" (HEU's serialisation)" if one.setting("serialisation") == "heu" else "")
        for label, one in zip(unique_labels(series, differing, omit=("key_bits", "serialisation")), series, strict=True)
    ]
    key_sizes = sorted({int(one.rows["key_bits"].iloc[0]) for one in series} - {0}) or [0]
    unencrypted = any(int(one.rows["key_bits"].iloc[0]) == 0 for one in series)
    panels = [
        (
            (f"{bits}-bit keys" + (" (and schemes without Paillier)" if unencrypted else ""))
            if bits
            else "no encryption",
            [i for i, one in enumerate(series) if int(one.rows["key_bits"].iloc[0]) in (0, bits)],
        )
        for bits in key_sizes
    ]
    figure = report_figures.lines_over(
        series,
        labels,
        x="sparsity",
        y="bytes_per_user",
        panels=panels,
        xlabel="sparsity (share of zero weights)",
        ylabel="sent per user",
        title="Bytes one user sends vs sparsity",
        unit="bytes",
        registry=registry,
    )
    note = "Bytes do not depend on the backend: one line per scheme (HEU's own serialisation apart)."
    return figure, _figure_caption(series, left_out, "sparsity", f"{note} {outside_main_note(sweep)}")


def encryption_vs_key_size_figure(
    sweep: pd.DataFrame, registry: dict[str, dict[str, object]] | None = None
) -> tuple[object, str] | None:
    """Encryption per ciphertext against key size, a line per configuration, for one scheme and sparsity of
    the main grid (``dense`` where measured, at its most measured sparsity). None without two key sizes."""
    rows = main_slice(sweep)
    if rows.empty:
        return None
    scheme = "dense" if (rows["scheme_name"] == "dense").any() else rows["scheme_name"].mode().iloc[0]
    rows = rows[rows["scheme_name"] == scheme]
    sparsity = rows["sparsity"].mode().iloc[0]
    rows = rows[np.isclose(rows["sparsity"], sparsity)]
    series, left_out = comparable_series(rows, "key_bits", SWEEP_SETTINGS)
    if not series:
        return None
    _, differing = fixed_and_differing(series)
    labels = unique_labels(series, differing)
    figure = report_figures.lines_over(
        series,
        labels,
        x="key_bits",
        y="encryption_per_ciphertext_s",
        panels=[(f"{scheme_text(rows.iloc[0])}, sparsity {setting_text(sparsity)}", list(range(len(series))))],
        xlabel="key size (bits of n)",
        ylabel="encryption per ciphertext",
        title="Encryption per ciphertext vs key size",
        unit="s",
        registry=registry,
        xticks=sorted({int(k) for k in rows["key_bits"]}),
    )
    note = "Per ciphertext, `pool`'s precomputation included."
    return figure, _figure_caption(series, left_out, "key size", f"{note} {outside_main_note(sweep)}")


def outside_main_note(sweep: pd.DataFrame) -> str:
    """A sentence counting the encrypted cells of other (machine, D, users) than ``main_slice``; "" if none."""
    encrypted = sweep[sweep["key_bits"] > 0]
    others = len(encrypted) - len(main_slice(sweep))
    if not others:
        return ""
    return f"{others} encrypted cell(s) of other D, users or machines are not shown here (see Sweep cells)."


def _figure_caption(series: Sequence[Series], left_out: pd.DataFrame, varied: str, note: str = "") -> str:
    fixed, _ = fixed_and_differing(series)
    text = f"{note} {caption(fixed, row=series[0].rows.iloc[0])}"
    if len(left_out):
        text += f" {len(left_out)} cell(s) left out: no other cell differs from them only in {varied}."
    return text.strip()


# ---- the report ----------------------------------------------------------------------------------------


def write_report(inputs: Sequence[str | Path], out_dir: str | Path) -> WrittenReport:
    """Read ``inputs``, write ``report.md``, ``figures/*.png`` and ``tables/*.csv`` under ``out_dir``.

    The whole report is made in a staging folder inside ``out_dir`` first; only when all of it is written does it
    replace the previous report (``report.md``, and the ``*.png`` and ``*.csv`` of ``figures/`` and ``tables/``, stale
    ones removed), so a failed report leaves the previous one as it was. Raises DestinationError before reading
    anything when ``out_dir`` cannot be written, and ReportInputError when the inputs hold no results at all.
    """
    out_dir = prepare_folder(out_dir, "report folder")
    for folder in (out_dir / "figures", out_dir / "tables"):
        prepare_folder(folder, "report folder")
    results = load_results(inputs)
    if results.sweep.empty and results.runs.empty and results.asv.empty:
        raise ReportInputError(f"no sweep, run or asv results in {plain_list(inputs)}")
    staging = Path(tempfile.mkdtemp(prefix=".report-staging-", dir=out_dir))
    try:
        report = _Writer(out_dir, staging, WrittenReport(markdown=out_dir / "report.md"))
        _write_sections(report, results)
        report.publish()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report.written


def _write_sections(report: "_Writer", results: ResultTables) -> None:
    sweep = with_derived(results.sweep)
    runs = applicable_runs(results.runs)
    report.add(_header(results, sweep))
    if not (sweep.empty and runs.empty):
        report.add("## Headline: the paper's three results next to ours")
    if not sweep.empty:
        _headline_encryption(report, sweep)
    if not runs.empty:
        _headline_accuracy(report, runs, sweep)
    if not sweep.empty:
        _sweep_sections(report, sweep)
    if not results.asv.empty:
        latest = asv_table(results.asv)
        report.table(latest, "asv")
        summary = latest[latest["benchmark"].str.startswith(ASV_SUMMARY_MODULES)]
        summary = summary.assign(
            result=[
                human_value(v, u) if pd.notna(v) else "" for v, u in zip(summary["value"], summary["unit"], strict=True)
            ]
        )[["benchmark", "params", "result", "commit", "machine"]]
        report.add(
            "## asv benchmarks\n\nLatest result per benchmark and parameters of "
            f"{', '.join(m.rstrip('.') for m in ASV_SUMMARY_MODULES)}; every benchmark: `tables/asv.csv`.\n\n"
            + markdown_table(summary)
        )
    report.add(_differences(results, sweep))
    inputs = "## Inputs\n\n" + "\n".join(f"- `{path}`" for path in results.sources)
    if results.skipped:
        inputs += "\n\nSkipped (not result files):\n\n" + "\n".join(f"- `{path}`" for path in results.skipped)
    report.add(inputs)


@dataclass
class _Writer:
    """Collects the sections of report.md and writes tables and figures into ``staging`` as they come; ``publish``
    moves them to ``out_dir``. ``styles``: one colour-and-marker pair per series label for the whole report."""

    out_dir: Path
    staging: Path
    written: WrittenReport
    sections: list[str] = field(default_factory=list)
    styles: dict[str, dict[str, object]] = field(default_factory=dict)

    def add(self, text: str) -> None:
        self.sections.append(text)

    def table(self, table: pd.DataFrame, name: str) -> None:
        write_text_atomically(self._staged("tables", f"{name}.csv"), table.to_csv(index=False))
        self.written.tables.append(self.out_dir / "tables" / f"{name}.csv")

    def figure(self, fig, name: str, text: str) -> None:
        write_atomically(self._staged("figures", f"{name}.png"), lambda file: fig.savefig(file, format="png", dpi=110))
        self.written.figures.append(self.out_dir / "figures" / f"{name}.png")
        self.add(f"![{name.replace('_', ' ')}](figures/{name}.png)\n\n{text}".rstrip())

    def _staged(self, folder: str, name: str) -> Path:
        (self.staging / folder).mkdir(exist_ok=True)
        return self.staging / folder / name

    def publish(self) -> None:
        """Replace the previous report by this one, report.md last. Figures and tables that the previous report
        wrote (listed in ``MANIFEST``) and this one does not are removed; files it did not write never are."""
        write_text_atomically(self.staging / "report.md", "\n\n".join(self.sections) + "\n")
        made = sorted(f"{p.parent.name}/{p.name}" for p in (*self.written.figures, *self.written.tables))
        for stale in sorted(set(_previous_manifest(self.out_dir)) - set(made)):
            (self.out_dir / stale).unlink(missing_ok=True)
        for name in made:
            os.replace(self.staging / name, self.out_dir / name)
        write_text_atomically(self.out_dir / MANIFEST, json.dumps(made, indent=1) + "\n")
        os.replace(self.staging / "report.md", self.written.markdown)


def _previous_manifest(out_dir: Path) -> list[str]:
    """The figures and tables the previous report in ``out_dir`` wrote (names under figures/ and tables/ only)."""
    try:
        names = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(names, list):
        return []
    return [
        name
        for name in names
        if isinstance(name, str) and re.fullmatch(r"(figures/[\w.-]+\.png|tables/[\w.-]+\.csv)", name)
    ]


def _headline_encryption(report: _Writer, sweep: pd.DataFrame) -> None:
    table = headline_encryption_table(sweep)
    report.table(table, "paper_encryption")
    report.add(
        "### One user encrypts 200,000 weights: dense vs DPHE at 95.6 % sparsity (paper table 1)\n\n"
        "Per backend and key size, its fastest measured configuration (chosen by its DPHE cell at 95.6 %, or by its "
        "dense cell where it has none; the other column is of the same configuration). A user's whole encryption "
        "work: encoding, encryption and message, plus `pool`'s "
        "offline precomputation; one-time costs (djn table, warm-up) are in their own table below. Where the sweep has "
        "200,000-weight cells, only their key sizes are shown. `basis` says "
        "which cells are measured at D = 200,000 and which are projected, and from what.\n\n" + markdown_table(table)
    )


def _projection_sentence(projection: str) -> str:
    if projection.startswith("no "):
        return f"The encryption column is empty: {projection}."
    return (
        "The encryption column projects one user's DPHE encryption of 200,000 weights at that sparsity from "
        f"{projection}."
    )


def _headline_accuracy(report: _Writer, runs: pd.DataFrame, sweep: pd.DataFrame) -> None:
    sparsity, series, labels, text = accuracy_vs_sparsity_table(runs, sweep)
    _accuracy_section(
        report,
        "accuracy_vs_sparsity",
        "Accuracy vs sparsity (paper table 3)",
        "Ours: `dphe-bench run` results that differ only in the elastic-net `model.alpha` (mean over repeats). "
        + _projection_sentence(sparsity.attrs["projection"]),
        (sparsity, series, labels, text),
        x="user_sparsity_mean",
        xlabel="sparsity of the users' weights (share of zeros)",
        title="Accuracy vs sparsity (model.alpha varied)",
        paper=PAPER_ACCURACY_VS_SPARSITY,
        centralised=False,
    )
    _accuracy_section(
        report,
        "accuracy_vs_users",
        "Accuracy vs number of users (paper table 2)",
        "Ours: `dphe-bench run` results that differ only in `federation.users`, one column per series (mean over "
        "repeats).",
        accuracy_vs_users_table(runs),
        x="users",
        xlabel="number of users",
        title="Accuracy vs number of users",
        paper=PAPER_ACCURACY_VS_USERS,
        logx=True,
    )


def _accuracy_section(report: _Writer, name: str, heading: str, intro: str, made: tuple, **figure: object) -> None:
    """One headline accuracy table (``tables/paper_<name>.csv``) and, where a series exists, its figure; ``made``:
    (table, series, labels, caption) as the table functions return them. The caption goes under the figure, or
    under the table when there is none."""
    table, series, labels, text = made
    report.table(table, f"paper_{name}")
    report.add(f"### {heading}\n\n{intro}\n\n" + markdown_table(table) + (f"\n\n{text}" if text and not series else ""))
    if series:
        fig = report_figures.accuracy_lines(series, labels, registry=report.styles, **figure)
        report.figure(fig, name, text)


def _sweep_sections(report: _Writer, sweep: pd.DataFrame) -> None:
    speedups = speedup_table(sweep)
    if not speedups.empty:
        summary = speedup_summary(speedups)
        report.table(speedups, "speedup")
        report.table(summary, "speedup_summary")
        report.add(
            "## Speed-up over python-paillier\n\n"
            "Every backend configuration against python-paillier on the same values (same machine, grid point and "
            "scheme), geometric mean over the cells of that D, users and key size: python-paillier's encryption "
            "time divided by ours, `pool`'s offline precomputation included (`online only`: without it). "
            "`vs HEU`: the same against the fastest SecretFlow HEU Paillier cell on the same values, over the "
            "`HEU cells` that have one (dense and packed; none without `dphe-bench sweep --heu ZPaillier`). "
            "`load`: the 1-minute load average while the cells ran (above the CPU count, other work shared the "
            "cores).\n\n" + markdown_table(summary)
        )
        fig = report_figures.speedup_dots(
            summary,
            list(summary["configuration"]),
            _summary_panels(summary),
            "Speed-up over python-paillier (same values, same sweep; geometric mean)",
            report.styles,
        )
        report.figure(fig, "speedup_over_python_paillier", "")
    costs = one_time_costs_table(sweep)
    if not costs.empty:
        report.table(costs, "one_time_costs")
        report.add(
            "## One-time costs\n\nPaid once per backend (warm-up: kernels compiled or loaded from numba's cache, "
            "worker pools and clusters started) or once per key (`djn` fixed-base table), and kept out of every "
            "per-round time above.\n\n" + markdown_table(costs)
        )
    costs = scheme_cost_table(sweep)
    if not costs.empty:
        report.table(costs, "scheme_costs")
        report.add(
            "## Schemes: cost and leakage\n\nEach scheme at its fastest configuration on the sweep's main grid ("
            + _slice_text(main_slice(sweep, encrypted_only=False))
            + "), next to what it leaks to the aggregator (the key generator always learns the sum, the model). "
            + outside_main_note(sweep)
            + "\n\n"
            + markdown_table(costs)
        )
    for name, build in (
        ("encryption_time_vs_sparsity", encryption_vs_sparsity_figure),
        ("bytes_per_user_vs_sparsity", bytes_vs_sparsity_figure),
        ("encryption_time_vs_key_size", encryption_vs_key_size_figure),
    ):
        made = build(sweep, report.styles)
        if made is not None:
            report.figure(made[0], name, made[1])
    table = sweep_table(sweep)
    report.table(table, "sweep")
    report.add("## Sweep cells\n\n" + markdown_table(table))


def _summary_panels(summary: pd.DataFrame) -> list[str]:
    """The grid each speed-up row comes from, as a panel title: D, users and (where several) host."""
    hosts = summary["host"].nunique() > 1
    return [
        f"D = {row['D']:,}, {row['users']} user{'s' if row['users'] != 1 else ''}"
        + (f", {row['host']}" if hosts else "")
        for _, row in summary.iterrows()
    ]


def _slice_text(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "no encrypted cells"
    first = rows.iloc[0]
    users = int(first["users"])
    host = setting_text(first["host"]) or "unknown"
    return f"D = {int(first['dimension']):,}, {users} user{'s' if users != 1 else ''}, host {host}"


def _header(results: ResultTables, sweep: pd.DataFrame) -> str:
    lines = ["# dphe-bench report", ""]
    if not sweep.empty:
        machines = sweep[["host", "cpu", "cpu_count", "os", "python", "dphe_bench"]].drop_duplicates()
        for _, m in machines.iterrows():
            lines.append(
                f"Sweep machine: {m['cpu']} ({setting_text(m['cpu_count'])} CPUs, host "
                f"{setting_text(m['host']) or 'unknown'}), {m['os']}, "
                f"Python {m['python']}, dphe-bench {m['dphe_bench']}."
            )
        dates = sorted(str(t)[:10] for t in sweep["time_utc"].dropna())
        load = pd.to_numeric(sweep["load_average"], errors="coerce").dropna()
        if dates:
            lines.append(f"Measured {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "") + " (UTC).")
        if len(load):
            lines.append(
                f"1-minute load average while the cells ran: {load.min():.1f} to {load.max():.1f} "
                f"(median {load.median():.1f}); above the CPU count, other work shared the cores and times are longer."
            )
        lines.append(
            f"{len(sweep)} sweep cells, {int(sweep['baseline'].sum())} of them baselines ({BASELINE_NAME}, HEU). "
            "Every cell's decrypted mean was checked against numpy's mean before its time was recorded."
        )
    if not results.runs.empty:
        lines.append(f"{len(results.runs)} `dphe-bench run` results.")
    return "\n".join(lines)


def _differences(results: ResultTables, sweep: pd.DataFrame) -> str:
    runs = results.runs
    datasets = sorted(set(runs["dataset"] + " / " + runs["features"])) if len(runs) else []
    key_sizes = sorted(int(k) for k in sweep["key_bits"].unique() if k > 0) if len(sweep) else []
    cpus = sorted(sweep["cpu"].dropna().unique()) if len(sweep) else []
    parallel = sorted(set(sweep.loc[sweep["key_bits"] > 0, "configuration"])) if len(sweep) else []
    return "\n".join(
        [
            "## What differs from the paper's setting",
            "",
            f"- Paper: {PAPER_SETTING}.",
            f"- Our data and features: {', '.join(datasets) or 'no runs read'} (the paper: Caltech101 with "
            "ResNet features; its accuracy is not comparable in absolute terms, only its trends are).",
            (
                "- Our crypto timings: synthetic weight vectors (Laplace values, exact zeros at the given sparsity), "
                f"key sizes {', '.join(map(str, key_sizes)) or '(none encrypted)'} bits, on {', '.join(cpus)}. "
                "Encryption is summed over users and reported per user; each configuration uses the cores it names "
                f"({'; '.join(parallel) or 'none'})."
                if cpus
                else "- No sweep results were read, so no crypto timings."
            ),
            "- Numbers marked 'projected' are scaled linearly from a smaller D of the same configuration; "
            "encryption time is linear in the number of ciphertexts, but per-call overheads make small-D "
            "projections rough.",
            "- Hardware: the paper's times come from the authors' machine of 2017, ours from the CPU above. The "
            "comparable figure is the speed-up over python-paillier, measured on the same machine in the same sweep.",
        ]
    )


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub Markdown table in human units (``report_units.format_value``); NaN as an empty cell."""
    if table.empty:
        return "_(no rows)_"
    columns = list(map(str, table.columns))
    header = "| " + " | ".join(reader_column(c).replace("|", "\\|") for c in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = [
        "| " + " | ".join(format_value(c, v).replace("|", "\\|") for c, v in zip(columns, row, strict=True)) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])
