import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dphe_bench.crypto.limbs import ints_to_limbs, limb_width, limbs_to_ints


@given(st.lists(st.integers(min_value=0, max_value=2**4096 - 1), max_size=20))
def test_ints_round_trip_through_limbs(values):
    limbs = ints_to_limbs(values, 128)
    assert limbs.dtype == np.uint32
    assert limbs.shape == (len(values), 128)
    assert limbs_to_ints(limbs) == values


def test_limbs_are_little_endian_32_bit_words():
    limbs = ints_to_limbs([0x0123456789ABCDEF], 3)
    assert limbs.tolist() == [[0x89ABCDEF, 0x01234567, 0]]


@pytest.mark.parametrize(("modulus", "width"), [(2, 1), (2**32, 1), (2**32 + 1, 2), (2**4096, 128), (2**4096 + 1, 129)])
def test_limb_width_holds_every_value_below_the_modulus(modulus, width):
    assert limb_width(modulus) == width


@pytest.mark.parametrize("value", [-1, 2**64])
def test_values_that_do_not_fit_are_refused(value):
    with pytest.raises(ValueError, match="does not fit"):
        ints_to_limbs([1, value], 2)


def test_limbs_to_ints_wants_a_2d_array():
    with pytest.raises(ValueError, match="2-D"):
        limbs_to_ints(np.zeros(4, dtype=np.uint32))
