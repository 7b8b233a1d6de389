"""Encryption, decryption and aggregation throughput of every backend and obfuscation mode against python-paillier.

One run, one table: for each key size, python-paillier first, then every available backend in every
obfuscation mode, in 1 process, on ``workers`` processes (multiprocessing, dask) or on 1 and ``workers``
threads (numba, once per kernel family that runs here: ``numba:kernel=ifma`` and ``numba:kernel=narrow``).
Each configuration is
checked for correctness (its ciphertexts decrypt to the plaintexts) before it is timed; times are medians
of ``repeats`` runs; ratios are against python-paillier measured in the same run on the same key. Set-up
costs (``djn`` table, worker start, ``pool`` precomputation) are reported apart from steady-state speed.

SecretFlow HEU's Paillier variants follow at each key size when sf-heu is installed (``dphe_bench.bench.heu``:
``heu:ZPaillier``, ``heu:FPaillier``, ``heu:IPCL``, and ``heu:OU``, not Paillier, for reference), on 1 and
``workers`` threads, each in a fresh process with ``YACL_NUM_THREADS`` set, each checked before it is timed.
"""

import math
import secrets
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from dphe_bench.backends import BACKENDS, Backend, available_backends, get_backend
from dphe_bench.backends.base import OBFUSCATIONS
from dphe_bench.backends.chunked import MIN_CHUNK, ChunkedBackend
from dphe_bench.backends.numba_backend import NumbaBackend
from dphe_bench.bench import heu
from dphe_bench.bench.baseline import BASELINE_NAME, PythonPaillierBaseline
from dphe_bench.crypto.paillier import PrivateKey, PublicKey, generate_keypair

PROBE = 4
MAX_BATCH = 100_000
AGGREGATE_BATCH = 20_000


@dataclass
class ThroughputRow:
    """One configuration's measurements (per second figures are medians)."""

    key_bits: int
    implementation: str
    obfuscation: str
    workers: int
    encrypt_per_s: float
    speedup_vs_python_paillier: float
    setup_s: float
    table_mib: float
    precompute_per_s: float | None = None
    decrypt_per_s: float | None = None
    aggregate_per_s: float | None = None


def configurations(workers: int, window_bits: int) -> Iterator[tuple[str, str, int, Callable[[], Backend]]]:
    """(implementation, obfuscation, workers, factory) for every available backend and mode.

    Serial backends run in 1 process; chunked ones on ``workers`` processes; threaded ones (numba) on 1
    thread and on ``workers`` threads, for each kernel family that runs here (the implementation is then
    named ``numba:kernel=<family>``; see ``unavailable_kernels`` for the others).
    """
    statuses = available_backends()
    for name, cls in BACKENDS.items():
        if not statuses[name].available:
            continue
        families = [(name, {})]
        if issubclass(cls, NumbaBackend):
            runnable = [kernel for kernel, reason in cls.kernel_availability().items() if reason is None]
            families = [(f"{name}:kernel={kernel}", {"kernel": kernel}) for kernel in runnable]
        if issubclass(cls, ChunkedBackend):
            variants = [(workers, {"workers": workers})]
        elif cls.threaded:
            variants = [(1, {"threads": 1}), (workers, {"threads": workers})]
        else:
            variants = [(1, {})]
        for label, family in families:
            for mode in OBFUSCATIONS:
                for count, extra in variants:
                    options = {"obfuscation": mode, "window_bits": window_bits, **family, **extra}
                    yield label, mode, count, lambda name=name, options=options: get_backend(name, **options)


def unavailable_kernels() -> list[str]:
    """One line per kernel family of an available backend that cannot run here, saying why."""
    statuses = available_backends()
    lines = []
    for name, cls in BACKENDS.items():
        if statuses[name].available and issubclass(cls, NumbaBackend):
            for kernel, reason in cls.kernel_availability().items():
                if reason is not None:
                    lines.append(f"{name}:kernel={kernel} not measured: {reason}")
    return lines


def measure(
    key_bits: tuple[int, ...] = (2048, 3072),
    workers: int = 2,
    window_bits: int = 8,
    seconds: float = 1.0,
    repeats: int = 3,
    only: tuple[str, ...] = (),
    progress: Callable[[str], None] = lambda line: None,
) -> list[ThroughputRow]:
    """Measure python-paillier and every configuration (or those whose backend is in ``only``) at each key size.

    Kernel families that cannot run here are named through ``progress``, with the reason.
    """
    rows = []
    for line in unavailable_kernels():
        if not only or line.partition(":")[0] in only:
            progress(line)
    for bits in key_bits:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="1024-bit Paillier keys")
            public_key, private_key = generate_keypair(bits)
        candidates = [(BASELINE_NAME, "standard", 1, PythonPaillierBaseline)]
        candidates += [c for c in configurations(workers, window_bits) if not only or c[0].partition(":")[0] in only]
        baseline_rate = None
        for name, mode, count, factory in candidates:
            start = time.perf_counter()
            with factory() as backend:
                row = _measure_one(backend, name, mode, count, public_key, private_key, seconds, repeats, start)
            baseline_rate = baseline_rate or row.encrypt_per_s
            row.speedup_vs_python_paillier = row.encrypt_per_s / baseline_rate
            rows.append(row)
            progress(_format_progress(row))
        if not only or "heu" in only:
            rows += _heu_rows(bits, workers, seconds, repeats, baseline_rate, progress)
    return rows


