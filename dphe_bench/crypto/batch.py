"""CiphertextBatch: a batch of raw Paillier ciphertexts under one public key, as uint32 limbs."""

import math
from collections.abc import Sequence

import numpy as np

from dphe_bench.crypto.limbs import LIMB_BYTES, exact_ints, ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.crypto.paillier import PublicKey
from dphe_bench.errors import CiphertextError


class CiphertextBatch:
    """``count`` raw Paillier ciphertexts (ints in [1, n^2), invertible) under ``public_key``.

    ``limbs`` is a read-only (count, width) uint32 array, width = limb_width(n^2). Raw ciphertexts
    are python-paillier compatible: ``phe.EncryptedNumber(pk, c, exponent=0)`` wraps one.
    Construct from untrusted data with ``from_ints`` or ``from_bytes``, which validate every value.
    """

    def __init__(self, public_key: PublicKey, limbs: np.ndarray):
        width = limb_width(public_key.nsquare)
        if limbs.dtype != np.uint32 or limbs.ndim != 2 or limbs.shape[1] != width:
            raise CiphertextError(
                f"ciphertext limbs must be a uint32 array of shape (count, {width}), got {limbs.dtype} {limbs.shape}"
            )
        self.public_key = public_key
        self.limbs = np.ascontiguousarray(limbs)
        self.limbs.flags.writeable = False

    def __len__(self) -> int:
        return self.limbs.shape[0]

    def __repr__(self) -> str:
        return f"CiphertextBatch(count={len(self)}, key_id={self.public_key.key_id:016x})"

    @property
    def width(self) -> int:
        """Limbs per ciphertext."""
        return self.limbs.shape[1]

    @property
    def nbytes(self) -> int:
        """Size of ``to_bytes()``."""
        return self.limbs.nbytes

    def to_ints(self) -> list[int]:
        """The ciphertexts as Python ints."""
        return limbs_to_ints(self.limbs)

    def to_bytes(self) -> bytes:
        """Wire format: each ciphertext as 4 * width little-endian bytes, concatenated."""
        return self.limbs.astype("<u4", copy=False).tobytes()

    def take(self, indices: np.ndarray) -> "CiphertextBatch":
        """The sub-batch at ``indices`` (an integer array), in that order."""
        return CiphertextBatch(self.public_key, self.limbs[np.asarray(indices, dtype=np.intp)])

    @classmethod
    def from_ints(cls, public_key: PublicKey, values: Sequence[int]) -> "CiphertextBatch":
        """Validate and pack ciphertext integers: each must be in [1, n^2) and invertible mod n^2.

        Raises TypeError naming the first value that is not an integer (see ``exact_ints``), CiphertextError
        for a value out of range or not invertible.
        """
        values = exact_ints(values, "ciphertext")
        _check_ciphertexts(public_key, values)
        return cls(public_key, ints_to_limbs(values, limb_width(public_key.nsquare)))

    @classmethod
    def from_bytes(cls, public_key: PublicKey, data: bytes) -> "CiphertextBatch":
        """Parse ``to_bytes()`` output for ``public_key``, validating length and every ciphertext."""
        width = limb_width(public_key.nsquare)
        row_bytes = width * LIMB_BYTES
        if len(data) % row_bytes:
            raise CiphertextError(
                f"ciphertext data of {len(data)} bytes is not a whole number of {row_bytes}-byte ciphertexts "
                f"for a {public_key.bits}-bit key"
            )
        limbs = np.frombuffer(data, dtype="<u4").astype(np.uint32).reshape(-1, width)
        _check_ciphertexts(public_key, limbs_to_ints(limbs))
        return cls(public_key, limbs)


def _check_ciphertexts(public_key: PublicKey, values: list[int]) -> None:
    """Raise CiphertextError unless every value is in [1, n^2) and coprime with n.

    Invertibility is checked for the whole batch at once: the product of all values mod n is
    coprime with n exactly when each value is. Only on failure is the culprit searched for.
    """
    n, nsquare = public_key.n, public_key.nsquare
    product = 1
    for i, c in enumerate(values):
        if not 1 <= c < nsquare:
            raise CiphertextError(f"ciphertext {i} is outside [1, n^2) for a {public_key.bits}-bit key")
        product = product * c % n
    if math.gcd(product, n) != 1:
        bad = next(i for i, c in enumerate(values) if math.gcd(c, n) != 1)
        raise CiphertextError(f"ciphertext {bad} is not invertible mod n^2 (it shares a factor with n)")
