"""Run the ``dphe-bench`` CLI in-process and capture what it prints (shared by the CLI-level tests)."""

import contextlib
import io
import warnings

from dphe_bench.cli import main


def call_cli(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``dphe-bench argv``, with warnings silenced."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()
