import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dphe_bench.errors import MessageFormatError
from dphe_bench.schemes.messages import FORMAT_VERSION, Message, MessageKind, decode_message, encode_message

FIELDS = ("user_id", "round", "dimension", "key_id", "indices", "ciphertexts")


def sample_message() -> Message:
    return Message(
        MessageKind.UPDATE,
        "dphe",
        {
            "user_id": 3,
            "round": 7,
            "dimension": 10,
            "key_id": 2**64 - 1,
            "indices": np.array([9, 0, 4], dtype=np.uint32),
            "ciphertexts": b"\x01\x02\x03",
        },
    )


def decode_sample(data: bytes) -> Message:
    return decode_message(data, MessageKind.UPDATE, "dphe", FIELDS)


def test_round_trip_keeps_every_field():
    decoded = decode_sample(encode_message(sample_message()))
    assert decoded.kind is MessageKind.UPDATE and decoded.scheme == "dphe"
    assert decoded["user_id"] == 3 and decoded["round"] == 7 and decoded["key_id"] == 2**64 - 1
    assert decoded["indices"].dtype == np.uint32 and decoded["indices"].tolist() == [9, 0, 4]
    assert decoded["ciphertexts"] == b"\x01\x02\x03"
    assert not decoded["indices"].flags.writeable


def test_header_layout_is_as_documented():
    data = encode_message(sample_message())
    magic, version, kind, scheme, count, body = struct.unpack_from("<4sBBBBQ", data)
    assert (magic, version, kind, scheme, count, body) == (b"DPHE", FORMAT_VERSION, 3, 2, 6, len(data) - 16)


def test_float_arrays_round_trip_exactly():
    values = np.array([0.0, -1.5, np.pi, 1e300, -0.0])
    message = Message(MessageKind.UPDATE, "plain", {"user_id": 0, "round": 0, "dimension": 5, "values": values})
    decoded = decode_message(
        encode_message(message), MessageKind.UPDATE, "plain", ("user_id", "round", "dimension", "values")
    )
    assert decoded["values"].dtype == np.float64
    assert decoded["values"].tobytes() == values.tobytes()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"XXXX" + d[4:], "bad magic"),
        (lambda d: d[:4] + bytes([99]) + d[5:], "version"),
        (lambda d: d[:5] + bytes([4]) + d[6:], "expected a UPDATE message"),
        (lambda d: d[:6] + bytes([1]) + d[7:], "scheme"),
        (lambda d: d[:10], "shorter than"),
        (lambda d: d[:-1], "announces"),
        (lambda d: d + b"\x00", "announces"),
    ],
)
def test_corrupted_headers_are_refused(mutate, message):
    with pytest.raises(MessageFormatError, match=message):
        decode_sample(mutate(encode_message(sample_message())))


def test_missing_and_extra_fields_are_named():
    message = sample_message()
    fields = dict(message.fields)
    del fields["key_id"]
    with pytest.raises(MessageFormatError, match=r"missing fields: key_id; unexpected fields: none"):
        decode_sample(encode_message(Message(MessageKind.UPDATE, "dphe", fields)))
    fields = {**message.fields, "values": np.zeros(2)}
    with pytest.raises(MessageFormatError, match=r"missing fields: none; unexpected fields: values"):
        decode_sample(encode_message(Message(MessageKind.UPDATE, "dphe", fields)))


def test_duplicate_fields_are_refused():
    data = encode_message(sample_message())
    first_field = data[16 : 16 + 10 + 8]
    body = first_field + data[16:]
    forged = struct.pack("<4sBBBBQ", b"DPHE", FORMAT_VERSION, 3, 2, 7, len(body)) + body
    with pytest.raises(MessageFormatError, match="appears twice"):
        decode_sample(forged)


def test_field_with_wrong_type_code_is_refused():
    data = bytearray(encode_message(sample_message()))
    data[17] = 2  # first field (user_id, UINT64) claims to be BYTES
    with pytest.raises(MessageFormatError, match="type code"):
        decode_sample(bytes(data))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user_id": -1}, "integer"),
        ({"user_id": 2**64}, "integer"),
        ({"ciphertexts": "text"}, "bytes"),
        ({"indices": np.array([[1]])}, "1-D"),
        ({"indices": np.array([2**32])}, r"\[0, 2\*\*32\)"),
        ({"indices": np.array([1.5])}, r"\[0, 2\*\*32\)"),
        ({"nonsense": 1}, "unknown message field"),
    ],
)
def test_encoding_refuses_bad_values(fields, message):
    with pytest.raises(ValueError, match=message):
        encode_message(Message(MessageKind.UPDATE, "dphe", fields))


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="unknown scheme"):
        encode_message(Message(MessageKind.UPDATE, "rot13", {}))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_a_format_error(data):
    with contextlib.suppress(MessageFormatError):
        decode_sample(data)


@settings(max_examples=300)
@given(st.data())
def test_mutated_valid_messages_parse_or_raise_a_format_error(data):
    original = bytearray(encode_message(sample_message()))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(original)))
    try:
        decoded = decode_sample(bytes(original[:cut]))
    except MessageFormatError:
        return
    assert set(decoded.fields) == set(FIELDS)


def test_every_truncation_is_refused():
    data = encode_message(sample_message())
    for cut in range(len(data)):
        with pytest.raises(MessageFormatError):
            decode_sample(data[:cut])


def test_float_scalars_round_trip_and_wrong_lengths_are_refused():
    fields = ("dimension", "max_users", "user_ids", "public_key_n", "quantization_bits", "quantization_range")
    message = Message(
        MessageKind.AGGREGATOR_SETUP,
        "packed",
        {
            "dimension": 3,
            "max_users": 1,
            "user_ids": np.array([0], dtype=np.uint32),
            "public_key_n": b"\x01",
            "quantization_bits": 16,
            "quantization_range": 0.1,
        },
    )
    data = encode_message(message)
    assert decode_message(data, MessageKind.AGGREGATOR_SETUP, "packed", fields)["quantization_range"] == 0.1
    with pytest.raises(ValueError, match="must be a number"):
        encode_message(Message(MessageKind.AGGREGATOR_SETUP, "packed", {"quantization_range": "wide"}))
    short = struct.pack("<BBQ", 17, 5, 4) + b"\x00" * 4
    forged = struct.pack("<4sBBBBQ", b"DPHE", FORMAT_VERSION, 2, 3, 1, len(short)) + short
    with pytest.raises(MessageFormatError, match="must be 8 bytes"):
        decode_message(forged, MessageKind.AGGREGATOR_SETUP, "packed", ("quantization_range",))
