"""multiprocessing and dask: chunking, results equal to the serial backend's, clean shutdown, key handling,
djn tables built in every worker at set-up."""

import os
import secrets
import time

import numpy as np
import pytest

from dphe_bench import get_backend
from dphe_bench.backends import BACKENDS, available_backends
from dphe_bench.backends import multiprocessing_backend as multiprocessing_module
from dphe_bench.backends.chunked import _WORKER_BACKENDS, MIN_CHUNK, ChunkedBackend
from dphe_bench.crypto.limbs import ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.errors import BackendUnavailableError

HAVE_DASK = available_backends()["dask"].available


def random_limbs(modulus: int, count: int) -> tuple[list[int], np.ndarray]:
    values = [secrets.randbelow(modulus) for _ in range(count)]
    return values, ints_to_limbs(values, limb_width(modulus))


def python_decrypt(private_key, ciphertexts: list[int]) -> list[int]:
    """Textbook Paillier decryption in Python ints (g = n + 1): L(c^lambda mod n^2) / lambda mod n."""
    n = private_key.public_key.n
    lam = (private_key.p - 1) * (private_key.q - 1)
    return [(pow(c, lam, n * n) - 1) // n * pow(lam, -1, n) % n for c in ciphertexts]


def worker_tables(spec) -> tuple[int, dict[int, tuple[int, int]]]:
    """Run in a worker: its pid and, per key modulus, (id, nbytes) of the djn tables its inner backend holds."""
    backend = _WORKER_BACKENDS.get(spec)
    tables = {} if backend is None else backend._djn_tables
    return os.getpid(), {n: (id(table), table.nbytes) for n, table in tables.items()}


@pytest.fixture(scope="module")
def multiprocessing_backend():
    with get_backend("multiprocessing", workers=2) as backend:
        yield backend


@pytest.mark.parametrize("operation", list(MIN_CHUNK))
@pytest.mark.parametrize("count", [0, 1, 31, 32, 1000, 100_000])
@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_chunks_cover_the_batch_and_respect_the_minimum(operation, count, workers):
    backend = get_backend("multiprocessing", workers=workers)
    sizes = backend.chunk_sizes(operation, count)
    assert sum(sizes) == count
    if len(sizes) > 1:
        assert min(sizes) >= MIN_CHUNK[operation]
        assert len(sizes) <= 2 * workers
        assert max(sizes) - min(sizes) <= 1


def test_dask_chunks_are_larger_than_local_process_chunks():
    local = get_backend("multiprocessing", workers=2).chunk_sizes("powmod", 200)
    if not HAVE_DASK:
        pytest.skip("dask.distributed is not installed")
    remote = get_backend("dask", workers=2).chunk_sizes("powmod", 200)
    assert len(local) == 4 and len(remote) == 3 and min(remote) >= 4 * MIN_CHUNK["powmod"]


def test_primitives_in_chunks_match_python_ints(multiprocessing_backend, keypair_1024):
    public_key, _ = keypair_1024
    modulus = public_key.nsquare
    a_values, a = random_limbs(modulus, 2 * MIN_CHUNK["mulmod"] + 5)
    b_values, b = random_limbs(modulus, len(a_values))
    product = limbs_to_ints(multiprocessing_backend.mulmod(a, b, modulus))
    assert product == [x * y % modulus for x, y in zip(a_values, b_values, strict=True)]
    bases = a[:40]
    powers = limbs_to_ints(multiprocessing_backend.powmod(bases, public_key.n, modulus))
    assert powers == [pow(x, public_key.n, modulus) for x in a_values[:40]]


@pytest.mark.parametrize("mode", ["standard", "djn", "pool"])
def test_paillier_in_chunks_round_trips(multiprocessing_backend, keypair_1024, mode):
    public_key, private_key = keypair_1024
    backend = get_backend("multiprocessing", workers=2, obfuscation=mode, window_bits=6)
    try:
        if mode == "pool":
            backend.precompute(public_key, 200)
            assert backend.pool_size(public_key) == 200
        values = [secrets.randbelow(public_key.n) for _ in range(200)]
        batch = backend.encrypt(public_key, values)
        assert len(set(batch.to_ints())) == 200
        assert backend.decrypt(private_key, batch) == values
        assert get_backend("gmpy2").decrypt(private_key, batch) == values
        doubled = backend.aggregate(public_key, [batch, batch])
        assert backend.decrypt(private_key, doubled) == [2 * v % public_key.n for v in values]
    finally:
        backend.close()


def test_close_stops_every_worker_and_a_later_call_starts_new_ones(keypair_1024):
    public_key, _ = keypair_1024
    backend = get_backend("multiprocessing", workers=2)
    backend.encrypt(public_key, list(range(64)))
    pids = list(backend._executor._processes)
    assert len(pids) == 2
    backend.close()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)
    backend.encrypt(public_key, list(range(64)))
    assert set(backend._executor._processes).isdisjoint(pids)
    backend.close()


