"""The key server's HTTP layer against hostile clients, on loopback: framing, limits, timeouts, logs."""

import logging
import resource
import socket
import threading
import time

import numpy as np
import pytest
from cli_helpers import call_cli
from keyserver_helpers import running_key_server
from tls_helpers import self_signed

from dphe_bench.backends import get_backend
from dphe_bench.deploy.keyclient import KeyServerClient, KeyServerError, read_token
from dphe_bench.deploy.keyserver import AGGREGATOR, USER, KeyService, Party, key_generator_from_config, token_filename
from dphe_bench.learning.config import load_config
from dphe_bench.schemes import get_scheme

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")

DIMENSION = 8
WAIT_S = 20.0


@pytest.fixture(scope="module")
def plain_service(tmp_path_factory):
    """A plain-scheme service for 2 users (no key to generate: these tests are about HTTP)."""
    config = load_config(None, ["federation.users=2", "crypto.scheme='plain'"])
    tokens = tmp_path_factory.mktemp("tokens")
    return KeyService(
        key_generator_from_config(config, DIMENSION, get_backend("python")), tokens, rounds=config.federation.rounds
    ), tokens


def _exchange(port: int, data: bytes, host: str = "127.0.0.1") -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection; (everything answered, whether the server closed the connection)."""
    with socket.create_connection((host, port), timeout=WAIT_S) as sock:
        sock.sendall(data)
        received = b""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
        return received, False


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _no_traceback(caplog) -> None:
    assert all(record.exc_info is None for record in caplog.records)
    assert "Traceback" not in caplog.text


HOST = b"Host: 127.0.0.1\r\n"
MALFORMED = {
    "non-ASCII bearer token": (
        b"GET /v1/setup HTTP/1.1\r\n" + HOST + b"Authorization: Bearer \xc3\xa9\xff\r\n\r\n",
        401,
    ),
    "garbage request line": (b"GARBAGE\r\n\r\n", 400),
    "HTTP/2.0 request line": (b"GET /v1/health HTTP/2.0\r\n" + HOST + b"\r\n", 505),
    "request line over 64 KiB": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 431),
    "20 KiB header": (b"GET /v1/health HTTP/1.1\r\n" + HOST + b"X-Pad: " + b"a" * 20_000 + b"\r\n\r\n", 431),
    "20 KiB of unfinished headers": (b"GET /v1/health HTTP/1.1\r\n" + HOST + b"X-Pad: " + b"a" * 20_000, 431),
    "5,000-digit round": (b"GET /v1/average/" + b"9" * 5000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 404),
    "Content-Length: \xc2\xb2": (b"POST /v1/aggregate HTTP/1.1\r\n" + HOST + "Content-Length: ²\r\n\r\n".encode(), 400),
    "duplicate Content-Length": (
        b"POST /v1/aggregate HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    "chunked body": (
        b"POST /v1/aggregate HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        411,
    ),
    "GET with a body": (b"GET /v1/status HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\nhello", 400),
    "unknown method": (b"DELETE /v1/status HTTP/1.1\r\n" + HOST + b"\r\n", 501),
    "query string": (b"GET /v1/status?x=1 HTTP/1.1\r\n" + HOST + b"\r\n", 404),
    "percent-encoded path": (b"GET /v1/%73tatus HTTP/1.1\r\n" + HOST + b"\r\n", 404),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_requests_get_their_status_and_the_connection_closed(plain_service, caplog, name):
    data, status = MALFORMED[name]
    with running_key_server(plain_service[0]) as server, caplog.at_level(logging.INFO):
        answer, closed = _exchange(server.server_address[1], data)
        assert _status(answer) == status, answer[:200]
        assert closed
        assert b"server:" not in answer.lower()
        # One log line names the refusal; an honest request is still answered.
        assert KeyServerClient(server.url, None, timeout=WAIT_S).status()["users"] == 2
    _no_traceback(caplog)
    refusals = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]


def test_a_smuggled_request_in_a_body_is_never_parsed(plain_service, caplog):
    """A POST refused before its body is read (401) closes the connection: its body is not a next request."""
    smuggled = b"GET /v1/SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n"
    data = b"POST /v1/aggregate HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled
    with running_key_server(plain_service[0]) as server, caplog.at_level(logging.INFO):
        answer, closed = _exchange(server.server_address[1], data)
    assert answer.count(b"HTTP/1.1 ") == 1 and _status(answer) == 401 and closed
    assert "SMUGGLED" not in caplog.text


def test_an_oversized_aggregate_is_refused_before_its_body_is_read(plain_service, caplog):
    service, tokens = plain_service
    token = read_token(tokens / token_filename(Party(AGGREGATOR))).encode()
    limit = service.max_aggregate_bytes
    assert limit == 1024 + 8 * DIMENSION
    head = b"POST /v1/aggregate HTTP/1.1\r\n" + HOST + b"Authorization: Bearer " + token + b"\r\n"
    with running_key_server(service) as server, caplog.at_level(logging.INFO):
        answer, closed = _exchange(server.server_address[1], head + b"Content-Length: %d\r\n\r\n" % (limit + 1))
        assert _status(answer) == 413 and closed
        assert f"exceeds the {limit}-byte limit".encode() in answer
        # A body within the limit that is no aggregate: 400, state unchanged.
        answer, closed = _exchange(server.server_address[1], head + b"Content-Length: 4\r\n\r\nDPHE")
        assert _status(answer) == 400 and b"aggregate rejected" in answer and closed
    assert service.rounds_published == 0
    _no_traceback(caplog)


def test_a_large_aggregate_sent_in_one_piece_is_published(tmp_path):
    """Headers and a body of many times the header cap, in one send: the cap counts header bytes only."""
    dimension = 20_000
    config = load_config(None, ["federation.users=2", "crypto.scheme='plain'"])
    service = KeyService(
        key_generator_from_config(config, dimension, get_backend("python")),
        tmp_path / "t",
        rounds=config.federation.rounds,
    )
    backend = get_backend("python")
    aggregator = get_scheme("plain").aggregator(service.setup_for(Party(AGGREGATOR)), backend)
    for user_id in (0, 1):
        user = get_scheme("plain").user(service.setup_for(Party(USER, user_id)), backend)
        aggregator.receive(user.submit(np.full(dimension, float(user_id)), 0))
    body = aggregator.finish()
    token = read_token(tmp_path / "t" / token_filename(Party(AGGREGATOR))).encode()
    head = b"POST /v1/aggregate HTTP/1.1\r\n" + HOST + b"Authorization: Bearer " + token + b"\r\n"
    with running_key_server(service) as server:
        port = server.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
            sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            answer = sock.recv(65536)
    assert len(body) > 8 * dimension and _status(answer) == 200, answer
    np.testing.assert_array_equal(service.average(0)[0], np.full(dimension, 0.5))


def test_the_body_limit_follows_the_dimension_and_the_key_size(tmp_path):
    limits = {}
    for dimension in (10, 20):
        config = load_config(None, ["federation.users=2", "crypto.key_bits=1024", "crypto.scheme='dense'"])
        service = KeyService(
            key_generator_from_config(config, dimension, get_backend("gmpy2")),
            tmp_path / "t",
            rounds=config.federation.rounds,
        )
        limits[dimension] = service.max_aggregate_bytes
        ciphertext_bytes = 4 * -(-(2 * service.key_generator.public_key.n.bit_length()) // 32)
        assert limits[dimension] == 1024 + dimension * (ciphertext_bytes + 4)
    assert limits[20] - limits[10] == limits[10] - 1024


def test_a_slow_client_is_cut_off_and_does_not_block_an_honest_request(plain_service, caplog):
    with running_key_server(plain_service[0], read_timeout=1.0) as server, caplog.at_level(logging.INFO):
        port = server.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as slow:
            slow.sendall(b"GET /v1/status HTTP/1.1\r\n")  # ... and never the rest
            assert KeyServerClient(server.url, None, timeout=WAIT_S).status()["users"] == 2
            assert slow.recv(100) == b""  # closed by the server after the read timeout
    assert "no whole request within 1 s" in caplog.text
    _no_traceback(caplog)


def test_a_body_that_never_ends_is_cut_off_without_a_traceback(plain_service, caplog):
    service, tokens = plain_service
    token = read_token(tokens / token_filename(Party(AGGREGATOR))).encode()
    head = b"POST /v1/aggregate HTTP/1.1\r\n" + HOST + b"Authorization: Bearer " + token + b"\r\n"
    with running_key_server(service, read_timeout=1.0) as server, caplog.at_level(logging.INFO):
        answer, closed = _exchange(server.server_address[1], head + b"Content-Length: 100\r\n\r\nDPHE")
        assert answer == b"" and closed
    assert service.rounds_published == 0
    assert "no whole request within 1 s" in caplog.text
    _no_traceback(caplog)


def test_a_thousand_idle_connections_do_not_block_an_honest_request(plain_service):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * 1000 + 100  # both ends of every connection live in this process
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the open-file limit ({hard}) is below the {needed} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    service, tokens = plain_service
    idle = []
    try:
        with running_key_server(service) as server:
            for _ in range(1000):
                idle.append(socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=WAIT_S))
            user = KeyServerClient(server.url, read_token(tokens / token_filename(Party(USER, 0))), timeout=WAIT_S)
            assert get_scheme("plain").user(user.setup(), get_backend("python")).user_id == 0
            assert KeyServerClient(server.url, None, timeout=WAIT_S).status()["users"] == 2
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connections_beyond_the_cap_are_closed_at_once(plain_service, caplog):
    with running_key_server(plain_service[0], max_connections=5) as server, caplog.at_level(logging.INFO):
        port = server.server_address[1]
        idle = [socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) for _ in range(5)]
        try:
            answer, closed = _exchange(port, b"GET /v1/health HTTP/1.1\r\n" + HOST + b"\r\n")
            assert answer == b"" and closed
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + WAIT_S
        while True:  # the server notices the closed connections on its next loop turn
            try:
                assert KeyServerClient(server.url, None, timeout=WAIT_S).status()["users"] == 2
                break
            except KeyServerError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    assert "5 connections already open" in caplog.text
    _no_traceback(caplog)


def test_tls_handshakes_time_out_and_failures_leave_no_traceback(plain_service, tmp_path, caplog):
    certfile, keyfile = self_signed(tmp_path)
    options = {"certfile": certfile, "keyfile": keyfile, "handshake_timeout": 1.0}
    with running_key_server(plain_service[0], **options) as server, caplog.at_level(logging.DEBUG):
        port = server.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as stalled:
            # A handshake never started, one that fails (plain HTTP to a TLS port), one the client aborts.
            assert _exchange(port, b"GET /v1/health HTTP/1.1\r\n" + HOST + b"\r\n")[1]
            with pytest.raises(KeyServerError, match="CERTIFICATE_VERIFY_FAILED"):
                KeyServerClient(server.url, None, timeout=WAIT_S).status()
            assert KeyServerClient(server.url, None, ca_file=certfile, timeout=WAIT_S).status()["users"] == 2
            assert stalled.recv(100) == b""  # closed after the handshake timeout
    _no_traceback(caplog)


def test_ipv6_loopback(plain_service):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with running_key_server(plain_service[0], host="::1") as server:
        assert server.url.startswith("http://[::1]:")
        assert KeyServerClient(server.url, None, timeout=WAIT_S).status()["users"] == 2


def test_the_bind_is_checked_before_any_key_or_token_is_written(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        tokens = tmp_path / "tokens"
        argv = ["keyserver", "--dimension", "4", "--port", str(port), "--tokens-dir", str(tokens)]
        code, _, err = call_cli([*argv, "--insecure-local-test"])
    assert code == 2 and f"cannot listen on 127.0.0.1 port {port}" in err
    assert not tokens.exists()


class _SlowDecryption:
    """Wraps a backend: ``decrypt`` waits until released (to show what the server does meanwhile)."""

    def __init__(self, backend):
        self.backend = backend
        self.started = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def decrypt(self, private_key, batch):
        self.started.set()
        assert self.release.wait(WAIT_S)
        return self.backend.decrypt(private_key, batch)


def test_status_and_averages_are_served_while_an_aggregate_is_decrypted(tmp_path):
    config = load_config(None, ["federation.users=2", "crypto.key_bits=1024", "crypto.scheme='dense'"])
    slow = _SlowDecryption(get_backend("gmpy2"))
    service = KeyService(
        key_generator_from_config(config, DIMENSION, slow), tmp_path / "tokens", rounds=config.federation.rounds
    )
    tokens = tmp_path / "tokens"
    backend = get_backend("gmpy2")
    with running_key_server(service) as server:
        clients = {
            p: KeyServerClient(server.url, read_token(tokens / token_filename(p)), timeout=WAIT_S)
            for p in [Party(AGGREGATOR), Party(USER, 0), Party(USER, 1)]
        }
        aggregator = get_scheme("dense").aggregator(clients[Party(AGGREGATOR)].setup(), backend)
        for user_id in (0, 1):
            user = get_scheme("dense").user(clients[Party(USER, user_id)].setup(), backend)
            aggregator.receive(user.submit(np.full(DIMENSION, 0.5 * user_id), 0))
        aggregate = aggregator.finish()
        answers = []
        post = threading.Thread(target=lambda: answers.append(clients[Party(AGGREGATOR)].publish(aggregate)))
        post.start()
        try:
            assert slow.started.wait(WAIT_S)
            assert KeyServerClient(server.url, None, timeout=WAIT_S).status()["rounds_published"] == 0
            with pytest.raises(KeyServerError, match="HTTP 404"):
                clients[Party(USER, 0)].average(0, DIMENSION)
            with pytest.raises(KeyServerError, match=r"HTTP 409.*being decrypted; one attempt per round"):
                clients[Party(AGGREGATOR)].publish(aggregate)
        finally:
            slow.release.set()
            post.join(WAIT_S)
        assert answers == [{"round": 0, "contributors": 2}]
        np.testing.assert_allclose(clients[Party(USER, 1)].average(0, DIMENSION), 0.25, atol=1e-9)


@pytest.mark.parametrize(("scheme", "status"), [("bearer", 200), ("BEARER", 200), ("Basic", 401), ("Bearer2", 401)])
def test_the_bearer_scheme_name_is_case_insensitive(plain_service, scheme, status):
    service, tokens = plain_service
    token = read_token(tokens / token_filename(Party(USER, 0))).encode()
    with running_key_server(service) as server:
        request = b"GET /v1/setup HTTP/1.1\r\n" + HOST + b"Authorization: " + scheme.encode() + b" " + token
        answer, _ = _exchange(server.server_address[1], request + b"\r\nConnection: close\r\n\r\n")
    assert _status(answer) == status
