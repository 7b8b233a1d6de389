"""``ckks``: approximate homomorphic averaging with CKKS through TenSEAL, for comparison with the Paillier schemes.

The parties speak the same message format as the others. The key generator makes a CKKS context and keeps its
secret key; users and the aggregator receive a *public* context (public key only: no secret key, no relinearisation
or Galois keys, which additions do not need); each user encrypts its D weights as ceil(D / 4,096) packed CKKS
vectors; the aggregator adds the vectors without any key; the key generator decrypts the sums, divides by the
contributors and publishes the average rounded to multiples of 2**-20.

Parameters (fixed): poly modulus degree N = 8,192, coefficient moduli of 60, 40, 40 and 60 bits (200 bits in
all: the HE standard's table allows at most 218 bits at N = 8,192 for 128-bit classical security with a ternary
secret), scale 2**40, so 4,096 values per vector. These are the parameters NVIDIA FLARE's TenSEAL aggregation uses.
CKKS randomness is SEAL's (its PRNG is seeded from the OS through ``std::random_device``).

Why the published average is rounded: publishing raw CKKS decryptions to parties that hold the ciphertexts leaks
the secret key (Li and Micciancio, "On the Security of Homomorphic Encryption on Approximate Numbers",
EUROCRYPT 2021): a decryption carries the encryption noise, and noise plus ciphertext give linear equations in the
key. The key generator therefore rounds the average to ``PUBLISH_PRECISION_BITS`` = 20 fractional bits, a step
(9.5e-7) above the high-probability noise bound of a fresh ciphertext (``NOISE_BOUND``, 5.8e-7), so the published
values carry (almost) nothing of the noise. Rounding is the mitigation Li and Micciancio discuss, not a proof of
security: values that fall near a rounding boundary still reveal a little.

Leakage: the aggregator learns nothing but D (every user sends ceil(D / 4,096) vectors whatever its weights); the
key generator learns the approximate sum (the model). Error of the published average: at most 2**-21 (rounding)
plus ``NOISE_BOUND`` (see ``error_bound``). Weights beyond +-2**20 are refused (EncodingOverflowError).

Every serialised TenSEAL object travels in a typed, length-bounded field (``messages.MAX_CKKS_CONTEXT_BYTES``,
``messages.MAX_CKKS_VECTOR_BYTES``); bytes that TenSEAL cannot parse, a context or vector of other parameters, a
vector of the wrong length or count are a ProtocolError. TenSEAL is imported only when a party is built: without it
the scheme is registered but every party raises BackendUnavailableError saying how to install it.
"""

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from dphe_bench.backends import Backend
from dphe_bench.crypto.paillier import DEFAULT_KEY_BITS
from dphe_bench.errors import BackendUnavailableError, EncodingOverflowError, KeyMismatchError, ProtocolError
from dphe_bench.schemes.base import Aggregator, KeyGenerator, User
from dphe_bench.schemes.messages import Message

LEAKAGE = "nothing but D; the key generator learns the approximate sum (the model), rounded to 2**-20"
INSTALL_HINT = "pip install 'dphe-bench[ckks]'"
POLY_MODULUS_DEGREE = 8192
COEFF_MODULUS_BITS = (60, 40, 40, 60)
SCALE_BITS = 40
SLOTS = POLY_MODULUS_DEGREE // 2
SECURITY_BITS = 128
PUBLISH_PRECISION_BITS = 20
MAX_ABS_WEIGHT = 2.0**20
# The fresh-encryption noise bound of Cheon, Kim, Kim and Song (ASIACRYPT 2017, Lemma 1), divided by the scale:
# 8*sqrt(2)*sigma*N + 6*sigma*sqrt(N) + 16*sigma*sqrt(h*N), sigma = 3.2 (SEAL's), h = 2N/3 (a ternary secret's
# expected Hamming weight), plus sqrt(N) / 2 for encoding's rounding. A bound that holds with overwhelming
# probability per slot, not with certainty; a mean of users' values carries at most the largest user's noise.
_SIGMA = 3.2
NOISE_BOUND = (
    8 * math.sqrt(2) * _SIGMA * POLY_MODULUS_DEGREE
    + 6 * _SIGMA * math.sqrt(POLY_MODULUS_DEGREE)
    + 16 * _SIGMA * math.sqrt(2 * POLY_MODULUS_DEGREE / 3 * POLY_MODULUS_DEGREE)
    + math.sqrt(POLY_MODULUS_DEGREE) / 2
) / 2.0**SCALE_BITS
_VECTOR_FIELDS = ("key_id", "ckks_vectors", "ckks_vector_lengths")


