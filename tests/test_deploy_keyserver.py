"""The key generator as a network service: transport rules, tokens, who may ask for what, a whole round over HTTP."""

import datetime
import ipaddress
import os
import stat
import sys
import threading
import time

import numpy as np
import pytest
from cli_helpers import call_cli

from dphe_bench.backends import get_backend
from dphe_bench.deploy.keyclient import KeyServerClient, KeyServerError, check_url, read_token
from dphe_bench.deploy.keyserver import (
    AGGREGATOR,
    USER,
    KeyService,
    Party,
    check_transport,
    is_loopback,
    key_generator_from_config,
    token_filename,
)
from dphe_bench.deploy.keyserver_http import bind_listener, start_key_server
from dphe_bench.deploy.processes import free_ports, start_child, stop_children
from dphe_bench.learning.config import load_config
from dphe_bench.schemes import get_scheme
from dphe_bench.schemes.federation import Federation

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")

DIMENSION = 40
USERS = 3


def _weights(user_id: int) -> np.ndarray:
    rng = np.random.default_rng(user_id)
    return rng.normal(size=DIMENSION) * (rng.random(DIMENSION) < 0.3)


def _serve(service: KeyService, **transport) -> tuple:
    server = start_key_server(service, bind_listener("127.0.0.1", 0), **transport)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def key_server(tmp_path):
    """A dphe key server for 3 users (D = 40, 1024-bit keys) on a free loopback port, plain HTTP."""
    config = load_config(None, [f"federation.users={USERS}", "crypto.key_bits=1024"])
    backend = get_backend("gmpy2")
    service = KeyService(
        key_generator_from_config(config, DIMENSION, backend),
        tmp_path / "tokens",
        tmp_path / "out",
        rounds=config.federation.rounds,
    )
    server, thread = _serve(service, insecure_local_test=True)
    yield server, service, tmp_path
    server.shutdown()
    server.server_close()
    thread.join()


def _client(server, tokens_dir, party: Party) -> KeyServerClient:
    return KeyServerClient(server.url, read_token(tokens_dir / token_filename(party)))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.3.2.1"])
def test_insecure_local_test_binds_loopback(host):
    assert is_loopback(host)
    check_transport(host, None, None, insecure_local_test=True)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "keys.example.org", "::"])
def test_insecure_local_test_refuses_other_addresses(host):
    with pytest.raises(ValueError, match="only binds loopback"):
        check_transport(host, None, None, insecure_local_test=True)


def test_key_server_refuses_to_run_without_tls():
    with pytest.raises(ValueError, match="needs TLS"):
        check_transport("127.0.0.1", None, None, insecure_local_test=False)
    with pytest.raises(ValueError, match="needs TLS"):
        check_transport("10.0.0.1", "cert.pem", None, insecure_local_test=False)
    with pytest.raises(ValueError, match="leave out the TLS"):
        check_transport("127.0.0.1", "cert.pem", "key.pem", insecure_local_test=True)


def test_keyserver_command_refuses_insecure_link_before_generating_keys(tmp_path):
    tokens = tmp_path / "tokens"
    code, _, err = call_cli(["keyserver", "--dimension", "10", "--host", "0.0.0.0", "--tokens-dir", str(tokens)])
    assert code == 2 and "needs TLS" in err
    code, _, err = call_cli(
        ["keyserver", "--dimension", "10", "--host", "0.0.0.0", "--tokens-dir", str(tokens), "--insecure-local-test"]
    )
    assert code == 2 and "only binds loopback" in err
    assert not tokens.exists()


@pytest.mark.parametrize("url", ["http://10.1.2.3:8443", "http://keys.example.org", "ftp://127.0.0.1", "keys:80"])
def test_client_refuses_plain_http_to_other_machines(url):
    with pytest.raises(ValueError, match="key server URL"):
        check_url(url)


def test_tokens_are_private_and_one_per_party(key_server):
    _, _, tmp_path = key_server
    tokens_dir = tmp_path / "tokens"
    names = sorted(p.name for p in tokens_dir.iterdir())
    assert names == sorted(["aggregator.token", *(f"user-{u}.token" for u in range(USERS))])
    assert stat.S_IMODE(tokens_dir.stat().st_mode) == 0o700
    tokens = set()
    for path in tokens_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        tokens.add(read_token(path))
    assert len(tokens) == USERS + 1


def test_each_party_gets_its_own_setup_and_nothing_else(key_server):
    server, service, tmp_path = key_server
    tokens_dir = tmp_path / "tokens"
    aggregator = _client(server, tokens_dir, Party(AGGREGATOR))
    scheme = get_scheme("dphe")
    backend = get_backend("gmpy2")
    for user_id in range(USERS):
        user = scheme.user(_client(server, tokens_dir, Party(USER, user_id)).setup(), backend)
        assert user.user_id == user_id
    assert aggregator.setup() == service.setup_for(Party(AGGREGATOR))
    scheme.aggregator(aggregator.setup(), backend)
    # The aggregator never reads a published model; a user never posts an aggregate.
    with pytest.raises(KeyServerError, match="HTTP 403"):
        aggregator.average(0, DIMENSION)
    with pytest.raises(KeyServerError, match="HTTP 403"):
        _client(server, tokens_dir, Party(USER, 0)).publish(b"anything")
    for token in (None, "0" * 64):
        with pytest.raises(KeyServerError, match="HTTP 401"):
            KeyServerClient(server.url, token).setup()
    assert KeyServerClient(server.url, None).status() == {
        "scheme": "dphe",
        "dimension": DIMENSION,
        "users": USERS,
        "rounds": 3,
        "rounds_published": 0,
    }


