"""The packed scheme: slot layout, vectorised packing, refusals, and equality with plain up to quantisation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dphe_bench import Federation, simulate_round
from dphe_bench.crypto.packing import PackingLayout, quantization_step
from dphe_bench.errors import EncodingOverflowError, ProtocolError
from dphe_bench.learning.config import load_config
from dphe_bench.learning.pipeline import run_pipeline

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")


@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("max_users", [1, 2, 3, 5, 100])
@pytest.mark.parametrize("modulus_bits", [1024, 2048, 4096])
def test_layout_uses_every_whole_slot_that_fits_below_n(bits, max_users, modulus_bits):
    layout = PackingLayout(bits, 1.0, max_users, modulus_bits)
    assert layout.slot_bits == bits + math.ceil(math.log2(max_users + 1))
    assert max_users * (2**bits - 1) < 2**layout.slot_bits
    assert layout.slots * layout.slot_bits <= modulus_bits - 1 < (layout.slots + 1) * layout.slot_bits


def test_a_2048_bit_key_holds_107_slots_of_16_bit_values_for_5_users():
    layout = PackingLayout(16, 8.0, 5, 2048)
    assert (layout.slot_bits, layout.slots) == (19, 107)
    assert layout.ciphertexts_for(200_000) == 1870
    assert layout.step == quantization_step(16, 8.0) == pytest.approx(8.0 / 32767)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_sums_of_packed_plaintexts_unpack_to_the_sum_of_quantised_values(data):
    bits = data.draw(st.sampled_from([2, 8, 16, 32]))
    max_users = data.draw(st.integers(1, 9))
    layout = PackingLayout(bits, 3.0, max_users, 1024)
    contributors = data.draw(st.integers(1, max_users))
    dimension = data.draw(st.integers(1, 3 * layout.slots))
    value = st.one_of(st.floats(-3.0, 3.0), st.sampled_from([-3.0, 3.0, 0.0, -0.0, layout.step / 2]))
    rows = [np.array(data.draw(st.lists(value, min_size=dimension, max_size=dimension))) for _ in range(contributors)]
    n = 2**1024 + 643  # any modulus above the plaintexts: packing needs no key
    packed = [layout.pack(layout.quantize(row)) for row in rows]
    assert all(len(p) == layout.ciphertexts_for(dimension) and max(p) < 2**1023 for p in packed)
    sums = [sum(column) % n for column in zip(*packed, strict=True)]
    total = layout.unpack_sums(sums, dimension, contributors)
    exact_levels = sum(np.rint(row / layout.step) for row in rows)
    assert np.array_equal(total, exact_levels * layout.step)
    assert np.all(np.abs(total - np.sum(rows, axis=0)) <= contributors * layout.step / 2 + 1e-12)


def test_stored_values_are_offset_into_the_positive_range():
    layout = PackingLayout(8, 1.0, 1, 1024)
    stored = layout.quantize(np.array([-1.0, 0.0, 1.0]))
    assert stored.tolist() == [1, 128, 255]


@pytest.mark.parametrize("bad", [8.001, -9.0, 1e300])
def test_values_beyond_the_range_are_refused_not_clipped(bad):
    layout = PackingLayout(16, 8.0, 3, 1024)
    with pytest.raises(EncodingOverflowError, match="outside the packed range"):
        layout.quantize(np.array([0.0, bad]))


def test_non_finite_values_are_refused():
    with pytest.raises(EncodingOverflowError, match="not finite"):
        PackingLayout(16, 8.0, 3, 1024).quantize(np.array([np.nan]))


def test_more_contributors_than_n_max_are_refused():
    layout = PackingLayout(16, 1.0, 3, 1024)
    plaintexts = layout.pack(layout.quantize(np.zeros(10)))
    with pytest.raises(ProtocolError, match="N_max = 3"):
        layout.unpack_sums(plaintexts, 10, 4)


def test_slot_overflow_and_stray_high_bits_are_detected_on_decode():
    layout = PackingLayout(8, 1.0, 2, 1024)
    honest = layout.pack(layout.quantize(np.zeros(3)))
    overflowing = [honest[0] + (2**layout.slot_bits - 1 - layout.offset)]
    with pytest.raises(EncodingOverflowError, match="packed sum at index 0 is outside what 1 users can produce"):
        layout.unpack_sums(overflowing, 3, 1)
    with pytest.raises(EncodingOverflowError, match="above its last slot"):
        layout.unpack_sums([honest[0] | 1 << (layout.slots * layout.slot_bits)], 3, 1)
    with pytest.raises(ProtocolError, match="cannot hold"):
        layout.unpack_sums(honest + honest, 3, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quantization_bits": 1}, "quantization_bits"),
        ({"quantization_bits": 33}, "quantization_bits"),
        ({"quantization_range": 0.0}, "quantization_range"),
        ({"quantization_range": math.inf}, "quantization_range"),
        ({"max_users": 0}, "max_users"),
        ({"quantization_bits": 32, "max_users": 2**40}, "slots exceed"),
        ({"modulus_bits": 16, "quantization_bits": 16}, "cannot hold"),
    ],
)
def test_impossible_layouts_are_refused(kwargs, match):
    arguments = {"quantization_bits": 16, "quantization_range": 1.0, "max_users": 3, "modulus_bits": 1024, **kwargs}
    with pytest.raises(ValueError, match=match):
        PackingLayout(**arguments)


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "bits"), [("python", 16), ("gmpy2", 16), ("gmpy2", 32)])
def test_simulate_round_matches_the_mean_within_the_quantisation_bound(backend, bits):
    rng = np.random.default_rng(7)
    weights = []
    for _ in range(5):
        values = rng.normal(scale=2.0, size=10_000).clip(-7.9, 7.9)
        values[rng.random(10_000) < 0.95] = 0.0
        weights.append(values)
    result = simulate_round(weights, scheme="packed", backend=backend, key_bits=1024, quantization_bits=bits)
    step = quantization_step(bits, 8.0)
    assert np.max(np.abs(result.mean - np.mean(weights, axis=0))) <= step / 2
    slots = PackingLayout(bits, 8.0, 5, 1024).slots
    assert result.ciphertexts == dict.fromkeys(range(5), -(-10_000 // slots))


def test_extremes_and_negatives_round_trip_for_every_number_of_users_up_to_n_max():
    n_max = 4
    # Rounds of 1 to n_max users: one user's round needs min_contributors=1, set on purpose.
    federation = Federation(
        "packed", 5, n_max, "gmpy2", key_bits=1024, min_contributors=1, quantization_bits=16, quantization_range=2.0
    )
    step = quantization_step(16, 2.0)
    extremes = np.array([-2.0, 2.0, 0.0, -step, 1.5])
    for users in range(1, n_max + 1):
        result = federation.run_round({uid: extremes * (-1) ** uid for uid in range(users)})
        expected = np.mean([extremes * (-1) ** uid for uid in range(users)], axis=0)
        assert np.max(np.abs(result.mean - expected)) <= step / 2


def test_a_user_beyond_n_max_cannot_submit():
    federation = Federation("packed", 3, 2, "python", key_bits=1024)
    with pytest.raises(ProtocolError, match="unknown user"):
        federation.run_round({0: np.zeros(3), 1: np.zeros(3), 2: np.zeros(3)})


def test_unknown_scheme_options_are_refused():
    with pytest.raises(ValueError, match=r"takes no option\(s\) precision_bits; its options: quantization_bits"):
        Federation("packed", 3, 2, "python", key_bits=1024, precision_bits=20)
    with pytest.raises(ValueError, match="quantization_bits"):
        Federation("dphe", 3, 2, "python", key_bits=1024, quantization_bits=8)


def test_pipeline_packed_equals_plain_up_to_quantisation_after_one_round():
    overrides = ["crypto.scheme=packed", "crypto.key_bits=1024", "federation.users=3", "federation.rounds=1"]
    result = run_pipeline(load_config(None, overrides), backend="gmpy2", progress=False)
    step = quantization_step(16, 8.0)
    assert result.max_abs_diff_vs_plain <= step / 2
    assert result.outcomes["packed"].accuracy == pytest.approx(result.outcomes["plain"].accuracy, abs=2 / 450)
    per_user = PackingLayout(16, 8.0, 3, 1024).ciphertexts_for(result.dimension)
    assert result.outcomes["packed"].ciphertexts_per_round == [3 * per_user]
