"""The key server against a dishonest aggregator: no decryption oracle, no round of a single contributor.

The attack of issue 17: Paillier ciphertexts are malleable, so from a user's E(m) the aggregator builds
E(m + k) for any k and posts it as a one-position aggregate. If the answers told apart the aggregates that
decode from those that do not, a binary search over k would recover m. Here the same search runs against
an unprotected oracle (the key generator itself, whose refusals leave its state unchanged), where it
recovers every weight exactly, and against the key server, where it learns nothing.
"""

import logging
import secrets

import numpy as np
import pytest
from keyserver_helpers import running_key_server

from dphe_bench.backends import get_backend
from dphe_bench.crypto.batch import CiphertextBatch
from dphe_bench.deploy.keyclient import KeyServerClient, KeyServerError, read_token
from dphe_bench.deploy.keyserver import (
    AGGREGATOR,
    SERVED_SCHEMES,
    USER,
    VOID_ROUND,
    KeyService,
    Party,
    check_aggregate,
    key_generator_from_config,
    token_filename,
)
from dphe_bench.errors import BackendUnavailableError, ConfigError, DpheError, ProtocolError
from dphe_bench.learning.config import load_config
from dphe_bench.learning.pipeline import _present_users
from dphe_bench.schemes import SCHEMES, get_scheme
from dphe_bench.schemes.federation import Federation, simulate_round
from dphe_bench.schemes.messages import Message, MessageKind, decode_message, encode_message

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")

DIMENSION = 6
USERS = 3


def _service(tmp_path, scheme: str = "dphe", users: int = USERS, rounds: int = 3) -> KeyService:
    overrides = [f"federation.users={users}", f"federation.rounds={rounds}", "crypto.key_bits=1024"]
    config = load_config(None, [*overrides, f"crypto.scheme='{scheme}'"])
    return KeyService(
        key_generator_from_config(config, DIMENSION, get_backend("gmpy2")),
        tmp_path / "tokens",
        rounds=config.federation.rounds,
    )


def _client(server, tokens_dir, party: Party) -> KeyServerClient:
    return KeyServerClient(server.url, read_token(tokens_dir / token_filename(party)), timeout=30)


def _one_weight_update(setup: bytes, position: int, value: float) -> tuple[int, int]:
    """A user's round-0 UPDATE for weights that are 0 but ``value`` at ``position``: (its ciphertext, m).

    m is the fixed-point integer the ciphertext encrypts (the secret the attack is after).
    """
    user = get_scheme("dphe").user(setup, get_backend("gmpy2"))
    weights = np.zeros(DIMENSION)
    weights[position] = value
    fields = ("user_id", "round", "dimension", "key_id", "indices", "ciphertexts")
    update = decode_message(user.submit(weights, 0), MessageKind.UPDATE, "dphe", fields)
    (ciphertext,) = CiphertextBatch.from_bytes(user.public_key, update["ciphertexts"]).to_ints()
    return ciphertext, int(user.codec.quantize(weights)[position])


def _probe(public_key, ciphertext: int, k: int, round_index: int) -> bytes:
    """A one-position dphe AGGREGATE holding E(m + k) = E(m) (1 + k n) mod n^2, claiming 2 contributors."""
    malleated = ciphertext * (1 + k * public_key.n) % public_key.nsquare
    fields = {
        "round": round_index,
        "dimension": DIMENSION,
        "contributors": 2,
        "key_id": public_key.key_id,
        "indices": np.array([0], dtype=np.uint32),
        "ciphertexts": CiphertextBatch.from_ints(public_key, [malleated]).to_bytes(),
    }
    return encode_message(Message(MessageKind.AGGREGATE, "dphe", fields))


def _largest_accepted_shift(oracle, public_key, ciphertext: int) -> int:
    """The largest k with E(m + k) accepted: doubling, then bisection; at most 2 x 200 probes.

    For small m the accepted shifts are [0, B - m], B the decoding bound, so B - m comes out.
    """
    high = 1
    while oracle(_probe(public_key, ciphertext, high, oracle.round_index)) and high < 2**200:
        high *= 2
    low = high // 2
    for _ in range(200):
        if high - low <= 1:
            break
        middle = (low + high) // 2
        if oracle(_probe(public_key, ciphertext, middle, oracle.round_index)):
            low = middle
        else:
            high = middle
    return low


class _UnprotectedOracle:
    """Decrypts every probe with the key generator itself: a refusal leaves its state unchanged."""

    def __init__(self, key_generator):
        self.key_generator = key_generator

    @property
    def round_index(self) -> int:
        return self.key_generator.next_round

    def __call__(self, aggregate: bytes) -> bool:
        try:
            self.key_generator.publish(aggregate)
        except DpheError:
            return False
        return True


