"""The key generator as a network service: transport rules, tokens, who may ask for what, a whole round over HTTP."""

import logging
import os
import re
import resource
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from cli_helpers import call_cli
from tls_helpers import self_signed

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
from dphe_bench.deploy.keyserver_http import (
    FD_HEADROOM,
    LoopErrorLog,
    bind_listener,
    connection_cap,
    start_key_server,
)
from dphe_bench.deploy.processes import Child, free_ports, start_child, stop_children
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


def test_key_server_over_tls(tmp_path):
    certfile, keyfile = self_signed(tmp_path)
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
    certfile, keyfile = self_signed(tmp_path)
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


def _start_cli_key_server(tmp_path, *options: str, preexec_fn=None):
    """``dphe-bench keyserver`` (plain scheme, 2 users, D = 4, plain HTTP on loopback) as a child; (child, url)."""
    port = free_ports(1)[0]
    argv = [
        sys.executable, "-m", "dphe_bench.cli", "keyserver", "--set", "federation.users=2",
        "--set", "crypto.scheme='plain'", "--dimension", "4", "--port", str(port),
        "--tokens-dir", str(tmp_path / "tokens"), "--insecure-local-test", *options,
    ]  # fmt: skip
    log_path = tmp_path / "keyserver.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=preexec_fn,
            start_new_session=True,  # stop_children signals the child's process group, not this one
        )
    child = Child("keyserver", process, log_path)
    url = f"http://127.0.0.1:{port}"
    client = KeyServerClient(url, None, timeout=5)
    deadline = time.monotonic() + 60
    while True:
        assert child.running(), child.log_tail()
        try:
            client.status()
            return child, url
        except KeyServerError:
            assert time.monotonic() < deadline, child.log_tail()
            time.sleep(0.2)


def _plain_round(url: str, tokens_dir) -> dict:
    """Both users' updates summed by a plain aggregator and posted to the key server; its answer."""
    backend = get_backend("python")
    aggregator_client = KeyServerClient(url, read_token(tokens_dir / token_filename(Party(AGGREGATOR))), timeout=10)
    aggregator = get_scheme("plain").aggregator(aggregator_client.setup(), backend)
    for user_id in (0, 1):
        setup = KeyServerClient(url, read_token(tokens_dir / token_filename(Party(USER, user_id))), timeout=10).setup()
        aggregator.receive(get_scheme("plain").user(setup, backend).submit(np.full(4, user_id + 0.5), 0))
    return aggregator_client.publish(aggregator.finish())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_keyserver_command_stops_after_an_aggregate_was_published(tmp_path, signum):
    """A stop after a POST ends the process: no worker thread of the decryption keeps it alive."""
    child, url = _start_cli_key_server(tmp_path)
    try:
        assert _plain_round(url, tmp_path / "tokens") == {"round": 0, "contributors": 2}
        child.process.send_signal(signum)
        try:
            code = child.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the key server still runs 10 s after {signum.name}:\n{child.log_tail()}")
        assert code == 0, child.log_tail()
        log = child.log_path.read_text()
        assert "keyserver: stopped after 1 published rounds" in log and "Traceback" not in log
    finally:
        stop_children([child])


def test_the_connection_cap_follows_the_open_file_limit(tmp_path):
    """At a hard limit of 400 descriptors, 500 idle connections meet the cap (400 - FD_HEADROOM), not the limit:
    the ones beyond it are closed at once, accept() never runs out of descriptors, nothing logs a traceback, and
    the server answers again as soon as the idle connections go."""

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (400, 400))

    child, url = _start_cli_key_server(tmp_path, preexec_fn=low_limit)
    idle = []
    try:
        assert f"at most {400 - FD_HEADROOM} connections" in child.log_path.read_text()
        port = int(url.rsplit(":", 1)[1])
        for _ in range(500):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        with pytest.raises(KeyServerError):
            KeyServerClient(url, None, timeout=2).status()
        for sock in idle:
            sock.close()
        user = KeyServerClient(url, read_token(tmp_path / "tokens" / token_filename(Party(USER, 0))), timeout=10)
        deadline = time.monotonic() + 20
        while True:  # the server sees the closed connections on its next loop turns
            try:
                assert get_scheme("plain").user(user.setup(), get_backend("python")).user_id == 0
                break
            except KeyServerError:
                assert time.monotonic() < deadline, child.log_tail()
                time.sleep(0.2)
        assert child.running()
        log = child.log_path.read_text()
        assert f"connection refused: {400 - FD_HEADROOM} connections already open" in log
        assert "Traceback" not in log
        # Under load a burst can still reach the descriptor limit before the cap closes connections (one loop
        # turn accepts up to the backlog): then the loop's error is one rate-limited line, never a flood.
        assert log.count("out of system resource") <= 1
    finally:
        for sock in idle:
            sock.close()
        stop_children([child])


