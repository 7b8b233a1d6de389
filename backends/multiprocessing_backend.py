"""The ``multiprocessing`` backend: a persistent pool of local worker processes around a serial backend.

On Linux the pool starts with ``fork``, so a script that uses it needs no ``if __name__ == "__main__":``
guard; where ``fork`` does not exist (macOS, Windows) or ``start_method="spawn"`` is chosen, the calling
script must have that guard, as for any ``multiprocessing`` code. The pool starts on first use and stops on
``close()``, at the end of a ``with`` block, or when the backend is garbage-collected or the interpreter exits;
workers also exit when their parent dies. The private key reaches the workers for decryption: they are
local processes of the same user.

A task of the pool goes to whichever worker is free, so work that must run once in every worker (building
the ``djn`` tables) is sent as ``workers`` tasks that each first wait on a barrier of ``workers`` parties, which
the pool hands to its processes when it starts them: no worker can take two of them, so each takes one.
"""

import multiprocessing
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from dphe_bench.backends.chunked import ChunkedBackend
from dphe_bench.errors import BackendUnavailableError, unknown_name

START_METHODS = ("fork", "forkserver", "spawn")
# How long a task meant for every worker waits at the barrier for the others (their start included).
WORKER_START_TIMEOUT_S = 60.0

_BARRIER: threading.Barrier | None = None


def _keep_barrier(barrier: threading.Barrier) -> None:
    """Worker side: the pool's initializer, run once as each worker process starts."""
    global _BARRIER
    _BARRIER = barrier


def _after_barrier(timeout: float, function: Callable, args: tuple) -> object:
    """Worker side: wait until every worker holds one of these tasks, then run ``function(*args)`` here."""
    _BARRIER.wait(timeout)
    return function(*args)


class MultiprocessingBackend(ChunkedBackend):
    """Chunks of work on ``workers`` local processes (default: one per CPU core).

    Parameters
    ----------
    inner : str
        Serial backend the workers run (default ``gmpy2``).
    workers : int, optional
        Worker processes (default ``os.cpu_count()``).
    start_method : str, optional
        ``fork`` (default where available), ``forkserver`` or ``spawn``.
    obfuscation, window_bits
        As for every backend.
    """

    name = "multiprocessing"

    def __init__(self, inner: str = "gmpy2", workers: int | None = None, start_method: str | None = None, **options):
        if start_method is None:
            start_method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        if start_method not in START_METHODS or start_method not in multiprocessing.get_all_start_methods():
            valid = [method for method in multiprocessing.get_all_start_methods() if method in START_METHODS]
            raise ValueError(unknown_name("start_method", start_method, valid))
        super().__init__(inner=inner, workers=(os.cpu_count() or 1) if workers is None else workers, **options)
        self.start_method = start_method
        self._executor: ProcessPoolExecutor | None = None
        self._finalizer: weakref.finalize | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return (*super().option_names(), "start_method")

    def options(self) -> dict[str, object]:
        return {**super().options(), "start_method": self.start_method}

    def _pool(self) -> ProcessPoolExecutor:
        """The running pool, started now if there is none (its barrier is made with it)."""
        if self._executor is None:
            context = multiprocessing.get_context(self.start_method)
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_keep_barrier,
                initargs=(context.Barrier(self.workers),),
            )
            self._finalizer = weakref.finalize(self, self._executor.shutdown, wait=True, cancel_futures=True)
        return self._executor

    def _map(self, function: Callable, tasks: list[tuple]) -> list:
        return list(self._pool().map(function, *zip(*tasks, strict=True)))

    def _on_every_worker(self, function: Callable, *args: object) -> list:
        """``function(*args)`` once in each of the ``workers`` processes (see the module docstring).

        Raises BackendUnavailableError, and stops the pool, when a worker died or the workers did not all take
        their task within ``WORKER_START_TIMEOUT_S``.
        """
        pool = self._pool()
        try:
            futures = [pool.submit(_after_barrier, WORKER_START_TIMEOUT_S, function, args) for _ in range(self.workers)]
            return [future.result() for future in futures]
        except BrokenProcessPool as error:
            raise self._stop_unreachable("one of them died") from error
        except threading.BrokenBarrierError as error:
            raise self._stop_unreachable(
                f"they did not each take one task within {WORKER_START_TIMEOUT_S:g} s (one busy, or not started)"
            ) from error

    def _stop_unreachable(self, reason: str) -> BackendUnavailableError:
        """Stop the pool; returns the error that says why (``reason``)."""
        self.close()
        return BackendUnavailableError(
            f"the worker processes of {self.describe()} could not each run one task: {reason}; the pool was "
            "stopped, and a later call starts a new one"
        )

    def _stop_workers(self) -> None:
        """Stop the worker processes (a later call starts a new pool)."""
        if self._finalizer is not None:
            self._finalizer()
        self._executor = None
        self._finalizer = None