class _KeyServerOracle:
    """Posts each probe to the key server as the aggregator; records every answer."""

    def __init__(self, client: KeyServerClient):
        self.client = client
        self.round_index = 0
        self.transcript: list[str] = []

    def __call__(self, aggregate: bytes) -> bool:
        try:
            answer = self.client.publish(aggregate)
        except KeyServerError as exc:
            self.transcript.append(str(exc))
            return False
        self.transcript.append(repr(answer))
        self.round_index = answer["round"] + 1
        return True


def _attack(oracle, public_key, ciphertext: int) -> int:
    """The attacker's estimate of m: the largest accepted shift for E(0) minus the one for E(m)."""
    target = _largest_accepted_shift(oracle, public_key, ciphertext)
    zero = pow(secrets.randbelow(public_key.n - 2) + 2, public_key.n, public_key.nsquare)
    return _largest_accepted_shift(oracle, public_key, zero) - target


def test_the_binary_search_recovers_weights_from_an_unprotected_oracle(tmp_path):
    """The attack is real: against a decryptor whose refusals cost nothing, it finds m exactly."""
    service = _service(tmp_path)
    for position, value in [(1, 0.731), (4, -2.5)]:
        ciphertext, secret = _one_weight_update(service.setup_for(Party(USER, 1)), position, value)
        oracle = _UnprotectedOracle(service.key_generator)
        assert _attack(oracle, service.key_generator.public_key, ciphertext) == secret


def test_the_binary_search_learns_nothing_from_the_key_server(tmp_path, caplog):
    """Against the key server the attacker's transcript is the same for two different secret weights.

    A transcript can only depend on the secret through the one probe that fails after decryption (for the
    doubling search: the power of two above B - m, the same for these weights); every later probe is
    refused before decryption with the same answer, so the estimate is far off.
    """
    transcripts, estimates, secrets_ = [], [], []
    for run, value in enumerate([0.731, 2.5]):
        # The most rounds a config allows, so that the round cap plays no part here: the void alone stops it.
        service = _service(tmp_path / str(run), rounds=10_000)
        tokens_dir = tmp_path / str(run) / "tokens"
        with running_key_server(service) as server, caplog.at_level(logging.WARNING, logger="dphe_bench.keyserver"):
            caplog.clear()
            ciphertext, secret = _one_weight_update(_client(server, tokens_dir, Party(USER, 1)).setup(), 1, value)
            oracle = _KeyServerOracle(_client(server, tokens_dir, Party(AGGREGATOR)))
            estimates.append(_attack(oracle, service.key_generator.public_key, ciphertext))
            secrets_.append(secret)
            transcripts.append(oracle.transcript)
            alerts = [r for r in caplog.records if "ALERT" in r.getMessage()]
            assert len(alerts) == 1
            assert all(r.exc_info is None for r in caplog.records)
            # The round that failed after decryption is void for the users, and nothing more is decrypted.
            void = service.void_round
            assert void is not None and service.rounds_published == void
            with pytest.raises(KeyServerError, match=f"HTTP 410.*round {void} is void"):
                _client(server, tokens_dir, Party(USER, 0)).average(void, DIMENSION)
    assert transcripts[0] == transcripts[1]
    assert estimates[0] == estimates[1]
    assert secrets_[0] != secrets_[1]
    assert all(abs(estimate - secret) > 2**40 for estimate, secret in zip(estimates, secrets_, strict=True))
    transcript = transcripts[0]
    failed = [i for i, answer in enumerate(transcript) if "HTTP" in answer]
    first = failed[0]
    assert f"HTTP 400: aggregate rejected: {VOID_ROUND}" in transcript[first]
    # Every later probe is refused before decryption, with the same bytes.
    assert failed == list(range(first, len(transcript)))
    assert len(set(transcript[first + 1 :])) == 1 and "HTTP 409" in transcript[-1]


