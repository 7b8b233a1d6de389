"""The ``ckks`` scheme: round trips within the error bound, public contexts only, hostile bytes, and no TenSEAL."""

import builtins
import copy
import dataclasses
import pickle
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dphe_bench import get_backend, simulate_round
from dphe_bench.bench.sweep import Component, SweepError, SweepGrid, machine_info, run_cell
from dphe_bench.errors import (
    BackendUnavailableError,
    EncodingOverflowError,
    KeyMismatchError,
    MessageFormatError,
    ProtocolError,
)
from dphe_bench.learning.config import load_config
from dphe_bench.learning.pipeline import run_pipeline
from dphe_bench.schemes import SCHEMES, get_scheme
from dphe_bench.schemes import ckks as ckks_scheme
from dphe_bench.schemes.federation import Federation
from dphe_bench.schemes.messages import (
    MAX_CKKS_CONTEXT_BYTES,
    Message,
    MessageKind,
    decode_message,
    encode_message,
)

ts = pytest.importorskip("tenseal", reason="the ckks extra is not installed (pip install 'dphe-bench[ckks]')")

SCHEME = get_scheme("ckks")
D = 5000  # two CKKS vectors: 4,096 values and 904


def _context(bits=(60, 40, 40, 60), degree=8192):
    context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=degree, coeff_mod_bit_sizes=list(bits))
    context.global_scale = 2.0**40
    return context


class Round:
    """A 3-user ckks federation (D = 5,000) with one valid update per user."""

    def __init__(self, dimension: int = D):
        self.backend = get_backend("gmpy2")
        self.key_generator = SCHEME.key_generator(dimension, [0, 1, 2], self.backend)
        self.setup = self.key_generator.setup()
        self.users = {uid: SCHEME.user(self.setup.to_users[uid], self.backend) for uid in (0, 1, 2)}
        rng = np.random.default_rng(7)
        self.weights = {uid: rng.laplace(0, 0.05, dimension) * (rng.random(dimension) < 0.3) for uid in (0, 1, 2)}
        self.updates = {uid: self.users[uid].submit(self.weights[uid], 0) for uid in (0, 1, 2)}

    def aggregator(self):
        return SCHEME.aggregator(self.setup.to_aggregator, self.backend)

    def update_with(self, uid: int, **fields) -> bytes:
        """User ``uid``'s round-0 update with some fields replaced."""
        message = decode_message(
            self.updates[uid],
            MessageKind.UPDATE,
            "ckks",
            (*SCHEME.aggregator.update_fields, "user_id", "round", "dimension"),
        )
        return encode_message(Message(MessageKind.UPDATE, "ckks", {**message.fields, **fields}))


@pytest.fixture(scope="module")
def federation_round():
    return Round()


def test_a_round_publishes_the_mean_within_the_bound_rounded_to_2_to_the_minus_20(federation_round):
    r = federation_round
    aggregator = r.aggregator()
    for uid in (2, 0, 1):
        aggregator.receive(r.updates[uid])
    mean = r.key_generator.publish(aggregator.finish())
    stacked = np.stack([r.weights[u] for u in (0, 1, 2)])
    error = np.max(np.abs(mean - stacked.mean(axis=0)))
    assert 0 < error <= ckks_scheme.error_bound(float(np.max(np.abs(stacked))), 3)
    scaled = mean * 2.0**ckks_scheme.PUBLISH_PRECISION_BITS
    assert np.array_equal(scaled, np.round(scaled))
    assert r.users[0].last_ciphertext_count == 2