def _measure_one(
    backend: Backend,
    name: str,
    mode: str,
    workers: int,
    public_key: PublicKey,
    private_key: PrivateKey,
    seconds: float,
    repeats: int,
    start: float,
) -> ThroughputRow:
    """Warm up (tables, workers), size the batch to about ``seconds``, check correctness, then time."""
    count = _batch_size(backend, public_key, seconds)
    setup_s = time.perf_counter() - start
    values = [secrets.randbelow(public_key.n) for _ in range(count)]
    precompute_rates, encrypt_times = [], []
    for _ in range(repeats):
        if mode == "pool":
            begin = time.perf_counter()
            backend.precompute(public_key, count)
            precompute_rates.append(count / (time.perf_counter() - begin))
        begin = time.perf_counter()
        batch = backend.encrypt(public_key, values)
        encrypt_times.append(time.perf_counter() - begin)
    sample = batch.take(list(range(min(16, count))))
    if PythonPaillierBaseline().decrypt(private_key, sample) != values[: len(sample)]:
        raise AssertionError(
            f"{name} ({mode}) made ciphertexts that python-paillier does not decrypt to the plaintexts"
        )
    row = ThroughputRow(
        key_bits=public_key.bits,
        implementation=name,
        obfuscation=mode,
        workers=workers,
        encrypt_per_s=count / statistics.median(encrypt_times),
        speedup_vs_python_paillier=math.nan,
        setup_s=setup_s,
        table_mib=backend.table_nbytes() / 2**20,
        precompute_per_s=statistics.median(precompute_rates) if precompute_rates else None,
    )
    if mode == "standard":
        row.decrypt_per_s = count / _median_time(lambda: backend.decrypt(private_key, batch), repeats)
        wide = batch.take([i % count for i in range(max(count, AGGREGATE_BATCH))])
        row.aggregate_per_s = len(wide) / _median_time(lambda: backend.aggregate(public_key, [wide, wide]), repeats)
    return row


def _batch_size(backend: Backend, public_key: PublicKey, seconds: float) -> int:
    """Items whose encryption (with its precomputation, for ``pool``) takes about ``seconds``.

    Runs a warm-up first, so ``djn`` tables are built and workers started before the timed probe.
    """
    probe = PROBE
    if isinstance(backend, ChunkedBackend):
        # Big enough to be split, so that the workers start (and build their tables) during the warm-up.
        operation = "djn_obfuscators" if backend.obfuscation == "djn" else "standard_obfuscators"
        probe = 2 * MIN_CHUNK[operation] * backend.chunk_scale
    for _ in range(2):
        begin = time.perf_counter()
        if backend.obfuscation == "pool":
            backend.precompute(public_key, probe)
        backend.encrypt(public_key, list(range(probe)))
        per_item = (time.perf_counter() - begin) / probe
    return max(8, min(MAX_BATCH, int(seconds / per_item)))


def _median_time(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        action()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def _format_progress(row: ThroughputRow) -> str:
    return f"{row.key_bits} {row.implementation} {row.obfuscation} x{row.workers}: {row.encrypt_per_s:,.0f}/s"


def format_table(rows: list[ThroughputRow]) -> str:
    """The Markdown table of a ``measure`` run."""
    header = (
        "| key bits | implementation | obfuscation | workers | encrypt/s | vs python-paillier | setup s | "
        "table MiB | precompute/s | decrypt/s | aggregate/s |\n|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [header]
    for row in rows:
        optional = [
            "" if value is None else f"{value:,.0f}"
            for value in (row.precompute_per_s, row.decrypt_per_s, row.aggregate_per_s)
        ]
        cells = [
            str(row.key_bits),
            row.implementation,
            row.obfuscation,
            str(row.workers),
            f"{row.encrypt_per_s:,.0f}",
            f"{row.speedup_vs_python_paillier:.1f}x",
            f"{row.setup_s:.2f}",
            f"{row.table_mib:.1f}",
            *optional,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rows_as_dicts(rows: list[ThroughputRow]) -> list[dict]:
    """Rows as plain dicts (for CSV)."""
    return [asdict(row) for row in rows]


def _heu_rows(
    bits: int, workers: int, seconds: float, repeats: int, baseline_rate: float, progress: Callable[[str], None]
) -> list[ThroughputRow]:
    """HEU's variants at ``bits`` on 1 and ``workers`` threads; without sf-heu, one progress line on how to install."""
    if reason := heu.unavailable_reason():
        progress(f"heu not measured: {reason}")
        return []
    rows = []
    for variant, paillier in heu.VARIANTS.items():
        for threads in sorted({1, workers}):
            found = heu.measure(variant, bits, threads, seconds, repeats)
            row = ThroughputRow(
                key_bits=bits,
                implementation=f"heu:{variant}" + ("" if paillier else " (not Paillier, for reference)"),
                obfuscation="heu",
                workers=threads,
                encrypt_per_s=found.encrypt_per_s,
                speedup_vs_python_paillier=found.encrypt_per_s / baseline_rate,
                setup_s=found.setup_s,
                table_mib=math.nan,
                decrypt_per_s=found.decrypt_per_s,
                aggregate_per_s=found.aggregate_per_s,
            )
            rows.append(row)
            progress(_format_progress(row))
    return rows
