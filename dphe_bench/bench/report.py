"""The performance report: tables and figures from sweep, run and asv results, next to the paper's numbers.

``write_report(inputs, out_dir)`` reads the results (``report_data``), builds tidy tables (functions
below), draws the figures (``report_figures``) and writes ``report.md``, ``figures/*.png`` and
``tables/*.csv`` under ``out_dir``.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dphe_bench.bench import report_figures
from dphe_bench.bench.report_data import ReportInputError, ResultTables, load_results
from dphe_bench.bench.sweep import BASELINE_NAME, DEFAULT_OUT, HEU_NAME
from dphe_bench.errors import plain_list
from dphe_bench.files import prepare_folder, write_atomically, write_text_atomically
from dphe_bench.schemes import SCHEMES

# Yonetani, Boddeti, Kitani, Sato, "Privacy-Preserving Visual Learning with Doubly-Permuted Homomorphic
# Encryption", ICCV 2017: Python + GMP, Caltech101 with ResNet features, 101 classes x 2048 features.
PAPER_DIMENSION = 200_000
PAPER_SPARSITY = 0.956
PAPER_ENCRYPTION_S = {"dense": 620.0, "dphe": 62.0}
PAPER_ACCURACY_VS_USERS = ((5, 89.3), (10, 88.9), (100, 85.6))
PAPER_ACCURACY_VS_SPARSITY = ((0.01, 89.7), (0.956, 88.2))
PAPER_SETTING = "Caltech101, ResNet features (D = 101 x 2048), Python + GMP on the authors' machine"
DEFAULT_BACKEND_FOR_PROJECTION = ("gmpy2", 2048)
# asv modules whose results appear in report.md (all of them go to tables/asv.csv).
ASV_SUMMARY_MODULES = ("bench_paillier.", "bench_learning.")


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


# ---- tables --------------------------------------------------------------------------------------------


def main_slice(sweep: pd.DataFrame, encrypted_only: bool = True) -> pd.DataFrame:
    """The sweep rows of the (dimension, users) pair with the most encrypted cells: the main grid."""
    encrypted = sweep[sweep["key_bits"] > 0]
    if encrypted.empty:
        return encrypted
    dimension, users = encrypted.groupby(["dimension", "users"]).size().idxmax()
    rows = encrypted if encrypted_only else sweep
    return rows[(rows["dimension"] == dimension) & (rows["users"] == users)]


def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """One row per cell, the columns a reader compares: times per user, ciphertexts and bytes per user."""
    columns = {
        "dimension": "D",
        "users": "users",
        "key_bits": "key bits",
        "sparsity": "sparsity",
        "scheme": "scheme",
        "backend": "backend",
        "encrypt_per_user_s": "encrypt / user (s)",
        "aggregate_s": "aggregate (s)",
        "decrypt_s": "decrypt (s)",
        "ciphertexts_per_user": "ciphertexts / user",
        "bytes_per_user": "bytes / user",
        "max_abs_error": "max |error|",
    }
    order = ["dimension", "users", "key_bits", "sparsity", "scheme", "backend"]
    return sweep.sort_values(order)[list(columns)].rename(columns=columns).reset_index(drop=True)


def scheme_cost_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Cost of every scheme next to what it leaks, on the main grid (largest measured D and users).

    One row per (scheme, backend, key bits, sparsity): encryption seconds and bytes sent per user,
    ciphertexts per user, and the scheme's leakage (``Scheme.leakage``). Baseline rows are left out.
    """
    rows = main_slice(sweep, encrypted_only=False)
    rows = rows[~rows["baseline"]] if "baseline" in rows else rows
    table = rows.assign(leakage=rows["scheme_name"].map(lambda name: SCHEMES[name].leakage if name in SCHEMES else ""))
    columns = {
        "scheme": "scheme",
        "backend": "backend",
        "key_bits": "key bits",
        "sparsity": "sparsity",
        "encrypt_per_user_s": "encrypt / user (s)",
        "bytes_per_user": "bytes / user",
        "ciphertexts_per_user": "ciphertexts / user",
        "leakage": "the aggregator learns",
    }
    order = ["scheme", "backend", "key_bits", "sparsity"]
    return table.sort_values(order)[list(columns)].rename(columns=columns).reset_index(drop=True)