def test_a_linear_probe_stops_after_the_federations_rounds(tmp_path):
    """The reviewer's probe: one malleated one-position aggregate per round, each shift a step further.

    Every probe that decodes is published, so each round tells the aggregator one bit. After ``rounds`` posts the
    key server decrypts nothing more: every later probe gets the same refusal, whatever the secret weight, and the
    transcripts of two different secrets (both far inside the decoding bound) are identical.
    """
    rounds = 4
    transcripts, decryptions = [], []
    for run, value in enumerate([0.731, -2.5]):
        service = _service(tmp_path / str(run), rounds=rounds)
        calls = _counting_decryptions(service)
        tokens_dir = tmp_path / str(run) / "tokens"
        public_key = service.key_generator.public_key
        with running_key_server(service) as server:
            ciphertext, _ = _one_weight_update(_client(server, tokens_dir, Party(USER, 1)).setup(), 1, value)
            oracle = _KeyServerOracle(_client(server, tokens_dir, Party(AGGREGATOR)))
            for step in range(3 * rounds):
                oracle(_probe(public_key, ciphertext, step * 2**20, oracle.round_index))
            assert KeyServerClient(server.url, None).status()["rounds_published"] == rounds
        transcripts.append(oracle.transcript)
        decryptions.append(len(calls))
    assert decryptions == [rounds, rounds]
    for transcript in transcripts:
        assert [answer.startswith("{") for answer in transcript] == [True] * rounds + [False] * (2 * rounds)
        refusals = set(transcript[rounds:])
        assert len(refusals) == 1 and f"HTTP 409: aggregate refused: all {rounds} rounds" in refusals.pop()
    assert transcripts[0] == transcripts[1]


def test_the_round_cap_must_be_positive(tmp_path):
    config = load_config(None, ["federation.users=2", "crypto.scheme='plain'"])
    key_generator = key_generator_from_config(config, DIMENSION, get_backend("python"))
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="rounds must be a positive integer"):
            KeyService(key_generator, tmp_path / "tokens", rounds=bad)


def test_a_post_decryption_failure_is_answered_uniformly_and_ends_the_round(tmp_path):
    """Aggregates that decode to n // 3 - 1, to n - 1 and to a value past the bound all get the same answer."""
    answers = []
    for run, plaintext in enumerate(["third", "minus-one-wrapped", "past-bound"]):
        service = _service(tmp_path / str(run))
        public_key = service.key_generator.public_key
        n = public_key.n
        target = {"third": n // 3 - 1, "minus-one-wrapped": n // 2 + 1, "past-bound": 2**200}[plaintext]
        one = pow(secrets.randbelow(n - 2) + 2, n, public_key.nsquare)  # E(0)
        aggregate = _probe(public_key, one, target, 0)
        with pytest.raises(ProtocolError) as refused:
            service.publish(aggregate)
        answers.append(str(refused.value))
        assert service.void_round == 0 and service.rounds_published == 0
        # The round is over: the same or any other aggregate is refused before decryption.
        with pytest.raises(ProtocolError, match="decrypts no further aggregate"):
            service.publish(_probe(public_key, one, 0, 0))
    assert answers == [VOID_ROUND] * 3


def _counting_decryptions(service: KeyService) -> list[int]:
    calls: list[int] = []
    backend = service.key_generator.backend
    original = backend.decrypt

    def decrypt(private_key, batch):
        calls.append(len(batch))
        return original(private_key, batch)

    backend.decrypt = decrypt
    return calls


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"round": 3}, "round 3, expected round 0"),
        ({"dimension": DIMENSION + 1}, "dimension"),
        ({"contributors": 1}, "fewer than 2"),
        ({"contributors": USERS + 1}, "the federation has 3 users"),
        ({"key_id": 12345}, "key"),
        ({"indices": np.array([0, 1], dtype=np.uint32)}, "2 indices for 1 ciphertexts"),
        ({"indices": np.array([DIMENSION], dtype=np.uint32)}, "outside"),
        ({"ciphertexts": b"\x00" * 16}, "whole number"),
    ],
)
def test_every_check_that_needs_no_key_runs_before_any_decryption(tmp_path, change, reason):
    service = _service(tmp_path)
    calls = _counting_decryptions(service)
    public_key = service.key_generator.public_key
    good = decode_message(
        _probe(public_key, pow(2, public_key.n, public_key.nsquare), 0, 0),
        MessageKind.AGGREGATE,
        "dphe",
        ("round", "dimension", "contributors", "key_id", "indices", "ciphertexts"),
    )
    bad = encode_message(Message(MessageKind.AGGREGATE, "dphe", {**good.fields, **change}))
    with pytest.raises(ProtocolError, match=reason):
        service.publish(bad)
    assert calls == [] and service.void_round is None
    # Refusals before decryption leave the state unchanged: an honest aggregate still goes through.
    assert service.publish(encode_message(good)) == (0, 2)
    assert calls == [1]


