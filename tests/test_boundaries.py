"""Every boundary refuses bad input clearly: plaintexts, decoders, message parsers, and honest overflow.

The fuzz tests run ``DPHE_FUZZ_EXAMPLES`` examples per receiving party and message kind (default 2,000, as in
CI); a long run: ``DPHE_FUZZ_EXAMPLES=100000 pytest tests/test_boundaries.py -k fuzz``.
"""

import errno
import os
import signal
import struct
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from cli_helpers import call_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dphe_bench import get_backend, simulate_round
from dphe_bench.bench.baseline import PythonPaillierBaseline
from dphe_bench.crypto.encoding import FixedPointCodec
from dphe_bench.crypto.packing import PackingLayout
from dphe_bench.errors import DpheError, EncodingOverflowError, MessageFormatError, ProtocolError
from dphe_bench.schemes import SCHEMES, get_scheme
from dphe_bench.schemes.messages import (
    FIELDS,
    FORMAT_VERSION,
    SCHEME_CODES,
    Message,
    MessageKind,
    decode_message,
    encode_message,
)

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")

FUZZ_EXAMPLES = int(os.environ.get("DPHE_FUZZ_EXAMPLES", "2000"))
INTEGER_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


# ------------------------------------------------------------------------------ 1. plaintexts are integers, exactly


@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
def test_numpy_integer_arrays_encrypt_exactly_on_every_backend(backend_name, keypair_1024, dtype):
    public_key, private_key = keypair_1024
    values = np.array([1, 2, np.iinfo(dtype).max], dtype=dtype)
    with get_backend(backend_name) as backend:
        batch = backend.encrypt(public_key, values)
        assert backend.decrypt(private_key, batch) == [1, 2, int(np.iinfo(dtype).max)]


def test_the_issue_s_int64_array_and_uint64_values_above_2_63(keypair_1024):
    public_key, private_key = keypair_1024
    backend = get_backend("gmpy2")
    assert backend.decrypt(private_key, backend.encrypt(public_key, np.array([1, 2], dtype=np.int64))) == [1, 2]
    big = np.array([2**63 + 5, 2**64 - 1], dtype=np.uint64)
    scalars = [np.uint64(2**64 - 1), np.int8(-1) + np.int8(8), np.int64(7)]
    assert backend.decrypt(private_key, backend.encrypt(public_key, big)) == [2**63 + 5, 2**64 - 1]
    assert backend.decrypt(private_key, backend.encrypt(public_key, scalars)) == [2**64 - 1, 7, 7]


NON_INTEGERS = [
    (1.0, "float"),
    (1.5, "float"),
    (np.float64(2.0), "float64"),
    (True, "bool"),
    (np.True_, "bool"),
    ("3", "str"),
    (None, "NoneType"),
    (np.array([1, 2]), "ndarray"),
]


@pytest.mark.parametrize(("value", "type_name"), NON_INTEGERS)
def test_non_integer_plaintexts_are_a_type_error_naming_index_and_type_on_every_backend(
    backend_name, keypair_1024, value, type_name
):
    public_key, _ = keypair_1024
    with get_backend(backend_name) as backend, pytest.raises(TypeError, match=rf"plaintext 1 is a {type_name}\b"):
        backend.encrypt(public_key, [5, value])


@pytest.mark.parametrize("obfuscation", ["pool", "djn"])
def test_non_integer_plaintexts_are_refused_in_every_obfuscation_mode_before_a_pool_is_spent(keypair_1024, obfuscation):
    public_key, _ = keypair_1024
    backend = get_backend("gmpy2", obfuscation=obfuscation)
    if obfuscation == "pool":
        backend.precompute(public_key, 2)
    with pytest.raises(TypeError, match=r"plaintext 0 is a float"):
        backend.encrypt(public_key, np.array([1.0, 2.0]))
    if obfuscation == "pool":
        assert backend.pool_size(public_key) == 2


def test_a_float_array_is_refused_even_when_its_values_are_whole(keypair_1024):
    with pytest.raises(TypeError, match=r"plaintext 0 is a float64"):
        get_backend("python").encrypt(keypair_1024[0], np.array([1.0, 2.0]))


def test_python_paillier_baseline_takes_plaintexts_by_the_same_rule(keypair_1024):
    public_key, private_key = keypair_1024
    baseline = PythonPaillierBaseline()
    batch = baseline.encrypt(public_key, np.array([3, 4], dtype=np.uint16))
    assert baseline.decrypt(private_key, batch) == [3, 4]
    with pytest.raises(TypeError, match=r"plaintext 0 is a float \(1\.5\)"):
        baseline.encrypt(public_key, [1.5])


