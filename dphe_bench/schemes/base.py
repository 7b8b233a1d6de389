"""The three parties every aggregation scheme has, and what they share.

Parties exchange only ``bytes`` in the format of ``dphe_bench.schemes.messages``; no Python object passes
from one party to another. A round goes:

1. ``KeyGenerator(...).setup()`` -> one setup message per user and one for the aggregator;
2. each ``User(setup_message, backend).submit(weights, round_index)`` -> an UPDATE message;
3. ``Aggregator(setup_message, backend).receive(update)`` for each arriving update, then
   ``finish()`` -> an AGGREGATE message (users that never sent are simply absent: dropouts);
4. ``KeyGenerator.publish(aggregate)`` -> the average of the contributors' weights, float64 (D,).
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dphe_bench.backends import Backend
from dphe_bench.crypto.batch import CiphertextBatch
from dphe_bench.crypto.encoding import DEFAULT_PRECISION_BITS, FixedPointCodec
from dphe_bench.crypto.paillier import DEFAULT_KEY_BITS, PrivateKey, PublicKey, generate_keypair
from dphe_bench.errors import KeyMismatchError, ProtocolError
from dphe_bench.schemes.messages import Message, MessageKind, decode_message, encode_message

_SETUP_FIELDS = ("user_id", "dimension", "max_users")
_AGGREGATOR_SETUP_FIELDS = ("dimension", "max_users", "user_ids")
_UPDATE_FIELDS = ("user_id", "round", "dimension")
_AGGREGATE_FIELDS = ("round", "dimension", "contributors")
KEY_SETUP_FIELDS = ("public_key_n",)
FIXED_POINT_SETUP_FIELDS = (*KEY_SETUP_FIELDS, "precision_bits")
# The fewest contributors a round may have unless set otherwise: one contributor's "average" is its weights.
DEFAULT_MIN_CONTRIBUTORS = 2


@dataclass(frozen=True)
class SetupMessages:
    """What the key generator sends at setup: ``to_users[user_id]`` and ``to_aggregator``."""

    to_users: dict[int, bytes]
    to_aggregator: bytes

    @property
    def nbytes(self) -> int:
        """Total bytes sent by the key generator at setup."""
        return len(self.to_aggregator) + sum(len(m) for m in self.to_users.values())


class KeyGenerator(ABC):
    """Party K: sets the protocol up, and turns each round's aggregate into the published average.

    Parameters
    ----------
    dimension : int
        D, the length of every weight vector.
    user_ids : sequence of int
        The users of the federation (distinct, in [0, 2**32)).
    backend : Backend
        Crypto backend for decryption (unused by unencrypted schemes).
    """

    scheme: ClassVar[str]
    # Fields a scheme adds to the AGGREGATE message it receives.
    aggregate_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_options(cls, key_bits: int, users: int, **options: object) -> None:
        """Raise ValueError (or TypeError) now if the scheme's ``options`` cannot work with ``key_bits``-bit keys and
        ``users`` users, without generating a key. Schemes without options accept none."""
        if options:
            raise ValueError(f"scheme {cls.scheme!r} takes no options")

    def __init__(self, dimension: int, user_ids: Sequence[int], backend: Backend):
        if dimension < 1 or dimension >= 2**32:
            raise ProtocolError(f"dimension must be in [1, 2**32), got {dimension}")
        ids = [int(u) for u in user_ids]
        if not ids:
            raise ProtocolError("a federation needs at least one user")
        if len(set(ids)) != len(ids) or min(ids) < 0 or max(ids) >= 2**32:
            raise ProtocolError("user ids must be distinct integers in [0, 2**32)")
        self.dimension = dimension
        self.user_ids = ids
        self.backend = backend
        self.next_round = 0
        self.min_contributors = DEFAULT_MIN_CONTRIBUTORS

    def setup(self) -> SetupMessages:
        """Build the setup messages for every user and the aggregator."""
        common = {"dimension": self.dimension, "max_users": len(self.user_ids)}
        to_users = {
            uid: encode_message(
                Message(MessageKind.USER_SETUP, self.scheme, {"user_id": uid, **common, **self._user_setup_fields(uid)})
            )
            for uid in self.user_ids
        }
        aggregator_fields = {
            **common,
            "user_ids": np.array(self.user_ids, dtype=np.uint32),
            **self._aggregator_setup_fields(),
        }
        to_aggregator = encode_message(Message(MessageKind.AGGREGATOR_SETUP, self.scheme, aggregator_fields))
        return SetupMessages(to_users=to_users, to_aggregator=to_aggregator)

    def _user_setup_fields(self, user_id: int) -> dict:
        """Scheme-specific fields of user ``user_id``'s setup message."""
        return {}

    def _aggregator_setup_fields(self) -> dict:
        """Scheme-specific fields of the aggregator's setup message."""
        return {}

    def set_min_contributors(self, count: int) -> None:
        """Refuse from now on to publish a round whose aggregate claims fewer than ``count`` contributors (default 2).

        The claim is the aggregator's: this stops an aggregator that counts honestly, not one that lies. With one
        contributor the published average is that user's own weights, which every other user
        reads; so 1 is for a one-user federation (or a test), set on purpose. Raises ProtocolError unless
        1 <= count <= the number of users.
        """
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(self.user_ids):
            raise ProtocolError(
                f"min_contributors must be an integer in [1, {len(self.user_ids)}] (the federation's users), "
                f"got {count!r}"
            )
        self.min_contributors = count

    def publish(self, aggregate_message: bytes) -> np.ndarray:
        """Parse this round's AGGREGATE message and return the contributors' average, float64 (D,).

        Raises ProtocolError, before any decryption, for the wrong round or dimension, or a contributor
        count outside [min_contributors, users]; errors of the scheme's own checks and decoding pass through.
        """
        message = decode_message(
            aggregate_message, MessageKind.AGGREGATE, self.scheme, _AGGREGATE_FIELDS + self.aggregate_fields
        )
        if message["round"] != self.next_round:
            raise ProtocolError(f"aggregate is for round {message['round']}, expected round {self.next_round}")
        _check_dimension(message, self.dimension)
        check_contributors(message["contributors"], self.min_contributors, len(self.user_ids))
        contributors = message["contributors"]
        total = self._sum_from_aggregate(message)
        self.next_round += 1
        return total / contributors

    @abstractmethod
    def _sum_from_aggregate(self, message: Message) -> np.ndarray:
        """The sum of the contributors' weights, float64 (D,), from a checked AGGREGATE message."""


