"""The three parties of each scheme, run through simulate_round / Federation, and their refusals."""

import warnings

import numpy as np
import pytest

from dphe_bench import Federation, simulate_round
from dphe_bench.crypto.limbs import limb_width
from dphe_bench.crypto.packing import quantization_step
from dphe_bench.errors import (
    CiphertextError,
    EncodingOverflowError,
    KeyMismatchError,
    MessageFormatError,
    PermutationError,
    ProtocolError,
)
from dphe_bench.schemes import SCHEMES, ckks, get_scheme
from dphe_bench.schemes.messages import Message, MessageKind, decode_message, encode_message

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")
UPDATE_FIELDS = {
    "plain": ("user_id", "round", "dimension", "values"),
    "dense": ("user_id", "round", "dimension", "key_id", "ciphertexts"),
    "packed": ("user_id", "round", "dimension", "key_id", "ciphertexts"),
    "dphe": ("user_id", "round", "dimension", "key_id", "indices", "ciphertexts"),
    "ckks": ("user_id", "round", "dimension", "key_id", "ckks_vectors", "ckks_vector_lengths"),
}


# How far a scheme's decrypted mean may be from the exact one: fixed-point rounding, or packed's quantisation.
TOLERANCE = {
    "plain": 1e-12,
    "dense": 2.0**-32,
    "dphe": 2.0**-32,
    "packed": quantization_step(16, 8.0) / 2,
    "ckks": ckks.error_bound(8.0, 3),
}


