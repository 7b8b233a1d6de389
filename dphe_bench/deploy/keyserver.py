"""The key generator K as a network service: an HTTP(S) API around a scheme's ``KeyGenerator``.

K sets the protocol up once (keys, P, every P_i), writes one bearer token per party, and then serves:

=====  ====================  ===========  ============================================================
verb   path                  who          what
=====  ====================  ===========  ============================================================
GET    /v1/health            anyone       ``ok`` once the service is up
GET    /v1/status            anyone       JSON: scheme, dimension, users, rounds, rounds_published
GET    /v1/setup             user, aggr.  the caller's setup message: USER_SETUP (pk, P, P_i) for user i,
                                          AGGREGATOR_SETUP (pk, every P_i) for the aggregator
POST   /v1/aggregate         aggregator   body: this round's AGGREGATE message; K decrypts it, undoes P,
                                          divides by the contributors and publishes the average; answers
                                          JSON ``{"round": r, "contributors": c}``
GET    /v1/average/<r>       users        the average published after round r: D float64 little-endian
                                          (8 D bytes), headers X-DPHE-Round and X-DPHE-Contributors
=====  ====================  ===========  ============================================================

Every request but health and status carries ``Authorization: Bearer <token>``; the token names the
party (``aggregator.token``, ``user-<i>.token`` in the tokens folder, mode 0600). So the aggregator can
never fetch a user's setup (which holds P) nor the published model, and a user cannot post aggregates
or fetch another user's P_i. Errors: 401 (no or unknown token), 403 (wrong party), 404 (unknown path or
round not published yet), 410 (a round voided by a protocol violation), 400 (a rejected message),
409 (no aggregate is decrypted now: one is being decrypted, a violation stopped decryption, or all the
federation's rounds are published), 411/413 (body length); the HTTP layer is ``keyserver_http``.

The aggregate endpoint would be a decryption oracle if its answers depended on the decrypted values:
Paillier ciphertexts are malleable, so the aggregator can turn a user's E(m) into E(m + k) and ask
whether m + k decodes. So ``KeyService.publish`` checks everything that needs no key before decrypting
(``check_aggregate``: kind, scheme, round, dimension, contributor count, key, ciphertext count and range,
indices), and those refusals leave K's state unchanged. Any failure after decryption is answered with
one fixed message (``VOID_ROUND``), logged as an alert, voids the round and stops all further decryption:
one decryption attempt per round, and none after a violation (the aggregator could otherwise replay an
earlier round's ciphertext as each later round's aggregate and learn one bit per round). And no aggregate is
decrypted for a round >= ``rounds`` (``federation.rounds``): each decrypted round tells the aggregator one
bit (published or void), so without the cap it could post one-position probes round after round and learn a
user's weight bit by bit; with it, the whole federation tells it at most log2(rounds + 1) bits.

Transport: the tokens and the setup messages must not travel in the clear, so the service only runs
over TLS (``certfile`` + ``keyfile``), except with ``insecure_local_test`` on a loopback address.
"""

import hmac
import ipaddress
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dphe_bench.backends import Backend
from dphe_bench.crypto.batch import CiphertextBatch
from dphe_bench.crypto.limbs import LIMB_BYTES, limb_width
from dphe_bench.errors import ConfigError, DestinationError, DpheError, KeyMismatchError, ProtocolError
from dphe_bench.files import write_atomically, write_text_atomically
from dphe_bench.learning.config import Config
from dphe_bench.schemes import KeyGenerator, get_scheme
from dphe_bench.schemes.base import check_contributors
from dphe_bench.schemes.dphe import check_indices
from dphe_bench.schemes.messages import Message, MessageKind, decode_message

API = "/v1"
AGGREGATOR = "aggregator"
USER = "user"
# Header, field headers and the UINT64 fields of an AGGREGATE message fit in this many bytes.
MESSAGE_OVERHEAD_BYTES = 1024
# The schemes whose aggregates ``check_aggregate`` checks in full before decryption; the key server serves no other.
SERVED_SCHEMES = ("plain", "dense", "dphe", "packed")
VOID_ROUND = "it failed after decryption: the round is void and this key server decrypts no further aggregate"
log = logging.getLogger("dphe_bench.keyserver")


