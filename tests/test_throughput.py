import math

import pytest

from dphe_bench.backends.base import OBFUSCATIONS
from dphe_bench.bench.throughput import configurations, format_table, measure


def test_configurations_cover_every_available_backend_and_mode():
    seen = {(name, mode, processes) for name, mode, processes, _ in configurations(workers=3, window_bits=4)}
    assert {("gmpy2", mode, 1) for mode in OBFUSCATIONS} <= seen
    assert {("multiprocessing", mode, 3) for mode in OBFUSCATIONS} <= seen


@pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")
def test_measure_reports_every_mode_against_python_paillier():
    rows = measure(key_bits=(1024,), window_bits=4, seconds=0.02, repeats=1, only=("gmpy2",))
    assert [(r.implementation, r.obfuscation) for r in rows] == [
        ("python-paillier", "standard"),
        ("gmpy2", "standard"),
        ("gmpy2", "djn"),
        ("gmpy2", "pool"),
    ]
    baseline = rows[0]
    assert baseline.speedup_vs_python_paillier == 1.0
    for row in rows:
        assert row.key_bits == 1024 and row.encrypt_per_s > 0
        assert math.isclose(row.speedup_vs_python_paillier, row.encrypt_per_s / baseline.encrypt_per_s)
    standard, djn, pool = rows[1:]
    assert standard.decrypt_per_s > 0 and standard.aggregate_per_s > 0 and djn.decrypt_per_s is None
    assert djn.table_mib > 0 and standard.table_mib == 0
    assert pool.precompute_per_s > 0
    table = format_table(rows).splitlines()
    assert table[0].startswith("| key bits | implementation") and len(table) == 2 + len(rows)
    assert table[4].startswith("| 1024 | gmpy2 | djn | 1 |")


@pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")
def test_throughput_command_prints_the_table_and_writes_csv(tmp_path, capsys):
    from dphe_bench.cli import main

    out = tmp_path / "throughput.csv"
    argv = ["throughput", "--key-bits", "1024", "--backend", "gmpy2", "--seconds", "0.02", "--repeats", "1"]
    assert main([*argv, "--window-bits", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| 1024 | python-paillier | standard | 1 |" in printed
    lines = out.read_text().splitlines()
    assert lines[0].startswith("key_bits,implementation,obfuscation,workers,encrypt_per_s")
    assert len(lines) == 1 + 4
