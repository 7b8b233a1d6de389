"""python-paillier (``phe``) as a backend: the baseline that speed-ups are measured against.

``PythonPaillierBaseline`` does each Paillier operation the way python-paillier does it
(``PaillierPublicKey.raw_encrypt`` with its own random obfuscator, ``PaillierPrivateKey.raw_decrypt``,
and ``phe.util.mulmod`` for homomorphic addition), so a scheme run on it encrypts exactly the plaintexts
the same scheme encrypts on any of our backends. It uses gmpy2 when python-paillier finds it, as
python-paillier does. It is deliberately not in the backend registry: it is a reference to compare
against, not a backend to choose.
"""

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from dphe_bench.backends import Backend
from dphe_bench.backends.base import check_plaintexts
from dphe_bench.crypto.batch import CiphertextBatch
from dphe_bench.crypto.limbs import ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.crypto.paillier import PrivateKey, PublicKey

BASELINE_NAME = "python-paillier"


class PythonPaillierBaseline(Backend):
    """Paillier encrypt, decrypt and add done by python-paillier on the same raw integers as our backends."""

    name: ClassVar[str] = BASELINE_NAME

    def __init__(self) -> None:
        super().__init__()
        self._public_keys: dict[int, object] = {}
        self._private_keys: dict[tuple[int, int], object] = {}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import phe  # noqa: F401
        except ImportError:
            return "python-paillier is not installed (pip install phe)"
        return None

    def powmod(self, bases: np.ndarray, exponent: int, modulus: int) -> np.ndarray:
        from phe.util import powmod

        return ints_to_limbs([powmod(b, exponent, modulus) for b in limbs_to_ints(bases)], limb_width(modulus))

    def mulmod(self, a: np.ndarray, b: np.ndarray, modulus: int) -> np.ndarray:
        from phe.util import mulmod

        products = [mulmod(x, y, modulus) for x, y in zip(limbs_to_ints(a), limbs_to_ints(b), strict=True)]
        return ints_to_limbs(products, limb_width(modulus))

    def encrypt(self, public_key: PublicKey, plaintexts: Sequence[int]) -> CiphertextBatch:
        """``raw_encrypt`` of each plaintext in [0, n) under python-paillier's key with the same n."""
        key = self._public_key(public_key)
        ciphertexts = [key.raw_encrypt(m) for m in check_plaintexts(public_key, plaintexts)]
        return CiphertextBatch(public_key, ints_to_limbs(ciphertexts, limb_width(public_key.nsquare)))

    def decrypt(self, private_key: PrivateKey, ciphertexts: CiphertextBatch) -> list[int]:
        """``raw_decrypt`` (CRT) of each ciphertext with python-paillier's key built from the same p, q."""
        private_key.public_key.check_same(ciphertexts.public_key)
        key = self._private_key(private_key)
        return [int(key.raw_decrypt(c)) for c in ciphertexts.to_ints()]

    def _public_key(self, public_key: PublicKey):
        import phe

        if public_key.n not in self._public_keys:
            self._public_keys[public_key.n] = phe.PaillierPublicKey(public_key.n)
        return self._public_keys[public_key.n]

    def _private_key(self, private_key: PrivateKey):
        import phe

        primes = (private_key.p, private_key.q)
        if primes not in self._private_keys:
            public = self._public_key(private_key.public_key)
            self._private_keys[primes] = phe.PaillierPrivateKey(public, *primes)
        return self._private_keys[primes]