class User(ABC):
    """Party U_i: turns its weight vector into an UPDATE message for the aggregator."""

    scheme: ClassVar[str]
    setup_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, setup_message: bytes, backend: Backend):
        message = decode_message(setup_message, MessageKind.USER_SETUP, self.scheme, _SETUP_FIELDS + self.setup_fields)
        self.user_id = message["user_id"]
        self.dimension = message["dimension"]
        self.max_users = message["max_users"]
        self.backend = backend
        self.last_ciphertext_count = 0
        self._configure(message)

    def _configure(self, message: Message) -> None:
        """Read the scheme-specific setup fields."""

    def submit(self, weights: np.ndarray, round_index: int) -> bytes:
        """Encode (and encrypt) ``weights``, float64 of shape (D,), as this round's UPDATE message."""
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (self.dimension,):
            raise ProtocolError(
                f"user {self.user_id}: weights must have shape ({self.dimension},), got {weights.shape}"
            )
        fields = {
            "user_id": self.user_id,
            "round": round_index,
            "dimension": self.dimension,
            **self._update_fields(weights),
        }
        return encode_message(Message(MessageKind.UPDATE, self.scheme, fields))

    def ciphertexts_needed(self, weights: np.ndarray) -> int:
        """How many ciphertexts ``submit(weights, ...)`` will encrypt (for ``pool`` precomputation)."""
        return 0

    @abstractmethod
    def _update_fields(self, weights: np.ndarray) -> dict:
        """Scheme-specific fields of the UPDATE message for ``weights``; sets ``last_ciphertext_count``."""