# ------------------------------------------------------- 2. decoders refuse what the contributors cannot produce


def test_the_issue_s_huge_value_is_an_encoding_overflow_naming_the_index():
    codec = FixedPointCodec(2**2047 + 1, 32, max_summands=3)
    with pytest.raises(EncodingOverflowError, match="index 0"):
        codec.decode([2**1100])


@settings(max_examples=200, deadline=None)
@given(
    bits=st.sampled_from([1024, 2048]),
    precision=st.integers(0, 52),
    max_summands=st.integers(1, 50),
    data=st.data(),
)
def test_fixed_point_decoding_holds_exactly_the_range_of_the_declared_summands(bits, precision, max_summands, data):
    n = 2**bits - 159  # an odd modulus of ``bits`` bits; decoding needs no primality
    codec = FixedPointCodec(n, precision, max_summands=max_summands)
    summands = data.draw(st.integers(1, max_summands))
    bound = summands * codec.max_encoded
    at_ends = [bound, n - bound]
    decoded = codec.decode(at_ends, summands=summands)
    assert decoded.tolist() == [bound * 2.0**-precision, -bound * 2.0**-precision]
    for past in (bound + 1, n - bound - 1):
        with pytest.raises(EncodingOverflowError, match="index 1 is outside the range"):
            codec.decode([0, past], summands=summands)


@settings(max_examples=200, deadline=None)
@given(bits=st.sampled_from([2, 8, 16, 32]), max_users=st.integers(1, 9), data=st.data())
def test_packed_decoding_holds_exactly_the_range_of_the_declared_contributors(bits, max_users, data):
    layout = PackingLayout(bits, 1.0, max_users, 1024)
    contributors = data.draw(st.integers(1, max_users))
    low, high = contributors, contributors * (2 * layout.offset - 1)
    slot = data.draw(st.integers(0, layout.slots - 1))

    def plaintext_with(value: int) -> int:
        sums = [contributors * layout.offset] * layout.slots
        sums[slot] = value
        return sum(s << (k * layout.slot_bits) for k, s in enumerate(sums))

    for value in (low, high):
        unpacked = layout.unpack_sums([plaintext_with(value)], layout.slots, contributors)
        assert unpacked[slot] == (value - contributors * layout.offset) * layout.step
    for value in (low - 1, high + 1):
        with pytest.raises(EncodingOverflowError, match=rf"index {slot} is outside what {contributors} users"):
            layout.unpack_sums([plaintext_with(value)], layout.slots, contributors)
    if slot:  # the same slot read as padding (after the last value) must hold exactly c offsets
        with pytest.raises(EncodingOverflowError, match="padding slot"):
            layout.unpack_sums([plaintext_with(high)], slot, contributors)


def _forged_aggregate(key_generator, plaintexts: list[int], contributors: int, indices=None) -> bytes:
    """An AGGREGATE for the key generator's current round whose ciphertexts decrypt to ``plaintexts``."""
    public_key = key_generator.public_key
    batch = get_backend("gmpy2").encrypt(public_key, plaintexts)
    fields = {
        "round": key_generator.next_round,
        "dimension": key_generator.dimension,
        "contributors": contributors,
        "key_id": public_key.key_id,
        "ciphertexts": batch.to_bytes(),
    }
    if indices is not None:
        fields["indices"] = np.asarray(indices, dtype=np.uint32)
    return encode_message(Message(MessageKind.AGGREGATE, key_generator.scheme, fields))


