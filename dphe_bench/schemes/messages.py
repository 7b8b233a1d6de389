"""The binary message format the parties exchange. Never pickle.

Layout (all integers little-endian)::

    header, 16 bytes
      0   4  magic b"DPHE"
      4   1  format version (FORMAT_VERSION)
      5   1  message kind (MessageKind)
      6   1  scheme code (SCHEME_CODES)
      7   1  number of fields F
      8   8  body length in bytes (everything after the header)
    body: F fields, each
      0   1  field tag (FIELDS)
      1   1  field type (FieldType)
      2   8  payload length L in bytes
      10  L  payload: UINT64 = 8 bytes; FLOAT64 = 8 bytes (IEEE 754); BYTES = raw;
             UINT32_ARRAY = L/4 values; FLOAT64_ARRAY = L/8 values

A message of a given kind and scheme carries exactly the fields its receiver expects, each at most
once; anything else (bad magic, unknown version, kind, scheme, tag or type, a length that does not
add up, trailing bytes, a missing or extra field, a number outside its field's bounds in ``BOUNDS``)
raises MessageFormatError naming the problem. Every count and size a receiver acts on is a bounded
field, and every array's length is the payload actually received, so no field can make a receiver
allocate more than the message's own size suggests.
"""

import math
import struct
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from dphe_bench.errors import MessageFormatError, plain_list

MAGIC = b"DPHE"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sBBBBQ")
_FIELD_HEADER = struct.Struct("<BBQ")


class MessageKind(IntEnum):
    """What a message is: who sends it to whom."""

    USER_SETUP = 1  # key generator -> one user
    AGGREGATOR_SETUP = 2  # key generator -> aggregator
    UPDATE = 3  # user -> aggregator
    AGGREGATE = 4  # aggregator -> key generator


class FieldType(IntEnum):
    """How a field's payload is laid out."""

    UINT64 = 1
    BYTES = 2
    UINT32_ARRAY = 3
    FLOAT64_ARRAY = 4
    FLOAT64 = 5


SCHEME_CODES = {"plain": 0, "dense": 1, "dphe": 2, "packed": 3, "ckks": 4}

FIELDS: dict[str, tuple[int, FieldType]] = {
    "user_id": (1, FieldType.UINT64),
    "round": (2, FieldType.UINT64),
    "dimension": (3, FieldType.UINT64),
    "max_users": (4, FieldType.UINT64),
    "precision_bits": (5, FieldType.UINT64),
    "key_id": (6, FieldType.UINT64),
    "contributors": (7, FieldType.UINT64),
    "public_key_n": (8, FieldType.BYTES),
    "shared_permutation": (9, FieldType.UINT32_ARRAY),
    "user_permutation": (10, FieldType.UINT32_ARRAY),
    "user_ids": (11, FieldType.UINT32_ARRAY),
    "user_permutations": (12, FieldType.UINT32_ARRAY),
    "indices": (13, FieldType.UINT32_ARRAY),
    "values": (14, FieldType.FLOAT64_ARRAY),
    "ciphertexts": (15, FieldType.BYTES),
    "quantization_bits": (16, FieldType.UINT64),
    "quantization_range": (17, FieldType.FLOAT64),
    "ckks_context": (18, FieldType.BYTES),
    "ckks_vectors": (19, FieldType.BYTES),
    "ckks_vector_lengths": (20, FieldType.UINT32_ARRAY),
}
# Inclusive bounds of the numeric fields (UINT64 and FLOAT64), checked on decoding and encoding.
MAX_DIMENSION = 2**32 - 1
MAX_USERS = 2**32 - 1
BOUNDS: dict[str, tuple[float, float]] = {
    "user_id": (0, 2**32 - 1),
    "round": (0, 2**32 - 1),
    "dimension": (1, MAX_DIMENSION),
    "max_users": (1, MAX_USERS),
    "precision_bits": (0, 52),
    "key_id": (0, 2**64 - 1),
    "contributors": (1, MAX_USERS),
    "quantization_bits": (2, 32),
    "quantization_range": (math.ulp(0.0), math.inf),
}
# The largest BYTES field a public key can fill: n of 4096 bits.
MAX_PUBLIC_KEY_BYTES = 512
# The largest serialised TenSEAL objects ``ckks`` accepts: a public CKKS context with its public key only (465 KB
# at N = 8,192; one with Galois keys, 34 MiB, is refused), and one CKKS vector (2 polynomials x 3 moduli x 8,192
# coefficients x 8 bytes = 384 KiB uncompressed, plus headers).
MAX_CKKS_CONTEXT_BYTES = 1 << 20
MAX_CKKS_VECTOR_BYTES = 1 << 19
_NAMES_BY_TAG = {tag: name for name, (tag, _) in FIELDS.items()}
_ITEM_SIZE = {FieldType.UINT32_ARRAY: 4, FieldType.FLOAT64_ARRAY: 8}

