"""The ``dask`` backend: the chunked map of ``multiprocessing`` on a ``dask.distributed`` cluster.

By default it starts a ``LocalCluster`` of ``workers`` single-threaded worker processes on 127.0.0.1 (about
one second); with ``scheduler="tcp://host:8786"`` it connects to a running cluster (``dask scheduler`` on one
machine, ``dask worker tcp://host:8786`` on each of the others, each with dphe-bench installed). Dask starts
local workers with ``spawn``, so a script that uses it needs an ``if __name__ == "__main__":`` guard.
Decryption never leaves the calling process: the private key is not sent to dask workers, which may be
other machines. Scratch files go to a temporary folder that ``close()`` removes. Work that must run once in
every worker (building the ``djn`` tables) goes through ``Client.run``, in a thread of the worker process, so
it fills the same per-process inner backends as the tasks and the worker keeps answering its scheduler.
"""

import asyncio
import importlib
import importlib.util
import shutil
import tempfile
import weakref
from collections.abc import Callable

from dphe_bench.backends.chunked import ChunkedBackend


async def _in_worker_thread(function: Callable, *args: object) -> object:
    """Worker side (``Client.run``): ``function(*args)`` in a thread of this worker process, off its event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


class DaskBackend(ChunkedBackend):
    """Chunks of work on a dask.distributed cluster.

    Parameters
    ----------
    inner : str
        Serial backend the workers run (default ``gmpy2``).
    workers : int
        Worker processes of the local cluster, or the parallelism to plan chunks for on a remote one.
    scheduler : str, optional
        Address of a running scheduler; None starts a LocalCluster.
    obfuscation, window_bits
        As for every backend.
    """

    name = "dask"
    chunk_scale = 4
    sends_private_key = False

    def __init__(self, inner: str = "gmpy2", workers: int = 2, scheduler: str | None = None, **options):
        super().__init__(inner=inner, workers=workers, **options)
        self.scheduler = scheduler
        self._client = None
        self._finalizer: weakref.finalize | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("distributed") is None:
            return "dask.distributed is not installed (pip install 'dphe-bench[dask]')"
        return None

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return (*super().option_names(), "scheduler")

    def options(self) -> dict[str, object]:
        return {**super().options(), "scheduler": self.scheduler}

    def _connect(self):
        distributed = importlib.import_module("distributed")
        if self.scheduler is not None:
            client = distributed.Client(self.scheduler)
            self._finalizer = weakref.finalize(self, client.close)
            return client
        scratch = tempfile.mkdtemp(prefix="dphe-dask-")
        cluster = distributed.LocalCluster(
            n_workers=self.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            local_directory=scratch,
        )
        client = distributed.Client(cluster)
        self._finalizer = weakref.finalize(self, _shutdown_local, client, cluster, scratch)
        return client

    def _connected(self):
        """The client, connected (and the local cluster started) now if it is not yet."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _map(self, function: Callable, tasks: list[tuple]) -> list:
        client = self._connected()
        return client.gather(client.map(function, *zip(*tasks, strict=True), pure=False))

    def _on_every_worker(self, function: Callable, *args: object) -> list:
        """``function(*args)`` once in every worker process the scheduler knows now; a worker's error is raised."""
        return list(self._connected().run(_in_worker_thread, function, *args).values())

    def _stop_workers(self) -> None:
        """Disconnect, and stop the local cluster if this backend started one."""
        if self._finalizer is not None:
            self._finalizer()
        self._client = None
        self._finalizer = None


def _shutdown_local(client, cluster, scratch: str) -> None:
    client.close()
    cluster.close()
    shutil.rmtree(scratch, ignore_errors=True)
