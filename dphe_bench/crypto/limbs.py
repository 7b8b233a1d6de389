"""Fixed-width little-endian uint32 limb arrays: the batch format between backends and on the wire.

A batch of ``count`` big integers of ``width`` limbs is a C-contiguous ``numpy.uint32`` array of shape
(count, width); row i holds integer i, least significant limb first. Its ``tobytes()`` (on a
little-endian machine, or after ``astype('<u4')``) is each integer as ``4 * width`` little-endian bytes.
"""

from collections.abc import Sequence

import numpy as np

LIMB_BITS = 32
LIMB_BYTES = 4


def limb_width(modulus: int) -> int:
    """Number of 32-bit limbs that hold every integer in [0, modulus)."""
    return max(1, ((modulus - 1).bit_length() + LIMB_BITS - 1) // LIMB_BITS)


def ints_to_limbs(values: Sequence[int], width: int) -> np.ndarray:
    """Pack non-negative ints into a (len(values), width) uint32 limb array.

    Raises ValueError if a value is negative or needs more than ``width`` limbs.
    """
    nbytes = width * LIMB_BYTES
    try:
        packed = b"".join(int(v).to_bytes(nbytes, "little") for v in values)
    except OverflowError:
        bad = next(v for v in values if v < 0 or int(v).bit_length() > width * LIMB_BITS)
        raise ValueError(f"value {bad} does not fit in {width} unsigned 32-bit limbs") from None
    return np.frombuffer(packed, dtype="<u4").astype(np.uint32, copy=True).reshape(len(values), width)


def limbs_to_ints(limbs: np.ndarray) -> list[int]:
    """Unpack a (count, width) uint32 limb array into a list of Python ints."""
    limbs = np.ascontiguousarray(limbs, dtype="<u4")
    if limbs.ndim != 2:
        raise ValueError(f"limb array must be 2-D (count, width), got shape {limbs.shape}")
    row_bytes = limbs.shape[1] * LIMB_BYTES
    data = limbs.tobytes()
    return [int.from_bytes(data[i : i + row_bytes], "little") for i in range(0, len(data), row_bytes)]