FieldValue = int | float | bytes | np.ndarray


@dataclass(frozen=True)
class Message:
    """A decoded message: its kind, its scheme name and its fields by name."""

    kind: MessageKind
    scheme: str
    fields: dict[str, FieldValue] = field(default_factory=dict)

    def __getitem__(self, name: str) -> FieldValue:
        return self.fields[name]


def encode_message(message: Message) -> bytes:
    """Serialise ``message``; raises ValueError for an unknown scheme, field name or a bad value."""
    if message.scheme not in SCHEME_CODES:
        raise ValueError(f"unknown scheme {message.scheme!r}")
    if len(message.fields) > 255:
        raise ValueError("a message holds at most 255 fields")
    parts = []
    for name, value in message.fields.items():
        if name not in FIELDS:
            raise ValueError(f"unknown message field {name!r}")
        tag, field_type = FIELDS[name]
        payload = _encode_payload(name, field_type, value)
        _check_bounds(name, _decode_payload(name, field_type, payload), ValueError)
        parts.append(_FIELD_HEADER.pack(tag, field_type, len(payload)))
        parts.append(payload)
    body = b"".join(parts)
    header = _HEADER.pack(
        MAGIC, FORMAT_VERSION, message.kind, SCHEME_CODES[message.scheme], len(message.fields), len(body)
    )
    return header + body


def decode_message(data: bytes, kind: MessageKind, scheme: str, expected: Collection[str]) -> Message:
    """Parse ``data`` as a ``kind`` message of ``scheme`` carrying exactly the fields ``expected``.

    Arrays come back as read-only numpy arrays (uint32 or float64); UINT64 fields as ints.
    """
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise MessageFormatError(f"message of {len(data)} bytes is shorter than the {_HEADER.size}-byte header")
    magic, version, kind_code, scheme_code, field_count, body_length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MessageFormatError(f"bad magic {magic!r}: not a dphe-bench message")
    if version != FORMAT_VERSION:
        raise MessageFormatError(f"unsupported message format version {version}, expected {FORMAT_VERSION}")
    if kind_code != kind:
        raise MessageFormatError(f"expected a {kind.name} message, got kind code {kind_code}")
    if scheme_code != SCHEME_CODES[scheme]:
        raise MessageFormatError(f"expected a message of scheme {scheme!r}, got scheme code {scheme_code}")
    if body_length != len(data) - _HEADER.size:
        raise MessageFormatError(
            f"header announces a {body_length}-byte body but {len(data) - _HEADER.size} bytes follow"
        )
    fields: dict[str, FieldValue] = {}
    offset = _HEADER.size
    for _ in range(field_count):
        if offset + _FIELD_HEADER.size > len(data):
            raise MessageFormatError("message truncated inside a field header")
        tag, type_code, length = _FIELD_HEADER.unpack_from(data, offset)
        offset += _FIELD_HEADER.size
        name = _NAMES_BY_TAG.get(tag)
        if name is None:
            raise MessageFormatError(f"unknown field tag {tag}")
        if name in fields:
            raise MessageFormatError(f"field {name!r} appears twice")
        if type_code != FIELDS[name][1]:
            raise MessageFormatError(f"field {name!r} has type code {type_code}, expected {FIELDS[name][1]}")
        if offset + length > len(data):
            raise MessageFormatError(f"field {name!r} announces {length} bytes but the message ends before")
        fields[name] = _decode_payload(name, FIELDS[name][1], data[offset : offset + length])
        _check_bounds(name, fields[name], MessageFormatError)
        offset += length
    if offset != len(data):
        raise MessageFormatError(f"{len(data) - offset} unexpected bytes after the last field")
    missing = sorted(set(expected) - set(fields))
    extra = sorted(set(fields) - set(expected))
    if missing or extra:
        raise MessageFormatError(
            f"{kind.name} message for {scheme!r}: missing fields: {plain_list(missing) or 'none'}; "
            f"unexpected fields: {plain_list(extra) or 'none'}"
        )
    return Message(kind=kind, scheme=scheme, fields=fields)


