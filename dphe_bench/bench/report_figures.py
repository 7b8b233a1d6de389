"""Figures of the report. Each function takes series (``report_series``) or a tidy table and returns a Figure.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global state, nothing shown); the caller
saves them (PNG through Agg). Every series has its own colour-and-marker pair (``series_styles``), the same
label has the same style in every panel, legends sit outside the axes, and axes carry human units
(``report_units``); value axes that span more than a decade are logarithmic.
"""

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dphe_bench.bench.report_data import ReportInputError
from dphe_bench.bench.report_series import Series
from dphe_bench.bench.report_units import bytes_axis, ratio_axis, seconds_axis
from dphe_bench.bench.sweep import BASELINE_NAME
from dphe_bench.errors import plain_list

PAPER_LABEL = "paper (Caltech101, ResNet features)"
# Characters per line of a legend label.
LEGEND_WIDTH = 34
PAPER_STYLE = {"color": "black", "marker": "*", "linestyle": "--", "markersize": 10}
# 20 colours and 13 markers: coprime, so the first 260 series get distinct (colour, marker) pairs.
COLOURS = tuple(colormaps["tab20"].colors)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "8", "d")
MAX_SERIES = len(COLOURS) * len(MARKERS)


def series_styles(
    labels: Sequence[str], registry: dict[str, dict[str, object]] | None = None
) -> dict[str, dict[str, object]]:
    """A distinct (colour, marker) pair per distinct label, in order of first appearance.

    ``registry``: the pairs given so far in the same report (label -> style), extended in place, so that a label
    keeps its style in every figure and no two labels of the report share one. Raises ReportInputError beyond
    ``MAX_SERIES`` labels (no report of that many series can be read).
    """
    registry = {} if registry is None else registry
    for label in dict.fromkeys(labels):
        if label not in registry:
            if len(registry) >= MAX_SERIES:
                raise ReportInputError(f"more than {MAX_SERIES} series are too many for one report's figures")
            i = len(registry)
            registry[label] = {"color": COLOURS[i % len(COLOURS)], "marker": MARKERS[i % len(MARKERS)]}
    return {label: registry[label] for label in dict.fromkeys(labels)}


def _legend(fig: Figure, styles: dict[str, dict[str, object]], linestyle: str = "-", **options: object) -> None:
    """One legend for the figure, outside the axes on the right; labels wrapped; the baseline dashed."""
    handles = [
        Line2D([], [], linestyle="--" if BASELINE_NAME in label else linestyle, **style)
        for label, style in styles.items()
    ]
    names = [textwrap.fill(label, LEGEND_WIDTH) for label in styles]
    fig.legend(handles, names, loc="outside right upper", fontsize="x-small", **options)


def lines_over(
    series: Sequence[Series],
    labels: Sequence[str],
    x: str,
    y: str,
    panels: Sequence[tuple[str, Sequence[int]]],
    xlabel: str,
    ylabel: str,
    title: str,
    unit: str = "",
    ncols: int | None = None,
    registry: dict[str, dict[str, object]] | None = None,
    xticks: Sequence[float] = (),
) -> Figure:
    """One panel per (title, indices into ``series``), one line per series: the mean of ``y`` at each ``x``.

    ``unit``: "s" or "bytes" for human tick labels on the value axis; ``ncols``: panels per row (default all
    in one row); ``registry``: the report's styles (``series_styles``); ``xticks``: the x ticks (default
    matplotlib's). Lines of one label share a style in every panel; one legend for the figure, outside the axes.
    """
    if not series:
        raise ReportInputError("cannot plot: no series")
    styles = series_styles(labels, registry)
    ncols = min(ncols or len(panels), len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.4 * ncols + 3.6, _height(styles, 3.4 * nrows + 0.8)), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False, sharey=True, sharex=True)
    axes = list(grid.flat)
    for unused in axes[len(panels) :]:
        unused.set_visible(False)
    axes = axes[: len(panels)]
    values = []
    for ax, (panel_title, members) in zip(axes, panels, strict=True):
        for i in members:
            points = series[i].rows.groupby(x, sort=True)[y].mean().dropna()
            dashed = BASELINE_NAME in labels[i]
            ax.plot(points.index, points.values, linestyle="--" if dashed else "-", **styles[labels[i]])
            values += list(points.values)
        ax.set_title(panel_title, fontsize="medium")
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
        if len(xticks):
            ax.set_xticks(list(xticks), [f"{tick:g}" for tick in xticks])
    for row in grid:
        row[0].set_ylabel(ylabel)
    for ax in axes:
        if unit == "bytes":
            bytes_axis(ax)
            continue
        _log_if_wide(ax, pd.Series(values), axis="y")
        if unit == "s":
            seconds_axis(ax)
    _legend(fig, styles)
    fig.suptitle(title, fontsize="medium", x=0.02, ha="left")
    return fig


