"""The key server's HTTP(S) layer: the API of ``keyserver`` served by uvicorn (httptools parser) with Starlette.

What the server holds against hostile clients (each limit is a parameter of ``start_key_server``):

- framing is parsed by llhttp (httptools): a malformed request line or header, a duplicated or non-numeric
  ``Content-Length`` gets 400 and the connection is closed, a request line and headers over
  ``MAX_HEADER_BYTES`` 431; a chunked
  body (``Transfer-Encoding``) gets 411, a GET with a body 400, an HTTP version other than 1.0/1.1 505;
  every answer of 400 and above closes the connection, so no unread body is ever parsed as a request;
- the body of ``POST /v1/aggregate`` is refused (413, before it is read) when it exceeds the largest
  aggregate the key generator accepts (``keyserver.max_aggregate_bytes``: about D x 2 key sizes);
- a connection must deliver each whole request within ``read_timeout`` seconds of opening (or of its last
  answer), TLS handshakes end after ``handshake_timeout`` seconds, idle kept-alive connections after
  ``KEEP_ALIVE_S``; connections beyond ``max_connections`` are closed at once; listen backlog ``BACKLOG``;
- the connection cap follows the open-file limit: at start the soft RLIMIT_NOFILE is raised toward the hard
  limit (as servers commonly do) and the cap is at most the soft limit less ``FD_HEADROOM`` (one loop turn's
  accepts, ``BACKLOG``, plus 64), so idle connections cannot exhaust descriptors before the cap closes them
  (while the cap is full, new connections are closed at once until idle ones time out);
- errors the event loop reports (such as ``socket.accept() out of system resource``) are logged as one line
  per distinct error, at most once per ``LOOP_ERROR_INTERVAL_S`` with a count of the repeats, never a traceback;
- decryption runs in a daemon worker thread, so the event loop keeps answering status and average requests
  and a stop (SIGINT, SIGTERM, ``shutdown()``) ends the process even while an aggregate is being decrypted;
- each refused request is one log line (logger ``dphe_bench.keyserver``, or uvicorn's for parser errors),
  without a traceback; no ``Server`` header.
"""

import asyncio
import contextlib
import json
import logging
import re
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dphe_bench.deploy.keyserver import (
    AGGREGATOR,
    API,
    USER,
    DecryptionRefused,
    KeyService,
    Party,
    check_transport,
)
from dphe_bench.errors import ConfigError, DpheError