@pytest.fixture(scope="module")
def key_generators():
    """One 1024-bit key generator per encrypted scheme, 4 users, D = 3."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            name: get_scheme(name).key_generator(3, [0, 1, 2, 3], get_backend("gmpy2"), key_bits=1024)
            for name in ("dense", "dphe", "packed")
        }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contributors=st.integers(2, 4), end=st.sampled_from(["low", "high"]), past=st.booleans())
@pytest.mark.parametrize("scheme", ["dense", "dphe"])
def test_a_published_fixed_point_average_stays_within_what_honest_users_allow(
    key_generators, scheme, contributors, end, past
):
    key_generator = key_generators[scheme]
    codec, n = key_generator.codec, key_generator.public_key.n
    bound = contributors * codec.max_encoded + (1 if past else 0)
    edge = bound if end == "high" else n - bound
    plaintexts = [0, edge, 0]
    indices = [0, 1, 2] if scheme == "dphe" else None
    message = _forged_aggregate(key_generator, plaintexts, contributors, indices)
    before = key_generator.next_round
    if past:
        with pytest.raises(EncodingOverflowError, match="index 1 is outside the range"):
            key_generator.publish(message)
        assert key_generator.next_round == before
    else:
        average = key_generator.publish(message)
        assert np.max(np.abs(average)) == pytest.approx(codec.max_value)
        assert np.max(np.abs(average)) <= codec.max_value


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contributors=st.integers(2, 4), end=st.sampled_from(["low", "high"]), past=st.booleans())
def test_a_published_packed_average_stays_within_what_honest_users_allow(key_generators, contributors, end, past):
    key_generator = key_generators["packed"]
    layout = key_generator.layout
    low, high = contributors, contributors * (2 * layout.offset - 1)
    value = (low - 1 if past else low) if end == "low" else (high + 1 if past else high)
    sums = [contributors * layout.offset] * layout.slots
    sums[1] = value
    plaintext = sum(s << (k * layout.slot_bits) for k, s in enumerate(sums))
    message = _forged_aggregate(key_generator, [plaintext], contributors)
    before = key_generator.next_round
    if past:
        with pytest.raises(EncodingOverflowError, match="index 1 is outside"):
            key_generator.publish(message)
        assert key_generator.next_round == before
    else:
        average = key_generator.publish(message)
        limit = layout.quantization_range
        assert abs(average[1]) == pytest.approx(limit) and abs(average[1]) <= limit


def test_a_plain_aggregate_that_is_not_finite_is_refused_blaming_the_aggregator():
    key_generator = get_scheme("plain").key_generator(2, [0, 1], get_backend("python"))
    fields = {"round": 0, "dimension": 2, "contributors": 2, "values": np.array([1.0, np.inf])}
    with pytest.raises(ProtocolError, match="the aggregator sent values that are not finite"):
        key_generator.publish(encode_message(Message(MessageKind.AGGREGATE, "plain", fields)))


# --------------------------------------------------------------------------- 4. an error names the real cause


def test_an_honest_sum_that_overflows_float64_says_so_and_blames_no_party():
    with pytest.raises(EncodingOverflowError, match="the users' sum overflowed float64 at index 0") as raised:
        simulate_round([np.array([1e308]), np.array([1e308])], scheme="plain")
    assert "aggregator sent" not in str(raised.value)


def test_large_but_summable_plain_weights_average_exactly():
    result = simulate_round([np.array([8e307, -1e308]), np.array([8e307, -7e307])], scheme="plain")
    assert result.mean.tolist() == [8e307, (-1e308 + -7e307) / 2]


# -------------------------------------------------------------------- 3. every parser bounds every size first


def test_the_issue_s_huge_plain_dimension_is_a_protocol_error_not_an_allocation():
    for dimension in (2**45, 2**64 - 1, 2**32, 0):
        fields = {"dimension": dimension, "max_users": 1, "user_ids": np.array([0], dtype=np.uint32)}
        header = Message(MessageKind.AGGREGATOR_SETUP, "plain", {})
        data = _encode_unchecked(header, fields)
        with pytest.raises(MessageFormatError, match=r"field 'dimension' is \d+, outside its bounds \[1, 4294967295\]"):
            get_scheme("plain").aggregator(data, get_backend("python"))


def _encode_unchecked(message: Message, fields: dict) -> bytes:
    """Encode fields without the encoder's bound checks (a hostile sender's bytes)."""
    parts = []
    for name, value in fields.items():
        tag, field_type = FIELDS[name]
        if isinstance(value, np.ndarray):
            payload = value.astype("<u4" if value.dtype.kind in "iu" else "<f8").tobytes()
        elif isinstance(value, float):
            payload = struct.pack("<d", value)
        elif isinstance(value, bytes):
            payload = value
        else:
            payload = value.to_bytes(8, "little")
        parts.append(struct.pack("<BBQ", tag, field_type, len(payload)) + payload)
    body = b"".join(parts)
    code = SCHEME_CODES[message.scheme]
    header = struct.pack("<4sBBBBQ", b"DPHE", FORMAT_VERSION, message.kind, code, len(fields), len(body))
    return header + body


def _field_layout(data: bytes) -> list[tuple[int, int, int]]:
    """(offset of the field header, field type, payload length) of every field of a well-formed message."""
    layout, offset = [], 16
    while offset < len(data):
        _, field_type, length = struct.unpack_from("<BBQ", data, offset)
        layout.append((offset, field_type, length))
        offset += 10 + length
    return layout


HUGE_NUMBERS = [0, 1, 2**31, 2**32 - 1, 2**32, 2**45, 2**63, 2**64 - 1]


@st.composite
def hostile_bytes(draw, valid: bytes) -> bytes:
    """A message a hostile or broken sender could produce from ``valid``: random bytes, byte flips, truncations,
    extensions, or one field's number, length or payload replaced (huge sizes included)."""
    kind = draw(st.sampled_from(["random", "flip", "truncate", "extend", "number", "length", "payload", "header"]))
    data = bytearray(valid)
    layout = _field_layout(valid)
    if kind == "random":
        return draw(st.binary(max_size=4 * len(valid)))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "extend":
        return bytes(data) + draw(st.binary(min_size=1, max_size=64))
    if kind == "header":
        size = draw(st.sampled_from(HUGE_NUMBERS))
        position = draw(st.sampled_from([7, 8]))
        if position == 7:
            data[7] = size % 256
        else:
            data[8:16] = size.to_bytes(8, "little")
        return bytes(data)
    offset, field_type, length = draw(st.sampled_from(layout))
    if kind == "number" and length == 8:
        if field_type == 5:
            data[offset + 10 : offset + 18] = struct.pack("<d", draw(st.floats()))
        else:
            data[offset + 10 : offset + 18] = draw(st.sampled_from(HUGE_NUMBERS)).to_bytes(8, "little")
        return bytes(data)
    if kind == "length":
        new_length = draw(st.sampled_from([*HUGE_NUMBERS, max(0, length - 4), length + 4]))
        data[offset + 2 : offset + 10] = new_length.to_bytes(8, "little")
        return bytes(data)
    payload = draw(st.binary(max_size=2 * length + 16))
    replaced = data[:offset] + struct.pack("<BBQ", data[offset], field_type, len(payload)) + payload
    replaced += data[offset + 10 + length :]
    body_length = len(replaced) - 16
    replaced[8:16] = body_length.to_bytes(8, "little")
    return bytes(replaced)