class AggregateRejected(ProtocolError):
    """An AGGREGATE the key server refuses (HTTP 400); the reason names no decrypted value."""


class DecryptionRefused(ProtocolError):
    """No aggregate may be decrypted now (HTTP 409): one is being decrypted, or a violation stopped decryption."""


@dataclass(frozen=True)
class Party:
    """Who a token belongs to: the aggregator, or user ``user_id``."""

    role: str
    user_id: int | None = None

    def __str__(self) -> str:
        return AGGREGATOR if self.role == AGGREGATOR else f"user {self.user_id}"


def token_filename(party: Party) -> str:
    """``aggregator.token`` or ``user-<i>.token``."""
    return f"{AGGREGATOR}.token" if party.role == AGGREGATOR else f"user-{party.user_id}.token"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(host: str, certfile: str | None, keyfile: str | None, insecure_local_test: bool) -> None:
    """Refuse to serve keys over an insecure link: TLS is required unless this is a local test on loopback."""
    if insecure_local_test:
        if certfile or keyfile:
            raise ValueError("--insecure-local-test serves without TLS: leave out the TLS certificate and key")
        if not is_loopback(host):
            raise ValueError(
                f"--insecure-local-test only binds loopback addresses (127.0.0.1, ::1, localhost), not {host!r}: "
                "anywhere else the tokens and setup messages (P, P_i) would cross the network in the clear"
            )
        return
    if not certfile or not keyfile:
        raise ValueError(
            "the key server hands out P and the P_i and receives the aggregates: it needs TLS "
            "(--tls-cert and --tls-key), or --insecure-local-test for a test on 127.0.0.1"
        )


def check_destinations(tokens_dir: str, out_dir: str | None) -> None:
    """Check the key server's folders before any is made: a start refuses rather than leave folders behind.

    Each must be a folder, or makeable under an existing writable folder; and the tokens folder must hold no
    ``*.token`` file: a start never replaces tokens, which may be those of a key server still running (its
    parties would be locked out). Raises DestinationError naming the option and the problem.
    """
    for path, what in ((tokens_dir, "tokens folder (--tokens-dir)"), (out_dir, "averages folder (--out)")):
        if path is None:
            continue
        if not str(path).strip():
            raise DestinationError(f"{what} is empty: name a path")
        path = Path(path)
        for ancestor in (path, *path.parents):
            if ancestor.exists():
                if not ancestor.is_dir():
                    raise DestinationError(f"{what} {path} cannot be made: {ancestor} is a file, not a folder")
                if not os.access(ancestor, os.W_OK | os.X_OK):
                    raise DestinationError(f"{what} {path} cannot be made: {ancestor} is not writable")
                break
    tokens = sorted(path.name for path in Path(tokens_dir).glob("*.token")) if Path(tokens_dir).is_dir() else []
    if tokens:
        raise DestinationError(
            f"the tokens folder {tokens_dir} already holds tokens ({', '.join(tokens[:3])}"
            f"{', ...' if len(tokens) > 3 else ''}), perhaps of a key server still running: a new start makes new "
            "keys and would replace them; name an empty folder, or remove the old tokens once that server is stopped"
        )


def key_generator_from_config(config: Config, dimension: int, backend: Backend) -> KeyGenerator:
    """The configured scheme's key generator for users 0..N-1, built as ``simulation.Federation`` builds it.

    It publishes no round of fewer than ``federation.min_contributors`` contributors. Raises ConfigError, before
    making any key, for a scheme the key server does not serve (``SERVED_SCHEMES``).
    """
    check_served(config.crypto.scheme)
    scheme = get_scheme(config.crypto.scheme)
    options = {name: getattr(config.crypto, name) for name in scheme.options}
    if scheme.encrypted:
        options["key_bits"] = config.crypto.key_bits
    key_generator = scheme.key_generator(dimension, list(range(config.federation.users)), backend, **options)
    key_generator.set_min_contributors(config.federation.min_contributors)
    return key_generator