READ_TIMEOUT_S = 30.0
HANDSHAKE_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 1024
# The listen backlog, which is also how many connections asyncio accepts in one loop turn before the cap can close
# any: each takes a descriptor until then.
BACKLOG = 128
# Descriptors kept free beyond the connection cap: one loop turn's accepts, then the listener, logs, key and
# average files, worker threads (the process holds about 10 at start).
FD_HEADROOM = BACKLOG + 64
LOOP_ERROR_INTERVAL_S = 60.0
# Distinct event-loop errors remembered for rate limiting; the memory is cleared when it is full.
LOOP_ERROR_KINDS = 100
MAX_HEADER_BYTES = 16 * 1024
_AVERAGE_PATH = re.compile(rf"^{API}/average/([0-9]{{1,18}})$")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")
_QUIET_PATHS = (f"{API}/health", f"{API}/status")
log = logging.getLogger("dphe_bench.keyserver")
_T = TypeVar("_T")


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (when finite); returns the soft limit in force.

    If the OS refuses, the limit stays as it was and the connection cap follows it (``connection_cap``).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("open-file limit stays at %d (raising it to %d failed: %s)", soft, hard, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(open_file_limit: int, requested: int | None = None) -> int:
    """The connection cap for a soft open-file limit: ``requested`` (default ``MAX_CONNECTIONS``, lowered to
    ``open_file_limit - FD_HEADROOM``). Raises ValueError when ``requested`` is not in [1, that bound], or the
    limit leaves no descriptor for a connection."""
    bound = MAX_CONNECTIONS if open_file_limit == resource.RLIM_INFINITY else open_file_limit - FD_HEADROOM
    if bound < 1:
        raise ValueError(
            f"the open-file limit ({open_file_limit}) leaves no descriptor for a connection beyond the "
            f"{FD_HEADROOM} the key server keeps: raise it (ulimit -n)"
        )
    if requested is None:
        return min(MAX_CONNECTIONS, bound)
    if not 1 <= requested <= bound:
        raise ValueError(
            f"the connection cap must be in [1, {bound}] (the open-file limit {open_file_limit} less "
            f"{FD_HEADROOM} descriptors), not {requested}"
        )
    return requested


class LoopErrorLog:
    """An asyncio exception handler: one log line per distinct error, at most once per ``interval`` seconds.

    asyncio's default handler logs a traceback for each error; an accept loop out of descriptors reports one
    per attempt, tens of thousands a minute. Here the repeats within ``interval`` are counted and the count is
    shown on the error's next line.
    """

    def __init__(self, interval: float = LOOP_ERROR_INTERVAL_S):
        self.interval = interval
        self._seen: dict[str, tuple[float, int]] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        error = context.get("message", "event loop error")
        if exc is not None:
            error = f"{error}: {type(exc).__name__}: {exc}"
        now = time.monotonic()
        last, repeats = self._seen.get(error, (None, 0))
        if last is not None and now - last < self.interval:
            self._seen[error] = (last, repeats + 1)
            return
        if len(self._seen) >= LOOP_ERROR_KINDS:
            self._seen.clear()
        self._seen[error] = (now, 0)
        more = f" (and {repeats} times more in the last {now - last:.0f} s)" if repeats else ""
        log.error("event loop: %s%s", error, more)


async def _in_daemon_thread(function: Callable[..., _T], *args: Any) -> _T:
    """``function(*args)`` in a new daemon thread, awaited: a stop never waits for it (unlike a thread pool's)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def work() -> None:
        result, error = None, None
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting coroutine, which raises it
            error = exc
        # RuntimeError: the loop closed meanwhile, so the server has stopped and nobody awaits this.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="keyserver-decryption", daemon=True).start()
    return await future


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host`` (IPv4 or IPv6 address, or ``localhost``) and ``port`` (0: any free).

    Bind before making any key or token, so that an unusable address fails first. Raises OSError.
    """
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if address == "localhost":
        address = "127.0.0.1"
    return socket.create_server((address, port), family=family, backlog=BACKLOG)


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server TLS context for the PEM certificate chain and (unencrypted) key; TLS 1.2 at least.

    Raises ConfigError naming the files when one is missing or unreadable, is not PEM, is an encrypted key,
    or the key is not the certificate's.
    """
    for path, option in ((certfile, "--tls-cert"), (keyfile, "--tls-key")):
        if not Path(path).is_file():
            raise ConfigError(f"{option} {path} is not a file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise ConfigError(
            f"the TLS certificate {certfile} (--tls-cert) and key {keyfile} (--tls-key) cannot be used: {reason} "
            "(both must be PEM, the key unencrypted and the certificate's own)"
        ) from None
    return context


def _no_password() -> bytes:
    """The password callback of ``load_cert_chain``: the key server takes no encrypted key (it could not ask)."""
    raise ConfigError("the TLS key is encrypted: give the key server an unencrypted key (mode 0600)")


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap, a header size cap and a deadline per whole request."""

    read_timeout = READ_TIMEOUT_S
    max_connections = MAX_CONNECTIONS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._header_bytes = 0
        self._headers_completed = False
        self._oversized = False
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("%s: connection refused: %d connections already open", _peer(self.client), self.max_connections)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._oversized:
            return
        awaiting = self._awaiting_headers
        self._headers_completed = False
        super().data_received(data)
        # Bytes of a request whose headers were incomplete before and after this chunk.
        if awaiting and self._awaiting_headers and not self._headers_completed:
            self._header_bytes += len(data)
        if (self._oversized or self._header_bytes > MAX_HEADER_BYTES) and not self.transport.is_closing():
            self._oversized = True
            log.warning("%s: request refused: 431 headers over %d bytes", _peer(self.client), MAX_HEADER_BYTES)
            reason = f"the request line and headers exceed {MAX_HEADER_BYTES} bytes\n".encode()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(reason), reason)
            )
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._headers_completed = True
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEADER_BYTES:
            self._oversized = True  # no application task: data_received answers 431
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._oversized:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._awaiting_headers = True
        self._header_bytes = 0
        if not self._oversized:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.warning("%s: connection closed: no whole request within %g s", _peer(self.client), self.read_timeout)
            self.transport.close()


