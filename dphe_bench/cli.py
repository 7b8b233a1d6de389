"""The ``dphe-bench`` command line; ``DESCRIPTION`` lists its commands (shown by ``dphe-bench --help``)."""

import argparse
import contextlib
import csv
import dataclasses
import io
import os
import secrets
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import dphe_bench
from dphe_bench.backends import OBFUSCATIONS, available_backends, get_backend
from dphe_bench.backends.chunked import MIN_CHUNK, ChunkedBackend
from dphe_bench.backends.fixed_base import MAX_WINDOW_BITS, MIN_WINDOW_BITS
from dphe_bench.bench.sweep import (
    DEFAULT_OUT,
    Component,
    SweepGrid,
    check_out,
    quick_grid,
    read_cell_keys,
    run_sweep,
)
from dphe_bench.crypto.paillier import KEY_SIZES, generate_keypair
from dphe_bench.errors import DestinationError, DpheError, plain_list, unknown_name
from dphe_bench.files import prepare_file, prepare_folder, write_text_atomically
from dphe_bench.schemes import SCHEMES
from dphe_bench.schemes.messages import MAX_DIMENSION

# Help texts are plain text: argparse prints them as they are.
DESCRIPTION = (
    "Privacy-preserving federated learning with Paillier encryption and DPHE. Commands: run (the learning "
    "pipeline), sweep (the crypto grid), report (tables and figures from results), throughput (encryptions "
    "per second per backend and obfuscation mode), backends (what can run here), serve (a local Flower "
    "federation), keyserver (the key generator as a network service) and flower-app (the Flower app folder "
    "for a deployment across machines)."
)
SELF_CHECK_KEY_BITS = 1024
SELF_CHECK_VALUES = 8


# What an interrupted command leaves behind, said in its one line after Ctrl-C.
KEPT_ON_INTERRUPT = {
    "run": "nothing was written (a run writes its results when it ends)",
    "sweep": "every cell finished before it is in {out}; the same command goes on from there",
    "throughput": "no rows were written",
    "report": "files already written are whole; the report is incomplete",
    "backends": "nothing to keep",
    "serve": "its processes were stopped",
    "keyserver": "the service stopped",
    "flower-app": "no file is half-written",
}


