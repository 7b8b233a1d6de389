"""Tests for comparable series (dphe_bench.bench.report_series) and human units (report_units)."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from dphe_bench.bench.report_series import (  # noqa: E402
    Series,
    backend_text,
    caption,
    comparable_series,
    fixed_and_differing,
    setting_text,
)
from dphe_bench.bench.report_units import human_bytes, human_number, human_seconds  # noqa: E402

SETTINGS = ("dataset", "users", "obfuscation", "alpha", "window_bits")
VALUES = {
    "dataset": st.sampled_from(["digits", "fashion"]),
    "users": st.sampled_from([3, 5, 10]),
    "obfuscation": st.sampled_from(["standard", "djn", None]),
    "alpha": st.sampled_from([0.01, 0.1, 1e-4]),
    "window_bits": st.sampled_from([8, 8.0, np.nan]),
}
rows_strategy = st.lists(st.fixed_dictionaries(VALUES), min_size=0, max_size=30)


@settings(max_examples=200, deadline=None)
@given(rows=rows_strategy, varied=st.sampled_from(SETTINGS), min_points=st.integers(1, 3))
def test_series_hold_every_other_setting_fixed_and_lose_no_row(rows, varied, min_points):
    frame = pd.DataFrame(rows, columns=list(SETTINGS)).assign(value=range(len(rows)))
    series, left_out = comparable_series(frame, varied, SETTINGS, min_points)
    seen = sorted([*left_out["value"], *(v for s in series for v in s.rows["value"])])
    assert seen == list(range(len(rows)))  # every row is in exactly one series or left out
    keys = set()
    for one in series:
        for name in SETTINGS:
            texts = {setting_text(v) for v in one.rows[name]}
            if name == varied:
                assert len(texts) >= min_points
            else:
                assert texts == {one.setting(name)}  # one value of every other setting
        keys.add(one.key)
    assert len(keys) == len(series)  # no two series share their settings


def test_setting_text_treats_equal_values_as_equal_and_missing_as_empty():
    assert setting_text(8) == setting_text(8.0) == setting_text("8") == setting_text(np.int64(8)) == "8"
    assert setting_text(None) == setting_text(np.nan) == setting_text("") == ""
    assert setting_text(0.956) == "0.956" and setting_text(1e-4) == "0.0001"
    assert setting_text(True) == "True" and setting_text("djn") == "djn"


def test_fixed_settings_go_in_the_caption_and_differing_ones_name_the_series():
    frame = pd.DataFrame(
        {"dataset": ["digits"] * 4, "users": [3, 10, 3, 10], "obfuscation": ["standard", "standard", "djn", "djn"]}
    )
    series, left_out = comparable_series(frame, "users", ("dataset", "users", "obfuscation"))
    assert len(series) == 2 and left_out.empty
    fixed, differing = fixed_and_differing(series)
    assert fixed == {"dataset": "digits"} and differing == ["obfuscation"]
    assert caption(fixed) == "Held fixed: dataset digits."


def test_a_varied_column_the_results_lack_is_an_error():
    with pytest.raises(ValueError, match="no column 'users'"):
        comparable_series(pd.DataFrame({"a": [1]}), "users", ("a",))
    assert isinstance(Series(key=(), rows=pd.DataFrame()).setting("x"), str)


@pytest.mark.parametrize(
    ("row", "text"),
    [
        (
            {"backend_name": "numba", "obfuscation": "djn", "window_bits": 8, "parallelism": 2, "kernel": "narrow"},
            "numba djn (8-bit windows, 2 threads, narrow kernels)",
        ),
        (
            {"backend_name": "gmpy2", "obfuscation": "standard", "window_bits": np.nan, "parallelism": 1},
            "gmpy2 standard (1 core)",
        ),
        (
            {"backend_name": "multiprocessing", "obfuscation": "pool", "parallelism": 2},
            "multiprocessing pool (2 workers)",
        ),
        (
            {"backend_name": "heu", "backend_config": "heu:threads=2,variant=ZPaillier", "parallelism": 2},
            "heu ZPaillier (2 threads)",
        ),
        (
            {
                "backend_name": "multiprocessing",
                "backend_config": "multiprocessing:inner=python,obfuscation=standard,start_method=spawn,workers=2",
                "obfuscation": "standard",
                "parallelism": 2,
            },
            "multiprocessing standard (2 workers of python, start_method spawn)",
        ),
        ({"backend_name": "none", "backend_config": "none"}, "none"),
        ({"backend": "gmpy2", "backend_config": "none"}, "none"),
    ],
)
def test_backend_text_names_the_configuration(row, text):
    assert backend_text(pd.Series(row)) == text


UNITS = {"µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0}
BYTES = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-7, max_value=1e6))
def test_human_seconds_reads_back_within_rounding(seconds):
    number, unit = re.fullmatch(r"([\d,.]+) (µs|ms|s|min)", human_seconds(seconds)).groups()
    value = float(number.replace(",", "")) * UNITS[unit]
    assert math.isclose(value, seconds, rel_tol=0.01)
    assert "e" not in number


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**50))
def test_human_bytes_reads_back_within_rounding(nbytes):
    number, unit = re.fullmatch(r"([\d,.]+) (B|KiB|MiB|GiB|TiB)", human_bytes(nbytes)).groups()
    value = float(number.replace(",", "")) * BYTES[unit]
    assert math.isclose(value, nbytes, rel_tol=0.01, abs_tol=0.5)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0 s"), (1.2e-5, "12.0 µs"), (0.0153, "15.3 ms"), (2.5, "2.50 s"), (754.0, "12.6 min"), (math.nan, "")],
)
def test_human_seconds_edges(value, text):
    assert human_seconds(value) == text


def test_human_bytes_and_numbers_edges():
    assert [human_bytes(v) for v in (0, 1023, 1024, 52_530, 4_541_000)] == [
        "0 B",
        "1023 B",
        "1.00 KiB",
        "51.3 KiB",
        "4.33 MiB",
    ]
    assert [human_number(v) for v in (12160.0, 3.14159, 8.0, 1.2e-10, 0.0)] == ["12,160", "3.14", "8", "1.2e-10", "0"]