def check_djn_tables_are_built_once_in_every_worker(backend: ChunkedBackend, keypair) -> set[int]:
    """djn_table builds the local table and one per worker, once; a chunked encryption then builds none and
    decrypts right. Returns the workers' pids."""
    public_key, private_key = keypair
    assert all(tables == {} for _, tables in backend._on_every_worker(worker_tables, backend._spec))
    table = backend.djn_table(public_key)
    assert backend.table_nbytes() == table.nbytes > 0
    built = dict(backend._on_every_worker(worker_tables, backend._spec))
    assert len(built) == backend.workers
    assert all(tables.keys() == {public_key.n} and tables[public_key.n][1] == table.nbytes for tables in built.values())
    assert backend.djn_table(public_key) is table
    assert dict(backend._on_every_worker(worker_tables, backend._spec)) == built
    values = [secrets.randbelow(public_key.n) for _ in range(2 * backend.chunk_scale * MIN_CHUNK["djn_obfuscators"])]
    assert len(backend.chunk_sizes("djn_obfuscators", len(values))) > 1
    batch = backend.encrypt(public_key, values)
    assert dict(backend._on_every_worker(worker_tables, backend._spec)) == built
    assert python_decrypt(private_key, batch.to_ints()) == values
    assert len(set(batch.to_ints())) == len(values)
    assert backend.table_nbytes() == table.nbytes
    return set(built)


def test_djn_table_is_built_once_in_every_worker_process_at_set_up(small_keypair):
    with get_backend("multiprocessing", workers=2, obfuscation="djn", window_bits=4) as backend:
        pids = check_djn_tables_are_built_once_in_every_worker(backend, small_keypair)
        assert pids == set(backend._executor._processes)
        backend.close()
        assert backend._executor is None
        # New workers hold no table: the next call builds theirs.
        assert check_djn_tables_are_built_once_in_every_worker(backend, small_keypair).isdisjoint(pids)


def test_djn_table_in_another_mode_builds_only_the_local_table(small_keypair):
    public_key, _ = small_keypair
    with get_backend("multiprocessing", workers=2, obfuscation="standard", window_bits=4) as backend:
        table = backend.djn_table(public_key)
        assert backend.table_nbytes() == table.nbytes > 0
        assert backend._executor is None


def test_djn_table_raises_a_clear_error_when_a_worker_died(small_keypair):
    public_key, _ = small_keypair
    with get_backend("multiprocessing", workers=2, obfuscation="djn", window_bits=4) as backend:
        backend._pool().submit(int).result()
        os.kill(next(iter(backend._executor._processes)), 9)
        with pytest.raises(BackendUnavailableError, match=r"worker processes of multiprocessing .*: one of them died"):
            backend.djn_table(public_key)
        assert backend._executor is None
        backend.djn_table(small_keypair[0])
        assert len(backend._on_every_worker(worker_tables, backend._spec)) == 2


def test_djn_table_gives_up_after_the_timeout_when_a_worker_is_busy(small_keypair, monkeypatch):
    monkeypatch.setattr(multiprocessing_module, "WORKER_START_TIMEOUT_S", 0.3)
    with get_backend("multiprocessing", workers=2, obfuscation="djn", window_bits=4) as backend:
        busy = backend._pool().submit(time.sleep, 1.5)
        with pytest.raises(BackendUnavailableError, match=r"did not each take one task within 0\.3 s"):
            backend.djn_table(small_keypair[0])
        assert busy.done() and backend._executor is None


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return waited == 0


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"inner": "multiprocessing"}, "inner backend must be a single-threaded serial backend"),
        ({"inner": "nope"}, "inner backend must be a single-threaded serial backend"),
        ({"inner": "numba"}, "parallelises itself"),
        ({"workers": 0}, "workers must be a positive int"),
        ({"start_method": "teleport"}, "unknown start_method 'teleport'; valid start_methods: "),
        ({"window_bits": 99}, "window_bits"),
    ],
)
def test_bad_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        get_backend("multiprocessing", **options)


def test_chunked_backends_are_registered_and_describe_themselves():
    assert issubclass(BACKENDS["multiprocessing"], ChunkedBackend)
    assert issubclass(BACKENDS["dask"], ChunkedBackend)
    backend = get_backend("multiprocessing", workers=3, obfuscation="djn", window_bits=7)
    assert backend.describe() == "multiprocessing (djn obfuscation, 7-bit windows) on 3 workers of gmpy2"
    assert backend.options()["inner"] == "gmpy2"


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed is not installed")
def test_dask_local_cluster_round_trips_and_never_receives_the_private_key(keypair_1024, monkeypatch):
    public_key, private_key = keypair_1024
    with get_backend("dask", workers=2, obfuscation="djn", window_bits=6) as backend:
        values = [secrets.randbelow(public_key.n) for _ in range(2 * 4 * MIN_CHUNK["djn_obfuscators"])]
        batch = backend.encrypt(public_key, values)
        assert backend._client is not None
        sent = []
        original = backend._map
        monkeypatch.setattr(backend, "_map", lambda function, tasks: sent.extend(tasks) or original(function, tasks))
        assert backend.decrypt(private_key, batch) == values
        assert not any(isinstance(arg, type(private_key)) for task in sent for arg in task[2])


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed is not installed")
def test_dask_connects_to_a_running_scheduler(keypair_1024):
    distributed = pytest.importorskip("distributed")
    public_key, private_key = keypair_1024
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        backend = get_backend("dask", workers=1, scheduler=cluster.scheduler_address)
        values = list(range(300))
        assert backend.decrypt(private_key, backend.encrypt(public_key, values)) == values
        backend.close()
        assert cluster.scheduler_address


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DASK, reason="dask.distributed is not installed")
def test_dask_builds_the_djn_table_in_every_worker_process_where_its_tasks_run(small_keypair):
    with get_backend("dask", workers=2, obfuscation="djn", window_bits=4) as backend:
        check_djn_tables_are_built_once_in_every_worker(backend, small_keypair)