class _Parser(argparse.ArgumentParser):
    """argparse with the tool's one-line errors: ``dphe-bench: error: ...`` and exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"dphe-bench: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dphe-bench`` console script; returns the exit status (2 for a user's mistake,
    130 after Ctrl-C). The learning pipeline and its libraries are imported by the commands that need them."""
    parser = _build_parser()
    args = argparse.Namespace(command=None)
    try:
        args = parser.parse_args(argv)
        return args.handler(args)
    except (DpheError, ValueError) as exc:
        print(f"dphe-bench: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            f"dphe-bench: error: {args.command} ran out of memory: ask for less (a smaller dimension, fewer users)",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:
        # The reader of stdout went away (``dphe-bench sweep --dry-run | head``): stop quietly, as shell tools do.
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        if args.command is None:
            print("\ndphe-bench: interrupted while starting; nothing was done", file=sys.stderr)
        else:
            kept = KEPT_ON_INTERRUPT[args.command].format(out=getattr(args, "out", None))
            print(f"\ndphe-bench: {args.command} interrupted; {kept}", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush does not fail on a closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _bounded(kind: type, low: float, high: float | None = None) -> Callable[[str], object]:
    """An argparse type: ``kind(text)`` within [low, high] (high None: no upper bound), else a clear error."""

    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low <= value and (high is None or value <= high)):
            limits = f"in [{_number(low)}, {_number(high)}]" if high is not None else f">= {_number(low)}"
            raise argparse.ArgumentTypeError(f"must be {limits}, got {text}")
        return value

    return parse


def _number(value: float) -> str:
    """A bound as people write it: 4294967295, 0.01, 1."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _key_size(text: str) -> int:
    """An argparse type: a Paillier key size of ``KEY_SIZES``."""
    if text.strip() not in {str(bits) for bits in KEY_SIZES}:
        raise argparse.ArgumentTypeError(f"must be one of {plain_list(KEY_SIZES)}, got {text}")
    return int(text)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dphe-bench", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {dphe_bench.__version__}")
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

    sweep = commands.add_parser(
        "sweep",
        help="crypto only: time, bytes and correctness per scheme x backend x key size x sparsity x users",
        description="Runs every cell of the grid that --out does not hold yet and appends one CSV row per cell. "
        "Default grid: D = 200,000, every scheme, every backend that runs here in every obfuscation mode plus a "
        "python-paillier baseline, 1024/2048/3072-bit keys, sparsity 0/0.5/0.9/0.956/0.99, 1 user (long; see README). "
        "Axis options replace that axis of the default (or --quick) grid.",
    )
    sweep.add_argument(
        "--quick",
        action="store_true",
        help="smoke grid: D = 32, 2 users, 1024-bit keys, sparsity 0.5/0.9, every scheme, backend and obfuscation "
        "mode: about 55 s on 2 cores with numba's kernel cache warm, about 90 s on a first run (numba "
        "compiles for about 33 s)",
    )
    sweep.add_argument("--out", metavar="FILE", default=str(DEFAULT_OUT), help=f"results CSV (default {DEFAULT_OUT})")
    sweep.add_argument("--dimension", type=int, metavar="D", help="weights per user")
    sweep.add_argument("--users", type=int, action="append", metavar="N", help="users per round (repeatable)")
    sweep.add_argument(
        "--sparsity", type=float, action="append", metavar="S", help="share of zero weights (repeatable)"
    )
    sweep.add_argument("--key-bits", type=int, action="append", metavar="BITS", help="Paillier key size (repeatable)")
    sweep.add_argument(
        "--scheme", action="append", metavar="NAME[:k=v,...]", help="scheme and its options (repeatable)"
    )
    sweep.add_argument(
        "--backend", action="append", metavar="NAME[:k=v,...]", help="backend and its options (repeatable)"
    )
    sweep.add_argument(
        "--obfuscation",
        action="append",
        choices=tuple(OBFUSCATIONS),
        metavar="MODE",
        help=f"obfuscation modes a backend without obfuscation=... runs in ({', '.join(OBFUSCATIONS)}; repeatable; "
        "default all)",
    )
    sweep.add_argument("--no-baseline", action="store_true", help="skip the python-paillier baseline cells")
    sweep.add_argument(
        "--heu",
        action="append",
        metavar="VARIANT",
        help="also run dense and packed on SecretFlow HEU's Paillier VARIANT (ZPaillier, FPaillier, IPCL; repeatable)",
    )
    sweep.add_argument("--seed", type=int, help="seed of the synthetic weights (default 0)")
    sweep.add_argument("--dry-run", action="store_true", help="list the cells still to run, run nothing")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sweep.set_defaults(handler=_sweep)

    report = commands.add_parser(
        "report",
        help="tables and figures from sweep, run and asv results",
        description="Reads sweep CSVs, run JSON files / runs.csv and asv result JSON files (files or folders) "
        f"and writes report.md, figures/*.png and tables/*.csv. Default inputs: {DEFAULT_OUT}, "
        "reports/runs/ and .asv/results/ where they exist.",
    )
    report.add_argument("results", nargs="*", metavar="RESULTS", help="result files or folders")
    report.add_argument("--out", metavar="DIR", default="reports/latest", help="output folder (default reports/latest)")
    report.set_defaults(handler=_report)

    throughput = commands.add_parser(
        "throughput",
        help="encryptions per second of every backend and obfuscation mode, against python-paillier",
        description="One run, one table: python-paillier, then every backend that runs here in every "
        "obfuscation mode (1 process; N processes for multiprocessing and dask; 1 and N threads for numba), "
        "each checked for correctness before it is timed. Ratios are against python-paillier in the same run.",
    )
    throughput.add_argument(
        "--key-bits", type=_key_size, action="append", help="key size (repeatable; default 2048, 3072)"
    )
    throughput.add_argument(
        "--backend", action="append", help="only this backend (repeatable; default all; heu: the HEU baseline)"
    )
    throughput.add_argument(
        "--workers", type=_bounded(int, 1), default=2, help="processes or threads for parallel backends"
    )
    throughput.add_argument(
        "--window-bits",
        type=_bounded(int, MIN_WINDOW_BITS, MAX_WINDOW_BITS),
        default=8,
        help=f"djn table window size ({MIN_WINDOW_BITS} to {MAX_WINDOW_BITS}; default 8)",
    )
    throughput.add_argument(
        "--seconds", type=_bounded(float, 0.01, 3600), default=1.0, help="target time per measurement (default 1)"
    )
    throughput.add_argument("--repeats", type=_bounded(int, 1), default=3, help="timed repeats; the median is reported")
    throughput.add_argument("--out", metavar="FILE.csv", help="also write the rows as CSV")
    throughput.set_defaults(handler=_throughput)

    backends = commands.add_parser("backends", help="list crypto backends, whether they can run here, self-check")
    backends.add_argument("--no-check", action="store_true", help="skip the encrypt/aggregate/decrypt self-check")
    backends.set_defaults(handler=_backends)

    serve = commands.add_parser(
        "serve",
        help="a local federation over the network on 127.0.0.1: key server, Flower SuperLink, one SuperNode per user",
        description="Starts the key server, a Flower SuperLink (whose ServerApp is the aggregator) and "
        "federation.users SuperNodes (whose ClientApp is a user) as separate processes on 127.0.0.1, runs "
        "federation.rounds rounds with flwr run, prints the record and stops every process. Needs the "
        "flower extra: pip install 'dphe-bench[flower]'.",
    )
    _add_config_options(serve)
    serve.add_argument("--run-dir", metavar="DIR", help="run folder (default reports/deploy/run-<time>)")
    serve.add_argument(
        "--round-timeout",
        type=_bounded(float, 1, 86400),
        default=300.0,
        metavar="S",
        help="seconds to wait for a round's replies",
    )
    serve.add_argument(
        "--compare", action="store_true", help="also run the in-process simulation of the same config and compare"
    )
    serve.set_defaults(handler=_serve)

    keyserver = commands.add_parser(
        "keyserver",
        help="the key generator as an HTTPS service: hands out pk, P and the P_i, decrypts and publishes averages",
        description="Generates the keys and permutations for federation.users users, writes one token per party "
        "into --tokens-dir (mode 0600: give aggregator.token to the aggregator and user-<i>.token to user i, over "
        "a secure channel) and serves until stopped. Refuses to run without TLS unless --insecure-local-test is "
        "given, which only binds loopback addresses.",
    )
    _add_config_options(keyserver)
    keyserver.add_argument(
        "--dimension",
        type=_bounded(int, 1, MAX_DIMENSION),
        required=True,
        metavar="D",
        help="length of the weight vectors",
    )
    keyserver.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    keyserver.add_argument(
        "--port", type=_bounded(int, 0, 65535), default=8443, help="port to bind (default 8443; 0 = any free port)"
    )
    keyserver.add_argument("--tokens-dir", required=True, metavar="DIR", help="where the party tokens are written")
    keyserver.add_argument("--out", metavar="DIR", help="also save each published average here as .npy")
    keyserver.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain) of this server")
    keyserver.add_argument("--tls-key", metavar="FILE", help="PEM private key of the certificate")
    keyserver.add_argument(
        "--insecure-local-test", action="store_true", help="serve plain HTTP, on a loopback address only"
    )
    keyserver.set_defaults(handler=_keyserver)

    flower_app = commands.add_parser(
        "flower-app",
        help="write the Flower app folder for flwr run (a deployment across machines)",
        description="Writes DIR/pyproject.toml: the aggregator's ServerApp and the users' ClientApp (both from "
        "the installed dphe-bench), the pipeline config and the aggregator's settings as the run config. Every "
        "node receives the run config: it names the aggregator's token file but holds no token.",
    )
    _add_config_options(flower_app)
    flower_app.add_argument("--out", required=True, metavar="DIR", help="the app folder to write")
    flower_app.add_argument("--keyserver-url", required=True, metavar="URL", help="https://host:port of the key server")
    flower_app.add_argument(
        "--aggregator-token-file", required=True, metavar="FILE", help="aggregator.token on the aggregator's machine"
    )
    flower_app.add_argument(
        "--aggregator-ca-file", default="", metavar="FILE", help="CA bundle for the key server (default: the system's)"
    )
    flower_app.add_argument(
        "--round-timeout", type=_bounded(float, 1, 86400), default=300.0, metavar="S", help="seconds per round"
    )
    flower_app.add_argument(
        "--results-file", default="", metavar="FILE", help="where the aggregator writes its per-round record (JSON)"
    )
    flower_app.set_defaults(handler=_flower_app)
    return parser


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML config file (every option has a default)")
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="SECTION.KEY=VALUE",
        action="append",
        default=[],
        help="override one option, e.g. --set federation.users=3 (repeatable)",
    )


def _run(args: argparse.Namespace) -> int:
    from dphe_bench.backends import resolve_backend_name
    from dphe_bench.learning.config import load_config
    from dphe_bench.learning.pipeline import run_pipeline
    from dphe_bench.learning.results import check_results_destination, format_summary, write_run_results

    config = load_config(args.config, args.overrides)
    check_results_destination(config.run.output_dir)
    scheme = SCHEMES[config.crypto.scheme]
    if scheme.encrypted and scheme.paillier:
        backend_name = resolve_backend_name(args.backend, config.crypto.backend)
        status = available_backends().get(backend_name)
        if status is not None and not status.available:
            raise DpheError(f"backend {backend_name!r} is not available here: {status.reason}")
    print(f"scheme {scheme.name}: leaks {scheme.leakage}", file=sys.stderr)
    if scheme.encrypted and scheme.paillier:
        mode = config.crypto.obfuscation
        print(f"obfuscation {mode}: rests on {OBFUSCATIONS[mode]}", file=sys.stderr)
    if config.crypto.key_bits == 1024 and scheme.encrypted and scheme.paillier:
        print("warning: 1024-bit keys are for benchmarks only", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="1024-bit Paillier keys")
        result = run_pipeline(config, backend=args.backend, progress=not args.no_progress)
    # The summary first: if writing the results fails now (disk full), what the run measured is still shown; and
    # a reader gone from stdout does not stop the results from being written.
    try:
        print(format_summary(result), flush=True)
    except BrokenPipeError:
        _silence_stdout()
    json_path, csv_path = write_run_results(result)
    print(f"\nresults: {json_path} (row appended to {csv_path})")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    grid = quick_grid() if args.quick else SweepGrid()
    axes = {
        "dimension": args.dimension,
        "users": tuple(args.users or ()),
        "sparsities": tuple(args.sparsity or ()),
        "key_bits": tuple(args.key_bits or ()),
        "schemes": tuple(Component.parse(text) for text in args.scheme or ()),
        "backends": tuple(Component.parse(text) for text in args.backend or ()),
        "obfuscations": tuple(args.obfuscation or ()),
        "seed": args.seed,
    }
    # An axis not given keeps the grid's default; a given value (0 included) is validated by the grid.
    given = {key: value for key, value in axes.items() if value is not None and value != ()}
    grid = dataclasses.replace(grid, baseline=not args.no_baseline, heu=tuple(args.heu or ()), **given)
    cells = grid.cells()
    prepare_file(args.out, "sweep results file (--out)")
    check_out(args.out)
    done = read_cell_keys(args.out)
    todo = [cell for cell in cells if cell.key() not in done]
    print(f"sweep: {len(cells)} cells, {len(cells) - len(todo)} already in {args.out}, {len(todo)} to run")
    if args.dry_run:
        for cell in todo:
            print(f"  {cell}")
        return 0
    if 1024 in grid.key_bits:
        print("note: 1024-bit keys are for benchmarks only", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="1024-bit Paillier keys")
        summary = run_sweep(grid, args.out, progress=not args.no_progress)
    print(f"sweep: ran {summary.ran} cells, skipped {summary.skipped}; results in {summary.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    try:
        from dphe_bench.bench.report import default_inputs, write_report
    except ImportError as exc:
        raise ValueError(
            f"dphe-bench report needs pandas and matplotlib ({exc}): pip install 'dphe-bench[report]'"
        ) from exc

    inputs = [Path(p) for p in args.results] or default_inputs()
    written = write_report(inputs, args.out)
    print(f"report: {written.markdown}")
    for path in written.figures:
        print(f"  figure {path}")
    for path in written.tables:
        print(f"  table  {path}")
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
            print(f"{name:<16} unavailable: {status.reason}")
            continue
        if public_key is None:
            print(f"{name:<16} available")
            continue
        with get_backend(name) as backend:
            count = SELF_CHECK_VALUES
            if isinstance(backend, ChunkedBackend):
                # Enough values to be split, so that the check runs in the workers.
                count = 2 * MIN_CHUNK["standard_obfuscators"] * backend.chunk_scale
            values = [secrets.randbelow(public_key.n) for _ in range(count)]
            start = time.perf_counter()
            first = backend.encrypt(public_key, values)
            second = backend.encrypt(public_key, values)
            sums = backend.decrypt(private_key, backend.aggregate(public_key, [first, second]))
            seconds = time.perf_counter() - start
            description = backend.describe()
        ok = sums == [2 * v % public_key.n for v in values]
        failed |= not ok
        print(
            f"{name:<16} available  self-check {'passed' if ok else 'FAILED'} ({description}: {2 * count} "
            f"encryptions, aggregate, decrypt at {SELF_CHECK_KEY_BITS} bits in {seconds:.3f} s)"
        )
    print("\nobfuscation modes (every backend, option obfuscation=...):")
    for mode, assumption in OBFUSCATIONS.items():
        print(f"  {mode:<9} rests on {assumption}")
    return 1 if failed else 0


def _throughput(args: argparse.Namespace) -> int:
    from dphe_bench.backends import BACKENDS
    from dphe_bench.bench.baseline import BASELINE_NAME, PythonPaillierBaseline
    from dphe_bench.bench.throughput import format_table, measure, rows_as_dicts

    for name in args.backend or ():
        if name not in (*BACKENDS, "heu"):
            raise DpheError(unknown_name("backend", name, (*BACKENDS, "heu")))
    if reason := PythonPaillierBaseline.unavailable_reason():
        raise DpheError(f"throughput measures every row against {BASELINE_NAME}, which cannot run: {reason}")
    if args.out is not None:
        prepare_file(args.out, "--out")
    rows = measure(
        key_bits=tuple(args.key_bits or (2048, 3072)),
        workers=args.workers,
        window_bits=args.window_bits,
        seconds=args.seconds,
        repeats=args.repeats,
        only=tuple(args.backend or ()),
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_table(rows))
    if args.out is not None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows_as_dicts(rows)[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows_as_dicts(rows))
        try:
            write_text_atomically(Path(args.out), buffer.getvalue())
        except OSError as exc:
            raise DestinationError(
                f"the rows above were not saved: {args.out} cannot be written ({exc.strerror or exc})"
            ) from None
        print(f"\nrows written to {args.out}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from dphe_bench.deploy.local import LocalFederation
    from dphe_bench.deploy.runconfig import check_deployable
    from dphe_bench.deploy.summary import (
        compare_with_simulation,
        deployed_accuracy,
        format_deployment,
        write_deployment_record,
    )
    from dphe_bench.learning.config import load_config

    config = load_config(args.config, args.overrides)
    check_deployable(config)  # before the run folder is made: a refused config leaves nothing behind
    run_dir = Path(args.run_dir or f"reports/deploy/run-{time.strftime('%Y%m%d-%H%M%S')}")
    prepare_folder(run_dir, "run folder (--run-dir)")
    scheme = SCHEMES[config.crypto.scheme]
    print(f"scheme {scheme.name}: leaks {scheme.leakage}", file=sys.stderr)
    print(
        f"serve: {config.federation.users} nodes, {config.federation.rounds} rounds; run folder {run_dir}", flush=True
    )
    with LocalFederation(config, run_dir, args.round_timeout) as federation:
        print(f"serve: key server, SuperLink and SuperNodes up in {federation.startup_s:.1f} s", flush=True)
        result = federation.run()
    comparison = None
    if args.compare:
        print("serve: running the in-process simulation of the same config", flush=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="1024-bit Paillier keys")
            comparison = compare_with_simulation(federation.config, result)
    test_accuracy = deployed_accuracy(federation.config, result.average)
    print(format_deployment(federation.config, result, test_accuracy, comparison))
    print(f"\nrecord: {write_deployment_record(federation.config, result, test_accuracy, comparison)}")
    return 0


def _keyserver(args: argparse.Namespace) -> int:
    import logging

    from dphe_bench.backends import resolve_backend_name
    from dphe_bench.deploy.keyserver import (
        KeyService,
        check_destinations,
        check_served,
        check_transport,
        key_generator_from_config,
    )
    from dphe_bench.learning.config import backend_options, load_config

    check_transport(args.host, args.tls_cert, args.tls_key, args.insecure_local_test)
    try:
        from dphe_bench.deploy.keyserver_http import bind_listener, start_key_server, tls_context
    except ImportError as exc:
        raise DpheError(
            f"the key server needs uvicorn and starlette ({exc}): pip install 'dphe-bench[flower]'"
        ) from None
    if args.tls_cert and args.tls_key:
        tls_context(args.tls_cert, args.tls_key)
    config = load_config(args.config, args.overrides)
    check_served(config.crypto.scheme)
    check_destinations(args.tokens_dir, args.out)
    # The TLS files, the scheme and the destinations, then the bind, then the folders: anything that cannot be
    # used fails before any key or token is made (and before any folder is).
    try:
        listener = bind_listener(args.host, args.port)
    except OSError as exc:
        reason = exc.strerror or exc
        raise DpheError(f"the key server cannot listen on {args.host} port {args.port}: {reason}") from None
    try:
        prepare_folder(args.tokens_dir, "tokens folder (--tokens-dir)")
        if args.out:
            prepare_folder(args.out, "averages folder (--out)")
        backend_name = resolve_backend_name(None, config.crypto.backend)
        with get_backend(backend_name, **backend_options(config.crypto, backend_name)) as backend:
            key_generator = key_generator_from_config(config, args.dimension, backend)
            out = Path(args.out) if args.out else None
            service = KeyService(key_generator, Path(args.tokens_dir), out, rounds=config.federation.rounds)
            server = start_key_server(
                service, listener, args.tls_cert, args.tls_key, insecure_local_test=args.insecure_local_test
            )
            signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter("keyserver: %(message)s"))
            for name, level in (("dphe_bench.keyserver", logging.INFO), ("uvicorn", logging.WARNING)):
                logging.getLogger(name).addHandler(handler)
                logging.getLogger(name).setLevel(level)
            print(
                f"keyserver: {config.crypto.scheme} for {config.federation.users} users "
                f"(at least {config.federation.min_contributors} per round, {config.federation.rounds} rounds), "
                f"D = {args.dimension}, backend {backend_name}; serving on {server.url} (at most "
                f"{server.max_connections} connections); tokens in {args.tokens_dir}",
                flush=True,
            )
            # A stop signal ends serve_forever either by KeyboardInterrupt or, when uvicorn's own handlers took it
            # (a graceful shutdown), by returning: the server says it stopped either way.
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
            print(f"keyserver: stopped after {service.rounds_published} published rounds", flush=True)
    finally:
        listener.close()
    return 0


def _flower_app(args: argparse.Namespace) -> int:
    from dphe_bench.deploy.flower_app import write_flower_app
    from dphe_bench.deploy.keyclient import check_url
    from dphe_bench.deploy.runconfig import check_deployable
    from dphe_bench.learning.config import load_config

    config = load_config(args.config, args.overrides)
    check_deployable(config)
    keyserver_url = check_url(args.keyserver_url)
    if not args.aggregator_token_file.strip():
        raise DpheError("--aggregator-token-file is empty: name the aggregator.token file on the aggregator's machine")
    prepare_folder(args.out, "--out")
    path = write_flower_app(
        Path(args.out),
        config,
        keyserver_url=keyserver_url,
        aggregator_token_file=args.aggregator_token_file,
        aggregator_ca_file=args.aggregator_ca_file,
        round_timeout=args.round_timeout,
        results_file=args.results_file,
    )
    print(f"flower-app: wrote {path}; run it with: flwr run {args.out} <superlink connection> --stream")
    return 0


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
