"""Layout and per-modulus constants of the ``ifma`` kernel family (52-bit limbs, 8 numbers per vector).

Imports no numba: the backend builds these constants before any kernel is compiled.

A batch of up to 8 residues is a *group*: a uint64 array (k + 1, 8) whose row j holds limb j (52 bits,
least significant first) of each of the 8 numbers, one per lane; row k is always zero (the Montgomery
product reads one limb past the top). R = 2^(52 k) > 4 m, so "almost Montgomery" products of inputs below
2m stay below 2m (see ``numba_ifma_kernels``). Batches are padded to whole groups with zero lanes, whose
results are computed and not returned.
"""

import numpy as np

from dphe_bench.crypto.limbs import LIMB_BITS as WORD_BITS
from dphe_bench.crypto.limbs import limb_width

LANES = 8
"""Numbers per 512-bit vector: one per 64-bit lane."""
LIMB_BITS = 52
"""Bits per limb: the operand width of vpmadd52luq / vpmadd52huq."""
MAX_LIMBS = 1000
"""Most 52-bit limbs per modulus: a Montgomery accumulator receives at most 4 k terms below 2^52 and a carry
below 4 k + 2, which stays below 2^64 for k <= 1000 (see ``numba_ifma_kernels``). The backend's own limit,
``numba_backend.MAX_MODULUS_BITS`` (k = 264), is well inside it."""


def group_count(count: int) -> int:
    """Groups of 8 lanes holding ``count`` numbers (the last one padded)."""
    return -(-count // LANES)


def to_lanes(values: list[int], rows: int) -> np.ndarray:
    """Up to 8 non-negative ints as 52-bit limbs, one per lane (missing lanes 0): uint64 (rows, 8).

    A single value is repeated in every lane (a constant such as the modulus). ValueError if a value does not
    fit in ``rows`` limbs or more than 8 values are given.
    """
    if len(values) > LANES:
        raise ValueError(f"a group holds at most {LANES} numbers, got {len(values)}")
    values = values * LANES if len(values) == 1 else values
    mask = (1 << LIMB_BITS) - 1
    array = np.zeros((rows, LANES), dtype=np.uint64)
    for lane, value in enumerate(values):
        if value < 0 or value.bit_length() > LIMB_BITS * rows:
            raise ValueError(f"value in lane {lane} does not fit in {rows} limbs of {LIMB_BITS} bits")
        array[:, lane] = [(value >> (LIMB_BITS * j)) & mask for j in range(rows)]
    return array


def from_lanes(array: np.ndarray) -> list[int]:
    """The 8 ints held by a (rows, 8) uint64 lane array (limbs may exceed 52 bits: they are summed)."""
    return [sum(int(limb) << (LIMB_BITS * j) for j, limb in enumerate(array[:, lane])) for lane in range(LANES)]


class WideModulus:
    """Per-modulus constants of the ``ifma`` kernels, computed once per modulus.

    k = ceil((bits + 2) / 52) limbs, so R = 2^(52 k) > 4 m; ``limbs``: m in every lane, (k + 1, 8);
    n0 = -m^-1 mod 2^52; ``one`` = R mod m (Montgomery 1) and ``unit`` = 1, in every lane.
    """

    def __init__(self, modulus: int):
        bits = modulus.bit_length()
        self.modulus = modulus
        self.bits = bits
        self.k = -(-(bits + 2) // LIMB_BITS)
        self.rows = self.k + 1
        self.words = limb_width(modulus)
        self.r = 1 << (LIMB_BITS * self.k)
        self.limbs = self.lanes(modulus)
        self.n0 = np.uint64(-pow(modulus, -1, 1 << LIMB_BITS) % (1 << LIMB_BITS))
        self.one = self.lanes(self.r % modulus)
        self.unit = self.lanes(1)
        self._constants: dict[tuple[str, int], np.ndarray] = {}

    def lanes(self, value: int) -> np.ndarray:
        """``value`` in every lane of a (k + 1, 8) group."""
        return to_lanes([value], self.rows)

    def load_parameters(self, width: int) -> tuple[int, int]:
        """(limbs unpacked, reduction steps) for inputs of ``width`` uint32 words (see ``numba_ifma_kernels``)."""
        unpacked = -(-(WORD_BITS * width) // LIMB_BITS)
        return unpacked, max(0, unpacked - (self.bits - 1) // LIMB_BITS)

    def shift_constant(self, shift: int) -> np.ndarray:
        """2^(52 shift) R^2 mod m: undoes ``shift`` reduction steps and enters Montgomery form in one product."""
        key = ("shift", shift)
        if key not in self._constants:
            value = pow(2, LIMB_BITS * shift, self.modulus) * self.r * self.r % self.modulus
            self._constants[key] = self.lanes(value)
        return self._constants[key]

    def r_power(self, exponent: int) -> np.ndarray:
        """R^exponent mod m in every lane."""
        key = ("r", exponent)
        if key not in self._constants:
            self._constants[key] = self.lanes(pow(self.r, exponent, self.modulus))
        return self._constants[key]
