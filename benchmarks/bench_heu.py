"""SecretFlow HEU's Paillier variants (and OU, not Paillier, for reference) next to ours, per key size.

Each HEU configuration is checked (decrypt and compare, ``HeuKit.check``) in ``setup`` before anything is timed;
HEU runs on its own thread pool, sized by ``YACL_NUM_THREADS`` when asv starts (unset: one thread per hardware
thread). Skipped without sf-heu (``pip install 'dphe-bench[heu]'``). HEU keys do not pickle, so they are made in
``setup``, not ``setup_cache``. Run: ``asv run --python=same --quick --bench bench_heu``.
"""

import secrets
import time
from typing import ClassVar

import numpy as np
from asv_runner.benchmarks.mark import SkipNotImplemented

from dphe_bench.bench import heu

from .common import KEY_BITS, backend_names, keypair, make_backend

BATCH = 64
SPEEDUP_BATCH = 16
SPEEDUP_REPEATS = 3
FASTEST_HEU_PAILLIER = "ZPaillier"


def _kit(variant: str, key_bits: int) -> heu.HeuKit:
    if reason := heu.unavailable_reason():
        raise SkipNotImplemented(reason)
    kit = heu.HeuKit(variant, key_bits)
    kit.check()
    return kit


class HeuOps:
    """Encrypt, aggregate and decrypt a batch of 64 int64 values with each HEU variant."""

    params: ClassVar = (list(heu.VARIANTS), KEY_BITS)
    param_names: ClassVar = ["variant", "key_bits"]
    timeout = 600

    def setup(self, variant, key_bits):
        self.kit = _kit(variant, key_bits)
        self.values = np.array([secrets.randbelow(2**63) - 2**62 for _ in range(BATCH)], dtype=np.int64)
        self.ciphertexts = self.kit.encrypt(self.values)

    def time_encrypt(self, variant, key_bits):
        self.kit.encrypt(self.values)

    def time_aggregate_two(self, variant, key_bits):
        self.kit.add(self.ciphertexts, self.ciphertexts)

    def time_decrypt(self, variant, key_bits):
        self.kit.decrypt(self.ciphertexts)

    def track_ciphertext_bytes(self, variant, key_bits):
        return self.kit.serialized_size(self.ciphertexts) / BATCH

    track_ciphertext_bytes.unit = "bytes"


class SpeedupOverHeu:
    """Encryption speed-up of each of our backends over HEU's ZPaillier (its fastest Paillier here), side by side."""

    params: ClassVar = (backend_names(with_baseline=False), KEY_BITS)
    param_names: ClassVar = ["backend", "key_bits"]
    timeout = 600

    def setup(self, backend, key_bits):
        self.backend = make_backend(backend)
        self.kit = _kit(FASTEST_HEU_PAILLIER, key_bits)
        self.public_key = keypair(key_bits)[0]
        self.values = [secrets.randbelow(2**62) for _ in range(SPEEDUP_BATCH)]
        self.heu_values = np.array(self.values, dtype=np.int64)

    def track_encrypt_speedup_vs_heu(self, backend, key_bits):
        ours = _best_time(lambda: self.backend.encrypt(self.public_key, self.values))
        theirs = _best_time(lambda: self.kit.encrypt(self.heu_values))
        return theirs / ours

    track_encrypt_speedup_vs_heu.unit = "x HEU ZPaillier"


def _best_time(operation) -> float:
    best = float("inf")
    for _ in range(SPEEDUP_REPEATS):
        start = time.perf_counter()
        operation()
        best = min(best, time.perf_counter() - start)
    return best