@settings(max_examples=8, deadline=None)
@given(
    users=st.integers(1, 4),
    dimension=st.sampled_from([1, 4095, 4096, 4097]),
    scale=st.sampled_from([1e-6, 1.0, 1000.0, 2.0**20]),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trips_of_any_shape_and_magnitude_stay_within_the_bound(users, dimension, scale, seed):
    rng = np.random.default_rng(seed)
    weights = [np.clip(rng.normal(0, scale, dimension), -(2.0**20), 2.0**20) for _ in range(users)]
    result = simulate_round(weights, scheme="ckks", min_contributors=1)
    stacked = np.stack(weights)
    error = np.max(np.abs(result.mean - stacked.mean(axis=0)))
    assert error <= ckks_scheme.error_bound(float(np.max(np.abs(stacked))), users)
    assert result.ciphertexts == dict.fromkeys(range(users), -(-dimension // 4096))


def test_a_dropout_round_averages_over_the_users_that_sent():
    r = Round()
    aggregator = r.aggregator()
    aggregator.receive(r.updates[0])
    aggregator.receive(r.updates[2])
    mean = r.key_generator.publish(aggregator.finish())
    exact = (r.weights[0] + r.weights[2]) / 2
    assert np.max(np.abs(mean - exact)) <= ckks_scheme.error_bound(float(np.max(np.abs(exact))) * 2, 2)


def test_users_and_the_aggregator_receive_no_secret_key(federation_round):
    r = federation_round
    secret_context = r.key_generator._context
    secret_bytes = secret_context.serialize(save_secret_key=True)
    # The secret key as SEAL serialises it: it appears in the key generator's own full context (positive control) ...
    secret_key = _serialised_secret_key(secret_context)
    assert secret_key in secret_bytes
    for received in (*r.setup.to_users.values(), r.setup.to_aggregator):
        # ... and in no message the other parties receive.
        assert secret_key not in received
        kind = MessageKind.USER_SETUP if received in r.setup.to_users.values() else MessageKind.AGGREGATOR_SETUP
        fields = (
            ("user_id", "dimension", "max_users")
            if kind == MessageKind.USER_SETUP
            else ("dimension", "max_users", "user_ids")
        )
        context = ts.context_from(decode_message(received, kind, "ckks", (*fields, "ckks_context"))["ckks_context"])
        assert not context.has_secret_key() and context.is_public()
        assert not context.has_galois_keys() and not context.has_relin_keys()
        with pytest.raises(ValueError, match="secret_key"):
            ts.ckks_vector(context, [1.0]).decrypt()


def _serialised_secret_key(context) -> bytes:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "sk")
        context.secret_key().data.save(path)
        with open(path, "rb") as handle:
            return handle.read()


def test_a_setup_context_with_a_secret_key_is_refused(federation_round):
    r = federation_round
    secret = r.key_generator._context.serialize(save_secret_key=True, save_galois_keys=False, save_relin_keys=False)
    with pytest.raises(ProtocolError, match="holds a secret key"):
        SCHEME.user(_setup_with_context(r, secret), r.backend)


@pytest.mark.parametrize(("bits", "degree"), [((60, 40, 60), 8192), ((60, 40, 40, 40), 8192), ((40, 20, 40), 4096)])
def test_a_setup_context_of_other_parameters_is_refused(federation_round, bits, degree):
    context = _context(bits, degree)
    context.make_context_public()
    data = context.serialize(save_galois_keys=False, save_relin_keys=False)
    with pytest.raises(ProtocolError, match=r"expected .*CKKS"):
        SCHEME.user(_setup_with_context(federation_round, data), federation_round.backend)


def test_unparsable_or_oversized_contexts_are_refused(federation_round):
    r = federation_round
    with pytest.raises(ProtocolError, match="cannot parse"):
        SCHEME.aggregator(_setup_with_context(r, b"\x00" * 100, aggregator=True), r.backend)
    with pytest.raises(MessageFormatError, match="ckks_context"):
        SCHEME.user(_setup_with_context(r, b"\x00" * (MAX_CKKS_CONTEXT_BYTES + 1)), r.backend)


def _setup_with_context(r: Round, context_bytes: bytes, aggregator: bool = False) -> bytes:
    if aggregator:
        fields = {"dimension": D, "max_users": 3, "user_ids": np.array([0, 1, 2], dtype=np.uint32)}
        kind = MessageKind.AGGREGATOR_SETUP
    else:
        fields = {"user_id": 0, "dimension": D, "max_users": 3}
        kind = MessageKind.USER_SETUP
    message = Message(kind, "ckks", {**fields, "ckks_context": context_bytes})
    if len(context_bytes) <= MAX_CKKS_CONTEXT_BYTES:
        return encode_message(message)
    return _encode_oversized(message)


def _encode_oversized(message: Message) -> bytes:
    """A message encoded without the encoder's size check (a hostile sender's)."""
    import struct

    from dphe_bench.schemes.messages import FIELDS, FORMAT_VERSION, SCHEME_CODES

    parts = []
    for name, value in message.fields.items():
        tag, field_type = FIELDS[name]
        if isinstance(value, np.ndarray):
            payload = value.astype("<u4").tobytes()
        elif isinstance(value, bytes):
            payload = value
        else:
            payload = value.to_bytes(8, "little")
        parts.append(struct.pack("<BBQ", tag, field_type, len(payload)) + payload)
    body = b"".join(parts)
    header = struct.pack(
        "<4sBBBBQ", b"DPHE", FORMAT_VERSION, message.kind, SCHEME_CODES["ckks"], len(message.fields), len(body)
    )
    return header + body


def _foreign_vectors(sizes, context=None) -> dict:
    context = context if context is not None else _context()
    blobs = [ts.ckks_vector(context, np.ones(size)).serialize() for size in sizes]
    return {"ckks_vectors": b"".join(blobs), "ckks_vector_lengths": np.array([len(b) for b in blobs], dtype=np.uint32)}


def _refused_and_unchanged(r: Round, update: bytes, error: type[Exception], match: str) -> None:
    aggregator = r.aggregator()
    aggregator.receive(r.updates[0])
    with pytest.raises(error, match=match):
        aggregator.receive(update)
    assert aggregator.contributors == [0]
    aggregator.receive(r.updates[1])
    reference = r.aggregator()
    reference.receive(r.updates[0])
    reference.receive(r.updates[1])
    assert aggregator.finish() == reference.finish()


def test_updates_under_another_context_are_a_key_mismatch(federation_round):
    r = federation_round
    _refused_and_unchanged(r, r.update_with(1, key_id=r.users[1].key_id ^ 1), KeyMismatchError, "context")


def test_vectors_of_the_wrong_length_count_or_parameters_are_protocol_errors(federation_round):
    r = federation_round
    public = r.key_generator._context.copy()
    public.make_context_public()
    cases = [
        (_foreign_vectors([4096, 903], public), "not one ciphertext of 904 values"),
        (_foreign_vectors([4096], public), "sent 1 CKKS vectors, expected 2"),
        (_foreign_vectors([4096, 904], _context((60, 40, 60))), "refused by TenSEAL"),
    ]
    lengths = decode_message(
        r.updates[1], MessageKind.UPDATE, "ckks", ("user_id", "round", "dimension", *SCHEME.aggregator.update_fields)
    )["ckks_vector_lengths"]
    cases.append(({"ckks_vector_lengths": np.array([lengths[0] - 1, lengths[1]], dtype=np.uint32)}, "add up to"))
    for fields, match in cases:
        _refused_and_unchanged(r, r.update_with(1, **fields), ProtocolError, match)


def test_vectors_tenseal_cannot_parse_are_protocol_errors(federation_round):
    r = federation_round
    fields = {"ckks_vectors": b"\x01" * 20, "ckks_vector_lengths": np.array([10, 10], dtype=np.uint32)}
    _refused_and_unchanged(r, r.update_with(1, **fields), ProtocolError, "refused by TenSEAL")


def test_a_vector_at_another_scale_or_level_is_refused(federation_round):
    r = federation_round
    public = r.key_generator._context.copy()
    public.make_context_public()
    low = ts.ckks_vector(public, np.ones(4096))
    low = low * np.ones(4096)  # a multiplication rescales: one modulus fewer, a new parms_id
    blobs = [low.serialize(), ts.ckks_vector(public, np.ones(904)).serialize()]
    fields = {
        "ckks_vectors": b"".join(blobs),
        "ckks_vector_lengths": np.array([len(b) for b in blobs], dtype=np.uint32),
    }
    _refused_and_unchanged(r, r.update_with(1, **fields), ProtocolError, "not a fresh ciphertext")


def test_weights_beyond_2_to_the_20_or_not_finite_are_refused(federation_round):
    user = federation_round.users[0]
    for bad in (2.0**20 * 1.0001, -np.inf, np.nan):
        weights = np.zeros(D)
        weights[17] = bad
        with pytest.raises(EncodingOverflowError, match="weight 17"):
            user.submit(weights, 0)


def test_a_decrypted_sum_no_honest_users_can_produce_is_refused_and_the_round_stays():
    r = Round(dimension=10)
    public = r.key_generator._context.copy()
    public.make_context_public()
    forged = ts.ckks_vector(public, np.full(10, 3 * 2.0**20 + 10))
    fields = {
        "round": 0,
        "dimension": 10,
        "contributors": 3,
        "key_id": r.key_generator.key_id,
        "ckks_vectors": forged.serialize(),
        "ckks_vector_lengths": np.array([len(forged.serialize())], dtype=np.uint32),
    }
    with pytest.raises(EncodingOverflowError, match=r"index 0 .* outside what 3 users"):
        r.key_generator.publish(encode_message(Message(MessageKind.AGGREGATE, "ckks", fields)))
    assert r.key_generator.next_round == 0


def test_federation_and_pipeline_paths_run_ckks_with_pool_obfuscation_backends():
    federation = Federation("ckks", 50, 2, get_backend("gmpy2", obfuscation="pool"))
    rng = np.random.default_rng(3)
    weights = {0: rng.normal(size=50), 1: rng.normal(size=50)}
    result = federation.run_round(weights)
    assert np.max(np.abs(result.mean - (weights[0] + weights[1]) / 2)) <= ckks_scheme.error_bound(4.0, 2)
    assert result.timings["precompute"] == 0.0


def test_ckks_takes_no_options():
    with pytest.raises(ValueError, match="takes no option"):
        Federation("ckks", 10, 2, "gmpy2", precision_bits=20)


def test_without_tenseal_the_scheme_is_registered_and_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_tenseal(name, *args, **kwargs):
        if name == "tenseal" or name.startswith("tenseal."):
            raise ImportError("No module named 'tenseal'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tenseal)
    for module in [m for m in sys.modules if m == "tenseal" or m.startswith("tenseal.")]:
        monkeypatch.delitem(sys.modules, module)
    assert "ckks" in SCHEMES
    assert "dphe-bench[ckks]" in SCHEMES["ckks"].unavailable_reason()
    with pytest.raises(BackendUnavailableError, match=r"pip install 'dphe-bench\[ckks\]'"):
        simulate_round([np.zeros(3), np.zeros(3)], scheme="ckks")


def test_the_sweep_runs_ckks_once_per_point_whatever_the_backends_and_key_sizes():
    grid = SweepGrid(
        dimension=300,
        users=(2, 3),
        sparsities=(0.5, 0.9),
        key_bits=(1024, 2048),
        schemes=(Component("ckks"), Component("dense")),
        backends=(Component("gmpy2"), Component("python")),
    )
    cells = [c for c in grid.cells() if c.scheme.name == "ckks"]
    assert sorted((c.users, c.sparsity, c.key_bits, c.backend.name) for c in cells) == [
        (users, sparsity, 0, "none") for users in (2, 3) for sparsity in (0.5, 0.9)
    ]
    row = run_cell(cells[0], get_backend("gmpy2"), machine_info())
    assert 0 < row["max_abs_error"] <= row["error_bound"] < 2e-6
    assert row["ciphertexts_per_user"] == 1 and row["bytes_per_user"] > 100_000


def test_a_sweep_naming_ckks_where_it_cannot_run_says_how_to_install(monkeypatch):
    missing = dataclasses.replace(SCHEMES["ckks"], unavailable_reason=lambda: "TenSEAL is not installed: pip install x")
    monkeypatch.setitem(SCHEMES, "ckks", missing)
    assert "ckks" not in {c.name for c in SweepGrid().schemes}
    with pytest.raises(SweepError, match="scheme 'ckks' cannot run here: TenSEAL is not installed"):
        SweepGrid(dimension=10, schemes=(Component("ckks"),), baseline=False).cells()


@pytest.mark.slow
def test_a_ckks_run_records_each_round_s_error_next_to_its_bound():
    config = load_config(None, ["federation.users=3", "federation.rounds=2", "crypto.scheme=ckks"])
    result = run_pipeline(config, backend="gmpy2", progress=False)
    rounds = result.outcomes["ckks"].rounds
    assert len(rounds) == 2
    assert all(0 < r["max_abs_error"] <= r["error_bound"] for r in rounds)
    assert result.max_abs_diff_vs_plain < 1e-4


def test_a_pickled_or_copied_key_generator_still_decrypts():
    """asv pickles its cache and deep-copies key generators: the secret context survives both."""
    r = Round(dimension=10)
    aggregator = r.aggregator()
    for uid in (0, 1, 2):
        aggregator.receive(r.updates[uid])
    aggregate = aggregator.finish()
    exact = np.mean([r.weights[u] for u in (0, 1, 2)], axis=0)
    for twin in (pickle.loads(pickle.dumps(r.key_generator)), copy.deepcopy(r.key_generator)):
        assert np.max(np.abs(twin.publish(aggregate) - exact)) <= ckks_scheme.error_bound(1.0, 3)
