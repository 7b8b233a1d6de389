"""Aggregation schemes: one user's update, and the aggregator and key generator of one round.

Parametrised by scheme x backend x key size x sparsity (x users). Keys, setup messages and the users'
encrypted updates are built once in ``setup_cache`` (with the default backend: ciphertexts are the same
bytes whichever backend made them); each timed call gets fresh parties from ``setup`` (``number = 1``),
because a round changes their state. Run: ``asv run --python=same --quick --bench bench_schemes``.
"""

import copy
from typing import ClassVar

from asv_runner.benchmarks.mark import SkipNotImplemented

from dphe_bench.bench.sweep import synthetic_weights
from dphe_bench.schemes import SCHEMES

from .common import (
    KEY_BITS,
    SPARSITIES,
    backend_names,
    fast_backend,
    make_backend,
    make_key_generator,
    runnable_scheme_names,
    scheme_names,
    skip_unless_runnable,
)

UPDATE_DIMENSION = 64
UPDATE_MAX_USERS = 5
ROUND_DIMENSION = 64
ROUND_USERS = [2, 5]
ROUND_KEY_BITS = KEY_BITS[:2]  # 3072-bit keys: see PaillierOps and UserUpdate


def _skip_redundant(scheme: str, backend: str, key_bits: int) -> None:
    """A scheme without Paillier (plain, ckks) uses neither keys nor backend: run it for the first of each only;
    a scheme that cannot run here (ckks without TenSEAL) is skipped, saying how to install it."""
    skip_unless_runnable(scheme)
    if not SCHEMES[scheme].paillier and (key_bits != KEY_BITS[0] or backend != backend_names()[0]):
        raise SkipNotImplemented(f"{scheme} uses no Paillier backend or key: measured once, at the first of each")


class UserUpdate:
    """One user encoding, encrypting and serialising its update of D = 64 weights."""

    params: ClassVar = (scheme_names(), backend_names(), KEY_BITS, SPARSITIES)
    param_names: ClassVar = ["scheme", "backend", "key_bits", "sparsity"]
    timeout = 600

    def setup_cache(self):
        backend = fast_backend()
        setups = {}
        for scheme in runnable_scheme_names():
            for key_bits in KEY_BITS if SCHEMES[scheme].paillier else KEY_BITS[:1]:
                generator = make_key_generator(scheme, UPDATE_DIMENSION, UPDATE_MAX_USERS, key_bits, backend)
                setups[scheme, key_bits] = generator.setup().to_users[0]
        return setups

    def setup(self, setups, scheme, backend, key_bits, sparsity):
        _skip_redundant(scheme, backend, key_bits)
        crypto = make_backend(backend)
        self.user = SCHEMES[scheme].user(setups[scheme, key_bits], crypto)
        self.weights = synthetic_weights(UPDATE_DIMENSION, 1, sparsity, seed=0)[0]

    def time_submit(self, setups, scheme, backend, key_bits, sparsity):
        self.user.submit(self.weights, 0)


class RoundAggregation:
    """The aggregator combining N users' updates, the key generator decrypting the aggregate, and traffic."""

    params: ClassVar = (scheme_names(), backend_names(), ROUND_KEY_BITS, SPARSITIES, ROUND_USERS)
    param_names: ClassVar = ["scheme", "backend", "key_bits", "sparsity", "users"]
    number = 1
    warmup_time = 0
    timeout = 600

    def setup_cache(self):
        backend = fast_backend()
        rounds = {}
        for scheme in runnable_scheme_names():
            for key_bits in ROUND_KEY_BITS if SCHEMES[scheme].paillier else ROUND_KEY_BITS[:1]:
                for users in ROUND_USERS:
                    generator = make_key_generator(scheme, ROUND_DIMENSION, users, key_bits, backend)
                    setup = generator.setup()
                    for sparsity in SPARSITIES:
                        weights = synthetic_weights(ROUND_DIMENSION, users, sparsity, seed=0)
                        parties = [SCHEMES[scheme].user(setup.to_users[uid], backend) for uid in range(users)]
                        updates = [party.submit(w, 0) for party, w in zip(parties, weights, strict=True)]
                        aggregator = SCHEMES[scheme].aggregator(setup.to_aggregator, backend)
                        for update in updates:
                            aggregator.receive(update)
                        rounds[scheme, key_bits, users, sparsity] = {
                            "key_generator": generator,
                            "setup": setup,
                            "updates": updates,
                            "ciphertexts": sum(party.last_ciphertext_count for party in parties),
                            "aggregate": aggregator.finish(),
                        }
                    # asv pickles this cache, and a backend may hold a module or a worker pool: setup() sets one.
                    generator.backend = None
        return rounds

    def setup(self, rounds, scheme, backend, key_bits, sparsity, users):
        _skip_redundant(scheme, backend, key_bits)
        crypto = make_backend(backend)
        self.round = rounds[scheme, key_bits, users, sparsity]
        self.aggregator = SCHEMES[scheme].aggregator(self.round["setup"].to_aggregator, crypto)
        self.key_generator = copy.deepcopy(self.round["key_generator"])
        self.key_generator.backend = crypto

    def time_aggregate(self, rounds, scheme, backend, key_bits, sparsity, users):
        for update in self.round["updates"]:
            self.aggregator.receive(update)
        self.aggregator.finish()

    def time_decrypt(self, rounds, scheme, backend, key_bits, sparsity, users):
        self.key_generator.publish(self.round["aggregate"])

    def track_bytes_per_user(self, rounds, scheme, backend, key_bits, sparsity, users):
        return sum(len(u) for u in self.round["updates"]) / users

    track_bytes_per_user.unit = "bytes"

    def track_ciphertexts_per_user(self, rounds, scheme, backend, key_bits, sparsity, users):
        return self.round["ciphertexts"] / users

    track_ciphertexts_per_user.unit = "ciphertexts"

    def track_aggregate_bytes(self, rounds, scheme, backend, key_bits, sparsity, users):
        return len(self.round["aggregate"])

    track_aggregate_bytes.unit = "bytes"
