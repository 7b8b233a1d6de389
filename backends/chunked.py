"""Backends that split batches into chunks and run them on a serial inner backend in other processes.

``ChunkedBackend`` holds the chunking logic; ``multiprocessing`` and ``dask`` only say how a list of tasks
is mapped onto workers. Every worker process keeps one inner backend per configuration (built on its first
task), so a ``djn`` table is built once per worker and key, never sent per task: ``djn_table`` has every
worker build its own now (a one-time cost at set-up, apart from any round's ``encrypt``), each with its own
random x, and keeps the calling process's table for batches small enough to run there. Chunks are large enough
that a task's fixed cost (about 1 ms for a local process pool, 2 ms for dask) stays under 5 % of its work;
a batch smaller than two chunks runs in the calling process with the same inner backend.
"""

import itertools
from abc import abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from dphe_bench.backends.base import Backend
from dphe_bench.backends.fixed_base import FixedBaseTable
from dphe_bench.crypto.batch import CiphertextBatch
from dphe_bench.crypto.paillier import PrivateKey, PublicKey
from dphe_bench.errors import plain_list

# Smallest chunk per operation for a ~1 ms task overhead: a 2048-bit r^n costs ~9 ms, a CRT decryption
# ~3 ms, a djn table walk ~0.6 ms, a mulmod mod n^2 ~4 us.
MIN_CHUNK = {"powmod": 16, "standard_obfuscators": 16, "decrypt": 16, "djn_obfuscators": 64, "mulmod": 16384}
TaskSpec = tuple[str, tuple[tuple[str, object], ...]]

_WORKER_BACKENDS: dict[TaskSpec, Backend] = {}


def worker_backend(spec: TaskSpec) -> Backend:
    """Worker side: this process's inner backend for ``spec`` (built on first use, then reused)."""
    backend = _WORKER_BACKENDS.get(spec)
    if backend is None:
        from dphe_bench.backends import get_backend

        name, options = spec
        backend = _WORKER_BACKENDS[spec] = get_backend(name, **dict(options))
    return backend


def run_task(spec: TaskSpec, method: str, args: tuple) -> object:
    """Worker side: call ``method`` of this process's inner backend for ``spec``."""
    return getattr(worker_backend(spec), method)(*args)


def build_worker_table(spec: TaskSpec, public_key: PublicKey) -> int:
    """Worker side: build (or find) this process's ``djn`` table for ``public_key``; returns its bytes, not the
    table, so that nothing large travels back."""
    return worker_backend(spec).djn_table(public_key).nbytes


