"""The ``python`` backend: built-in ``pow`` on Python ints. Always available; the slowest."""

from dphe_bench.backends.base import IntegerBackend


class PythonBackend(IntegerBackend):
    """Pure Python reference backend (no dependencies)."""

    name = "python"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    def powmod_ints(self, bases: list[int], exponent: int, modulus: int) -> list[int]:
        return [pow(b, exponent, modulus) for b in bases]

    def mulmod_ints(self, a: list[int], b: list[int], modulus: int) -> list[int]:
        return [x * y % modulus for x, y in zip(a, b, strict=True)]