def sparse_vectors(n_users: int, dimension: int, zero_fraction: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = []
    for _ in range(n_users):
        values = rng.normal(scale=2.0, size=dimension)
        values[rng.random(dimension) < zero_fraction] = 0.0
        vectors.append(values)
    return vectors


def rewrite(update: bytes, scheme: str, **changes) -> bytes:
    """Decode an UPDATE, change some fields, re-encode (a malicious or buggy user)."""
    message = decode_message(update, MessageKind.UPDATE, scheme, UPDATE_FIELDS[scheme])
    fields = {**message.fields, **changes}
    return encode_message(Message(MessageKind.UPDATE, scheme, {k: v for k, v in fields.items() if v is not None}))


# D = 10,000 with 95 % zeros for 5 users; dense costs D ciphertexts per user, so its runs are smaller here
# (the full size is run by benchmarks and the sweep).
CASES = [
    ("plain", "python", 10_000),
    ("plain", "gmpy2", 10_000),
    ("dphe", "python", 10_000),
    ("dphe", "gmpy2", 10_000),
    ("dense", "python", 100),
    ("dense", "gmpy2", 1_000),
]


@pytest.mark.slow
@pytest.mark.parametrize(("scheme", "backend", "dimension"), CASES)
def test_simulate_round_returns_the_mean_within_fixed_point_precision(scheme, backend, dimension):
    weights = sparse_vectors(5, dimension, 0.95)
    result = simulate_round(weights, scheme=scheme, backend=backend, key_bits=1024, seed=1)
    expected = np.mean(weights, axis=0)
    tolerance = 2.0**-32  # each value is rounded to 2**-32; the mean of 5 keeps that bound
    assert result.mean.shape == (dimension,)
    assert np.max(np.abs(result.mean - expected)) <= tolerance
    nnz = [int(np.count_nonzero(w)) for w in weights]
    expected_counts = {"plain": [0] * 5, "dense": [dimension] * 5, "dphe": nnz}[scheme]
    assert [result.ciphertexts[uid] for uid in range(5)] == expected_counts
    assert set(result.timings) == {"setup", "tables", "precompute", "encrypt", "aggregate", "decrypt"}
    assert all(seconds >= 0 for seconds in result.timings.values())
    assert result.bytes_sent["users"] > 0 and result.bytes_sent["aggregator"] > 0
    if scheme != "plain":
        ciphertext_bytes = 2 * 1024 // 8
        assert result.bytes_sent["users"] >= sum(expected_counts) * ciphertext_bytes


def test_result_does_not_depend_on_arrival_order(keypair_1024):
    weights = sparse_vectors(4, 200, 0.5, seed=3)
    first = simulate_round(weights, scheme="dphe", backend="gmpy2", key_bits=1024, seed=1)
    second = simulate_round(weights, scheme="dphe", backend="gmpy2", key_bits=1024, seed=2)
    assert np.array_equal(first.mean, second.mean)
    assert first.contributors != second.contributors or len(weights) < 2


def test_dphe_sends_only_nonzeros_and_dense_sends_everything():
    weights = [np.array([0.0, 1.0, 0.0, -2.0]), np.zeros(4), np.array([3.0, 0.0, 0.0, 0.0])]
    dphe = simulate_round(weights, scheme="dphe", backend="python", key_bits=1024)
    dense = simulate_round(weights, scheme="dense", backend="python", key_bits=1024)
    assert dphe.ciphertexts == {0: 2, 1: 0, 2: 1}
    assert dense.ciphertexts == {0: 4, 1: 4, 2: 4}
    assert np.allclose(dphe.mean, [1.0, 1 / 3, 0.0, -2 / 3], atol=1e-9)
    assert np.allclose(dense.mean, dphe.mean, atol=1e-9)


def test_weights_that_round_to_zero_are_not_sent():
    weights = [np.array([1e-12, 0.5]), np.array([0.0, 0.25])]
    assert simulate_round(weights, scheme="dphe", backend="python", key_bits=1024).ciphertexts == {0: 1, 1: 1}


def test_rounds_reuse_the_setup_and_track_round_numbers():
    federation = Federation("dphe", 6, 2, "python", key_bits=1024)
    first = federation.run_round({0: np.ones(6), 1: -np.ones(6)})
    second = federation.run_round({0: np.full(6, 2.0), 1: np.zeros(6)})
    assert np.allclose(first.mean, 0.0) and np.allclose(second.mean, 1.0)
    assert first.timings["setup"] > 0 and second.timings["setup"] == 0
    assert first.bytes_sent["key_generator"] > 0 and second.bytes_sent["key_generator"] == 0


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_a_user_that_drops_out_is_left_out_of_the_average(scheme):
    # The second round has one contributor: allowed only when min_contributors=1 is set on purpose.
    federation = Federation(scheme, 3, 3, "python", key_bits=1024, min_contributors=1)
    result = federation.run_round({0: np.array([1.0, 2.0, 0.0]), 2: np.array([3.0, 0.0, 0.0])})
    assert result.contributors == [0, 2]
    assert np.allclose(result.mean, [2.0, 1.0, 0.0], rtol=0, atol=TOLERANCE[scheme])
    after = federation.run_round({1: np.array([5.0, 0.0, 1.0])})
    assert np.allclose(after.mean, [5.0, 0.0, 1.0], rtol=0, atol=TOLERANCE[scheme])


def test_leakage_is_documented_for_every_scheme():
    for scheme in SCHEMES.values():
        assert scheme.leakage
        module_doc = __import__(scheme.key_generator.__module__, fromlist=["_"]).__doc__
        assert "Leakage" in module_doc


def test_unknown_scheme_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid schemes: plain, dense, dphe, packed"):
        get_scheme("packed-ish")


class TestWhatTheAggregatorNeverSees:
    def test_setup_message_to_the_aggregator_holds_no_private_key_and_no_shared_permutation(self):
        federation = Federation("dphe", 300, 3, "python", key_bits=1024)
        key_generator = federation.key_generator
        setup = key_generator.setup()
        message = setup.to_aggregator
        private_key = key_generator._private_key
        for prime in (private_key.p, private_key.q):
            for order in ("big", "little"):
                assert prime.to_bytes(64, order) not in message
        assert key_generator._shared_permutation.astype("<u4").tobytes() not in message
        for uid in range(3):
            assert key_generator._user_permutations[uid].astype("<u4").tobytes() in message
            assert key_generator._shared_permutation.astype("<u4").tobytes() in setup.to_users[uid]

    def test_aggregator_object_holds_neither_private_key_nor_p(self):
        federation = Federation("dphe", 50, 2, "python", key_bits=1024)
        kept = vars(federation.aggregator)
        private_key = federation.key_generator._private_key
        shared = federation.key_generator._shared_permutation
        for value in kept.values():
            assert value is not private_key
            assert not (isinstance(value, np.ndarray) and value.shape == shared.shape and np.array_equal(value, shared))

    def test_indices_are_sent_in_permuted_order(self):
        federation = Federation("dphe", 1000, 1, "gmpy2", key_bits=1024, min_contributors=1)
        update = federation.users[0].submit(np.arange(1000, dtype=float) % 7, 0)
        indices = decode_message(update, MessageKind.UPDATE, "dphe", UPDATE_FIELDS["dphe"])["indices"]
        assert np.all(np.diff(indices.astype(np.int64)) > 0)


class TestAggregatorRefusals:
    """Each refusal leaves the aggregator as it was: the round still completes correctly afterwards."""

    @staticmethod
    def federation_and_updates(scheme: str, dimension: int = 4):
        federation = Federation(scheme, dimension, 2, "python", key_bits=1024)
        weights = {0: np.array([1.0, 0.0, 2.0, 0.0])[:dimension], 1: np.array([0.0, 3.0, 2.0, 0.0])[:dimension]}
        updates = {uid: federation.users[uid].submit(w, 0) for uid, w in weights.items()}
        return federation, updates

    @staticmethod
    def finish_correctly(federation, updates):
        for update in updates.values():
            federation.aggregator.receive(update)
        mean = federation.key_generator.publish(federation.aggregator.finish())
        assert np.allclose(mean, [0.5, 1.5, 2.0, 0.0], rtol=0, atol=TOLERANCE[federation.scheme.name])

    @pytest.mark.parametrize("scheme", list(SCHEMES))
    def test_replayed_update_is_refused(self, scheme):
        federation, updates = self.federation_and_updates(scheme)
        federation.aggregator.receive(updates[0])
        with pytest.raises(ProtocolError, match="already submitted"):
            federation.aggregator.receive(updates[0])
        federation.aggregator.receive(updates[1])
        federation.key_generator.publish(federation.aggregator.finish())

    @pytest.mark.parametrize("scheme", list(SCHEMES))
    @pytest.mark.parametrize(
        ("changes", "error", "match"),
        [
            ({"user_id": 9}, ProtocolError, "unknown user"),
            ({"round": 1}, ProtocolError, "round 1"),
            ({"dimension": 5}, ProtocolError, "dimension 5"),
        ],
    )
    def test_bad_header_fields_are_refused(self, scheme, changes, error, match):
        federation, updates = self.federation_and_updates(scheme)
        with pytest.raises(error, match=match):
            federation.aggregator.receive(rewrite(updates[0], scheme, **changes))
        self.finish_correctly(federation, updates)

    @pytest.mark.parametrize("scheme", ["dense", "dphe", "packed"])
    def test_update_under_another_key_is_refused(self, scheme):
        federation, updates = self.federation_and_updates(scheme)
        other = Federation(scheme, 4, 2, "python", key_bits=1024)
        foreign = other.users[0].submit(np.array([1.0, 0.0, 2.0, 0.0]), 0)
        with pytest.raises(KeyMismatchError):
            federation.aggregator.receive(foreign)
        self.finish_correctly(federation, updates)

    @pytest.mark.parametrize("scheme", ["dense", "dphe", "packed"])
    def test_invalid_ciphertexts_are_refused(self, scheme):
        federation, updates = self.federation_and_updates(scheme)
        message = decode_message(updates[0], MessageKind.UPDATE, scheme, UPDATE_FIELDS[scheme])
        width = 4 * limb_width(federation.aggregator.public_key.nsquare)
        zero = bytes(width) + message["ciphertexts"][width:]
        with pytest.raises(CiphertextError, match="outside"):
            federation.aggregator.receive(rewrite(updates[0], scheme, ciphertexts=zero))
        with pytest.raises(CiphertextError, match="whole number"):
            federation.aggregator.receive(rewrite(updates[0], scheme, ciphertexts=message["ciphertexts"][:-3]))
        self.finish_correctly(federation, updates)

    def test_dense_update_with_too_few_ciphertexts_is_refused(self):
        federation, updates = self.federation_and_updates("dense")
        message = decode_message(updates[0], MessageKind.UPDATE, "dense", UPDATE_FIELDS["dense"])
        short = message["ciphertexts"][: len(message["ciphertexts"]) // 4 * 3]
        with pytest.raises(ProtocolError, match="3 ciphertexts, expected 4"):
            federation.aggregator.receive(rewrite(updates[0], "dense", ciphertexts=short))
        self.finish_correctly(federation, updates)

    @pytest.mark.parametrize(
        ("indices", "match"),
        [
            (np.array([0, 0], dtype=np.uint32), "duplicate"),
            (np.array([0, 4], dtype=np.uint32), "outside"),
            (np.array([1], dtype=np.uint32), "1 indices for 2 ciphertexts"),
        ],
    )
    def test_bad_dphe_indices_are_refused(self, indices, match):
        federation, updates = self.federation_and_updates("dphe")
        with pytest.raises(ProtocolError, match=match):
            federation.aggregator.receive(rewrite(updates[0], "dphe", indices=indices))
        self.finish_correctly(federation, updates)

    def test_message_of_another_scheme_or_kind_is_refused(self):
        federation, updates = self.federation_and_updates("dphe")
        _, plain_updates = self.federation_and_updates("plain")
        with pytest.raises(MessageFormatError, match="scheme"):
            federation.aggregator.receive(plain_updates[0])
        with pytest.raises(MessageFormatError, match="UPDATE"):
            federation.aggregator.receive(federation.key_generator.setup().to_aggregator)
        self.finish_correctly(federation, updates)

    def test_plain_update_with_non_finite_values_is_refused(self):
        federation, updates = self.federation_and_updates("plain")
        with pytest.raises(ProtocolError, match="not finite"):
            federation.aggregator.receive(rewrite(updates[0], "plain", values=np.array([np.nan, 0, 0, 0])))
        self.finish_correctly(federation, updates)

    def test_empty_round_is_refused(self):
        federation, _ = self.federation_and_updates("dphe")
        with pytest.raises(ProtocolError, match="no user submitted"):
            federation.aggregator.finish()


class TestKeyGeneratorAndUserRefusals:
    def test_stale_or_replayed_aggregate_is_refused(self):
        federation = Federation("dphe", 3, 1, "python", key_bits=1024, min_contributors=1)
        federation.aggregator.receive(federation.users[0].submit(np.ones(3), 0))
        aggregate = federation.aggregator.finish()
        federation.key_generator.publish(aggregate)
        with pytest.raises(ProtocolError, match="round 0, expected round 1"):
            federation.key_generator.publish(aggregate)

    def test_aggregate_claiming_too_many_contributors_is_refused(self):
        federation = Federation("dense", 2, 1, "python", key_bits=1024, min_contributors=1)
        federation.aggregator.receive(federation.users[0].submit(np.ones(2), 0))
        message = decode_message(
            federation.aggregator.finish(),
            MessageKind.AGGREGATE,
            "dense",
            ("round", "dimension", "contributors", "key_id", "ciphertexts"),
        )
        forged = encode_message(Message(MessageKind.AGGREGATE, "dense", {**message.fields, "contributors": 2}))
        with pytest.raises(ProtocolError, match="2 contributors"):
            federation.key_generator.publish(forged)

    def test_weights_of_the_wrong_length_are_refused(self):
        federation = Federation("dphe", 5, 1, "python", key_bits=1024, min_contributors=1)
        with pytest.raises(ProtocolError, match=r"shape \(5,\)"):
            federation.users[0].submit(np.ones(4), 0)

    def test_weights_too_large_to_encode_are_refused(self):
        federation = Federation("dphe", 2, 1, "python", key_bits=1024, min_contributors=1)
        with pytest.raises(EncodingOverflowError):
            federation.users[0].submit(np.array([1e30, 0.0]), 0)
        with pytest.raises(EncodingOverflowError, match="not finite"):
            federation.users[0].submit(np.array([np.inf, 0.0]), 0)

    def test_user_setup_with_a_broken_permutation_is_refused(self):
        federation = Federation("dphe", 6, 1, "python", key_bits=1024, min_contributors=1)
        setup = federation.key_generator.setup().to_users[0]
        fields = (
            "user_id",
            "dimension",
            "max_users",
            "public_key_n",
            "precision_bits",
            "shared_permutation",
            "user_permutation",
        )
        message = decode_message(setup, MessageKind.USER_SETUP, "dphe", fields)
        for broken in (np.array([0, 0, 1, 2, 3, 4]), np.arange(5)):
            forged = encode_message(
                Message(MessageKind.USER_SETUP, "dphe", {**message.fields, "shared_permutation": broken})
            )
            with pytest.raises(PermutationError):
                get_scheme("dphe").user(forged, federation.backend)

    def test_simulate_round_refuses_ragged_or_empty_input(self):
        with pytest.raises(ProtocolError, match="same length"):
            simulate_round([np.ones(3), np.ones(4)], scheme="plain", backend="python")
        with pytest.raises(ProtocolError, match="at least one"):
            simulate_round([], scheme="plain", backend="python")

    def test_federation_refuses_unknown_users(self):
        federation = Federation("plain", 2, 2, "python")
        with pytest.raises(ProtocolError, match="unknown user"):
            federation.run_round({5: np.ones(2)})


def test_no_key_warning_leaks_out_of_the_default_key_size():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Federation("dense", 1, 1, "gmpy2", key_bits=2048, min_contributors=1)