def speedup_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Encryption speed-up of every backend over the python-paillier cell with the same values, and over the
    fastest SecretFlow HEU cell with the same values (``dphe-bench sweep --heu VARIANT``).

    Returns columns dimension, users, sparsity, key_bits, scheme, backend, encrypt_s, baseline_encrypt_s,
    speedup (baseline_encrypt_s / encrypt_s), heu_encrypt_s and vs_heu (heu_encrypt_s / encrypt_s; NaN where no
    HEU cell ran). Cells without a python-paillier partner are left out; HEU cells are baselines, not rows.
    """
    keys = ["dimension", "users", "sparsity", "key_bits", "scheme", "seed"]
    encrypted = sweep[(sweep["key_bits"] > 0) & (sweep["encrypt_s"] > 0)]
    baseline = encrypted[encrypted["backend_name"] == BASELINE_NAME][[*keys, "encrypt_s"]]
    fastest_heu = (
        encrypted[encrypted["backend_name"] == HEU_NAME]
        .groupby(keys, as_index=False)["encrypt_s"]
        .min()
        .rename(columns={"encrypt_s": "heu_encrypt_s"})
    )
    ours = encrypted[~encrypted["backend_name"].isin([BASELINE_NAME, HEU_NAME])][[*keys, "backend", "encrypt_s"]]
    merged = ours.merge(baseline, on=keys, suffixes=("", "_baseline")).rename(
        columns={"encrypt_s_baseline": "baseline_encrypt_s"}
    )
    merged["speedup"] = merged["baseline_encrypt_s"] / merged["encrypt_s"]
    merged = merged.merge(fastest_heu, on=keys, how="left")
    merged["vs_heu"] = merged["heu_encrypt_s"] / merged["encrypt_s"]
    return merged.drop(columns="seed").sort_values([*keys[:-1], "backend"]).reset_index(drop=True)


def speedup_summary(speedups: pd.DataFrame) -> pd.DataFrame:
    """Geometric mean, minimum and maximum speed-up per backend and key size, with the number of cells, and the
    geometric mean over the fastest HEU Paillier of the cells that have one (``vs HEU``; NaN where none does)."""
    logs = speedups.assign(log=np.log(speedups["speedup"]), log_heu=np.log(speedups["vs_heu"]))
    grouped = logs.groupby(["backend", "key_bits"])
    return pd.DataFrame(
        {
            "speed-up (geometric mean)": np.exp(grouped["log"].mean()),
            "min": grouped["speedup"].min(),
            "max": grouped["speedup"].max(),
            "cells": grouped.size(),
            "vs HEU (geometric mean)": np.exp(grouped["log_heu"].mean()),
        }
    ).reset_index()


def paper_encryption_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Paper table 1: time to encrypt 200,000 weights, dense vs DPHE at 95.6 % sparsity, per user.

    Uses sweep cells at D = 200,000 where they exist ("measured"); otherwise scales the cells of the
    largest D linearly in D ("projected": encryption time is linear in the number of ciphertexts).
    DPHE needs a cell at sparsity 0.956; dense takes the median over sparsities (it does not depend on it).
    """
    rows = [
        {
            "source": "paper",
            "backend": "python-paillier + GMP",
            "key bits": "",
            "dense (s)": PAPER_ENCRYPTION_S["dense"],
            "dphe at 95.6 % (s)": PAPER_ENCRYPTION_S["dphe"],
            "dense / dphe": PAPER_ENCRYPTION_S["dense"] / PAPER_ENCRYPTION_S["dphe"],
            "basis": "measured (paper)",
        }
    ]
    encrypted = sweep[sweep["key_bits"] > 0]
    for (backend, key_bits), cells in encrypted.groupby(["backend", "key_bits"], sort=True):
        dense = _per_user_at_paper_size(cells[cells["scheme"] == "dense"])
        dphe = _per_user_at_paper_size(cells[(cells["scheme"] == "dphe") & np.isclose(cells["sparsity"], 0.956)])
        if dense is None and dphe is None:
            continue
        basis = sorted({part[1] for part in (dense, dphe) if part is not None})
        rows.append(
            {
                "source": "SecretFlow HEU" if backend.startswith(f"{HEU_NAME}:") else "ours",
                "backend": backend,
                "key bits": int(key_bits),
                "dense (s)": dense[0] if dense else np.nan,
                "dphe at 95.6 % (s)": dphe[0] if dphe else np.nan,
                "dense / dphe": dense[0] / dphe[0] if dense and dphe else np.nan,
                "basis": "; ".join(basis),
            }
        )
    return pd.DataFrame(rows)


def _per_user_at_paper_size(cells: pd.DataFrame) -> tuple[float, str] | None:
    if cells.empty:
        return None
    exact = cells[cells["dimension"] == PAPER_DIMENSION]
    if not exact.empty:
        return float(exact["encrypt_per_user_s"].median()), "measured at D = 200,000"
    largest = cells[cells["dimension"] == cells["dimension"].max()]
    dimension = int(largest["dimension"].iloc[0])
    scaled = largest["encrypt_per_user_s"].median() * PAPER_DIMENSION / dimension
    return float(scaled), f"projected from D = {dimension:,}"


