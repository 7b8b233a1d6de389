"""The key generator K as a network service: an HTTP(S) API around a scheme's ``KeyGenerator``.

K sets the protocol up once (keys, P, every P_i), writes one bearer token per party, and then serves:

=====  ====================  ===========  ============================================================
verb   path                  who          what
=====  ====================  ===========  ============================================================
GET    /v1/health            anyone       ``ok`` once the service is up
GET    /v1/status            anyone       JSON: scheme, dimension, users, rounds_published
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
round not published yet), 400 (a rejected message; K's state is unchanged), 411/413 (body length).

Transport: the tokens and the setup messages must not travel in the clear, so the service only runs
over TLS (``certfile`` + ``keyfile``), except with ``insecure_local_test`` on a loopback address.
"""

import hmac
import ipaddress
import json
import re
import secrets
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from dphe_bench.backends import Backend
from dphe_bench.errors import DpheError
from dphe_bench.files import write_atomically, write_text_atomically
from dphe_bench.learning.config import Config
from dphe_bench.schemes import KeyGenerator, get_scheme
from dphe_bench.schemes.messages import MessageKind, decode_message

API = "/v1"
AGGREGATOR = "aggregator"
USER = "user"
MAX_BODY_BYTES = 2**31
_AVERAGE_PATH = re.compile(rf"^{API}/average/(\d+)$")


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


def key_generator_from_config(config: Config, dimension: int, backend: Backend) -> KeyGenerator:
    """The configured scheme's key generator for users 0..N-1, built as ``simulation.Federation`` builds it."""
    scheme = get_scheme(config.crypto.scheme)
    options = {name: getattr(config.crypto, name) for name in scheme.options}
    if scheme.encrypted:
        options["key_bits"] = config.crypto.key_bits
    return scheme.key_generator(dimension, list(range(config.federation.users)), backend, **options)


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
    """

    def __init__(self, key_generator: KeyGenerator, tokens_dir: Path, out_dir: Path | None = None):
        self.key_generator = key_generator
        self.scheme = key_generator.scheme
        self.dimension = key_generator.dimension
        self.user_ids = list(key_generator.user_ids)
        self.out_dir = out_dir
        self._setup = key_generator.setup()
        self._lock = threading.Lock()
        self._averages: list[tuple[np.ndarray, int]] = []
        parties = [Party(AGGREGATOR), *(Party(USER, uid) for uid in self.user_ids)]
        self._tokens = {secrets.token_hex(32): party for party in parties}
        tokens_dir = Path(tokens_dir)
        tokens_dir.mkdir(parents=True, exist_ok=True)
        tokens_dir.chmod(0o700)
        for token, party in self._tokens.items():
            # write_atomically's temporary file is created with mode 0600, and the rename keeps it.
            write_text_atomically(tokens_dir / token_filename(party), token + "\n")

    def party(self, token: str) -> Party | None:
        """The party holding ``token``, or None."""
        for known, party in self._tokens.items():
            if hmac.compare_digest(known, token):
                return party
        return None

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
        """Decrypt one round's AGGREGATE and publish the average; returns (round, contributors)."""
        with self._lock:
            round_index = self.key_generator.next_round
            average = self.key_generator.publish(aggregate)
            contributors = _contributors(aggregate, self.key_generator)
            self._averages.append((average, contributors))
            if self.out_dir is not None:
                path = Path(self.out_dir) / f"average-round-{round_index}.npy"
                write_atomically(path, lambda file: np.save(file, average, allow_pickle=False))
            return round_index, contributors

    def average(self, round_index: int) -> tuple[np.ndarray, int] | None:
        """The average published after ``round_index`` and its number of contributors, or None."""
        with self._lock:
            if round_index < len(self._averages):
                return self._averages[round_index]
            return None

    def status(self) -> dict:
        """Public facts: scheme, dimension, number of users, rounds published."""
        return {
            "scheme": self.scheme,
            "dimension": self.dimension,
            "users": len(self.user_ids),
            "rounds_published": self.rounds_published,
        }


