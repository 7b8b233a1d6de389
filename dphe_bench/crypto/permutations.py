"""Secret permutations of {0..D-1}: drawing them from the OS CSPRNG, checking and inverting them.

A permutation is a uint32 array ``perm`` of shape (D,); it maps index j to ``perm[j]``.
"""

import os

import numpy as np

from dphe_bench.errors import PermutationError


def random_permutation(size: int) -> np.ndarray:
    """A uniformly random permutation of 0..size-1 as a uint32 array of shape (size,).

    It is the argsort of ``size`` 64-bit keys read from os.urandom (never a seeded PRNG); keys are
    redrawn in the astronomically rare case of a tie so that every permutation is equally likely.
    """
    if not 1 <= size < 2**32:
        raise ValueError(f"permutation size must be in [1, 2**32), got {size}")
    while True:
        keys = np.frombuffer(os.urandom(8 * size), dtype="<u8")
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        if np.all(sorted_keys[1:] != sorted_keys[:-1]):
            return order.astype(np.uint32)


def check_permutation(perm: np.ndarray, size: int, what: str = "permutation") -> np.ndarray:
    """Return ``perm`` as uint32 if it is a bijection of 0..size-1, else raise PermutationError."""
    perm = np.asarray(perm)
    if perm.shape != (size,):
        raise PermutationError(f"{what} must have shape ({size},), got {perm.shape}")
    if size and not np.issubdtype(perm.dtype, np.integer):
        raise PermutationError(f"{what} must hold integers, got dtype {perm.dtype}")
    if size and (perm.min() < 0 or perm.max() >= size):
        raise PermutationError(f"{what} has entries outside [0, {size})")
    if np.unique(perm).size != size:
        raise PermutationError(f"{what} is not a bijection: it repeats entries")
    return perm.astype(np.uint32)


def invert_permutation(perm: np.ndarray) -> np.ndarray:
    """The inverse permutation: inverse[perm[j]] = j. uint32, same shape."""
    inverse = np.empty_like(perm, dtype=np.uint32)
    inverse[perm] = np.arange(perm.size, dtype=np.uint32)
    return inverse