def paper_users_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Paper table 2: accuracy (%) vs number of users, the paper's Caltech101 column next to our runs."""
    table = pd.DataFrame({"users": [u for u, _ in PAPER_ACCURACY_VS_USERS]})
    table["paper: Caltech101 (%)"] = [a for _, a in PAPER_ACCURACY_VS_USERS]
    if runs.empty:
        return table
    runs = series_varying(runs, "users", ["dataset", "features", "scheme", "alpha"])
    ours = (
        runs.assign(
            series=runs["dataset"]
            + " / "
            + runs["features"]
            + ", "
            + runs["scheme"]
            + runs["alpha"].map(", alpha {:g}".format)
        )
        .groupby(["users", "series"])["accuracy_scheme"]
        .mean()
        .mul(100.0)
        .unstack("series")
        .add_prefix("ours: ")
        .add_suffix(" (%)")
        .reset_index()
    )
    return table.merge(ours, on="users", how="outer").sort_values("users").reset_index(drop=True)


def series_varying(runs: pd.DataFrame, varied: str, series: list[str]) -> pd.DataFrame:
    """The runs of the series (groups by ``series``) in which ``varied`` takes at least two values.

    All runs when no series varies it: a sweep over users at one alpha should not be averaged with runs
    that varied alpha at one number of users.
    """
    counts = runs.groupby(series)[varied].transform("nunique")
    return runs[counts >= 2] if (counts >= 2).any() else runs


