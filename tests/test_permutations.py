import numpy as np
import pytest

from dphe_bench.crypto.permutations import check_permutation, invert_permutation, random_permutation
from dphe_bench.errors import PermutationError


@pytest.mark.parametrize("size", [1, 2, 17, 10_000])
def test_random_permutation_is_a_uint32_bijection(size):
    perm = random_permutation(size)
    assert perm.dtype == np.uint32 and perm.shape == (size,)
    assert np.array_equal(np.sort(perm), np.arange(size))


def test_random_permutations_differ_between_draws():
    assert not np.array_equal(random_permutation(1000), random_permutation(1000))


def test_random_permutation_is_not_seeded_by_numpy():
    np.random.seed(0)
    first = random_permutation(500)
    np.random.seed(0)
    assert not np.array_equal(first, random_permutation(500))


def test_every_position_is_reachable():
    hits = np.zeros((4, 4), dtype=int)
    for _ in range(400):
        perm = random_permutation(4)
        hits[np.arange(4), perm] += 1
    assert np.all(hits > 0)


def test_inverse_undoes_the_permutation():
    perm = random_permutation(100)
    inverse = invert_permutation(perm)
    values = np.arange(100) * 3
    assert np.array_equal(inverse[perm], np.arange(100))
    assert np.array_equal(values[perm][inverse], values)


@pytest.mark.parametrize(
    ("perm", "message"),
    [
        (np.array([0, 1]), "shape"),
        (np.array([0, 1, 1]), "bijection"),
        (np.array([0, 1, 3]), "outside"),
        (np.array([0, -1, 2]), "outside"),
        (np.array([0.0, 1.0, 2.0]), "integers"),
        (np.array([[0, 1, 2]]), "shape"),
    ],
)
def test_non_permutations_are_refused(perm, message):
    with pytest.raises(PermutationError, match=message):
        check_permutation(perm, 3)


@pytest.mark.parametrize("size", [0, 2**32])
def test_impossible_sizes_are_refused(size):
    with pytest.raises(ValueError, match="size"):
        random_permutation(size)