def speedup_dots(
    summary: pd.DataFrame,
    labels: Sequence[str],
    panels: Sequence[str],
    title: str,
    registry: dict[str, dict[str, object]] | None = None,
) -> Figure:
    """Speed-up over python-paillier (geometric mean) per key size: a panel per ``panels`` value (the grid the
    ratios come from: D, users, host), one marker series per label (the configuration) in every panel.

    ``summary``: rows with ``key bits`` and ``speed-up (geometric mean)``; ``labels`` and ``panels``: one per row.
    """
    _require(summary, ("key bits", "speed-up (geometric mean)"))
    styles = series_styles(labels, registry)
    frame = summary.assign(label=list(labels), panel=list(panels))
    names = list(dict.fromkeys(panels))
    fig = Figure(figsize=(3.6 * len(names) + 3.6, _height(styles, 4.4)), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False, sharey=True)[0]
    for ax, name in zip(axes, names, strict=True):
        panel = frame[frame["panel"] == name]
        for label, rows in panel.groupby("label", sort=False):
            rows = rows.sort_values("key bits")
            ax.plot(rows["key bits"], rows["speed-up (geometric mean)"], linestyle=":", **styles[label])
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        key_sizes = sorted(panel["key bits"].unique())
        ax.set_xticks(key_sizes, [f"{int(k)}-bit" for k in key_sizes])
        ax.set_xmargin(0.3)
        ax.set_xlabel("key size")
        ax.set_title(name, fontsize="medium")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"speed-up over {BASELINE_NAME} (dashed: 1x)")
    for ax in axes:
        _log_if_wide(ax, frame["speed-up (geometric mean)"], axis="y")
        ratio_axis(ax)
    _legend(fig, styles, linestyle=":")
    fig.suptitle(title, fontsize="medium", x=0.02, ha="left")
    return fig


def _height(styles: dict[str, dict[str, object]], least: float) -> float:
    """Inches a figure needs so that its legend (labels wrapped at LEGEND_WIDTH) fits beside the axes."""
    lines = sum(len(textwrap.wrap(label, LEGEND_WIDTH)) or 1 for label in styles)
    return max(least, 0.17 * lines + 0.9)


def accuracy_lines(
    series: Sequence[Series],
    labels: Sequence[str],
    x: str,
    xlabel: str,
    title: str,
    paper: Sequence[tuple[float, float]] = (),
    logx: bool = False,
    centralised: bool = True,
    registry: dict[str, dict[str, object]] | None = None,
) -> Figure:
    """Test accuracy (%) of each series against ``x``; with ``centralised``, its centralised model dotted in the
    same colour (only where ``x`` is a setting the centralised model shares, such as the number of users).

    ``paper``: (x, accuracy %) points of the paper, drawn in black for reference.
    """
    if not series:
        raise ReportInputError("cannot plot: no series")
    styles = series_styles(labels, registry)
    fig = Figure(figsize=(9.0, 4.4), layout="constrained")
    ax = fig.subplots()
    xs = []
    for one, label in zip(series, labels, strict=True):
        points = one.rows.groupby(x, sort=True)[["accuracy_scheme", "accuracy_centralised"]].mean().mul(100.0)
        ax.plot(points.index, points["accuracy_scheme"], linestyle="-", **styles[label])
        if centralised:
            ax.plot(points.index, points["accuracy_centralised"], linestyle=":", color=styles[label]["color"])
        xs += list(points.index)
    handles = [Line2D([], [], linestyle="-", **style) for style in styles.values()]
    names = [textwrap.fill(label, LEGEND_WIDTH) for label in styles]
    if paper:
        px, py = zip(*paper, strict=True)
        ax.plot(px, py, **PAPER_STYLE)
        handles.append(Line2D([], [], **PAPER_STYLE))
        names.append(PAPER_LABEL)
        xs += list(px)
    if logx:
        _log_if_wide(ax, pd.Series(xs), axis="x")
        ticks = sorted(set(xs))
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    title_note = {"title": "dotted: centralised model", "title_fontsize": "x-small"} if centralised else {}
    fig.legend(handles, names, loc="outside right upper", fontsize="x-small", **title_note)
    fig.suptitle(title, fontsize="medium", x=0.02, ha="left")
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
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if len(positive) and positive.max() / positive.min() > 10.0:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