class Parties:
    """A 3-user federation of one scheme (D = 5, 1024-bit keys, gmpy2), with valid messages of round 0."""

    def __init__(self, scheme: str):
        self.scheme = get_scheme(scheme)
        self.backend = get_backend("gmpy2")
        options = {"key_bits": 1024} if self.scheme.encrypted else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.key_generator = self.scheme.key_generator(5, [0, 1, 2], self.backend, **options)
        self.setup = self.key_generator.setup()
        rng = np.random.default_rng(1)
        users = {uid: self.scheme.user(self.setup.to_users[uid], self.backend) for uid in (0, 1, 2)}
        weights = {uid: rng.normal(size=5) * (rng.random(5) < 0.6) for uid in (0, 1, 2)}
        self.updates = {uid: users[uid].submit(weights[uid], 0) for uid in (0, 1, 2)}
        aggregator = self.new_aggregator()
        for uid in (0, 1, 2):
            aggregator.receive(self.updates[uid])
        self.aggregate = aggregator.finish()
        reference = self.new_aggregator()
        reference.receive(self.updates[0])
        reference.receive(self.updates[1])
        self.two_user_aggregate = reference.finish()

    def new_aggregator(self):
        return self.scheme.aggregator(self.setup.to_aggregator, self.backend)


@pytest.fixture(scope="module", params=list(SCHEMES))
def parties(request):
    return Parties(request.param)


FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _only_dphe_errors(action) -> bool:
    """Run ``action``; True if it raised a DpheError, False if it succeeded; anything else fails the test."""
    try:
        action()
    except DpheError:
        return True
    return False


@pytest.mark.slow
def test_fuzz_user_setup(parties):
    @FUZZ
    @given(data=st.data())
    def run(data):
        message = data.draw(hostile_bytes(parties.setup.to_users[0]))
        _only_dphe_errors(lambda: parties.scheme.user(message, parties.backend))

    run()


@pytest.mark.slow
def test_fuzz_aggregator_setup(parties):
    @FUZZ
    @given(data=st.data())
    def run(data):
        message = data.draw(hostile_bytes(parties.setup.to_aggregator))
        _only_dphe_errors(lambda: parties.scheme.aggregator(message, parties.backend))

    run()