def unavailable_reason() -> str | None:
    """None when TenSEAL imports here, else why not and how to install it."""
    try:
        import tenseal  # noqa: F401
    except ImportError as exc:
        return f"TenSEAL is not installed ({exc}): {INSTALL_HINT}"
    return None


def _tenseal():
    """The ``tenseal`` module (with its SEAL bindings registered); BackendUnavailableError if it is missing."""
    reason = unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"scheme 'ckks' needs TenSEAL: {reason}")
    import tenseal
    import tenseal.sealapi  # registers the SEAL types that the parameter checks read

    return tenseal


def vectors_for(dimension: int) -> int:
    """CKKS vectors per user for D weights: ceil(D / 4,096)."""
    return -(-dimension // SLOTS)


def error_bound(max_abs_weight: float, users: int) -> float:
    """Largest |published average - exact average| per weight: rounding (2**-21) + ``NOISE_BOUND`` + float64 error.

    ``max_abs_weight`` is the largest |weight| of any user, ``users`` the contributors. The float64 term covers
    the encoder's FFT and the sum of ``users`` decoded values (relative error 2**-40 of the largest weight, far
    above float64's own).
    """
    return 2.0 ** -(PUBLISH_PRECISION_BITS + 1) + NOISE_BOUND + users * max(1.0, max_abs_weight) * 2.0**-40


def context_key_id(context_bytes: bytes) -> int:
    """A 64-bit id of a serialised public context: the first 8 bytes of its SHA-256, big-endian."""
    return int.from_bytes(hashlib.sha256(context_bytes).digest()[:8], "big")


def _parse_context(context_bytes: bytes):
    """The public CKKS context a setup message carries; ProtocolError unless it has exactly this scheme's
    parameters, a public key and no secret key."""
    ts = _tenseal()
    try:
        context = ts.context_from(context_bytes)
    except Exception as exc:  # TenSEAL and SEAL raise ValueError, RuntimeError or TypeError on bad bytes
        raise ProtocolError(f"setup message: TenSEAL cannot parse the CKKS context: {exc}") from None
    if context.has_secret_key() or not context.is_public():
        raise ProtocolError("setup message: the CKKS context holds a secret key; only public contexts are accepted")
    if not context.has_public_key():
        raise ProtocolError("setup message: the CKKS context has no public key")
    try:
        parms = context.seal_context().data.key_context_data().parms()
        found = (str(parms.scheme()), parms.poly_modulus_degree(), tuple(m.bit_count() for m in parms.coeff_modulus()))
        scale = context.global_scale
    except Exception as exc:
        raise ProtocolError(f"setup message: the CKKS context's parameters cannot be read: {exc}") from None
    expected = ("SCHEME_TYPE.CKKS", POLY_MODULUS_DEGREE, COEFF_MODULUS_BITS)
    if found != expected or scale != 2.0**SCALE_BITS:
        raise ProtocolError(
            f"setup message: CKKS context has (scheme, N, coefficient moduli bits) {found} and scale {scale!r}; "
            f"expected {expected} and 2**{SCALE_BITS}"
        )
    return context


def _pack(vectors: Sequence) -> dict:
    """The wire fields of a list of CKKS vectors: their serialisations end to end, and each one's length."""
    blobs = [vector.serialize() for vector in vectors]
    return {"ckks_vectors": b"".join(blobs), "ckks_vector_lengths": np.array([len(b) for b in blobs], dtype=np.uint32)}


def _unpack(message: Message, context, dimension: int, sender: str) -> list:
    """The checked CKKS vectors of an UPDATE or AGGREGATE message, parsed under ``context``.

    Raises ProtocolError (before anything is kept) unless there are ceil(D / 4,096) vectors whose lengths add up to
    the bytes received, each parses, holds one fresh ciphertext of this context's parameters at scale 2**40, and
    has 4,096 values (the last: the rest of D).
    """
    ts = _tenseal()
    lengths = [int(n) for n in message["ckks_vector_lengths"]]
    data = message["ckks_vectors"]
    expected = vectors_for(dimension)
    if len(lengths) != expected:
        raise ProtocolError(f"{sender} sent {len(lengths)} CKKS vectors, expected {expected} for D = {dimension}")
    if sum(lengths) != len(data):
        raise ProtocolError(f"{sender}'s CKKS vector lengths add up to {sum(lengths)} bytes; {len(data)} were sent")
    first_parms_id = context.seal_context().data.first_parms_id()
    vectors, offset = [], 0
    for index, length in enumerate(lengths):
        size = min(SLOTS, dimension - index * SLOTS)
        try:
            vector = ts.ckks_vector_from(context, data[offset : offset + length])
            ciphertexts = vector.ciphertext()
            shape_ok = vector.size() == size and len(ciphertexts) == 1
            parameters_ok = shape_ok and (
                ciphertexts[0].parms_id() == first_parms_id
                and ciphertexts[0].size() == 2
                and ciphertexts[0].is_ntt_form()
                and ciphertexts[0].scale == 2.0**SCALE_BITS
            )
        except Exception as exc:  # SEAL's checks raise RuntimeError or ValueError; TenSEAL's parser ValueError
            raise ProtocolError(f"{sender}'s CKKS vector {index} is refused by TenSEAL: {exc}") from None
        if not shape_ok:
            raise ProtocolError(f"{sender}'s CKKS vector {index} is not one ciphertext of {size} values")
        if not parameters_ok:
            raise ProtocolError(
                f"{sender}'s CKKS vector {index} is not a fresh ciphertext of this context (parameters, size or scale)"
            )
        vectors.append(vector)
        offset += length
    return vectors


def _check_key_id(message: Message, key_id: int, sender: str) -> None:
    if message["key_id"] != key_id:
        raise KeyMismatchError(
            f"{sender}'s CKKS vectors were made under context {message['key_id']:016x}, this party holds {key_id:016x}"
        )


class CkksKeyGenerator(KeyGenerator):
    """Makes the CKKS context and keeps its secret key; decrypts the summed vectors and publishes the rounded average.

    ``key_bits`` is the Paillier key size of the other encrypted schemes: accepted so that ``ckks`` runs wherever
    they do, and not used (CKKS's security comes from its fixed parameters: 128 bits).
    """

    scheme = "ckks"
    aggregate_fields = _VECTOR_FIELDS

    def __init__(self, dimension: int, user_ids: Sequence[int], backend: Backend, key_bits: int = DEFAULT_KEY_BITS):
        super().__init__(dimension, user_ids, backend)
        ts = _tenseal()
        self._context = ts.context(
            ts.SCHEME_TYPE.CKKS, poly_modulus_degree=POLY_MODULUS_DEGREE, coeff_mod_bit_sizes=list(COEFF_MODULUS_BITS)
        )
        self._context.global_scale = 2.0**SCALE_BITS
        public = self._context.copy()
        public.make_context_public()
        self.public_context_bytes: bytes = public.serialize(
            save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
        )
        self.key_id = context_key_id(self.public_context_bytes)

    def __getstate__(self) -> dict:
        """For pickling and deepcopy (asv's cache): the context as TenSEAL's bytes, secret key included, since a
        TenSEAL context does not pickle. The key generator's own state: it never travels in a message."""
        state = dict(self.__dict__)
        state["_context"] = self._context.serialize(save_secret_key=True)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._context = _tenseal().context_from(state["_context"])

    def _user_setup_fields(self, user_id: int) -> dict:
        return {"ckks_context": self.public_context_bytes}

    def _aggregator_setup_fields(self) -> dict:
        return {"ckks_context": self.public_context_bytes}

    def publish(self, aggregate_message: bytes) -> np.ndarray:
        """The contributors' average, float64 (D,), rounded to multiples of 2**-20 (see the module's docstring)."""
        average = super().publish(aggregate_message)
        return np.round(average * 2.0**PUBLISH_PRECISION_BITS) / 2.0**PUBLISH_PRECISION_BITS

    def _sum_from_aggregate(self, message: Message) -> np.ndarray:
        _check_key_id(message, self.key_id, "the aggregator")
        vectors = _unpack(message, self._context, self.dimension, "the aggregator")
        try:
            total = np.concatenate([np.asarray(vector.decrypt(), dtype=np.float64) for vector in vectors])
        except Exception as exc:  # SEAL refuses to decode a ciphertext whose values overflow its scale
            raise ProtocolError(f"the aggregate cannot be decrypted: {exc}") from None
        contributors = message["contributors"]
        limit = contributors * MAX_ABS_WEIGHT + 1.0
        bad = np.flatnonzero(~(np.abs(total) <= limit))
        if bad.size:
            raise EncodingOverflowError(
                f"decrypted sum at index {int(bad[0])} is {total[bad[0]]:.6g}, outside what {contributors} users "
                f"with weights in +-2**20 can produce"
            )
        return total


class CkksUser(User):
    """Encrypts its D weights as ceil(D / 4,096) CKKS vectors under the public context."""

    scheme = "ckks"
    setup_fields = ("ckks_context",)

    def _configure(self, message: Message) -> None:
        self._context = _parse_context(message["ckks_context"])
        self.key_id = context_key_id(message["ckks_context"])

    def ciphertexts_needed(self, weights: np.ndarray) -> int:
        return vectors_for(self.dimension)

    def _update_fields(self, weights: np.ndarray) -> dict:
        bad = np.flatnonzero(~(np.abs(weights) <= MAX_ABS_WEIGHT))
        if bad.size:
            raise EncodingOverflowError(
                f"user {self.user_id}: weight {int(bad[0])} is {weights[bad[0]]!r}; ckks takes finite weights "
                "in +-2**20"
            )
        ts = _tenseal()
        vectors = [ts.ckks_vector(self._context, weights[i : i + SLOTS]) for i in range(0, weights.size, SLOTS)]
        self.last_ciphertext_count = len(vectors)
        return {"key_id": self.key_id, **_pack(vectors)}


class CkksAggregator(Aggregator):
    """Adds the users' CKKS vectors position by position, holding only the public context."""

    scheme = "ckks"
    setup_fields = ("ckks_context",)
    update_fields = _VECTOR_FIELDS

    def _configure(self, message: Message) -> None:
        self._context = _parse_context(message["ckks_context"])
        self.key_id = context_key_id(message["ckks_context"])

    def _start_round(self) -> None:
        self._sums: list | None = None

    def _ingest(self, user_id: int, message: Message) -> None:
        sender = f"user {user_id}"
        _check_key_id(message, self.key_id, sender)
        vectors = _unpack(message, self._context, self.dimension, sender)
        if self._sums is None:
            self._sums = vectors
            return
        try:
            sums = [total + vector for total, vector in zip(self._sums, vectors, strict=True)]
        except Exception as exc:  # SEAL refuses to add ciphertexts whose parameters differ
            raise ProtocolError(f"{sender}'s CKKS vectors cannot be added to the others: {exc}") from None
        self._sums = sums

    def _aggregate_fields(self) -> dict:
        return {"key_id": self.key_id, **_pack(self._sums)}
