"""Slot packing of quantised values into Paillier plaintexts (the ``packed`` scheme, BatchCrypt-style).

A real value w is quantised to q = rint(w / step) with step = range / (2**(b-1) - 1), so |q| <= 2**(b-1) - 1,
and stored offset as q + 2**(b-1), in [1, 2**b - 1]. Each slot has b + ceil(log2(N_max + 1)) bits, so the
sum of up to N_max stored values cannot carry into the next slot; floor((n_bits - 1) / slot_bits) slots fill
one plaintext, which therefore stays below n. Packing and unpacking are vectorised with numpy bit arrays:
no Python loop per value, one per plaintext.
"""

import math
from dataclasses import dataclass

import numpy as np

from dphe_bench.crypto.limbs import LIMB_BITS, exact_ints, limb_width, limbs_to_ints
from dphe_bench.errors import EncodingOverflowError, ProtocolError

MAX_QUANTIZATION_BITS = 32
MAX_SLOT_BITS = 63


def quantization_step(quantization_bits: int, quantization_range: float) -> float:
    """range / (2**(b-1) - 1): the distance between quantisation levels (error <= step / 2 per value)."""
    return quantization_range / ((1 << (quantization_bits - 1)) - 1)


@dataclass(frozen=True)
class PackingLayout:
    """Where values go: ``slots`` slots of ``slot_bits`` bits per plaintext of a ``modulus_bits``-bit key.

    Parameters
    ----------
    quantization_bits : int
        b, bits per quantised value (2..32).
    quantization_range : float
        Largest |w| that encodes; step = range / (2**(b-1) - 1).
    max_users : int
        N_max: how many users' plaintexts may be added.
    modulus_bits : int
        Bit length of n.
    """

    quantization_bits: int
    quantization_range: float
    max_users: int
    modulus_bits: int

    def __post_init__(self):
        for name in ("quantization_bits", "max_users", "modulus_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if isinstance(self.quantization_range, bool) or not isinstance(self.quantization_range, int | float):
            raise TypeError(f"quantization_range must be a number, got {self.quantization_range!r}")
        if not 2 <= self.quantization_bits <= MAX_QUANTIZATION_BITS:
            raise ValueError(f"quantization_bits must be in [2, {MAX_QUANTIZATION_BITS}], got {self.quantization_bits}")
        if not (math.isfinite(self.quantization_range) and self.quantization_range > 0):
            raise ValueError(f"quantization_range must be a positive finite number, got {self.quantization_range}")
        if self.max_users < 1:
            raise ValueError(f"max_users must be >= 1, got {self.max_users}")
        if self.slot_bits > MAX_SLOT_BITS:
            raise ValueError(f"{self.slot_bits}-bit slots exceed {MAX_SLOT_BITS} bits: lower quantization_bits")
        if self.slots < 1:
            raise ValueError(f"a {self.modulus_bits}-bit key cannot hold one {self.slot_bits}-bit slot")

    @property
    def headroom_bits(self) -> int:
        """ceil(log2(N_max + 1)): room for the carries of N_max additions."""
        return math.ceil(math.log2(self.max_users + 1))

    @property
    def slot_bits(self) -> int:
        """Bits per slot: b + headroom."""
        return self.quantization_bits + self.headroom_bits

    @property
    def slots(self) -> int:
        """Slots per plaintext: floor((n_bits - 1) / slot_bits)."""
        return (self.modulus_bits - 1) // self.slot_bits

    @property
    def offset(self) -> int:
        """2**(b-1), added to every quantised value so that stored values are positive."""
        return 1 << (self.quantization_bits - 1)

    @property
    def step(self) -> float:
        """Quantisation step; the rounding error of one value is at most step / 2."""
        return quantization_step(self.quantization_bits, self.quantization_range)

    def ciphertexts_for(self, dimension: int) -> int:
        """Plaintexts (ciphertexts) needed for ``dimension`` values."""
        return -(-dimension // self.slots)

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """float64 (D,) -> stored values uint64 (D,) in [1, 2**b - 1]; raises if |w| rounds beyond +-range."""
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise EncodingOverflowError(f"value at index {bad} is not finite ({values[bad]})")
        levels = np.rint(values / self.step)
        too_big = np.abs(levels) > self.offset - 1
        if np.any(too_big):
            bad = int(np.flatnonzero(too_big)[0])
            raise EncodingOverflowError(
                f"value {values[bad]} at index {bad} is outside the packed range +-{self.quantization_range} "
                f"(raise crypto.quantization_range)"
            )
        return (levels.astype(np.int64) + self.offset).astype(np.uint64)

    def pack(self, stored: np.ndarray) -> list[int]:
        """Stored values uint64 (D,) -> ceil(D / slots) plaintext ints, slot k of plaintext i = value i*slots + k."""
        count = self.ciphertexts_for(stored.size)
        padded = np.full(count * self.slots, self.offset, dtype=np.uint64)
        padded[: stored.size] = stored
        bits = ((padded[:, None] >> np.arange(self.slot_bits, dtype=np.uint64)) & 1).astype(np.uint8)
        width_bits = limb_width(1 << self.modulus_bits) * LIMB_BITS
        rows = np.zeros((count, width_bits), dtype=np.uint8)
        rows[:, : self.slots * self.slot_bits] = bits.reshape(count, -1)
        limbs = np.packbits(rows, axis=1, bitorder="little").view("<u4")
        return limbs_to_ints(limbs)

    def unpack_sums(self, plaintexts: list[int], dimension: int, contributors: int) -> np.ndarray:
        """Decrypted sums of ``contributors`` users' packed plaintexts -> the sum of their real values, float64 (D,).

        Each user stores values in [1, 2**b - 1] and pads the last plaintext with the offset 2**(b-1), so a slot
        sum of c contributors lies in [c, c (2**b - 1)], and a padding slot equals c 2**(b-1) exactly.
        Raises ProtocolError if the counts do not fit the layout, and EncodingOverflowError naming the value's
        index if a plaintext has bits above its last slot or a slot holds what c users cannot produce.
        """
        for name, value in (("contributors", contributors), ("dimension", dimension)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if not 1 <= contributors <= self.max_users:
            raise ProtocolError(f"{contributors} contributors exceed the packing layout's N_max = {self.max_users}")
        if len(plaintexts) != self.ciphertexts_for(dimension):
            raise ProtocolError(f"{len(plaintexts)} packed plaintexts cannot hold {dimension} values")
        plaintexts = exact_ints(plaintexts, "packed plaintext")
        used_bits = self.slots * self.slot_bits
        for i, plaintext in enumerate(plaintexts):
            if not 0 <= plaintext < 1 << used_bits:
                raise EncodingOverflowError(f"packed plaintext {i} has bits set above its last slot")
        nbytes = -(-used_bits // 8)
        raw = np.frombuffer(b"".join(p.to_bytes(nbytes, "little") for p in plaintexts), dtype=np.uint8)
        bits = np.unpackbits(raw.reshape(len(plaintexts), nbytes), axis=1, bitorder="little")[:, :used_bits]
        weights = np.left_shift(np.uint64(1), np.arange(self.slot_bits, dtype=np.uint64))
        sums = (bits.reshape(-1, self.slot_bits).astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
        low, high = contributors, contributors * (2 * self.offset - 1)
        outside = (sums[:dimension] < np.uint64(low)) | (sums[:dimension] > np.uint64(high))
        if np.any(outside):
            bad = int(np.flatnonzero(outside)[0])
            raise EncodingOverflowError(
                f"the packed sum at index {bad} is outside what {contributors} users can produce ([{low}, {high}])"
            )
        if np.any(sums[dimension:] != np.uint64(contributors * self.offset)):
            raise EncodingOverflowError(
                f"a padding slot after index {dimension - 1} does not hold {contributors} offsets"
            )
        levels = sums[:dimension].astype(np.int64) - contributors * self.offset
        return levels.astype(np.float64) * self.step