def _check_bounds(name: str, value: FieldValue, error: type[Exception]) -> None:
    """Raise ``error`` naming the field if a numeric field lies outside ``BOUNDS`` (NaN included), the public
    key is longer than ``MAX_PUBLIC_KEY_BYTES``, or a TenSEAL object longer than its ``MAX_CKKS_*_BYTES``."""
    if name in BOUNDS:
        low, high = BOUNDS[name]
        if not low <= value <= high:
            shown = f"{high:.0f}" if high != math.inf else "inf"
            raise error(f"field {name!r} is {value!r}, outside its bounds [{low:g}, {shown}]")
    if name == "public_key_n" and len(value) > MAX_PUBLIC_KEY_BYTES:
        raise error(f"field 'public_key_n' holds {len(value)} bytes; a public key has at most {MAX_PUBLIC_KEY_BYTES}")
    if name == "ckks_context" and len(value) > MAX_CKKS_CONTEXT_BYTES:
        raise error(
            f"field 'ckks_context' holds {len(value)} bytes; a public CKKS context has at most {MAX_CKKS_CONTEXT_BYTES}"
        )
    if name == "ckks_vector_lengths" and value.size and int(value.max()) > MAX_CKKS_VECTOR_BYTES:
        raise error(
            f"field 'ckks_vector_lengths' announces a {int(value.max())}-byte CKKS vector; one has at most "
            f"{MAX_CKKS_VECTOR_BYTES}"
        )


def _encode_payload(name: str, field_type: FieldType, value: FieldValue) -> bytes:
    if field_type is FieldType.UINT64:
        if not isinstance(value, int | np.integer) or not 0 <= int(value) < 2**64:
            raise ValueError(f"field {name!r} must be an integer in [0, 2**64), got {value!r}")
        return int(value).to_bytes(8, "little")
    if field_type is FieldType.FLOAT64:
        if not isinstance(value, int | float | np.floating) or isinstance(value, bool):
            raise ValueError(f"field {name!r} must be a number, got {value!r}")
        return struct.pack("<d", float(value))
    if field_type is FieldType.BYTES:
        if not isinstance(value, bytes | bytearray):
            raise ValueError(f"field {name!r} must be bytes, got {type(value).__name__}")
        return bytes(value)
    dtype = "<u4" if field_type is FieldType.UINT32_ARRAY else "<f8"
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"field {name!r} must be a 1-D array, got shape {array.shape}")
    if (
        field_type is FieldType.UINT32_ARRAY
        and array.size
        and (not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() >= 2**32)
    ):
        raise ValueError(f"field {name!r} must hold integers in [0, 2**32)")
    return array.astype(dtype).tobytes()


def _decode_payload(name: str, field_type: FieldType, payload: bytes) -> FieldValue:
    if field_type is FieldType.UINT64:
        if len(payload) != 8:
            raise MessageFormatError(f"field {name!r} must be 8 bytes, got {len(payload)}")
        return int.from_bytes(payload, "little")
    if field_type is FieldType.FLOAT64:
        if len(payload) != 8:
            raise MessageFormatError(f"field {name!r} must be 8 bytes, got {len(payload)}")
        return struct.unpack("<d", payload)[0]
    if field_type is FieldType.BYTES:
        return payload
    item_size = _ITEM_SIZE[field_type]
    if len(payload) % item_size:
        raise MessageFormatError(f"field {name!r} of {len(payload)} bytes is not a whole number of items")
    dtype = "<u4" if field_type is FieldType.UINT32_ARRAY else "<f8"
    native = np.uint32 if field_type is FieldType.UINT32_ARRAY else np.float64
    array = np.frombuffer(payload, dtype=dtype).astype(native)
    array.flags.writeable = False
    return array
