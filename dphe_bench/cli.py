"""The ``dphe-bench`` command line: ``run`` (the learning pipeline) and ``backends`` (what can run here)."""

import argparse
import secrets
import sys
import time
import warnings

from dphe_bench.backends import available_backends, get_backend
from dphe_bench.config import load_config
from dphe_bench.errors import DpheError
from dphe_bench.paillier import generate_keypair
from dphe_bench.pipeline import run_pipeline
from dphe_bench.results import format_summary, write_run_results
from dphe_bench.schemes import SCHEMES

SELF_CHECK_KEY_BITS = 1024
SELF_CHECK_VALUES = 8


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dphe-bench`` console script; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (DpheError, ValueError) as exc:
        print(f"dphe-bench: error: {exc}", file=sys.stderr)
        return 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dphe-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="federated learning with encrypted aggregation on the configured data")
    run.add_argument("--config", metavar="FILE", help="TOML config file (every option has a default)")
    run.add_argument(
        "--set",
        dest="overrides",
        metavar="SECTION.KEY=VALUE",
        action="append",
        default=[],
        help="override one option, e.g. --set crypto.scheme=dense (repeatable)",
    )
    run.add_argument("--backend", help="crypto backend; wins over the config file and $DPHE_BACKEND")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.set_defaults(handler=_run)

    backends = commands.add_parser("backends", help="list crypto backends, whether they can run here, self-check")
    backends.add_argument("--no-check", action="store_true", help="skip the encrypt/aggregate/decrypt self-check")
    backends.set_defaults(handler=_backends)
    return parser


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    scheme = SCHEMES[config.crypto.scheme]
    print(f"scheme {scheme.name}: leaks {scheme.leakage}", file=sys.stderr)
    if config.crypto.key_bits == 1024 and scheme.encrypted:
        print("warning: 1024-bit keys are for benchmarks only", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="1024-bit Paillier keys")
        result = run_pipeline(config, backend=args.backend, progress=not args.no_progress)
    json_path, csv_path = write_run_results(result)
    print(format_summary(result))
    print(f"\nresults: {json_path} (row appended to {csv_path})")
    return 0


def _backends(args: argparse.Namespace) -> int:
    statuses = available_backends()
    public_key = private_key = None
    if not args.no_check:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="1024-bit Paillier keys")
            public_key, private_key = generate_keypair(SELF_CHECK_KEY_BITS)
    failed = False
    for name, status in statuses.items():
        if not status.available:
            print(f"{name:<10} unavailable: {status.reason}")
            continue
        if public_key is None:
            print(f"{name:<10} available")
            continue
        backend = get_backend(name)
        values = [secrets.randbelow(public_key.n) for _ in range(SELF_CHECK_VALUES)]
        start = time.perf_counter()
        first = backend.encrypt(public_key, values)
        second = backend.encrypt(public_key, values)
        sums = backend.decrypt(private_key, backend.aggregate(public_key, [first, second]))
        seconds = time.perf_counter() - start
        ok = sums == [2 * v % public_key.n for v in values]
        failed |= not ok
        print(
            f"{name:<10} available  self-check {'passed' if ok else 'FAILED'} "
            f"({2 * SELF_CHECK_VALUES} encryptions, aggregate, decrypt at {SELF_CHECK_KEY_BITS} bits: {seconds:.3f} s)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
