"""Paillier operations of every backend and the python-paillier baseline, per key size.

Keys are built once in ``setup_cache``; only the operation is timed; backends that cannot run here are
skipped. Run: ``asv run --python=same --quick --bench bench_paillier``.
"""

import secrets
import time
from typing import ClassVar

from .common import KEY_BITS, backend_names, fast_backend, keypair, make_backend

BATCH = 64
SPEEDUP_BATCH = 16
SPEEDUP_REPEATS = 3
MEMORY_BATCH = 2048


class PaillierOps:
    """Encrypt, aggregate and decrypt a batch of 64 values."""

    params: ClassVar = (backend_names(), KEY_BITS)
    param_names: ClassVar = ["backend", "key_bits"]
    timeout = 600

    def setup_cache(self):
        # Ciphertexts are the same bytes whichever backend made them: encrypt the batch once per key.
        prepared = {}
        for bits in KEY_BITS:
            public_key, private_key = keypair(bits)
            values = [secrets.randbelow(public_key.n) for _ in range(BATCH)]
            prepared[bits] = (public_key, private_key, values, fast_backend().encrypt(public_key, values))
        return prepared

    def setup(self, prepared, backend, key_bits):
        self.backend = make_backend(backend)
        self.public_key, self.private_key, self.values, self.batch = prepared[key_bits]

    def time_encrypt(self, prepared, backend, key_bits):
        self.backend.encrypt(self.public_key, self.values)

    def time_aggregate_two(self, prepared, backend, key_bits):
        self.backend.aggregate(self.public_key, [self.batch, self.batch])

    def time_decrypt(self, prepared, backend, key_bits):
        self.backend.decrypt(self.private_key, self.batch)

    def track_ciphertext_bytes(self, prepared, backend, key_bits):
        return self.batch.nbytes // BATCH

    track_ciphertext_bytes.unit = "bytes"


class SpeedupOverPythonPaillier:
    """Encryption speed-up of each backend over python-paillier on the same values, measured side by side."""

    params: ClassVar = (backend_names(with_baseline=False), KEY_BITS)
    param_names: ClassVar = ["backend", "key_bits"]
    timeout = 600

    def setup_cache(self):
        return {bits: keypair(bits) for bits in KEY_BITS}

    def setup(self, keys, backend, key_bits):
        self.backend = make_backend(backend)
        self.baseline = make_backend("python-paillier")
        self.public_key = keys[key_bits][0]
        self.values = [secrets.randbelow(self.public_key.n) for _ in range(SPEEDUP_BATCH)]

    def track_encrypt_speedup(self, keys, backend, key_bits):
        ours = _best_time(lambda: self.backend.encrypt(self.public_key, self.values))
        theirs = _best_time(lambda: self.baseline.encrypt(self.public_key, self.values))
        return theirs / ours

    track_encrypt_speedup.unit = "x python-paillier"


class EncryptMemory:
    """Peak memory of encrypting 2048 values at 1024 bits (whole process, as asv measures it)."""

    params: ClassVar = (backend_names(),)
    param_names: ClassVar = ["backend"]
    timeout = 600

    def setup_cache(self):
        return keypair(1024)

    def setup(self, keys, backend):
        self.backend = make_backend(backend)
        self.public_key = keys[0]
        self.values = [secrets.randbelow(self.public_key.n) for _ in range(MEMORY_BATCH)]

    def peakmem_encrypt_batch(self, keys, backend):
        self.backend.encrypt(self.public_key, self.values)


def _best_time(operation) -> float:
    best = float("inf")
    for _ in range(SPEEDUP_REPEATS):
        start = time.perf_counter()
        operation()
        best = min(best, time.perf_counter() - start)
    return best