def _contributors(aggregate: bytes, key_generator: KeyGenerator) -> int:
    """The contributor count of an AGGREGATE message that ``key_generator.publish`` has accepted."""
    fields = ("round", "dimension", "contributors", *key_generator.aggregate_fields)
    return int(decode_message(aggregate, MessageKind.AGGREGATE, key_generator.scheme, fields)["contributors"])


class KeyServer(ThreadingHTTPServer):
    """The HTTP(S) server of a ``KeyService``. Build it with ``start_key_server``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: KeyService, tls: ssl.SSLContext | None):
        super().__init__(address, _Handler)
        self.service = service
        self.tls = tls is not None
        if tls is not None:
            # The handshake runs in the request's thread, so a slow client cannot stall the accept loop.
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``https://127.0.0.1:8443``."""
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{port}"


def start_key_server(
    service: KeyService,
    host: str,
    port: int,
    certfile: str | None = None,
    keyfile: str | None = None,
    insecure_local_test: bool = False,
) -> KeyServer:
    """Bind the key server (port 0 picks a free port); call ``serve_forever()`` on the result to serve.

    Raises ValueError, before binding, when the link would be insecure (see ``check_transport``).
    """
    check_transport(host, certfile, keyfile, insecure_local_test)
    tls = None
    if certfile and keyfile:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(certfile, keyfile)
    return KeyServer((host, port), service, tls)


class _Handler(BaseHTTPRequestHandler):
    server: KeyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        if self.path in (f"{API}/health", f"{API}/status"):
            return  # polled: not worth a line each
        print(f"keyserver: {self.address_string()} {format % args}", flush=True)

    def do_GET(self) -> None:
        service = self.server.service
        if self.path == f"{API}/health":
            return self._send(200, b"ok\n", "text/plain")
        if self.path == f"{API}/status":
            return self._send(200, json.dumps(service.status()).encode(), "application/json")
        if self.path == f"{API}/setup":
            party = self._authenticate(AGGREGATOR, USER)
            if party is not None:
                self._send(200, service.setup_for(party), "application/octet-stream")
            return None
        match = _AVERAGE_PATH.match(self.path)
        if match:
            if self._authenticate(USER) is None:
                return None
            round_index = int(match.group(1))
            published = service.average(round_index)
            if published is None:
                return self._error(404, f"round {round_index} has no published average yet")
            average, contributors = published
            headers = {"X-DPHE-Round": str(round_index), "X-DPHE-Contributors": str(contributors)}
            return self._send(200, average.astype("<f8").tobytes(), "application/octet-stream", headers)
        return self._error(404, f"no such resource {self.path!r}")

    def do_POST(self) -> None:
        if self.path != f"{API}/aggregate":
            return self._error(404, f"no such resource {self.path!r}")
        if self._authenticate(AGGREGATOR) is None:
            return None
        body = self._read_body()
        if body is None:
            return None
        try:
            round_index, contributors = self.server.service.publish(body)
        except DpheError as exc:
            return self._error(400, f"aggregate rejected: {exc}")
        print(f"keyserver: published round {round_index} ({contributors} contributors)", flush=True)
        answer = {"round": round_index, "contributors": contributors}
        return self._send(200, json.dumps(answer).encode(), "application/json")

    def _authenticate(self, *roles: str) -> Party | None:
        """The caller's party if its token is valid and its role allowed; else answers 401/403 and returns None."""
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        party = self.server.service.party(token.strip()) if scheme == "Bearer" else None
        if party is None:
            self._error(401, "missing or unknown bearer token")
            return None
        if party.role not in roles:
            self._error(403, f"{party} may not {self.command} {self.path}")
            return None
        return party

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._error(411, "a Content-Length header is required")
            return None
        if int(length) > MAX_BODY_BYTES:
            self._error(413, f"body of {length} bytes exceeds the {MAX_BODY_BYTES}-byte limit")
            return None
        return self.rfile.read(int(length))

    def _error(self, status: int, reason: str) -> None:
        self._send(status, (reason + "\n").encode(), "text/plain")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