def test_event_loop_errors_are_one_line_each_and_rate_limited(caplog):
    handler = LoopErrorLog(interval=3600)
    error = OSError(24, "Too many open files")
    with caplog.at_level(logging.ERROR, logger="dphe_bench.keyserver"):
        for _ in range(1000):
            handler(None, {"message": "socket.accept() out of system resource", "exception": error})
        handler(None, {"message": "another error"})
    assert [record.getMessage() for record in caplog.records] == [
        "event loop: socket.accept() out of system resource: OSError: [Errno 24] Too many open files",
        "event loop: another error",
    ]
    assert all(record.exc_info is None for record in caplog.records)
    handler.interval = 0  # the interval has passed: the next one says how many were held back
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="dphe_bench.keyserver"):
        handler(None, {"message": "socket.accept() out of system resource", "exception": error})
    assert "and 999 times more" in caplog.text


def test_the_connection_cap_must_fit_the_open_file_limit():
    assert connection_cap(20_000) == 1024
    assert connection_cap(1024) == 1024 - FD_HEADROOM
    assert connection_cap(1024, 5) == 5
    with pytest.raises(ValueError, match="must be in"):
        connection_cap(1024, 1024 - FD_HEADROOM + 1)
    with pytest.raises(ValueError, match="must be in"):
        connection_cap(1024, 0)
    with pytest.raises(ValueError, match="leaves no descriptor"):
        connection_cap(FD_HEADROOM)


def _keyserver_cli(tmp_path, *options: str) -> tuple[int, str, str]:
    argv = ["keyserver", "--set", "federation.users=2", "--set", "crypto.scheme='plain'", "--dimension", "4"]
    return call_cli([*argv, "--port", str(free_ports(1)[0]), *options])


def test_unusable_tls_files_are_refused_before_anything_is_made(tmp_path):
    certfile, keyfile = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = self_signed(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = [
        ((str(tmp_path / "missing.pem"), keyfile), "--tls-cert .*missing.pem is not a file"),
        ((certfile, str(tmp_path / "missing.key")), "--tls-key .*missing.key is not a file"),
        ((str(garbage), keyfile), "cannot be used"),
        ((certfile, str(garbage)), "cannot be used"),
        ((certfile, other_key), "cannot be used"),
    ]
    for (cert, key), reason in cases:
        tokens = tmp_path / "tokens"
        code, _, err = _keyserver_cli(tmp_path, "--tokens-dir", str(tokens), "--tls-cert", cert, "--tls-key", key)
        assert code == 2 and re.search(reason, err), err
        assert err.startswith("dphe-bench: error:") and err.count("\n") == 1 and "Traceback" not in err
        assert not tokens.exists()


def test_a_start_never_replaces_existing_tokens(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "aggregator.token").write_text("a running server's token\n")
    code, _, err = _keyserver_cli(tmp_path, "--tokens-dir", str(tokens), "--insecure-local-test")
    assert code == 2 and "already holds tokens (aggregator.token)" in err
    assert (tokens / "aggregator.token").read_text() == "a running server's token\n"
    assert sorted(path.name for path in tokens.iterdir()) == ["aggregator.token"]


def test_a_refused_start_makes_no_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    tokens = tmp_path / "new" / "tokens"
    code, _, err = _keyserver_cli(
        tmp_path, "--tokens-dir", str(tokens), "--out", str(blocker / "out"), "--insecure-local-test"
    )
    assert code == 2 and "averages folder (--out)" in err and "is a file, not a folder" in err
    assert not (tmp_path / "new").exists()
    code, _, err = call_cli(
        ["keyserver", "--set", "crypto.scheme='ckks'", "--dimension", "4", "--tokens-dir", str(tokens),
         "--out", str(tmp_path / "out"), "--insecure-local-test"]
    )  # fmt: skip
    assert code == 2 and "does not serve scheme 'ckks'" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]
