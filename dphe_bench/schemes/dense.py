"""``dense``: every weight encrypted with Paillier (the paper's baseline).

Leakage: the aggregator learns nothing but D (every user sends exactly D ciphertexts); the key
generator learns the sum of the contributors' weights, i.e. the model. Cost: D encryptions per user.
"""

import numpy as np

from dphe_bench.errors import ProtocolError
from dphe_bench.schemes.base import (
    FIXED_POINT_SETUP_FIELDS,
    Aggregator,
    FixedPointKeyGenerator,
    User,
    ciphertexts_from_update,
    codec_from_setup,
    public_key_from_setup,
)
from dphe_bench.schemes.messages import Message

LEAKAGE = "nothing but D; the key generator learns the sum (the model)"


class DenseKeyGenerator(FixedPointKeyGenerator):
    """Decrypts D summed ciphertexts."""

    scheme = "dense"

    def _sum_from_aggregate(self, message: Message) -> np.ndarray:
        batch = self._ciphertexts(message, expected=self.dimension)
        return self._decode_sums(batch, message["contributors"])


class DenseUser(User):
    """Encrypts all D fixed-point weights."""

    scheme = "dense"
    setup_fields = FIXED_POINT_SETUP_FIELDS

    def _configure(self, message: Message) -> None:
        self.public_key = public_key_from_setup(message)
        self.codec = codec_from_setup(message, self.public_key)

    def ciphertexts_needed(self, weights: np.ndarray) -> int:
        return self.dimension

    def _update_fields(self, weights: np.ndarray) -> dict:
        batch = self.backend.encrypt(self.public_key, self.codec.encode(weights))
        self.last_ciphertext_count = len(batch)
        return {"key_id": self.public_key.key_id, "ciphertexts": batch.to_bytes()}


class DenseAggregator(Aggregator):
    """Multiplies the users' ciphertexts position by position."""

    scheme = "dense"
    setup_fields = FIXED_POINT_SETUP_FIELDS
    update_fields = ("key_id", "ciphertexts")

    def _configure(self, message: Message) -> None:
        self.public_key = public_key_from_setup(message)

    def expected_ciphertexts(self) -> int:
        """Ciphertexts every update must carry: one per weight."""
        return self.dimension

    def _start_round(self) -> None:
        self._product = None

    def _ingest(self, user_id: int, message: Message) -> None:
        batch = ciphertexts_from_update(message, self.public_key)
        expected = self.expected_ciphertexts()
        if len(batch) != expected:
            raise ProtocolError(f"user {user_id} sent {len(batch)} ciphertexts, expected {expected}")
        if self._product is None:
            self._product = batch
        else:
            self._product = self.backend.aggregate(self.public_key, [self._product, batch])

    def _aggregate_fields(self) -> dict:
        return {"key_id": self.public_key.key_id, "ciphertexts": self._product.to_bytes()}
