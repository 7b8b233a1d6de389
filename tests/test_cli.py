"""Tests for the ``dphe-bench`` command line (dphe_bench.cli) and the results files it writes (results.py)."""

import contextlib
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dphe_bench.cli import main
from dphe_bench.learning.results import CSV_COLUMNS, CSV_NAME

FAST = ["--set", "crypto.key_bits=1024", "--set", "federation.users=3", "--set", "federation.rounds=2"]


def _call(argv: list[str]) -> tuple[int, str, str]:
    """Run ``main(argv)`` in-process; return (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def _run_argv(output_dir: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--no-progress",
        "--backend",
        "gmpy2",
        "--set",
        f"run.output_dir={output_dir}",
        *FAST,
        *extra,
    ]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def dphe_run(tmp_path_factory):
    """One default-scheme (dphe) run, shared by the tests that only read what it produced."""
    out_dir = tmp_path_factory.mktemp("dphe_run")
    code, stdout, stderr = _call(_run_argv(out_dir))
    return {"dir": out_dir, "code": code, "stdout": stdout, "stderr": stderr}


def test_run_exits_zero(dphe_run):
    assert dphe_run["code"] == 0, dphe_run["stderr"]


def test_run_summary(dphe_run):
    out = dphe_run["stdout"]
    assert "D = 650 weights, 3 users (iid), 2 rounds, seed 0" in out
    assert "scheme dphe, backend gmpy2 (standard obfuscation), 1024-bit keys" in out
    assert "accuracy (test)" in out
    for label in ("centralised", "federated plain", "federated dphe"):
        line = next(line for line in out.splitlines() if line.strip().startswith(label))
        value = float(line.split()[-1])
        assert 0.0 <= value <= 1.0
    assert "max |w_dphe - w_plain|" in out
    assert "ciphertexts per round:" in out
    # the time table: a header naming both schemes, a row per phase with one number per scheme
    lines = out.splitlines()
    time_header = next(i for i, line in enumerate(lines) if line.startswith("time (s)"))
    assert lines[time_header].split()[2:] == ["plain", "dphe"]
    for offset, phase in enumerate(
        ("train", "setup", "tables", "precompute", "encrypt", "aggregate", "decrypt"), start=1
    ):
        cells = lines[time_header + offset].split()
        assert cells[0] == phase
        assert len(cells) == 3
        assert all(float(c) >= 0 for c in cells[1:])
    # the bytes table: a row per party
    bytes_header = next(i for i, line in enumerate(lines) if line.startswith("bytes sent"))
    assert lines[bytes_header].split()[2:] == ["plain", "dphe"]
    for offset, party in enumerate(("key_generator", "users", "aggregator"), start=1):
        assert lines[bytes_header + offset].split()[0] == party
        assert any(unit in lines[bytes_header + offset] for unit in ("B", "KiB", "MiB"))
    assert f"results: {dphe_run['dir']}" in out


def test_run_warns_about_small_keys_on_stderr(dphe_run):
    assert "1024-bit keys are for benchmarks only" in dphe_run["stderr"]
    assert "scheme dphe" in dphe_run["stderr"]


def test_run_writes_json(dphe_run):
    files = list(dphe_run["dir"].glob("*.json"))
    assert len(files) == 1
    assert files[0].name.endswith("-dphe-gmpy2.json")
    assert str(files[0]) in dphe_run["stdout"]
    data = json.loads(files[0].read_text())
    assert set(data["federated"]) == {"plain", "dphe"}
    assert 0.0 <= data["centralised_accuracy"] <= 1.0
    assert data["backend"] == "gmpy2"
    assert data["dimension"] == 650
    assert data["config"]["federation"]["users"] == 3
    assert data["config"]["federation"]["rounds"] == 2
    assert data["config"]["crypto"]["key_bits"] == 1024
    assert data["config"]["run"]["output_dir"] == str(dphe_run["dir"])
    for name in ("plain", "dphe"):
        outcome = data["federated"][name]
        assert 0.0 <= outcome["accuracy"] <= 1.0
        assert len(outcome["rounds"]) == 2
        assert len(outcome["ciphertexts_per_round"]) == 2
        assert set(outcome["timings_s"]) == {
            "train",
            "setup",
            "tables",
            "precompute",
            "encrypt",
            "aggregate",
            "decrypt",
        }
        assert set(outcome["bytes_sent"]) == {"key_generator", "users", "aggregator"}
        assert len(outcome["user_sparsity"]) == 3
    # dphe gives the plain model up to fixed-point rounding
    assert data["max_abs_diff_vs_plain"] < 1e-6
    federated = data["federated"]
    assert federated["dphe"]["accuracy"] == pytest.approx(federated["plain"]["accuracy"], abs=0.01)
    assert not list(dphe_run["dir"].glob("*.tmp"))


def test_run_writes_csv_row(dphe_run):
    csv_path = dphe_run["dir"] / CSV_NAME
    assert csv_path.exists()
    assert f"row appended to {csv_path}" in dphe_run["stdout"]
    rows = _read_csv(csv_path)
    assert len(rows) == 1
    row = rows[0]
    assert row["scheme"] == "dphe"
    assert row["backend"] == "gmpy2"
    assert row["users"] == "3"
    assert row["rounds"] == "2"
    assert row["key_bits"] == "1024"
    assert row["dimension"] == "650"
    json_file = next(dphe_run["dir"].glob("*.json"))
    assert row["results_file"] == json_file.name
    data = json.loads(json_file.read_text())
    assert float(row["accuracy_scheme"]) == pytest.approx(data["federated"]["dphe"]["accuracy"])
    assert float(row["accuracy_plain"]) == pytest.approx(data["federated"]["plain"]["accuracy"])
    assert float(row["accuracy_centralised"]) == pytest.approx(data["centralised_accuracy"])


def test_second_run_appends_a_row(tmp_path):
    for expected_rows in (1, 2):
        code, _, stderr = _call(_run_argv(tmp_path, "--set", "crypto.scheme=plain"))
        assert code == 0, stderr
        rows = _read_csv(tmp_path / CSV_NAME)
        assert len(rows) == expected_rows
    assert all(row["scheme"] == "plain" for row in rows)
    assert rows[0]["accuracy_plain"] == rows[0]["accuracy_scheme"]
    assert rows[0]["max_abs_diff_vs_plain"] == ""  # plain is not compared with itself
    json_files = sorted(p.name for p in tmp_path.glob("*.json"))
    assert len(json_files) == 2
    assert sorted(row["results_file"] for row in rows) == json_files
    # one header only
    assert (tmp_path / CSV_NAME).read_text().count("time_utc") == 1


def test_csv_with_other_columns_is_refused_and_left_unchanged(tmp_path):
    bogus = "a,b,c\n1,2,3\n"
    (tmp_path / CSV_NAME).write_text(bogus)
    code, _, stderr = _call(_run_argv(tmp_path, "--set", "crypto.scheme=plain"))
    assert code == 2
    assert "dphe-bench: error" in stderr
    assert CSV_NAME in stderr
    assert "columns" in stderr
    assert (tmp_path / CSV_NAME).read_text() == bogus
    assert not list(tmp_path.glob("*.tmp"))


def test_csv_with_other_columns_leaves_no_results_file(tmp_path):
    """A run that fails because runs.csv cannot be written reports failure, so it must not leave a JSON
    results file behind that no CSV row refers to (no partial state)."""
    (tmp_path / CSV_NAME).write_text("a,b,c\n1,2,3\n")
    code, _, _ = _call(_run_argv(tmp_path, "--set", "crypto.scheme=plain"))
    assert code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [CSV_NAME]


def test_append_to_csv_without_final_newline(tmp_path):
    """A runs.csv whose last line lacks its newline (e.g. after an editor saved it) gets a proper new row."""
    (tmp_path / CSV_NAME).write_text(",".join(CSV_COLUMNS))  # header only, no trailing newline
    code, _, stderr = _call(_run_argv(tmp_path, "--set", "crypto.scheme=plain"))
    assert code == 0, stderr
    rows = _read_csv(tmp_path / CSV_NAME)
    assert len(rows) == 1
    assert rows[0]["scheme"] == "plain"


def test_backends_self_check():
    code, out, _ = _call(["backends"])
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in ("gmpy2", "python"):
        assert "available" in lines[name]
        assert "self-check passed" in lines[name]
    assert "FAILED" not in out


def test_backends_no_check():
    code, out, _ = _call(["backends", "--no-check"])
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in ("gmpy2", "python"):
        assert lines[name].split()[1:] == ["available"]
    assert "self-check" not in out


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("federation.users=0", "federation.users"),
        ("crypto.key_bits=1000", "crypto.key_bits"),
        ("crypto.nosuch=1", "crypto.nosuch"),
        ("nosuch.users=1", "nosuch"),
        ("federation.users", "federation.users"),
        ("crypto.scheme=nope", "crypto.scheme"),
    ],
)
def test_bad_set_exits_2_naming_option(tmp_path, override, named):
    code, out, err = _call(["run", "--no-progress", "--set", f"run.output_dir={tmp_path}", "--set", override])
    assert code == 2
    assert err.startswith("dphe-bench: error")
    assert named in err
    assert out == ""
    assert list(tmp_path.iterdir()) == []


def test_missing_config_file_exits_2(tmp_path):
    path = tmp_path / "absent.toml"
    code, _, err = _call(["run", "--no-progress", "--config", str(path)])
    assert code == 2
    assert str(path) in err


def test_config_file_is_used(tmp_path):
    path = tmp_path / "cfg.toml"
    out_dir = tmp_path / "out"
    path.write_text(f"[run]\noutput_dir = '{out_dir}'\n[crypto]\nscheme = 'plain'\n[federation]\nusers = 2\n")
    code, out, err = _call(
        ["run", "--no-progress", "--backend", "gmpy2", "--config", str(path), "--set", "federation.rounds=1"]
    )
    assert code == 0, err
    assert "2 users (iid), 1 rounds" in out
    rows = _read_csv(out_dir / CSV_NAME)
    assert (rows[0]["users"], rows[0]["rounds"], rows[0]["scheme"]) == ("2", "1", "plain")


def test_unknown_backend_exits_2(tmp_path):
    argv = ["run", "--no-progress", "--backend", "nosuch", "--set", f"run.output_dir={tmp_path}"]
    code, _, err = _call(argv)
    assert code == 2
    assert "nosuch" in err
    assert list(tmp_path.iterdir()) == []


def test_no_command_is_a_one_line_usage_error():
    code, _, err = _call([])
    assert code == 2
    assert err == "dphe-bench: error: the following arguments are required: command (see dphe-bench --help)\n"


def test_console_script():
    script = Path(sys.executable).parent / "dphe-bench"
    assert script.exists(), f"console script not installed next to {sys.executable}"
    proc = subprocess.run(
        [str(script), "backends", "--no-check"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "gmpy2" in proc.stdout
    assert "python" in proc.stdout


def test_version_prints_the_package_version():
    import dphe_bench

    code, out, _ = _call(["--version"])
    assert code == 0
    assert out.strip() == f"dphe-bench {dphe_bench.__version__}"


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["report"], ["throughput"], ["keyserver"], ["serve"]])
def test_help_is_plain_text(command):
    code, out, _ = _call([*command, "--help"])
    assert code == 0
    assert "usage: dphe-bench" in out
    assert "``" not in out and "`" not in out


@pytest.mark.parametrize("scheme", ["packed", "dphe"])
def test_run_prints_each_round_s_aggregation_error_next_to_its_bound_and_the_drift_apart(tmp_path, scheme):
    argv = ["run", "--no-progress", "--backend", "gmpy2", "--set", f"run.output_dir={tmp_path}"]
    argv += ["--set", "crypto.key_bits=1024", "--set", "federation.users=3", "--set", "federation.rounds=2"]
    code, out, _ = _call([*argv, "--set", f"crypto.scheme={scheme}"])
    assert code == 0
    lines = out.splitlines()
    header = lines.index("aggregation error per round (max |published average - exact mean of that round's updates|):")
    errors_text, bound_text = lines[header + 1].strip().split(" (bound ")
    errors = [float(value) for value in errors_text.split(", ")]
    bound = float(bound_text.split()[0])
    assert len(errors) == 2 and all(0 <= error <= bound for error in errors)
    record = json.loads(next(tmp_path.glob("run-*.json")).read_text())
    rounds = record["federated"][scheme]["rounds"]
    assert [r["max_abs_error"] for r in rounds] == pytest.approx(errors, rel=1e-2)
    assert f"difference from the plain run after 2 rounds: max |w_{scheme} - w_plain| = " in out
    assert "drift apart round by round" in out


def test_a_reader_that_closes_stdout_ends_the_command_quietly(tmp_path):
    """``dphe-bench sweep --dry-run | head``: the closed pipe stops the command with 141, never a traceback."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from dphe_bench.cli import main; sys.exit(main(sys.argv[1:]))",
            "sweep",
            "--quick",
            "--dry-run",
            "--out",
            str(tmp_path / "sweep.csv"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # the reader is gone before the first line is written
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr
    assert not (tmp_path / "sweep.csv").exists()
