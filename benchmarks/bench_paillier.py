"""asv benchmarks of the Paillier operations of every registered backend.

Keys are built once in ``setup_cache``; backends that cannot run here are skipped, not failed.
Run: ``asv machine --yes && asv run --python=same --quick --bench bench_paillier``.
"""

import secrets
import warnings
from typing import ClassVar

from asv_runner.benchmarks.mark import SkipNotImplemented

from dphe_bench import available_backends, generate_keypair, get_backend

KEY_BITS = [1024, 2048]
BATCH = 64


class PaillierOps:
    """Encrypt, aggregate and decrypt a batch of 64 values, per backend and key size."""

    params: ClassVar = (list(available_backends()), KEY_BITS)
    param_names: ClassVar = ["backend", "key_bits"]
    timeout = 300

    def setup_cache(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {bits: generate_keypair(bits) for bits in KEY_BITS}

    def setup(self, keys, backend, key_bits):
        if not available_backends()[backend].available:
            raise SkipNotImplemented(f"backend {backend} is not available here")
        self.backend = get_backend(backend)
        self.public_key, self.private_key = keys[key_bits]
        self.values = [secrets.randbelow(self.public_key.n) for _ in range(BATCH)]
        self.batch = self.backend.encrypt(self.public_key, self.values)

    def time_encrypt(self, keys, backend, key_bits):
        self.backend.encrypt(self.public_key, self.values)

    def time_aggregate_two(self, keys, backend, key_bits):
        self.backend.aggregate(self.public_key, [self.batch, self.batch])

    def time_decrypt(self, keys, backend, key_bits):
        self.backend.decrypt(self.private_key, self.batch)

    def track_ciphertext_bytes(self, keys, backend, key_bits):
        return self.batch.nbytes // BATCH

    track_ciphertext_bytes.unit = "bytes"