class ChunkedBackend(Backend):
    """Runs the work of a serial ``inner`` backend in chunks on ``workers`` workers.

    Parameters
    ----------
    inner : str
        Registered serial backend that does the arithmetic (default ``gmpy2``).
    workers : int
        Number of worker processes.
    obfuscation, window_bits
        As for every backend; passed on to the inner backend.
    """

    chunk_scale: ClassVar[int] = 1
    # Whether decryption may run in the workers (they then receive the private key).
    sends_private_key: ClassVar[bool] = True

    def __init__(self, inner: str = "gmpy2", workers: int = 2, **options: object):
        super().__init__(**options)
        from dphe_bench.backends import BACKENDS, get_backend

        serial = [name for name, cls in BACKENDS.items() if not (issubclass(cls, ChunkedBackend) or cls.threaded)]
        if inner not in serial:
            raise ValueError(
                f"inner backend must be a single-threaded serial backend, one of {plain_list(serial)}; got {inner!r} "
                "(a threaded backend such as numba parallelises itself: use it directly)"
            )
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        self.inner = inner
        self.workers = workers
        self._local = get_backend(inner, **super().options())
        self._spec: TaskSpec = (inner, tuple(sorted(self._local.options().items())))
        # Moduli of the keys whose djn table every current worker holds (emptied when the workers stop).
        self._worker_tables: set[int] = set()

    @abstractmethod
    def _map(self, function: Callable, tasks: list[tuple]) -> list:
        """Run ``function(*task)`` for every task on the workers; results in task order."""

    @abstractmethod
    def _on_every_worker(self, function: Callable, *args: object) -> list:
        """Run ``function(*args)`` once in every worker process, starting the workers if needed; one result each."""

    @abstractmethod
    def _stop_workers(self) -> None:
        """Stop (or disconnect from) the workers this backend started."""

    def close(self) -> None:
        """Stop the workers this backend started (a later call starts new ones, which build their tables again)."""
        self._stop_workers()
        self._worker_tables.clear()

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return (*super().option_names(), "inner", "workers")

    def options(self) -> dict[str, object]:
        return {**super().options(), "inner": self.inner, "workers": self.workers}

    def describe(self) -> str:
        return f"{super().describe()} on {self.workers} workers of {self.inner}"

    def chunk_sizes(self, operation: str, count: int) -> list[int]:
        """How ``count`` items of ``operation`` are split: about two chunks per worker, none below the minimum."""
        minimum = MIN_CHUNK[operation] * self.chunk_scale
        if count < 2 * minimum:
            return [count]
        chunks = max(2, min(2 * self.workers, count // minimum))
        base, extra = divmod(count, chunks)
        return [base + (1 if i < extra else 0) for i in range(chunks)]

    def _run(self, operation: str, count: int, make_args: Callable[[slice], tuple], combine: Callable) -> object:
        sizes = self.chunk_sizes(operation, count)
        if len(sizes) == 1:
            return getattr(self._local, operation)(*make_args(slice(0, count)))
        bounds = [int(b) for b in np.cumsum([0, *sizes])]
        tasks = [(self._spec, operation, make_args(slice(start, stop))) for start, stop in itertools.pairwise(bounds)]
        return combine(self._map(run_task, tasks))

    def powmod(self, bases: np.ndarray, exponent: int, modulus: int) -> np.ndarray:
        return self._run("powmod", len(bases), lambda rows: (bases[rows], exponent, modulus), np.concatenate)

    def mulmod(self, a: np.ndarray, b: np.ndarray, modulus: int) -> np.ndarray:
        return self._run("mulmod", len(a), lambda rows: (a[rows], b[rows], modulus), np.concatenate)

    def standard_obfuscators(self, public_key: PublicKey, count: int) -> np.ndarray:
        return self._run(
            "standard_obfuscators", count, lambda part: (public_key, part.stop - part.start), np.concatenate
        )

    def djn_obfuscators(self, public_key: PublicKey, count: int) -> np.ndarray:
        return self._run("djn_obfuscators", count, lambda part: (public_key, part.stop - part.start), np.concatenate)

    def decrypt(self, private_key: PrivateKey, ciphertexts: CiphertextBatch) -> list[int]:
        private_key.public_key.check_same(ciphertexts.public_key)
        if not self.sends_private_key:
            return self._local.decrypt(private_key, ciphertexts)
        return self._run(
            "decrypt",
            len(ciphertexts),
            lambda rows: (private_key, ciphertexts.take(np.arange(rows.start, rows.stop))),
            lambda parts: [value for part in parts for value in part],
        )

    def djn_table(self, public_key: PublicKey) -> FixedBaseTable:
        """The ``djn`` table of this process's inner backend (used for batches too small to chunk) and, in ``djn``
        mode, every worker's own table for this key, built now, once per worker and key.

        The workers return only the tables' sizes. Errors: those of ``_on_every_worker`` (``multiprocessing``:
        BackendUnavailableError when a worker died or they did not all start in time).
        """
        table = self._local.djn_table(public_key)
        if self.obfuscation == "djn" and public_key.n not in self._worker_tables:
            self._on_every_worker(build_worker_table, self._spec, public_key)
            self._worker_tables.add(public_key.n)
        return table

    def table_nbytes(self) -> int:
        """Memory of the ``djn`` tables in this process (each worker holds its own copy as well)."""
        return self._local.table_nbytes()