class _EventLoop(asyncio.SelectorEventLoop):
    """The event loop of one key server: its listener gets the TLS context and the handshake timeout."""

    def __init__(self, tls: ssl.SSLContext | None, handshake_timeout: float):
        super().__init__()
        self._tls = tls
        self._handshake_timeout = handshake_timeout

    async def create_server(self, *args, **kwargs) -> asyncio.Server:  # type: ignore[override]
        if self._tls is not None:
            kwargs.update(ssl=self._tls, ssl_handshake_timeout=self._handshake_timeout)
        return await super().create_server(*args, **kwargs)


def _shown(path: str) -> str:
    """``path`` quoted for a log line or an answer, cut to 100 characters."""
    return repr(path if len(path) <= 100 else path[:100] + "...")


def _peer(client: tuple[str, int] | None) -> str:
    if client is None:
        return "?"
    host, port = client[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class KeyServerApp:
    """The ASGI application: the API of ``keyserver`` over a ``KeyService`` (one Starlette Request per call)."""

    def __init__(self, service: KeyService):
        self.service = service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self._respond(request)
        except ClientDisconnect:
            self._log(request, "client disconnected before sending its whole body", refused=True)
            return
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        path = request.scope["raw_path"].decode("latin-1")
        method = request.method
        if request.scope["http_version"] not in ("1.0", "1.1"):
            return self._refuse(request, 505, f"HTTP/{request.scope['http_version']} is not supported")
        if "transfer-encoding" in request.headers:
            return self._refuse(request, 411, "a Content-Length header is required (no Transfer-Encoding)")
        if request.scope["query_string"]:
            return self._refuse(request, 404, f"no such resource {_shown(path + '?')}")
        if method == "GET":
            if request.headers.get("content-length", "0") != "0":
                return self._refuse(request, 400, "a GET request carries no body")
            return self._get(request, path)
        if method == "POST":
            return await self._post(request, path)
        return self._refuse(request, 501, f"unsupported method {method!r}")

    def _get(self, request: Request, path: str) -> Response:
        service = self.service
        if path == f"{API}/health":
            return _answer(200, b"ok\n", "text/plain")
        if path == f"{API}/status":
            return _answer(200, _json(service.status()), "application/json")
        if path == f"{API}/setup":
            party = self._authenticate(request, path, AGGREGATOR, USER)
            if isinstance(party, Response):
                return party
            self._log(request, "200")
            return _answer(200, service.setup_for(party), "application/octet-stream")
        match = _AVERAGE_PATH.match(path)
        if match is None:
            return self._refuse(request, 404, f"no such resource {_shown(path)}")
        party = self._authenticate(request, path, USER)
        if isinstance(party, Response):
            return party
        round_index = int(match.group(1))
        published = service.average(round_index)
        if published is None:
            if service.void_round == round_index:
                return self._refuse(request, 410, f"round {round_index} is void: its aggregate failed after decryption")
            return self._refuse(request, 404, f"round {round_index} has no published average yet")
        average, contributors = published
        headers = {"X-DPHE-Round": str(round_index), "X-DPHE-Contributors": str(contributors)}
        self._log(request, "200")
        return _answer(200, average.astype("<f8").tobytes(), "application/octet-stream", headers)

    async def _post(self, request: Request, path: str) -> Response:
        if path != f"{API}/aggregate":
            return self._refuse(request, 404, f"no such resource {_shown(path)}")
        party = self._authenticate(request, path, AGGREGATOR)
        if isinstance(party, Response):
            return party
        length = request.headers.get("content-length")
        if length is None:
            return self._refuse(request, 411, "a Content-Length header is required")
        if _CONTENT_LENGTH.fullmatch(length) is None:
            return self._refuse(request, 400, "the Content-Length header must be a decimal number")
        limit = self.service.max_aggregate_bytes
        if int(length) > limit:
            return self._refuse(request, 413, f"body of {length} bytes exceeds the {limit}-byte limit")
        body = await request.body()
        try:
            round_index, contributors = await _in_daemon_thread(self.service.publish, body)
        except DecryptionRefused as exc:
            return self._refuse(request, 409, f"aggregate refused: {exc}")
        except DpheError as exc:
            return self._refuse(request, 400, f"aggregate rejected: {exc}")
        log.info("published round %d (%d contributors)", round_index, contributors)
        return _answer(200, _json({"round": round_index, "contributors": contributors}), "application/json")

    def _authenticate(self, request: Request, path: str, *roles: str) -> Party | Response:
        """The caller's party if its token is valid and its role allowed; else the 401/403 answer."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # The scheme name is case-insensitive (RFC 9110, 11.1).
        party = self.service.party(token.strip().encode("latin-1")) if scheme.lower() == "bearer" else None
        if party is None:
            return self._refuse(request, 401, "missing or unknown bearer token")
        if party.role not in roles:
            return self._refuse(request, 403, f"{party} may not {request.method} {path}")
        return party

    def _refuse(self, request: Request, status: int, reason: str) -> Response:
        """The error answer (which closes the connection), logged as one line."""
        self._log(request, f"{status} {reason}", refused=True)
        return _answer(status, (reason + "\n").encode(), "text/plain", {"Connection": "close"})

    @staticmethod
    def _log(request: Request, outcome: str, refused: bool = False) -> None:
        path = request.scope["raw_path"].decode("latin-1")
        if not refused and path in _QUIET_PATHS:
            return
        level = logging.WARNING if refused else logging.INFO
        log.log(level, "%s %s %s -> %s", _peer(request.scope.get("client")), request.method, _shown(path), outcome)


def _answer(status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=content_type, headers=headers)


def _json(value: dict) -> bytes:
    return json.dumps(value).encode()


class KeyServer:
    """A key server bound to its listener; ``serve_forever()`` serves until ``shutdown()`` (or SIGINT/SIGTERM)."""

    def __init__(
        self,
        service: KeyService,
        listener: socket.socket,
        tls: ssl.SSLContext | None,
        read_timeout: float,
        handshake_timeout: float,
        max_connections: int,
    ):
        self.service = service
        self.listener = listener
        self.max_connections = max_connections
        self.tls = tls is not None
        self._tls_context = tls
        self._handshake_timeout = handshake_timeout
        protocol = type(
            "KeyServerProtocol", (_Protocol,), {"read_timeout": read_timeout, "max_connections": max_connections}
        )
        config = uvicorn.Config(
            KeyServerApp(service),
            http=protocol,
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=5,
            backlog=BACKLOG,
        )
        self._server = uvicorn.Server(config)
        self._stopped = threading.Event()

    @property
    def server_address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        return self.listener.getsockname()[:2]

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``https://127.0.0.1:8443`` or ``http://[::1]:8443``."""
        host, port = self.server_address
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve in this thread until ``shutdown()``; in the main thread SIGINT and SIGTERM also stop it."""
        loop = _EventLoop(self._tls_context, self._handshake_timeout)
        loop.set_exception_handler(LoopErrorLog())
        try:
            loop.run_until_complete(self._server.serve(sockets=[self.listener]))
        finally:
            loop.close()
            self._stopped.set()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop serving (from another thread) and wait until ``serve_forever`` has returned."""
        self._server.should_exit = True
        self._stopped.wait(timeout)

    def server_close(self) -> None:
        """Close the listening socket."""
        self.listener.close()


def start_key_server(
    service: KeyService,
    listener: socket.socket,
    certfile: str | None = None,
    keyfile: str | None = None,
    insecure_local_test: bool = False,
    read_timeout: float = READ_TIMEOUT_S,
    handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
    max_connections: int | None = None,
) -> KeyServer:
    """The key server of ``service`` on ``listener`` (from ``bind_listener``); call ``serve_forever()`` to serve.

    Raises this process's soft open-file limit toward its hard limit; ``max_connections`` defaults to
    ``MAX_CONNECTIONS`` lowered to the limit less ``FD_HEADROOM`` (``connection_cap``). Raises ValueError when
    the link would be insecure for the bound address (see ``check_transport``), a timeout is not positive or
    the connection cap does not fit the open-file limit; ssl.SSLError or OSError for an unusable certificate.
    """
    check_transport(listener.getsockname()[0], certfile, keyfile, insecure_local_test)
    if read_timeout <= 0 or handshake_timeout <= 0:
        raise ValueError("the read and handshake timeouts must be positive")
    cap = connection_cap(raise_open_file_limit(), max_connections)
    tls = tls_context(certfile, keyfile) if certfile and keyfile else None
    return KeyServer(service, listener, tls, read_timeout, handshake_timeout, cap)