def check_served(scheme: str) -> None:
    """Raise ConfigError unless the key server serves ``scheme`` (it must check its aggregates before decrypting)."""
    if scheme not in SERVED_SCHEMES:
        raise ConfigError(
            f"the key server does not serve scheme {scheme!r}: it checks aggregates before decrypting only for "
            f"{', '.join(SERVED_SCHEMES)}"
        )


def max_aggregate_bytes(key_generator: KeyGenerator) -> int:
    """The largest AGGREGATE ``key_generator`` can accept: at most D ciphertexts and D indices, or D float64."""
    public_key = getattr(key_generator, "public_key", None)
    if public_key is None:
        return MESSAGE_OVERHEAD_BYTES + 8 * key_generator.dimension
    row_bytes = limb_width(public_key.nsquare) * LIMB_BYTES
    return MESSAGE_OVERHEAD_BYTES + key_generator.dimension * (row_bytes + 4)


def check_aggregate(key_generator: KeyGenerator, aggregate: bytes) -> Message:
    """Every check of an AGGREGATE that needs no private key, so that nothing is decrypted before it passes.

    Checks the size, kind, scheme and fields, the dimension, the contributor count (in [min_contributors,
    users]), the key id, that the ciphertexts are whole, in [1, n^2) and invertible, and their count: D for
    dense, ceil(D / slots) for packed, as many as the indices (at most D, distinct, in [0, D)) for dphe.
    The round is checked by ``KeyService`` against its state. Raises AggregateRejected naming the problem.
    """
    limit = max_aggregate_bytes(key_generator)
    if len(aggregate) > limit:
        raise AggregateRejected(f"an aggregate of {len(aggregate)} bytes exceeds the {limit}-byte limit")
    scheme = key_generator.scheme
    fields = ("round", "dimension", "contributors", *key_generator.aggregate_fields)
    try:
        message = decode_message(aggregate, MessageKind.AGGREGATE, scheme, fields)
        dimension = key_generator.dimension
        if message["dimension"] != dimension:
            raise ProtocolError(f"message has dimension {message['dimension']}, expected {dimension}")
        check_contributors(message["contributors"], key_generator.min_contributors, len(key_generator.user_ids))
        if scheme == "plain":
            values = message["values"]
            if values.shape != (dimension,) or not np.all(np.isfinite(values)):
                raise ProtocolError(f"the aggregate must hold {dimension} finite values")
            return message
        public_key = key_generator.public_key
        if message["key_id"] != public_key.key_id:
            raise KeyMismatchError(f"aggregate was made under key {message['key_id']:016x}, not this key server's")
        count = len(CiphertextBatch.from_bytes(public_key, message["ciphertexts"]))
        if scheme == "dphe":
            expected = check_indices(message["indices"], count, dimension, "the aggregator").size
        elif scheme == "dense":
            expected = dimension
        else:
            expected = key_generator.layout.ciphertexts_for(dimension)
        if count != expected:
            raise ProtocolError(f"aggregate holds {count} ciphertexts, expected {expected}")
    except AggregateRejected:
        raise
    except DpheError as exc:
        raise AggregateRejected(str(exc)) from None
    return message


