"""Fixed-width little-endian uint32 limb arrays: the batch format between backends and on the wire.

A batch of ``count`` big integers of ``width`` limbs is a C-contiguous ``numpy.uint32`` array of shape
(count, width); row i holds integer i, least significant limb first. Its ``tobytes()`` (on a
little-endian machine, or after ``astype('<u4')``) is each integer as ``4 * width`` little-endian bytes.
"""

import operator
from collections.abc import Iterable

import numpy as np

LIMB_BITS = 32
LIMB_BYTES = 4


def limb_width(modulus: int) -> int:
    """Number of 32-bit limbs that hold every integer in [0, modulus)."""
    return max(1, ((modulus - 1).bit_length() + LIMB_BITS - 1) // LIMB_BITS)


def exact_ints(values: Iterable[object], what: str = "value") -> list[int]:
    """``values`` as Python ints, taken exactly: ints and numpy integers of every dtype (uint64 too).

    A numpy integer array converts in one step. Raises TypeError naming the index and the type of the first
    value that is not an integer: floats (even 1.0), bools, strings, arrays, None.
    """
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iu":
        return values.tolist()
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{what}s must be a sequence of integers, got {type(values).__name__}")
    converted = []
    for i, value in enumerate(values):
        if isinstance(value, bool | np.bool_):
            raise TypeError(f"{what} {i} is a bool ({value}), not an integer")
        try:
            converted.append(operator.index(value))
        except TypeError:
            raise TypeError(f"{what} {i} is a {type(value).__name__} ({value!r:.40}), not an integer") from None
    return converted


def ints_to_limbs(values: Iterable[int], width: int) -> np.ndarray:
    """Pack non-negative integers into a (len(values), width) uint32 limb array.

    Raises TypeError for a value that is not an integer (see ``exact_ints``) and ValueError if a value is
    negative or needs more than ``width`` limbs.
    """
    values = exact_ints(values)
    nbytes = width * LIMB_BYTES
    try:
        packed = b"".join(v.to_bytes(nbytes, "little") for v in values)
    except OverflowError:
        bad = next(i for i, v in enumerate(values) if v < 0 or v.bit_length() > width * LIMB_BITS)
        raise ValueError(f"value {bad} ({values[bad]}) does not fit in {width} unsigned 32-bit limbs") from None
    return np.frombuffer(packed, dtype="<u4").astype(np.uint32, copy=True).reshape(len(values), width)


def limbs_to_ints(limbs: np.ndarray) -> list[int]:
    """Unpack a (count, width) uint32 limb array into a list of Python ints."""
    limbs = np.ascontiguousarray(limbs, dtype="<u4")
    if limbs.ndim != 2:
        raise ValueError(f"limb array must be 2-D (count, width), got shape {limbs.shape}")
    row_bytes = limbs.shape[1] * LIMB_BYTES
    data = limbs.tobytes()
    return [int.from_bytes(data[i : i + row_bytes], "little") for i in range(0, len(data), row_bytes)]