def test_duplicate_indices_and_too_many_ciphertexts_are_refused_before_decryption(tmp_path):
    service = _service(tmp_path)
    public_key = service.key_generator.public_key
    zero = pow(3, public_key.n, public_key.nsquare)
    for count, indices in [(2, [1, 1]), (DIMENSION + 1, [*range(DIMENSION), 0])]:
        fields = {
            "round": 0,
            "dimension": DIMENSION,
            "contributors": 2,
            "key_id": public_key.key_id,
            "indices": np.array(indices, dtype=np.uint32),
            "ciphertexts": CiphertextBatch.from_ints(public_key, [zero] * count).to_bytes(),
        }
        with pytest.raises(ProtocolError, match="duplicate indices"):
            check_aggregate(service.key_generator, encode_message(Message(MessageKind.AGGREGATE, "dphe", fields)))


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_scheme_refuses_to_publish_one_contributor_by_default(scheme):
    """The aggregator reports user 1 alone: the key generator refuses, in the simulation as in the deployment."""
    try:
        federation = Federation(scheme, 4, 2, "gmpy2", key_bits=1024)
    except BackendUnavailableError as exc:
        pytest.skip(f"scheme {scheme} cannot run here: {exc}")
    assert federation.key_generator.min_contributors == 2
    with pytest.raises(ProtocolError, match="fewer than 2"):
        federation.run_round({1: np.array([0.5, -1.0, 0.0, 2.0])})
    # An aggregator that deviates from the protocol builds the one-user aggregate itself.
    federation.aggregator.receive(federation.users[1].submit(np.array([0.5, -1.0, 0.0, 2.0]), 0))
    with pytest.raises(ProtocolError, match="fewer than 2 \\(min_contributors\\)"):
        federation.key_generator.publish(federation.aggregator.finish())
    assert federation.key_generator.next_round == 0


@pytest.mark.parametrize("scheme", SERVED_SCHEMES)
def test_the_key_server_refuses_one_contributor_in_every_scheme(tmp_path, scheme):
    service = _service(tmp_path, scheme=scheme, users=2)
    calls = _counting_decryptions(service)
    backend = get_backend("gmpy2")
    aggregator = get_scheme(scheme).aggregator(service.setup_for(Party(AGGREGATOR)), backend)
    user = get_scheme(scheme).user(service.setup_for(Party(USER, 1)), backend)
    aggregator.receive(user.submit(np.linspace(-1, 1, DIMENSION), 0))
    with pytest.raises(ProtocolError, match="fewer than 2"):
        service.publish(aggregator.finish())
    assert calls == [] and service.rounds_published == 0 and service.void_round is None


def test_a_scheme_without_pre_decryption_checks_is_not_served(tmp_path):
    config = load_config(None, ["federation.users=2", "crypto.scheme='plain'"])
    key_generator = key_generator_from_config(config, DIMENSION, get_backend("python"))
    key_generator.scheme = "unchecked"
    with pytest.raises(ConfigError, match="does not serve scheme 'unchecked'"):
        KeyService(key_generator, tmp_path / "tokens", rounds=config.federation.rounds)
    assert not (tmp_path / "tokens").exists()


def test_one_contributor_needs_min_contributors_1_set_explicitly():
    weights = [np.array([0.25, -0.5, 0.0])]
    with pytest.raises(ProtocolError, match="one-user federation needs min_contributors=1"):
        simulate_round(weights, scheme="dense", backend="gmpy2", key_bits=1024)
    result = simulate_round(weights, scheme="dense", backend="gmpy2", key_bits=1024, min_contributors=1)
    np.testing.assert_allclose(result.mean, weights[0], atol=2**-30)
    for bad in (0, 3, True, 1.0):
        with pytest.raises(ProtocolError, match="min_contributors"):
            Federation("plain", 3, 2, "python", min_contributors=bad)


def test_simulated_dropouts_leave_at_least_min_contributors():
    rng = np.random.default_rng(5)
    for min_present in (1, 2, 4):
        for _ in range(200):
            present = _present_users(6, 0.9, min_present, rng)
            assert len(present) >= min_present
            assert present == sorted(set(present)) and set(present) <= set(range(6))


def test_min_contributors_in_the_config():
    assert load_config(None).federation.min_contributors == 2
    assert load_config(None, ["federation.users=1", "federation.min_contributors=1"]).federation.min_contributors == 1
    with pytest.raises(ConfigError, match=r"federation.min_contributors \(2\) must be <= federation.users \(1\)"):
        load_config(None, ["federation.users=1"])
    with pytest.raises(ConfigError, match=r"federation\.min_contributors must be >= 1"):
        load_config(None, ["federation.min_contributors=0"])
    config = load_config(None, ["federation.users=4", "federation.min_contributors=3", "crypto.scheme='plain'"])
    assert key_generator_from_config(config, 5, get_backend("python")).min_contributors == 3
