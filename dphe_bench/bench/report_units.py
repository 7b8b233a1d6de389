"""Human units for the report: seconds as µs/ms/s/min, bytes as B/KiB/MiB/GiB, in tables and on axes.

Tables keep their numeric values (and the unit in the column name, ``encrypt / user (s)``) in their CSV
files; ``format_value`` writes them for a reader. Axis formatters do the same per tick.
"""

import math
import re

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

SECONDS_SUFFIX = " (s)"
PERCENT_SUFFIX = " (%)"
BYTES_SUFFIX = " (bytes)"
BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
# Integer columns written as they are (2048, not 2,048).
PLAIN_COLUMNS = ("key bits", "seed")


def human_seconds(seconds: float) -> str:
    """``0.000012`` -> ``12 µs``, ``0.0153`` -> ``15.3 ms``, ``2.5`` -> ``2.50 s``, ``754`` -> ``12.6 min``."""
    if not math.isfinite(seconds):
        return ""
    magnitude = abs(seconds)
    if magnitude == 0:
        return "0 s"
    if magnitude < 1e-3:
        return f"{_three_digits(seconds * 1e6)} µs"
    if magnitude < 1.0:
        return f"{_three_digits(seconds * 1e3)} ms"
    if magnitude < 600.0:
        return f"{_three_digits(seconds)} s"
    return f"{_three_digits(seconds / 60.0)} min"


def human_bytes(nbytes: float) -> str:
    """``512`` -> ``512 B``, ``52_530`` -> ``51.3 KiB``, ``4_541_000`` -> ``4.33 MiB`` (powers of 1024)."""
    if not math.isfinite(nbytes):
        return ""
    value, unit = float(nbytes), BYTE_UNITS[0]
    for unit in BYTE_UNITS:
        if abs(value) < 1024.0 or unit == BYTE_UNITS[-1]:
            break
        value /= 1024.0
    return f"{value:.0f} B" if unit == "B" else f"{_three_digits(value)} {unit}"


def human_value(value: float, unit: str) -> str:
    """A value in ``unit`` as asv names units (``seconds``, ``bytes``, anything else kept as written)."""
    if unit == "seconds":
        return human_seconds(value)
    if unit == "bytes":
        return human_bytes(value)
    return f"{human_number(value)} {unit}".strip()


def human_number(value: float) -> str:
    """Counts and ratios: ``12160`` -> ``12,160``, ``3.14159`` -> ``3.14``, ``1.2e-10`` -> ``1.2e-10``."""
    if not math.isfinite(value):
        return ""
    magnitude = abs(value)
    if magnitude >= 1000 or (magnitude >= 1 and float(value).is_integer()):
        return f"{value:,.0f}"
    if magnitude >= 0.01 or magnitude == 0:
        return f"{value:.3g}"
    return f"{value:.2g}"


def format_value(column: str, value: object) -> str:
    """A table cell for a reader: human seconds or bytes by the column's unit suffix, percentages with one
    decimal, NaN as an empty cell."""
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and np.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | float | np.integer | np.floating):
        if column.endswith(SECONDS_SUFFIX):
            return human_seconds(float(value))
        if column.endswith(BYTES_SUFFIX):
            return human_bytes(float(value))
        if column.endswith(PERCENT_SUFFIX):
            return f"{float(value):.1f}"
        if column in PLAIN_COLUMNS and float(value).is_integer():
            return str(int(value))
        return human_number(float(value))
    return str(value)


def reader_column(column: str) -> str:
    """The column name a reader sees: the unit suffix dropped where ``format_value`` writes the unit."""
    for suffix in (SECONDS_SUFFIX, BYTES_SUFFIX):
        if column.endswith(suffix):
            return column[: -len(suffix)]
    return column


def seconds_axis(ax, axis: str = "y") -> None:
    """Tick labels in human seconds on ``axis`` of ``ax`` (major ticks only: 1 ms, 10 ms, 2.5 s)."""
    _axis(ax, axis).set_major_formatter(FuncFormatter(lambda value, _: _tick(human_seconds(value))))
    _axis(ax, axis).set_minor_formatter(NullFormatter())


def bytes_axis(ax, axis: str = "y") -> None:
    """A logarithmic ``axis`` of ``ax`` with ticks at powers of two labelled in human bytes (512 B, 1 KiB, 4 MiB)."""
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log", base=2)
    _axis(ax, axis).set_major_locator(LogLocator(base=2, numticks=12))
    _axis(ax, axis).set_major_formatter(FuncFormatter(lambda value, _: _tick(human_bytes(value))))
    _axis(ax, axis).set_minor_formatter(NullFormatter())


def ratio_axis(ax, axis: str = "y") -> None:
    """Tick labels as ratios on ``axis`` of ``ax``: 0.2x, 1x, 30x (major ticks only)."""
    _axis(ax, axis).set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    _axis(ax, axis).set_minor_formatter(NullFormatter())


def _tick(text: str) -> str:
    """A tick label without trailing zeros: ``1.00 ms`` -> ``1 ms``, ``2.50 s`` -> ``2.5 s``."""
    return re.sub(r"(\.\d*?)0+ ", r"\1 ", text).replace(". ", " ")


def _axis(ax, axis: str):
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    return ax.yaxis if axis == "y" else ax.xaxis


def _three_digits(value: float) -> str:
    """Three significant digits without an exponent: 1.52, 15.2, 152, 1520."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
