import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dphe_bench import FixedPointCodec
from dphe_bench.errors import EncodingOverflowError

N = (2**127 - 1) * (2**89 - 1)  # a fixed odd modulus; encoding needs no primality
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, max_size=30), st.integers(0, 40))
def test_round_trip_is_within_half_a_step(values, precision):
    codec = FixedPointCodec(N, precision_bits=precision)
    decoded = codec.decode(codec.encode(np.array(values)))
    assert decoded.shape == (len(values),)
    assert np.all(np.abs(decoded - np.array(values)) <= codec.resolution / 2)


@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=12))
def test_sums_of_encodings_decode_to_the_rounded_sum(rows):
    codec = FixedPointCodec(N, precision_bits=32, max_summands=len(rows))
    encoded = [codec.encode(np.array(row)) for row in rows]
    sums = [sum(col) % N for col in zip(*encoded, strict=True)]
    expected = np.sum(np.array(rows), axis=0)
    assert np.all(np.abs(codec.decode(sums) - expected) <= len(rows) * codec.resolution / 2 + 1e-9 * np.abs(expected))


def test_negative_values_encode_as_n_minus_magnitude():
    codec = FixedPointCodec(N, precision_bits=4)
    assert codec.encode(np.array([-1.0, 0.0, 1.0, -0.0])) == [N - 16, 0, 16, 0]


def test_encoding_matches_exact_rational_rounding():
    codec = FixedPointCodec(N, precision_bits=10)
    values = np.array([0.1, -2.5e-4, 123.456])
    expected = [round(v * 1024) % N for v in values.tolist()]
    assert codec.encode(values) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(bad):
    codec = FixedPointCodec(N)
    with pytest.raises(EncodingOverflowError, match="index 1 is not finite"):
        codec.encode(np.array([0.0, bad]))


def test_values_beyond_the_bound_for_the_number_of_summands_are_refused():
    codec = FixedPointCodec(2**61 + 1, precision_bits=0, max_summands=4)
    limit = codec.max_encoded
    assert limit == ((2**61 + 1) // 3 - 1) // 4
    codec.encode(np.array([float(limit - 1024)]))
    with pytest.raises(EncodingOverflowError, match="exceeds the encodable range"):
        codec.encode(np.array([float(limit) * 2]))


def test_encoded_values_stay_within_int64_even_for_huge_moduli():
    codec = FixedPointCodec(N, precision_bits=32)
    assert codec.max_encoded <= 2**62
    with pytest.raises(EncodingOverflowError):
        codec.encode(np.array([2.0**40]))


def test_decoding_refuses_what_the_declared_summands_cannot_produce():
    codec = FixedPointCodec(N, precision_bits=0, max_summands=3)
    bound = codec.max_encoded
    assert codec.decode([bound, N - bound], summands=1).tolist() == [float(bound), -float(bound)]
    with pytest.raises(EncodingOverflowError, match="index 1 is outside the range 1 summand"):
        codec.decode([0, bound + 1], summands=1)
    assert codec.decode([3 * bound, N - 3 * bound]).tolist() == [3.0 * bound, -3.0 * bound]
    with pytest.raises(EncodingOverflowError, match="index 1 is outside the range 3 summand"):
        codec.decode([0, N - 3 * bound - 1])
    with pytest.raises(EncodingOverflowError, match="outside"):
        codec.decode([N])
    with pytest.raises(EncodingOverflowError, match=r"summands must be in \[1, 3\] \(max_summands\), got 4"):
        codec.decode([0], summands=4)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"precision_bits": 53}, "precision_bits"), ({"max_summands": 0}, "max_summands")]
)
def test_bad_codec_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FixedPointCodec(N, **kwargs)


def test_too_small_modulus_is_refused():
    with pytest.raises(ValueError, match="too small"):
        FixedPointCodec(15, max_summands=10)