class Aggregator(ABC):
    """Party A: combines the updates that arrive in a round, without any secret key."""

    scheme: ClassVar[str]
    setup_fields: ClassVar[tuple[str, ...]] = ()
    update_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, setup_message: bytes, backend: Backend):
        message = decode_message(
            setup_message, MessageKind.AGGREGATOR_SETUP, self.scheme, _AGGREGATOR_SETUP_FIELDS + self.setup_fields
        )
        self.dimension = message["dimension"]
        self.max_users = message["max_users"]
        self.user_ids = [int(u) for u in message["user_ids"]]
        if len(self.user_ids) != self.max_users or len(set(self.user_ids)) != len(self.user_ids):
            raise ProtocolError("aggregator setup: user_ids must list max_users distinct ids")
        self.backend = backend
        self.round = 0
        self._received: list[int] = []
        self._configure(message)
        self._start_round()

    def _configure(self, message: Message) -> None:
        """Read the scheme-specific setup fields."""

    @property
    def contributors(self) -> list[int]:
        """Ids of the users whose update was accepted this round, in arrival order."""
        return list(self._received)

    def receive(self, update: bytes) -> None:
        """Check and take in one user's UPDATE message. Raises without changing state if it is bad."""
        message = decode_message(update, MessageKind.UPDATE, self.scheme, _UPDATE_FIELDS + self.update_fields)
        user_id = message["user_id"]
        if user_id not in self.user_ids:
            raise ProtocolError(f"update from unknown user {user_id}")
        if message["round"] != self.round:
            raise ProtocolError(
                f"update from user {user_id} is for round {message['round']}, the current round is {self.round}"
            )
        if user_id in self._received:
            raise ProtocolError(f"user {user_id} already submitted in round {self.round}")
        _check_dimension(message, self.dimension)
        self._ingest(user_id, message)
        self._received.append(user_id)

    def finish(self) -> bytes:
        """Close the round: the AGGREGATE message over the users that submitted. Starts the next round."""
        if not self._received:
            raise ProtocolError(f"no user submitted an update in round {self.round}")
        fields = {
            "round": self.round,
            "dimension": self.dimension,
            "contributors": len(self._received),
            **self._aggregate_fields(),
        }
        message = encode_message(Message(MessageKind.AGGREGATE, self.scheme, fields))
        self.round += 1
        self._received = []
        self._start_round()
        return message

    @abstractmethod
    def _start_round(self) -> None:
        """Reset the per-round accumulator."""

    @abstractmethod
    def _ingest(self, user_id: int, message: Message) -> None:
        """Add a checked update to the accumulator; must raise before changing state if it is bad."""

    @abstractmethod
    def _aggregate_fields(self) -> dict:
        """Scheme-specific fields of the AGGREGATE message."""