def paper_sparsity_table(runs: pd.DataFrame, sweep: pd.DataFrame) -> pd.DataFrame:
    """Paper table 3: accuracy and encryption time vs sparsity.

    Our rows: each run's mean user sparsity and accuracy, and the time one user would need to encrypt
    the non-zeros of 200,000 weights at that sparsity with DPHE, projected from the sweep's median DPHE
    time per ciphertext (gmpy2 at 2048 bits where measured).
    """
    rows = [
        {
            "source": "paper: Caltech101",
            "alpha": np.nan,
            "sparsity": sparsity,
            "accuracy (%)": accuracy,
            "dphe encryption of 200k weights (s)": PAPER_ENCRYPTION_S["dphe"] if sparsity == PAPER_SPARSITY else np.nan,
        }
        for sparsity, accuracy in PAPER_ACCURACY_VS_SPARSITY
    ]
    per_ciphertext, label = _dphe_seconds_per_ciphertext(sweep)
    for _, run in runs.sort_values(["dataset", "features", "alpha"]).iterrows():
        rows.append(
            {
                "source": f"ours: {run['dataset']} / {run['features']}, {run['users']} users",
                "alpha": run["alpha"],
                "sparsity": run["user_sparsity_mean"],
                "accuracy (%)": 100.0 * run["accuracy_scheme"],
                "dphe encryption of 200k weights (s)": per_ciphertext
                * PAPER_DIMENSION
                * (1.0 - run["user_sparsity_mean"]),
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["projection"] = label
    return table


def _dphe_seconds_per_ciphertext(sweep: pd.DataFrame) -> tuple[float, str]:
    """Median DPHE encryption time per ciphertext: gmpy2 at 2048 bits if measured, else the fastest backend
    at the key size closest to 2048 bits; cells of the largest D (least per-call overhead)."""
    cells = sweep[(sweep["scheme"] == "dphe") & (sweep["ciphertexts"] > 0) & ~sweep["baseline"]]
    if cells.empty:
        return np.nan, "no DPHE sweep cells"
    preferred_backend, preferred_bits = DEFAULT_BACKEND_FOR_PROJECTION
    key_bits = min(cells["key_bits"].unique(), key=lambda bits: abs(bits - preferred_bits))
    cells = cells[cells["key_bits"] == key_bits]
    cells = cells[cells["dimension"] == cells["dimension"].max()]
    per_backend = cells.groupby("backend")["encrypt_per_ciphertext_s"].median()
    backend = preferred_backend if preferred_backend in per_backend.index else per_backend.idxmin()
    seconds = float(per_backend[backend])
    return seconds, f"{backend}, {int(key_bits)}-bit keys, {seconds * 1000:.2f} ms per ciphertext"


def asv_table(asv: pd.DataFrame) -> pd.DataFrame:
    """The latest asv result per benchmark and parameter set."""
    if asv.empty:
        return asv
    latest = asv.sort_values("date").groupby(["benchmark", "params"], as_index=False).last()
    return latest[["benchmark", "params", "value", "unit", "commit", "machine"]]


# ---- the report ----------------------------------------------------------------------------------------


def write_report(inputs: Sequence[str | Path], out_dir: str | Path) -> WrittenReport:
    """Read ``inputs``, write ``report.md``, ``figures/*.png`` and ``tables/*.csv`` under ``out_dir``.

    Every file is written whole (temporary file, then rename). Raises DestinationError before reading anything
    when ``out_dir`` cannot be written, and ReportInputError when the inputs hold no results at all.
    """
    out_dir = prepare_folder(out_dir, "report folder")
    for folder in (out_dir / "figures", out_dir / "tables"):
        prepare_folder(folder, "report folder")
    results = load_results(inputs)
    if results.sweep.empty and results.runs.empty and results.asv.empty:
        raise ReportInputError(f"no sweep, run or asv results in {plain_list(inputs)}")
    written = WrittenReport(markdown=out_dir / "report.md")
    sections = [_header(results)]
    if not results.sweep.empty:
        sections += _sweep_sections(results, out_dir, written)
    if not results.runs.empty:
        sections += _run_sections(results, out_dir, written)
    if not results.asv.empty:
        latest = asv_table(results.asv)
        written.tables.append(_save_table(latest, out_dir, "asv"))
        summary = latest[latest["benchmark"].str.startswith(ASV_SUMMARY_MODULES)]
        sections.append(
            "## asv benchmarks\n\nLatest result per benchmark and parameters of "
            f"{', '.join(m.rstrip('.') for m in ASV_SUMMARY_MODULES)}; every benchmark: `tables/asv.csv`.\n\n"
            + markdown_table(summary)
        )
    sections.append(_differences(results))
    write_text_atomically(written.markdown, "\n\n".join(sections) + "\n")
    return written


def _sweep_sections(results: ResultTables, out_dir: Path, written: WrittenReport) -> list[str]:
    sweep = results.sweep
    main = main_slice(sweep)
    speedups = speedup_table(sweep)
    paper1 = paper_encryption_table(sweep)
    sections = [
        "## Paper table 1: encrypting 200,000 weights, dense vs DPHE at 95.6 % sparsity\n\n"
        "Time for one user to encrypt (seconds). Ours: `encrypt` phase of one round per user (encoding, "
        "encryption, message), from the sweep.\n\n" + markdown_table(paper1)
    ]
    written.tables.append(_save_table(paper1, out_dir, "paper_encryption"))
    costs = scheme_cost_table(sweep)
    if not costs.empty:
        dimension = int(main_slice(sweep, encrypted_only=False)["dimension"].iloc[0])
        sections.append(
            f"## Schemes: cost and leakage\n\nPer user, at D = {dimension:,} (the main grid of the sweep), next to "
            "what each scheme leaks to the aggregator (the key generator always learns the sum, the model).\n\n"
            + markdown_table(costs)
        )
        written.tables.append(_save_table(costs, out_dir, "scheme_costs"))
    figures = []
    if not main.empty:
        figures.append(("encryption_time_vs_sparsity", report_figures.encryption_time_vs_sparsity(main)))
        figures.append(
            (
                "bytes_per_user_vs_sparsity",
                report_figures.bytes_per_user_vs_sparsity(main_slice(sweep, encrypted_only=False)),
            )
        )
    if sweep["encrypt_per_ciphertext_s"].notna().any():
        figures.append(("encryption_time_vs_key_size", report_figures.encryption_time_vs_key_size(sweep)))
    if not speedups.empty:
        figures.append(("speedup_over_python_paillier", report_figures.speedup_over_baseline(speedups)))
        summary = speedup_summary(speedups)
        sections.append(
            "## Speed-up over python-paillier\n\nEncryption time of python-paillier divided by ours on the same "
            "values in the same sweep (`speedup` > 1: ours is faster). `vs HEU`: the same against the fastest "
            "SecretFlow HEU Paillier cell on the same values (dense and packed; blank without "
            "`dphe-bench sweep --heu ZPaillier`).\n\n" + markdown_table(summary)
        )
        written.tables.append(_save_table(speedups, out_dir, "speedup"))
    sections.append(_figures_section(figures, out_dir, written))
    table = sweep_table(sweep)
    written.tables.append(_save_table(table, out_dir, "sweep"))
    sections.append("## Sweep cells\n\n" + markdown_table(table))
    return sections


def _run_sections(results: ResultTables, out_dir: Path, written: WrittenReport) -> list[str]:
    runs = results.runs
    users = paper_users_table(runs)
    sparsity = paper_sparsity_table(runs, results.sweep)
    written.tables += [_save_table(users, out_dir, "paper_accuracy_vs_users")]
    written.tables += [_save_table(sparsity, out_dir, "paper_accuracy_vs_sparsity")]
    by_users = series_varying(runs, "users", ["dataset", "features", "scheme", "alpha"])
    by_alpha = series_varying(runs, "alpha", ["dataset", "features", "scheme", "users"])
    figures = [
        ("accuracy_vs_users", report_figures.accuracy_vs_users(by_users, PAPER_ACCURACY_VS_USERS)),
        ("accuracy_vs_sparsity", report_figures.accuracy_vs_sparsity(by_alpha, PAPER_ACCURACY_VS_SPARSITY)),
    ]
    return [
        "## Paper table 2: accuracy vs number of users\n\nOurs: mean test accuracy of the federated model "
        "over the runs with that many users at one elastic-net alpha (`dphe-bench run` results).\n\n"
        + markdown_table(users),
        "## Paper table 3: accuracy and encryption time vs sparsity\n\nOurs: one row per run (elastic-net "
        "`model.alpha` varied); encryption time projected for 200,000 weights at the run's sparsity from the "
        f"sweep ({sparsity.attrs['projection']}).\n\n" + markdown_table(sparsity),
        _figures_section(figures, out_dir, written),
    ]


def _header(results: ResultTables) -> str:
    lines = ["# dphe-bench report", "", "Inputs:"]
    lines += [f"- `{path}`" for path in results.sources]
    sweep = results.sweep
    if not sweep.empty:
        machines = sweep[["cpu", "cpu_count", "os", "python"]].drop_duplicates()
        for _, m in machines.iterrows():
            lines.append(f"\nSweep machine: {m['cpu']} ({m['cpu_count']} CPUs), {m['os']}, Python {m['python']}.")
        load = sweep["load_average"].dropna()
        if len(load):
            lines.append(
                f"1-minute load average while the cells ran: {load.min():.1f} to {load.max():.1f} "
                f"(median {load.median():.1f}); above the CPU count, other work shared the cores and times are longer."
            )
        lines.append(
            f"{len(sweep)} sweep cells; {int(sweep['baseline'].sum())} of them baseline cells ({BASELINE_NAME}, HEU). "
            "Every cell's decrypted mean was checked against numpy's mean before its time was recorded."
        )
    if not results.runs.empty:
        lines.append(f"\n{len(results.runs)} `dphe-bench run` results.")
    return "\n".join(lines)


def _differences(results: ResultTables) -> str:
    datasets = sorted(set(results.runs["dataset"] + " / " + results.runs["features"])) if len(results.runs) else []
    key_sizes = sorted(int(k) for k in results.sweep["key_bits"].unique() if k > 0) if len(results.sweep) else []
    cpus = sorted(results.sweep["cpu"].unique()) if len(results.sweep) else []
    return "\n".join(
        [
            "## What differs from the paper's setting",
            "",
            f"- Paper: {PAPER_SETTING}.",
            f"- Our data and features: {', '.join(datasets) or 'no runs read'} (the paper: Caltech101 with "
            "ResNet features; its accuracy is not comparable in absolute terms, only its trends are).",
            "- Our crypto timings: synthetic weight vectors (Laplace values, exact zeros at the given sparsity), "
            f"key sizes {', '.join(map(str, key_sizes)) or 'none'} bits, on {', '.join(cpus) or 'no sweep'}; "
            "one core per user, times summed over users and reported per user.",
            "- Numbers marked 'projected' are scaled linearly from a smaller D; encryption time is linear in the "
            "number of ciphertexts, but per-call overheads make small-D projections rough.",
            "- Hardware: the paper's times come from the authors' machine of 2017, ours from the CPU above. The "
            "comparable figure is the speed-up over python-paillier, measured on the same machine in the same run.",
        ]
    )


def _figures_section(figures: list[tuple[str, object]], out_dir: Path, written: WrittenReport) -> str:
    lines = ["## Figures", ""]
    for name, fig in figures:
        path = out_dir / "figures" / f"{name}.png"
        write_atomically(path, lambda file, fig=fig: fig.savefig(file, format="png", dpi=110))
        written.figures.append(path)
        lines.append(f"![{name.replace('_', ' ')}](figures/{name}.png)\n")
    return "\n".join(lines)


def _save_table(table: pd.DataFrame, out_dir: Path, name: str) -> Path:
    path = out_dir / "tables" / f"{name}.csv"
    write_text_atomically(path, table.to_csv(index=False))
    return path


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub Markdown table; floats with 4 significant digits, NaN as an empty cell."""
    if table.empty:
        return "_(no rows)_"
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")