class KeyService:
    """K's state behind the API: the setup messages, the party tokens and the published averages.

    Parameters
    ----------
    key_generator : KeyGenerator
        The scheme's key generator, freshly built (``setup()`` is called here, once).
    tokens_dir : Path
        Where ``aggregator.token`` and ``user-<i>.token`` are written (mode 0600; replaced if present).
    out_dir : Path, optional
        Where each published average is saved as ``average-round-<r>.npy``.
    rounds : int
        The federation's rounds (``federation.rounds``): no aggregate is decrypted for round ``rounds`` or later.

    Raises ConfigError for a scheme the key server does not serve, ValueError for ``rounds`` < 1.
    """

    def __init__(self, key_generator: KeyGenerator, tokens_dir: Path, out_dir: Path | None = None, *, rounds: int):
        check_served(key_generator.scheme)
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be a positive integer, not {rounds!r}")
        self.rounds = rounds
        self.key_generator = key_generator
        self.scheme = key_generator.scheme
        self.dimension = key_generator.dimension
        self.user_ids = list(key_generator.user_ids)
        self.out_dir = out_dir
        self.max_aggregate_bytes = max_aggregate_bytes(key_generator)
        self._setup = key_generator.setup()
        self._lock = threading.Lock()
        self._averages: list[tuple[np.ndarray, int]] = []
        self._decrypting = False
        self.void_round: int | None = None
        parties = [Party(AGGREGATOR), *(Party(USER, uid) for uid in self.user_ids)]
        self._tokens = {secrets.token_hex(32): party for party in parties}
        tokens_dir = Path(tokens_dir)
        tokens_dir.mkdir(parents=True, exist_ok=True)
        tokens_dir.chmod(0o700)
        for token, party in self._tokens.items():
            write_text_atomically(tokens_dir / token_filename(party), token + "\n", mode=0o600)
        self._token_bytes = [(token.encode("ascii"), party) for token, party in self._tokens.items()]

    def party(self, token: bytes) -> Party | None:
        """The party holding ``token`` (compared in constant time with every known token), or None."""
        found = None
        for known, party in self._token_bytes:
            if hmac.compare_digest(known, token):
                found = party
        return found

    def setup_for(self, party: Party) -> bytes:
        """The setup message of ``party``."""
        if party.role == AGGREGATOR:
            return self._setup.to_aggregator
        return self._setup.to_users[party.user_id]

    @property
    def rounds_published(self) -> int:
        """How many rounds have a published average."""
        with self._lock:
            return len(self._averages)

    def publish(self, aggregate: bytes) -> tuple[int, int]:
        """Check, decrypt and publish one round's AGGREGATE; returns (round, contributors).

        Raises AggregateRejected when a check fails before decryption (state unchanged) or, with the
        fixed message ``VOID_ROUND``, when anything fails after it (the round is void, decryption stops);
        DecryptionRefused while another aggregate is being decrypted, after a violation, or once all ``rounds``
        rounds are published (the cap on what the aggregator can learn from publish-or-void answers). The service lock
        is never held while decrypting, so status and published averages stay readable.
        """
        message = check_aggregate(self.key_generator, aggregate)
        with self._lock:
            self._check_decryption_allowed()
            round_index = self.key_generator.next_round
            if message["round"] != round_index:
                raise AggregateRejected(f"aggregate is for round {message['round']}, expected round {round_index}")
            self._decrypting = True
        try:
            average = self.key_generator.publish(aggregate)
        except Exception as exc:  # every failure after decryption gets the same answer, whatever its cause
            with self._lock:
                self.void_round = round_index
                self._decrypting = False
            log.error(
                "ALERT: protocol violation: the aggregate of round %d failed after decryption (%s); round %d is "
                "void and no further aggregate will be decrypted",
                round_index,
                type(exc).__name__,
                round_index,
            )
            raise AggregateRejected(VOID_ROUND) from None
        contributors = int(message["contributors"])
        try:
            if self.out_dir is not None:
                path = Path(self.out_dir) / f"average-round-{round_index}.npy"
                write_atomically(path, lambda file: np.save(file, average, allow_pickle=False))
        finally:
            with self._lock:
                self._averages.append((average, contributors))
                self._decrypting = False
        return round_index, contributors

    def _check_decryption_allowed(self) -> None:
        if self.key_generator.next_round >= self.rounds:
            raise DecryptionRefused(f"all {self.rounds} rounds of the federation are published; no further round")
        if self.void_round is not None:
            raise DecryptionRefused(
                f"round {self.void_round} failed after decryption; this key server decrypts no further aggregate"
            )
        if self._decrypting:
            raise DecryptionRefused(
                f"the aggregate of round {self.key_generator.next_round} is being decrypted; one attempt per round"
            )

    def average(self, round_index: int) -> tuple[np.ndarray, int] | None:
        """The average published after ``round_index`` and its number of contributors, or None."""
        with self._lock:
            if round_index < len(self._averages):
                return self._averages[round_index]
            return None

    def status(self) -> dict:
        """Public facts: scheme, dimension, number of users, rounds of the federation, rounds published."""
        return {
            "scheme": self.scheme,
            "dimension": self.dimension,
            "users": len(self.user_ids),
            "rounds": self.rounds,
            "rounds_published": self.rounds_published,
        }