@pytest.mark.slow
def test_fuzz_aggregator_update(parties):
    """A refused update leaves the aggregator as it was: after every refusal of the run, the honest update still
    gives the honest aggregate, byte for byte. (One aggregator takes every hostile update, so a refusal that
    changed its state would show at the end; it is rebuilt only after an update it accepted.)"""
    aggregator = parties.new_aggregator()
    aggregator.receive(parties.updates[0])

    @FUZZ
    @given(data=st.data())
    def run(data):
        nonlocal aggregator
        message = data.draw(hostile_bytes(parties.updates[1]))
        if _only_dphe_errors(lambda: aggregator.receive(message)):
            assert aggregator.contributors == [0] and aggregator.round == 0
        else:
            aggregator = parties.new_aggregator()
            aggregator.receive(parties.updates[0])

    run()
    aggregator.receive(parties.updates[1])
    assert aggregator.finish() == parties.two_user_aggregate


@pytest.mark.slow
def test_fuzz_key_generator_aggregate(parties):
    """A refused aggregate leaves the key generator in the same round."""

    @FUZZ
    @given(data=st.data())
    def run(data):
        message = data.draw(hostile_bytes(parties.aggregate))
        before = parties.key_generator.next_round
        if _only_dphe_errors(lambda: parties.key_generator.publish(message)):
            assert parties.key_generator.next_round == before

    run()


def test_message_fields_carry_their_bounds_on_encoding_too():
    with pytest.raises(ValueError, match="'dimension' is 0, outside its bounds"):
        encode_message(Message(MessageKind.UPDATE, "plain", {"dimension": 0}))
    with pytest.raises(ValueError, match="'quantization_range' is nan"):
        encode_message(Message(MessageKind.USER_SETUP, "packed", {"quantization_range": float("nan")}))
    with pytest.raises(MessageFormatError, match="'precision_bits' is 53"):
        decode_message(
            _encode_unchecked(Message(MessageKind.USER_SETUP, "dense", {}), {"precision_bits": 53}),
            MessageKind.USER_SETUP,
            "dense",
            ("precision_bits",),
        )


# ------------------------------------------------------------ 5. the command line never shows a traceback