class EncryptedKeyGenerator(KeyGenerator):
    """A key generator that holds a Paillier key pair (dense, dphe, packed)."""

    aggregate_fields = ("key_id", "ciphertexts")

    def __init__(self, dimension: int, user_ids: Sequence[int], backend: Backend, key_bits: int = DEFAULT_KEY_BITS):
        super().__init__(dimension, user_ids, backend)
        public_key, private_key = generate_keypair(key_bits)
        self.public_key: PublicKey = public_key
        self._private_key: PrivateKey = private_key

    def _key_fields(self) -> dict:
        """Setup fields shared by the users and the aggregator: the public key and the encoding parameters."""
        n = self.public_key.n
        return {"public_key_n": n.to_bytes((n.bit_length() + 7) // 8, "big")}

    def _user_setup_fields(self, user_id: int) -> dict:
        return self._key_fields()

    def _aggregator_setup_fields(self) -> dict:
        return self._key_fields()

    def _ciphertexts(self, message: Message, expected: int | None = None) -> CiphertextBatch:
        """The checked ciphertext batch of an AGGREGATE message: this key, every value a valid ciphertext, and
        ``expected`` of them when given. Checks only what can be checked without decrypting."""
        _check_key_id(message, self.public_key)
        batch = CiphertextBatch.from_bytes(self.public_key, message["ciphertexts"])
        if expected is not None and len(batch) != expected:
            raise ProtocolError(f"aggregate holds {len(batch)} ciphertexts, expected {expected}")
        return batch

    def _decrypt(self, batch: CiphertextBatch) -> list[int]:
        """Decrypt a checked batch: ints in [0, n), in batch order."""
        return self.backend.decrypt(self._private_key, batch)


class FixedPointKeyGenerator(EncryptedKeyGenerator):
    """An encrypted scheme's key generator with one fixed-point precision for every value (dense, dphe)."""

    def __init__(
        self,
        dimension: int,
        user_ids: Sequence[int],
        backend: Backend,
        key_bits: int = DEFAULT_KEY_BITS,
        precision_bits: int = DEFAULT_PRECISION_BITS,
    ):
        super().__init__(dimension, user_ids, backend, key_bits)
        self.codec = FixedPointCodec(self.public_key.n, precision_bits, max_summands=len(self.user_ids))

    @classmethod
    def check_options(cls, key_bits: int, users: int, precision_bits: int = DEFAULT_PRECISION_BITS) -> None:
        # An odd modulus of key_bits bits stands in for n: the codec's limits depend only on its size.
        FixedPointCodec((1 << (key_bits - 1)) + 1, precision_bits, max_summands=users)

    def _key_fields(self) -> dict:
        return {**super()._key_fields(), "precision_bits": self.codec.precision_bits}

    def _decode_sums(self, batch: CiphertextBatch, contributors: int) -> np.ndarray:
        """Decrypt and decode a checked batch of sums of ``contributors`` users: float64, in batch order.

        Raises EncodingOverflowError naming the index of a sum that ``contributors`` honest users cannot produce.
        """
        return self.codec.decode(self._decrypt(batch), summands=contributors)


def public_key_from_setup(message: Message) -> PublicKey:
    """The public key a setup message of an encrypted scheme carries; ProtocolError if it breaks the key rules."""
    try:
        return PublicKey(int.from_bytes(message["public_key_n"], "big"))
    except ValueError as exc:
        raise ProtocolError(f"setup message: the public key is refused: {exc}") from None


def codec_from_setup(message: Message, public_key: PublicKey) -> FixedPointCodec:
    """The fixed-point codec a dense or dphe setup message describes; ProtocolError if it is impossible."""
    try:
        return FixedPointCodec(public_key.n, message["precision_bits"], max_summands=message["max_users"])
    except ValueError as exc:
        raise ProtocolError(f"setup message: no fixed-point encoding fits: {exc}") from None


def ciphertexts_from_update(message: Message, public_key: PublicKey) -> CiphertextBatch:
    """The checked ciphertext batch of an UPDATE message under ``public_key``."""
    _check_key_id(message, public_key)
    return CiphertextBatch.from_bytes(public_key, message["ciphertexts"])


def _check_key_id(message: Message, public_key: PublicKey) -> None:
    if message["key_id"] != public_key.key_id:
        raise KeyMismatchError(
            f"message was made under key {message['key_id']:016x}, this party holds key {public_key.key_id:016x}"
        )


def check_contributors(contributors: int, min_contributors: int, users: int) -> None:
    """Raise ProtocolError unless an aggregate's contributor count is in [min_contributors, users]."""
    if contributors > users:
        raise ProtocolError(f"aggregate claims {contributors} contributors; the federation has {users} users")
    if contributors < min_contributors:
        raise ProtocolError(
            f"aggregate claims {contributors} contributor(s); the key generator publishes no round of fewer than "
            f"{min_contributors} (min_contributors), as the average of one user would be that user's weights"
        )


def _check_dimension(message: Message, dimension: int) -> None:
    if message["dimension"] != dimension:
        raise ProtocolError(f"message has dimension {message['dimension']}, expected {dimension}")
