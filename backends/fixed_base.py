"""Fixed-base exponentiation tables: base^a for many exponents a with one table walk each (DJN obfuscation).

A table for ``base`` mod ``modulus`` with w-bit windows holds entries[i, j] = base^(j * 2^(w*i)) mod modulus
for i in 0..windows-1 and j in 0..2^w-1, so base^a = prod_i entries[i, digit_i(a)]: ``windows`` modular
multiplications and no squaring. Every window is multiplied even when its digit is 0, so the work does not
depend on the exponent; the table lookups themselves are indexed by secret digits (a cache-timing channel
on shared hardware, documented in the README).
"""

from dataclasses import dataclass

import numpy as np

from dphe_bench.crypto.limbs import ints_to_limbs, limb_width

MIN_WINDOW_BITS = 1
MAX_WINDOW_BITS = 12


@dataclass(frozen=True)
class FixedBaseTable:
    """Powers of one base modulo ``modulus`` for exponents of up to ``windows * window_bits`` bits.

    ``entries`` is uint32 limbs of shape (windows, 2**window_bits, limb_width(modulus)), in normal
    (not Montgomery) form. Backends with their own representation subclass this.
    """

    modulus: int
    window_bits: int
    entries: np.ndarray

    @property
    def windows(self) -> int:
        """Number of windows (multiplications per exponentiation)."""
        return self.entries.shape[0]

    @property
    def exponent_bits(self) -> int:
        """Largest exponent size the table covers."""
        return self.windows * self.window_bits

    @property
    def nbytes(self) -> int:
        """Memory held by the table."""
        return self.entries.nbytes


def check_window_bits(window_bits: int) -> int:
    """Validate a window size; returns it."""
    if isinstance(window_bits, bool) or not isinstance(window_bits, int):
        raise TypeError(f"window_bits must be an int, got {window_bits!r}")
    if not MIN_WINDOW_BITS <= window_bits <= MAX_WINDOW_BITS:
        raise ValueError(f"window_bits must be in [{MIN_WINDOW_BITS}, {MAX_WINDOW_BITS}], got {window_bits}")
    return window_bits


def window_count(exponent_bits: int, window_bits: int) -> int:
    """Windows needed to cover exponents of ``exponent_bits`` bits."""
    return max(1, -(-exponent_bits // window_bits))


def window_powers(base: int, modulus: int, windows: int, window_bits: int) -> list[int]:
    """base^(2^(w*i)) mod modulus for i in 0..windows-1 (the second column of the table)."""
    powers, power = [], base % modulus
    for _ in range(windows):
        powers.append(power)
        power = pow(power, 1 << window_bits, modulus)
    return powers


def window_digits(exponents: list[int], window_bits: int, windows: int) -> np.ndarray:
    """The base-2^w digits of each exponent, least significant first: int64 (count, windows).

    Raises ValueError if an exponent is negative or needs more than ``windows * window_bits`` bits.
    """
    total_bits = windows * window_bits
    if exponents and (min(exponents) < 0 or max(exponents).bit_length() > total_bits):
        raise ValueError(f"exponents must be in [0, 2**{total_bits}) for this table")
    limbs = ints_to_limbs(exponents, limb_width(1 << total_bits))
    bits = np.unpackbits(limbs.view(np.uint8), axis=1, bitorder="little")[:, :total_bits]
    weights = (1 << np.arange(window_bits, dtype=np.int64)).astype(np.int64)
    return bits.reshape(len(exponents), windows, window_bits).astype(np.int64) @ weights