def _cli(argv: list[str], cwd) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the real console script in ``cwd``."""
    result = subprocess.run(
        [sys.executable, "-m", "dphe_bench.cli", *argv], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    return result.returncode, result.stdout, result.stderr


SWEEP_ARGS = ["--no-baseline", "--users", "1", "--key-bits", "1024", "--sparsity", "0.5", "--scheme", "dense"]


def test_a_zero_dimension_is_refused_not_taken_as_unset(tmp_path):
    code, _, err = call_cli(["sweep", "--dry-run", "--dimension", "0", *SWEEP_ARGS, "--out", str(tmp_path / "x.csv")])
    assert code == 2
    assert err.strip().splitlines()[-1] == "dphe-bench: error: dimension must be >= 1, got 0"


@pytest.mark.parametrize(
    ("axis", "value", "message"),
    [
        ("--users", "0", "users must be in [1, 10000], got 0"),
        ("--sparsity", "1", "sparsity must be in [0, 1), got 1.0"),
        ("--key-bits", "1000", "key bits must be one of 1024, 2048, 3072, 4096, got 1000"),
        ("--seed", "-1", "seed must be in [0, 2**32), got -1"),
        ("--dimension", "4294967296", "dimension must be <= 4294967295 (what a message can carry), got 4294967296"),
        (
            "--scheme",
            "dense:precision_bits=99",
            "scheme dense:precision_bits=99 with 1024-bit keys: precision_bits must be in [0, 52], got 99",
        ),
        (
            "--scheme",
            "packed:quantization_bits=x",
            "scheme packed:quantization_bits=x with 1024-bit keys: quantization_bits must be an integer, got 'x'",
        ),
    ],
)
def test_every_sweep_axis_is_validated_when_given(tmp_path, axis, value, message):
    code, _, err = call_cli(["sweep", "--dry-run", "--dimension", "4", *SWEEP_ARGS, axis, value])
    assert code == 2
    assert err.strip().endswith(f"dphe-bench: error: {message}")


def test_an_option_a_backend_does_not_take_is_one_error_line(tmp_path):
    argv = ["sweep", "--dimension", "4", *SWEEP_ARGS, "--backend", "gmpy2:workers=2", "--out", str(tmp_path / "x.csv")]
    code, _, err = _cli(argv, tmp_path)
    assert code == 2
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "dphe-bench: error: backend 'gmpy2': unknown option 'workers'; valid options: obfuscation, window_bits"
    ]
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("crypto.key_bit=1024", "unknown option 'crypto.key_bit' (did you mean 'crypto.key_bits'?); valid options: "),
        ("crypt.key_bits=1024", "unknown config section '[crypt]' (did you mean '[crypto]'?); valid config sections: "),
        ("crypto.backend=gmpy", "crypto.backend: unknown backend 'gmpy' (did you mean 'gmpy2'?); valid backends: "),
    ],
)
def test_error_texts_name_things_plainly_and_suggest_the_closest(override, message):
    code, _, err = call_cli(["run", "--set", override])
    assert code == 2
    assert message in err
    assert "['" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["throughput", "--workers", "0"], "argument --workers: must be >= 1, got 0"),
        (["throughput", "--window-bits", "13"], "argument --window-bits: must be in [1, 12], got 13"),
        (["throughput", "--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
        (["throughput", "--seconds", "nan"], "argument --seconds: must be in [0.01, 3600], got nan"),
        (["throughput", "--key-bits", "512"], "argument --key-bits: must be one of 1024, 2048, 3072, 4096, got 512"),
        (["serve", "--round-timeout", "0"], "argument --round-timeout: must be in [1, 86400], got 0"),
        (
            ["keyserver", "--dimension", "0", "--tokens-dir", "t"],
            "argument --dimension: must be in [1, 4294967295], got 0",
        ),
        (["keyserver", "--dimension", "5", "--tokens-dir", "t", "--port", "70000"], "must be in [0, 65535], got 70000"),
    ],
)
def test_numeric_options_are_bounded_before_any_work(argv, message):
    code, _, err = call_cli(argv)
    assert code == 2
    assert message in err


def test_ctrl_c_during_a_sweep_is_one_line_exit_130_and_keeps_finished_cells(tmp_path):
    out = tmp_path / "sweep.csv"
    argv = ["sweep", "--no-progress", "--no-baseline", "--dimension", "400", "--users", "1", "--key-bits", "1024"]
    argv += ["--sparsity", "0", "--sparsity", "0.5", "--scheme", "dense", "--scheme", "dphe", "--backend", "python"]
    process = subprocess.Popen(
        [sys.executable, "-m", "dphe_bench.cli", *argv, "--out", str(out)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"dphe-bench: sweep interrupted; every cell finished before it is in {out}; the same command goes on from there"
    )
    rows = out.read_text().splitlines()
    assert (len(rows) >= 2 and rows[0].startswith("time_utc")) or rows[0].split(",")[0]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("command", ["run", "sweep", "throughput", "report"])
def test_ctrl_c_in_every_long_command_says_what_was_kept(monkeypatch, tmp_path, command):
    import dphe_bench.bench.throughput
    import dphe_bench.cli
    import dphe_bench.learning.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dphe_bench.learning.pipeline, "run_pipeline", interrupted)
    monkeypatch.setattr(dphe_bench.cli, "run_sweep", interrupted)
    monkeypatch.setattr(dphe_bench.bench.throughput, "measure", interrupted)
    argv = {
        "run": ["run", "--set", f"run.output_dir={tmp_path}"],
        "sweep": ["sweep", "--dimension", "4", *SWEEP_ARGS, "--out", str(tmp_path / "s.csv")],
        "throughput": ["throughput"],
        "report": ["report", str(tmp_path), "--out", str(tmp_path / "r")],
    }[command]
    if command == "report":
        import dphe_bench.bench.report

        monkeypatch.setattr(dphe_bench.bench.report, "load_results", interrupted)
    code, _, err = call_cli(argv)
    assert code == 130
    assert err.strip().splitlines()[-1].startswith(f"dphe-bench: {command} interrupted; ")


# ------------------------------------------------ 6. finished work is never lost to an unwritable destination


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--set", "run.output_dir=/proc/x"], "run.output_dir /proc/x/runs.csv cannot be written"),
        (["run", "--set", "run.output_dir=somefile/sub"], "run.output_dir somefile/sub/runs.csv cannot be written"),
        (
            ["sweep", "--dimension", "4", *SWEEP_ARGS, "--out", "/proc/x.csv"],
            "sweep results file (--out) /proc/x.csv cannot",
        ),
        (["report", "somefile", "--out", "/proc/rep"], "report folder /proc/rep cannot be written"),
        (["throughput", "--out", "/proc/x.csv"], "--out /proc/x.csv cannot be written"),
        (["throughput", "--out", "."], "--out . is a folder, not a file"),
        (["serve", "--run-dir", "/proc/run"], "run folder (--run-dir) /proc/run cannot be written"),
        (
            [
                "flower-app",
                "--out",
                "/proc/app",
                "--keyserver-url",
                "https://127.0.0.1:1",
                "--aggregator-token-file",
                "t",
            ],
            "--out /proc/app cannot be written",
        ),
    ],
)
def test_an_unusable_destination_is_refused_before_any_work(monkeypatch, tmp_path, argv, message):
    import dphe_bench.bench.throughput
    import dphe_bench.cli
    import dphe_bench.learning.pipeline

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the destination was checked")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "somefile").write_text("a file, not a folder")
    monkeypatch.setattr(dphe_bench.learning.pipeline, "run_pipeline", no_work)
    monkeypatch.setattr(dphe_bench.bench.throughput, "measure", no_work)
    monkeypatch.setattr(dphe_bench.bench.sweep, "run_cell", no_work)
    code, _, err = call_cli(argv)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(f"dphe-bench: error: {message}")


def test_a_run_whose_results_cannot_be_written_prints_its_summary_first(monkeypatch, tmp_path):
    import dphe_bench.learning.results

    def disk_full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dphe_bench.learning.results, "write_text_atomically", disk_full)
    argv = ["run", "--no-progress", "--set", f"run.output_dir={tmp_path}", "--set", "crypto.key_bits=1024"]
    argv += ["--set", "federation.rounds=1", "--set", "federation.users=2"]
    code, out, err = call_cli(argv)
    assert code == 2
    assert "accuracy (test)" in out
    assert f"the run's results were not saved in {tmp_path}: No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_cell_that_cannot_be_saved_is_named(monkeypatch, tmp_path):
    import dphe_bench.bench.sweep

    def disk_full(path, row):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dphe_bench.bench.sweep, "append_row", disk_full)
    out = tmp_path / "s.csv"
    code, _, err = call_cli(["sweep", "--no-progress", "--dimension", "4", *SWEEP_ARGS, "--out", str(out)])
    assert code == 2
    assert "was measured but not saved" in err and "No space left on device" in err
    assert "the 0 cell(s) finished before it are in the file" in err


def test_feature_extraction_checks_its_cache_folder_before_it_starts(monkeypatch, tmp_path):
    from dphe_bench.errors import DestinationError
    from dphe_bench.learning import features

    class TwoImages:
        def __len__(self):
            return 2

        def fingerprint(self):
            return "two"

    def no_runner(*args, **kwargs):
        raise AssertionError("extraction started before the cache folder was checked")

    monkeypatch.setattr(features, "make_runner", no_runner)
    monkeypatch.setattr(features, "_weights_id", lambda: "weights")
    with pytest.raises(DestinationError, match=r"feature cache \(data.cache_dir\) /proc/x/features cannot be written"):
        features.efficientnet_features(TwoImages(), image_size=32, cache_dir="/proc/x", label="t")


# ---------------------------------------------------------------- found by a fresh user's review of the above


def test_files_written_whole_get_the_umask_s_permissions_and_secrets_0600(tmp_path):
    from dphe_bench.files import write_text_atomically

    old = os.umask(0o022)
    try:
        write_text_atomically(tmp_path / "results.csv", "a,b\n")
        write_text_atomically(tmp_path / "secret.token", "t\n", mode=0o600)
    finally:
        os.umask(old)
    assert (tmp_path / "results.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "secret.token").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", "--dry-run", "--quick", "--out", "."], "sweep results file (--out) . is a folder, not a file"),
        (["sweep", "--dry-run", "--quick", "--out", ""], "sweep results file (--out) is empty: name a path"),
        (["report", "somefile", "--out", ""], "report folder is empty: name a path"),
        (["throughput", "--out", ""], "--out is empty: name a path"),
        (["throughput", "--backend", "gmpy"], "unknown backend 'gmpy' (did you mean 'gmpy2'?)"),
        (
            ["keyserver", "--dimension", "4", "--tokens-dir", "somefile/tokens", "--insecure-local-test"],
            "tokens folder (--tokens-dir) somefile/tokens cannot be",
        ),
        (
            [
                "flower-app",
                "--out",
                "app",
                "--keyserver-url",
                "https://127.0.0.1:99999",
                "--aggregator-token-file",
                "t",
            ],
            "key server URL 'https://127.0.0.1:99999' has a port outside [1, 65535]",
        ),
        (
            ["flower-app", "--out", "app", "--keyserver-url", "https://127.0.0.1:8443", "--aggregator-token-file", ""],
            "--aggregator-token-file is empty",
        ),
        (
            ["sweep", "--dry-run", "--quick", "--no-baseline", "--backend", "multiprocessing:workers=0"],
            "backend multiprocessing:workers=0: workers must be a positive int, got 0",
        ),
        (
            ["sweep", "--dry-run", "--quick", "--no-baseline", "--backend", "python:obfuscation=djn,obfuscation=pool"],
            "option 'obfuscation' appears twice",
        ),
        (["sweep", "--dry-run", "--quick", "--users", "100000000"], "users must be in [1, 10000], got 100000000"),
        (["run", "--set", "federation.rounds=99999999999"], "federation.rounds must be in [1, 10000]"),
        (["run", "--set", "model.loss=hing"], "model.loss: unknown loss 'hing' (did you mean 'hinge'?); valid losses:"),
        (["sweep", "--users", "abc"], "argument --users: invalid int value: 'abc' (see dphe-bench sweep --help)"),
        (["report", "binary.csv"], "binary.csv is not UTF-8 text, so not a result file"),
        (["sweep", "--dry-run", "--quick", "--out", "binary.csv"], "binary.csv is not a UTF-8 text file"),
    ],
)
def test_more_user_mistakes_are_one_line_before_any_work(monkeypatch, tmp_path, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "somefile").write_text("a file, not a folder")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00")
    code, _, err = call_cli(argv)
    assert code == 2
    assert err.strip().splitlines() == [f"dphe-bench: error: {message}"] or err.strip().splitlines()[-1].startswith(
        f"dphe-bench: error: {message}"
    )
    assert "Traceback" not in err


def test_throughput_without_python_paillier_says_so_in_one_line(monkeypatch):
    from dphe_bench.bench.baseline import PythonPaillierBaseline

    monkeypatch.setattr(PythonPaillierBaseline, "unavailable_reason", classmethod(lambda cls: "phe is not installed"))
    code, _, err = call_cli(["throughput", "--backend", "python"])
    assert code == 2
    assert err.strip() == (
        "dphe-bench: error: throughput measures every row against python-paillier, which cannot run: "
        "phe is not installed"
    )


def test_ctrl_c_while_starting_is_one_line_exit_130(monkeypatch):
    import argparse

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", interrupted)
    code, _, err = call_cli(["run"])
    assert code == 130
    assert err.strip() == "dphe-bench: interrupted while starting; nothing was done"


def test_the_command_line_starts_without_the_learning_libraries():
    code = "import sys, dphe_bench.cli; print('sklearn' in sys.modules, 'pandas' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"


def test_a_pool_never_filled_encrypts_nothing_and_refuses_more(keypair_1024):
    from dphe_bench.errors import ObfuscatorPoolError

    public_key, _ = keypair_1024
    backend = get_backend("gmpy2", obfuscation="pool")
    assert len(backend.encrypt(public_key, [])) == 0
    with pytest.raises(ObfuscatorPoolError, match="holds 0, encrypting needs 1"):
        backend.encrypt(public_key, [1])


def test_a_single_integer_is_not_a_batch(keypair_1024):
    with pytest.raises(TypeError, match="plaintexts must be a sequence of integers, got int"):
        get_backend("python").encrypt(keypair_1024[0], 5)


def test_decoder_counts_must_be_integers():
    codec = FixedPointCodec(2**1023 + 1, 16, max_summands=3)
    for bad in (1.5, True):
        with pytest.raises(TypeError, match="summands must be an integer"):
            codec.decode([0], summands=bad)
    with pytest.raises(EncodingOverflowError, match=r"summands must be in \[1, 3\]"):
        codec.decode([0], summands=0)
    layout = PackingLayout(16, 1.0, 3, 1024)
    plaintexts = layout.pack(layout.quantize(np.zeros(4)))
    with pytest.raises(TypeError, match="contributors must be an integer"):
        layout.unpack_sums(plaintexts, 4, 1.5)
    with pytest.raises(TypeError, match="dimension must be an integer"):
        layout.unpack_sums(plaintexts, 4.0, 1)
