"""``packed``: many quantised values per Paillier plaintext (BatchCrypt-style slot packing).

Each user quantises its D weights to b bits (offset so that stored values are positive), packs
``slots`` of them into each plaintext with ceil(log2(N_max + 1)) bits of headroom per slot, and
encrypts ceil(D / slots) plaintexts. The aggregator multiplies whole ciphertexts, which adds every
slot at once; the key generator decrypts, unpacks and removes the contributors' offsets.

Leakage: the aggregator learns nothing but D (every user sends the same number of ciphertexts,
whatever its weights); the key generator learns the sum (the model). Nothing about supports leaks,
even to a user colluding with the aggregator. Cost: ceil(D / slots) encryptions per user, plus a
quantisation error of at most step / 2 per weight (step = quantization_range / (2**(b-1) - 1));
a weight beyond +-quantization_range is refused, never clipped silently.
"""

from collections.abc import Sequence

import numpy as np

from dphe_bench.backends import Backend
from dphe_bench.crypto.packing import PackingLayout
from dphe_bench.crypto.paillier import DEFAULT_KEY_BITS
from dphe_bench.errors import ProtocolError
from dphe_bench.schemes.base import (
    KEY_SETUP_FIELDS,
    EncryptedKeyGenerator,
    User,
    public_key_from_setup,
)
from dphe_bench.schemes.dense import DenseAggregator
from dphe_bench.schemes.messages import Message

LEAKAGE = "nothing but D; the key generator learns the sum (the model), up to quantisation"
DEFAULT_QUANTIZATION_BITS = 16
DEFAULT_QUANTIZATION_RANGE = 8.0
_PACKING_FIELDS = (*KEY_SETUP_FIELDS, "quantization_bits", "quantization_range")


def layout_from_setup(message: Message, modulus_bits: int) -> PackingLayout:
    """The packing layout a packed setup message describes; ProtocolError if no such layout exists."""
    try:
        return PackingLayout(
            quantization_bits=message["quantization_bits"],
            quantization_range=message["quantization_range"],
            max_users=message["max_users"],
            modulus_bits=modulus_bits,
        )
    except ValueError as exc:
        raise ProtocolError(f"setup message: no packing layout fits: {exc}") from None


class PackedKeyGenerator(EncryptedKeyGenerator):
    """Fixes the packing layout, decrypts the packed sums and unpacks them."""

    scheme = "packed"

    def __init__(
        self,
        dimension: int,
        user_ids: Sequence[int],
        backend: Backend,
        key_bits: int = DEFAULT_KEY_BITS,
        quantization_bits: int = DEFAULT_QUANTIZATION_BITS,
        quantization_range: float = DEFAULT_QUANTIZATION_RANGE,
    ):
        super().__init__(dimension, user_ids, backend, key_bits)
        self.layout = PackingLayout(quantization_bits, quantization_range, len(self.user_ids), self.public_key.bits)

    @classmethod
    def check_options(
        cls,
        key_bits: int,
        users: int,
        quantization_bits: int = DEFAULT_QUANTIZATION_BITS,
        quantization_range: float = DEFAULT_QUANTIZATION_RANGE,
    ) -> None:
        PackingLayout(quantization_bits, quantization_range, users, key_bits)

    def _key_fields(self) -> dict:
        return {
            **super()._key_fields(),
            "quantization_bits": self.layout.quantization_bits,
            "quantization_range": self.layout.quantization_range,
        }

    def _sum_from_aggregate(self, message: Message) -> np.ndarray:
        batch = self._ciphertexts(message, expected=self.layout.ciphertexts_for(self.dimension))
        return self.layout.unpack_sums(self._decrypt(batch), self.dimension, message["contributors"])


class PackedUser(User):
    """Quantises, packs and encrypts all D weights in ceil(D / slots) ciphertexts."""

    scheme = "packed"
    setup_fields = _PACKING_FIELDS

    def _configure(self, message: Message) -> None:
        self.public_key = public_key_from_setup(message)
        self.layout = layout_from_setup(message, self.public_key.bits)

    def ciphertexts_needed(self, weights: np.ndarray) -> int:
        return self.layout.ciphertexts_for(self.dimension)

    def _update_fields(self, weights: np.ndarray) -> dict:
        plaintexts = self.layout.pack(self.layout.quantize(weights))
        batch = self.backend.encrypt(self.public_key, plaintexts)
        self.last_ciphertext_count = len(batch)
        return {"key_id": self.public_key.key_id, "ciphertexts": batch.to_bytes()}


class PackedAggregator(DenseAggregator):
    """Multiplies whole packed ciphertexts position by position (every slot adds at once)."""

    scheme = "packed"
    setup_fields = _PACKING_FIELDS

    def _configure(self, message: Message) -> None:
        super()._configure(message)
        self.layout = layout_from_setup(message, self.public_key.bits)

    def expected_ciphertexts(self) -> int:
        """ceil(D / slots) ciphertexts per update."""
        return self.layout.ciphertexts_for(self.dimension)