def test_a_round_over_http_equals_the_in_process_simulation(key_server):
    """Users encrypt with their fetched setups, A aggregates, K publishes: the simulation's average."""
    server, service, tmp_path = key_server
    tokens_dir = tmp_path / "tokens"
    scheme = get_scheme("dphe")
    backend = get_backend("gmpy2")
    aggregator_client = _client(server, tokens_dir, Party(AGGREGATOR))
    aggregator = scheme.aggregator(aggregator_client.setup(), backend)
    user_clients = {u: _client(server, tokens_dir, Party(USER, u)) for u in range(USERS)}
    users = {u: scheme.user(client.setup(), backend) for u, client in user_clients.items()}
    expected = Federation("dphe", DIMENSION, USERS, backend, key_bits=1024)
    for round_index, present in enumerate([[0, 1, 2], [2, 0]]):
        for user_id in present:
            aggregator.receive(users[user_id].submit(_weights(user_id + 10 * round_index), round_index))
        answer = aggregator_client.publish(aggregator.finish())
        assert answer == {"round": round_index, "contributors": len(present)}
        simulated = expected.run_round({u: _weights(u + 10 * round_index) for u in present}).mean
        for client in user_clients.values():
            np.testing.assert_allclose(client.average(round_index, DIMENSION), simulated, rtol=0, atol=1e-9)
        saved = np.load(tmp_path / "out" / f"average-round-{round_index}.npy", allow_pickle=False)
        np.testing.assert_array_equal(saved, user_clients[0].average(round_index, DIMENSION))
    assert service.rounds_published == 2
    with pytest.raises(KeyServerError, match=r"HTTP 404.*round 2 has no published average"):
        user_clients[1].average(2, DIMENSION)


def test_a_rejected_aggregate_leaves_the_key_server_unchanged(key_server):
    server, service, tmp_path = key_server
    tokens_dir = tmp_path / "tokens"
    aggregator_client = _client(server, tokens_dir, Party(AGGREGATOR))
    backend = get_backend("gmpy2")
    aggregator = get_scheme("dphe").aggregator(aggregator_client.setup(), backend)
    for user_id in (0, 1):
        user = get_scheme("dphe").user(_client(server, tokens_dir, Party(USER, user_id)).setup(), backend)
        aggregator.receive(user.submit(_weights(user_id), 0))
    aggregate = aggregator.finish()
    with pytest.raises(KeyServerError, match="HTTP 400: aggregate rejected"):
        aggregator_client.publish(aggregate[:-3])
    assert service.rounds_published == 0
    assert aggregator_client.publish(aggregate) == {"round": 0, "contributors": 2}
    with pytest.raises(KeyServerError, match=r"HTTP 400.*round 0, expected round 1"):
        aggregator_client.publish(aggregate)
    assert service.rounds_published == 1


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 signed by its own key (PEM files), made with ``cryptography``."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dphe-bench test key server")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_key_server_over_tls(tmp_path):
    certfile, keyfile = _self_signed(tmp_path)
    config = load_config(None, ["federation.users=2", "crypto.scheme=plain"])
    service = KeyService(
        key_generator_from_config(config, 8, get_backend("python")),
        tmp_path / "tokens",
        rounds=config.federation.rounds,
    )
    server, thread = _serve(service, certfile=certfile, keyfile=keyfile)
    try:
        assert server.url.startswith("https://127.0.0.1:")
        token = read_token(tmp_path / "tokens" / "user-1.token")
        setup = KeyServerClient(server.url, token, ca_file=certfile).setup()
        assert get_scheme("plain").user(setup, get_backend("python")).user_id == 1
        # Without the CA the certificate is not trusted, and plain HTTP gets no answer.
        with pytest.raises(KeyServerError, match="unreachable"):
            KeyServerClient(server.url, token).setup()
        with pytest.raises(KeyServerError, match="unreachable"):
            KeyServerClient(server.url.replace("https", "http"), token, timeout=5).setup()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_keyserver_command_serves_over_tls_until_terminated(tmp_path):
    """``dphe-bench keyserver`` as its own process: TLS, tokens, setup for a user, a clean stop on SIGTERM."""
    certfile, keyfile = _self_signed(tmp_path)
    port = free_ports(1)[0]
    argv = [
        sys.executable, "-m", "dphe_bench.cli", "keyserver", "--set", "federation.users=2",
        "--set", "crypto.key_bits=1024", "--dimension", "12", "--port", str(port),
        "--tokens-dir", str(tmp_path / "tokens"), "--tls-cert", certfile, "--tls-key", keyfile,
    ]  # fmt: skip
    child = start_child("keyserver", argv, tmp_path / "keyserver.log", dict(os.environ))
    try:
        client = KeyServerClient(f"https://127.0.0.1:{port}", None, ca_file=certfile, timeout=5)
        deadline = time.monotonic() + 60
        while True:
            assert child.running(), child.log_tail()
            try:
                assert client.status()["users"] == 2
                break
            except KeyServerError:
                assert time.monotonic() < deadline, child.log_tail()
                time.sleep(0.2)
        client.token = read_token(tmp_path / "tokens" / "user-0.token")
        assert get_scheme("dphe").user(client.setup(), get_backend("gmpy2")).user_id == 0
    finally:
        stop_children([child])
    assert child.process.returncode == 0
    assert "stopped after 0 published rounds" in child.log_tail()
