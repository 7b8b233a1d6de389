"""The ``multiprocessing`` backend: a persistent pool of local worker processes around a serial backend.

On Linux the pool starts with ``fork``, so a script that uses it needs no ``if __name__ == "__main__":``
guard; where ``fork`` does not exist (macOS, Windows) or ``start_method="spawn"`` is chosen, the calling
script must have that guard, as for any ``multiprocessing`` code. The pool starts on first use and stops on
``close()``, at the end of a ``with`` block, or when the backend is garbage-collected or the interpreter exits;
workers also exit when their parent dies. The private key reaches the workers for decryption: they are
local processes of the same user.
"""

import multiprocessing
import os
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from dphe_bench.backends.chunked import ChunkedBackend
from dphe_bench.errors import unknown_name

START_METHODS = ("fork", "forkserver", "spawn")


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

    def _map(self, function: Callable, tasks: list[tuple]) -> list:
        if self._executor is None:
            context = multiprocessing.get_context(self.start_method)
            self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            self._finalizer = weakref.finalize(self, self._executor.shutdown, wait=True, cancel_futures=True)
        return list(self._executor.map(function, *zip(*tasks, strict=True)))

    def close(self) -> None:
        """Stop the worker processes (a later call starts a new pool)."""
        if self._finalizer is not None:
            self._finalizer()
        self._executor = None
        self._finalizer = None
