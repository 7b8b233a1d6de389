"""Figures of the report. Each function takes a tidy DataFrame and returns a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global state, nothing shown); the caller
saves them (PNG through Agg). Axes carry units; value axes that span more than a decade are logarithmic.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dphe_bench.bench.report_data import ReportInputError
from dphe_bench.bench.sweep import BASELINE_NAME
from dphe_bench.errors import plain_list

PAPER_LABEL = "paper (Caltech101, ResNet features)"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def encryption_time_vs_sparsity(sweep: pd.DataFrame) -> Figure:
    """Encryption time per user against sparsity: one panel per key size, one line per scheme x backend.

    Expects the sweep rows of one dimension and one number of users (encrypted schemes only).
    """
    _require(sweep, ("key_bits", "sparsity", "scheme", "backend", "encrypt_per_user_s", "dimension", "users"))
    key_sizes = sorted(sweep["key_bits"].unique())
    fig = Figure(figsize=(5.0 * len(key_sizes), 4.2), layout="constrained")
    axes = fig.subplots(1, len(key_sizes), squeeze=False, sharey=True)[0]
    for ax, key_bits in zip(axes, key_sizes, strict=True):
        panel = sweep[sweep["key_bits"] == key_bits]
        for i, ((scheme, backend), line) in enumerate(panel.groupby(["scheme", "backend"], sort=True)):
            line = line.sort_values("sparsity")
            ax.plot(
                line["sparsity"],
                line["encrypt_per_user_s"],
                marker=MARKERS[i % len(MARKERS)],
                linestyle="--" if backend == BASELINE_NAME else "-",
                label=f"{scheme} / {backend}",
            )
        ax.set_title(f"{key_bits}-bit keys")
        ax.set_xlabel("sparsity (share of zero weights)")
        _log_if_wide(ax, panel["encrypt_per_user_s"], axis="y")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("encryption time per user (s)")
    axes[-1].legend(fontsize="small")
    fig.suptitle(_slice_title("Encryption time vs sparsity", sweep))
    return fig


def encryption_time_vs_key_size(sweep: pd.DataFrame) -> Figure:
    """Encryption time per ciphertext (median over cells) against key size, one line per backend."""
    _require(sweep, ("key_bits", "backend", "encrypt_per_ciphertext_s"))
    per_ct = sweep.dropna(subset=["encrypt_per_ciphertext_s"])
    table = per_ct.groupby(["backend", "key_bits"])["encrypt_per_ciphertext_s"].median().mul(1000.0).reset_index()
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, (backend, line) in enumerate(table.groupby("backend", sort=True)):
        ax.plot(
            line["key_bits"],
            line["encrypt_per_ciphertext_s"],
            marker=MARKERS[i % len(MARKERS)],
            linestyle="--" if backend == BASELINE_NAME else "-",
            label=backend,
        )
    ax.set_xticks(sorted(table["key_bits"].unique()))
    ax.set_xlabel("key size (bits of n)")
    ax.set_ylabel("encryption time per ciphertext (ms)")
    _log_if_wide(ax, table["encrypt_per_ciphertext_s"], axis="y")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("Encryption time vs key size (median over sweep cells)")
    return fig


def speedup_over_baseline(speedups: pd.DataFrame) -> Figure:
    """Bars of encryption speed-up over python-paillier (geometric mean over cells) per key size and backend.

    ``speedups``: the table of ``report.speedup_table`` (columns key_bits, backend, speedup).
    """
    _require(speedups, ("key_bits", "backend", "speedup"))
    summary = (
        speedups.assign(log_speedup=np.log(speedups["speedup"]))
        .groupby(["key_bits", "backend"])["log_speedup"]
        .mean()
        .pipe(np.exp)
        .unstack("backend")
    )
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, summary.shape[1])
    x = np.arange(len(summary.index))
    for i, backend in enumerate(summary.columns):
        bars = ax.bar(x + (i - (summary.shape[1] - 1) / 2) * width, summary[backend], width, label=backend)
        ax.bar_label(bars, fmt="%.2fx", fontsize="x-small")
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label=f"{BASELINE_NAME} (1x)")
    ax.set_xticks(x, [f"{k}-bit" for k in summary.index])
    ax.set_xlabel("key size")
    ax.set_ylabel(f"encryption speed-up over {BASELINE_NAME} (x)")
    _log_if_wide(ax, summary.stack(), axis="y")
    ax.legend(fontsize="small")
    ax.set_title("Speed-up over python-paillier, same values, same run")
    return fig


def bytes_per_user_vs_sparsity(sweep: pd.DataFrame) -> Figure:
    """Bytes one user sends against sparsity, one line per scheme, one panel per key size.

    Rows of unencrypted schemes (key_bits 0) are drawn in every panel, for reference.
    """
    _require(sweep, ("key_bits", "sparsity", "scheme", "bytes_per_user", "dimension", "users"))
    unencrypted = sweep[sweep["key_bits"] == 0]
    key_sizes = sorted(sweep.loc[sweep["key_bits"] > 0, "key_bits"].unique()) or [0]
    fig = Figure(figsize=(5.0 * len(key_sizes), 4.2), layout="constrained")
    axes = fig.subplots(1, len(key_sizes), squeeze=False, sharey=True)[0]
    for ax, key_bits in zip(axes, key_sizes, strict=True):
        panel = pd.concat([sweep[(sweep["key_bits"] == key_bits) & (key_bits > 0)], unencrypted])
        per_scheme = panel.groupby(["scheme", "sparsity"])["bytes_per_user"].median().reset_index()
        for i, (scheme, line) in enumerate(per_scheme.groupby("scheme", sort=True)):
            ax.plot(line["sparsity"], line["bytes_per_user"], marker=MARKERS[i % len(MARKERS)], label=scheme)
        ax.set_title("no encryption" if key_bits == 0 else f"{key_bits}-bit keys")
        ax.set_xlabel("sparsity (share of zero weights)")
        _log_if_wide(ax, panel["bytes_per_user"], axis="y")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("bytes sent per user (bytes)")
    axes[-1].legend(fontsize="small")
    fig.suptitle(_slice_title("Bytes per user vs sparsity", sweep))
    return fig


def accuracy_vs_users(runs: pd.DataFrame, paper: Sequence[tuple[int, float]] = ()) -> Figure:
    """Test accuracy (%) against the number of users, one line per dataset x features x scheme.

    ``paper``: (users, accuracy %) points drawn for reference.
    """
    _require(runs, ("users", "accuracy_scheme", "accuracy_centralised", "dataset", "features", "scheme", "alpha"))
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    series = ["dataset", "features", "scheme", "alpha"]
    groups = runs.groupby([*series, "users"])
    means = groups[["accuracy_scheme", "accuracy_centralised"]].mean().mul(100.0).reset_index()
    for i, ((dataset, features, scheme, alpha), line) in enumerate(means.groupby(series)):
        ax.plot(
            line["users"],
            line["accuracy_scheme"],
            marker=MARKERS[i % len(MARKERS)],
            label=f"{dataset} ({features}), federated {scheme}, alpha {alpha:g}",
        )
        ax.plot(line["users"], line["accuracy_centralised"], linestyle=":", color=ax.lines[-1].get_color(), label=None)
    if paper:
        users, accuracy = zip(*paper, strict=True)
        ax.plot(users, accuracy, "k*--", markersize=10, label=PAPER_LABEL)
    user_counts = sorted({*means["users"], *(u for u, _ in paper)})
    _log_if_wide(ax, pd.Series(user_counts), axis="x")
    ax.set_xticks(user_counts, [str(u) for u in user_counts])
    ax.minorticks_off()
    ax.set_xlabel("number of users")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", title="dotted: centralised model", title_fontsize="small")
    ax.set_title("Accuracy vs number of users")
    return fig


def accuracy_vs_sparsity(runs: pd.DataFrame, paper: Sequence[tuple[float, float]] = ()) -> Figure:
    """Test accuracy (%) against the users' mean weight sparsity, one series per dataset x features x users."""
    _require(runs, ("user_sparsity_mean", "accuracy_scheme", "dataset", "features", "users"))
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, ((dataset, features, users), points) in enumerate(runs.groupby(["dataset", "features", "users"])):
        points = points.sort_values("user_sparsity_mean")
        ax.plot(
            points["user_sparsity_mean"],
            points["accuracy_scheme"] * 100.0,
            marker=MARKERS[i % len(MARKERS)],
            label=f"{dataset} ({features}), {users} users",
        )
    if paper:
        sparsity, accuracy = zip(*paper, strict=True)
        ax.plot(sparsity, accuracy, "k*--", markersize=10, label=PAPER_LABEL)
    ax.set_xlabel("sparsity of the users' weights (share of zeros)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("Accuracy vs sparsity (elastic-net alpha varied)")
    return fig


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReportInputError(f"cannot plot: missing column(s) {plain_list(missing)}")
    if frame.empty:
        raise ReportInputError("cannot plot: no rows")


def _log_if_wide(ax, values: pd.Series, axis: str) -> None:
    """Logarithmic ``axis`` when the positive values span more than a factor of 10."""
    positive = pd.to_numeric(pd.Series(values), errors="coerce")
    positive = positive[positive > 0]
    if len(positive) and positive.max() / positive.min() > 10.0:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _slice_title(title: str, sweep: pd.DataFrame) -> str:
    dims = ", ".join(f"{d:,}" for d in sorted(sweep["dimension"].unique()))
    users = ", ".join(str(u) for u in sorted(sweep["users"].unique()))
    return f"{title} (D = {dims} weights, {users} users)"
