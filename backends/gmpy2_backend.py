"""The ``gmpy2`` backend: GMP through gmpy2 (the default). Needs ``pip install 'dphe-bench[gmpy2]'``."""

import importlib
import importlib.util

from dphe_bench.backends.base import IntegerBackend


class Gmpy2Backend(IntegerBackend):
    """GMP big-integer arithmetic; batched exponentiation with ``gmpy2.powmod_base_list``."""

    name = "gmpy2"

    def __init__(self, **options: object):
        super().__init__(**options)
        self._gmpy2 = importlib.import_module("gmpy2")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("gmpy2") is None:
            return "gmpy2 is not installed (pip install 'dphe-bench[gmpy2]')"
        gmpy2 = importlib.import_module("gmpy2")
        if not hasattr(gmpy2, "powmod_base_list"):
            return f"gmpy2 {gmpy2.version()} is too old: 2.2 or newer is needed for batched powmod"
        return None

    def powmod_ints(self, bases: list[int], exponent: int, modulus: int) -> list[int]:
        mpz = self._gmpy2.mpz
        results = self._gmpy2.powmod_base_list([mpz(b) for b in bases], mpz(exponent), mpz(modulus))
        return [int(r) for r in results]

    def mulmod_ints(self, a: list[int], b: list[int], modulus: int) -> list[int]:
        mpz = self._gmpy2.mpz
        m = mpz(modulus)
        return [int(mpz(x) * y % m) for x, y in zip(a, b, strict=True)]
