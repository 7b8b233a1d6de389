"""The backend interface: batched big-integer primitives, and Paillier written once on top of them.

A backend implements ``powmod`` and ``mulmod`` over (count, width) uint32 limb arrays
(see ``dphe_bench.limbs``). ``encrypt``, ``decrypt`` and ``aggregate`` are generic; a backend may
override any of them with a fused implementation that passes the same tests.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from dphe_bench.batch import CiphertextBatch
from dphe_bench.errors import CiphertextError, PlaintextRangeError
from dphe_bench.limbs import ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.paillier import PrivateKey, PublicKey
from dphe_bench.secure_random import random_units


class Backend(ABC):
    """A crypto backend. Subclasses set ``name`` and implement the two primitives and ``unavailable_reason``."""

    name: ClassVar[str]

    def __init__(self, **options: object):
        if options:
            raise TypeError(f"backend {self.name!r} takes no option(s) {sorted(options)}")

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None when this backend can run here, else a sentence saying why not."""

    @abstractmethod
    def powmod(self, bases: np.ndarray, exponent: int, modulus: int) -> np.ndarray:
        """bases[i] ** exponent mod modulus for every row.

        bases: (count, any width) uint32 limbs; exponent >= 0 shared by all rows;
        returns (count, limb_width(modulus)) uint32 limbs.
        """

    @abstractmethod
    def mulmod(self, a: np.ndarray, b: np.ndarray, modulus: int) -> np.ndarray:
        """a[i] * b[i] mod modulus; a and b are (count, width) uint32 limbs of values below modulus."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def encrypt(self, public_key: PublicKey, plaintexts: Sequence[int]) -> CiphertextBatch:
        """Encrypt ints in [0, n) with the standard obfuscation r^n mod n^2, r uniform in Z*_n."""
        n, nsquare = public_key.n, public_key.nsquare
        plaintexts = list(plaintexts)
        for i, m in enumerate(plaintexts):
            if not 0 <= m < n:
                raise PlaintextRangeError(f"plaintext {i} is outside [0, n) for a {public_key.bits}-bit key")
        width = limb_width(nsquare)
        obfuscators = self.powmod(ints_to_limbs(random_units(n, len(plaintexts)), width), n, nsquare)
        # (1 + m*n) mod n^2 is g^m for g = n + 1; it is below n^2 because m < n.
        plain_parts = ints_to_limbs([1 + m * n for m in plaintexts], width)
        return CiphertextBatch(public_key, self.mulmod(plain_parts, obfuscators, nsquare))

    def decrypt(self, private_key: PrivateKey, ciphertexts: CiphertextBatch) -> list[int]:
        """Decrypt with CRT (two half-size exponentiations); returns ints in [0, n)."""
        private_key.public_key.check_same(ciphertexts.public_key)
        p, q = private_key.p, private_key.q
        cp = limbs_to_ints(self.powmod(ciphertexts.limbs, p - 1, private_key.psquare))
        cq = limbs_to_ints(self.powmod(ciphertexts.limbs, q - 1, private_key.qsquare))
        hp, hq, p_inverse = private_key.hp, private_key.hq, private_key.p_inverse
        plaintexts = []
        for xp, xq in zip(cp, cq, strict=True):
            mp = (xp - 1) // p * hp % p
            mq = (xq - 1) // q * hq % q
            plaintexts.append(mp + (mq - mp) * p_inverse % q * p)
        return plaintexts

    def aggregate(self, public_key: PublicKey, batches: Sequence[CiphertextBatch]) -> CiphertextBatch:
        """Element-wise product mod n^2 of equal-length batches: decrypts to the element-wise sum."""
        if not batches:
            raise CiphertextError("aggregate needs at least one batch")
        for batch in batches:
            public_key.check_same(batch.public_key)
        lengths = {len(batch) for batch in batches}
        if len(lengths) != 1:
            raise CiphertextError(f"batches to aggregate have different lengths {sorted(lengths)}")
        product = batches[0].limbs
        for batch in batches[1:]:
            product = self.mulmod(product, batch.limbs, public_key.nsquare)
        return CiphertextBatch(public_key, product)


class IntegerBackend(Backend):
    """A backend whose arithmetic runs on Python-level integers (built-in ints, gmpy2 mpz, ...)."""

    @abstractmethod
    def powmod_ints(self, bases: list[int], exponent: int, modulus: int) -> list[int]:
        """bases[i] ** exponent mod modulus as ints."""

    @abstractmethod
    def mulmod_ints(self, a: list[int], b: list[int], modulus: int) -> list[int]:
        """a[i] * b[i] mod modulus as ints."""

    def powmod(self, bases: np.ndarray, exponent: int, modulus: int) -> np.ndarray:
        return ints_to_limbs(self.powmod_ints(limbs_to_ints(bases), exponent, modulus), limb_width(modulus))

    def mulmod(self, a: np.ndarray, b: np.ndarray, modulus: int) -> np.ndarray:
        product = self.mulmod_ints(limbs_to_ints(a), limbs_to_ints(b), modulus)
        return ints_to_limbs(product, limb_width(modulus))
