"""A party's client of the key server (see ``keyserver`` for the API)."""

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dphe_bench.deploy.keyserver import API, is_loopback
from dphe_bench.errors import DpheError

DEFAULT_TIMEOUT_S = 60.0


class KeyServerError(DpheError, RuntimeError):
    """The key server could not be reached, or refused a request (its reason is in the message)."""


def check_url(url: str) -> str:
    """``url`` without a trailing slash; plain ``http`` is refused unless the host is a loopback address."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"key server URL {url!r} must look like https://host:port")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"key server URL {url!r} has a port outside [1, 65535]")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"key server URL {url!r} is plain http to another machine: tokens and P would travel in the clear; "
            "use https"
        )
    return url.rstrip("/")


def read_token(path: str | Path) -> str:
    """The bearer token stored in ``path`` (as the key server wrote it)."""
    try:
        token = Path(path).read_text(encoding="ascii").strip()
    except OSError as exc:
        raise KeyServerError(f"cannot read the key server token {path}: {exc.strerror or exc}") from None
    if not token:
        raise KeyServerError(f"the key server token file {path} is empty")
    return token


@dataclass
class KeyServerClient:
    """Requests to the key server as one party.

    Parameters
    ----------
    url : str
        Base URL, ``https://host:port`` (``http`` only on loopback).
    token : str or None
        This party's bearer token (None: only ``status`` works).
    ca_file : str, optional
        PEM bundle to verify the server's certificate with (None: the system's trust store).
    timeout : float
        Seconds per request.
    """

    url: str
    token: str | None
    ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S

    def __post_init__(self):
        self.url = check_url(self.url)
        self.bytes_received = 0
        self.bytes_sent = 0

    def setup(self) -> bytes:
        """This party's setup message."""
        return self._request("GET", "/setup")[0]

    def publish(self, aggregate: bytes) -> dict:
        """Post a round's AGGREGATE (aggregator only); returns ``{"round": r, "contributors": c}``."""
        return json.loads(self._request("POST", "/aggregate", aggregate)[0])

    def average(self, round_index: int, dimension: int) -> np.ndarray:
        """The average published after round ``round_index`` (users only), float64 (D,)."""
        body, headers = self._request("GET", f"/average/{round_index}")
        if len(body) != 8 * dimension or headers.get("x-dphe-round") != str(round_index):
            raise KeyServerError(
                f"the key server sent {len(body)} bytes for round {headers.get('x-dphe-round')}, "
                f"expected {8 * dimension} for round {round_index}"
            )
        return np.frombuffer(body, dtype="<f8").astype(np.float64)

    def status(self) -> dict:
        """The public status: scheme, dimension, users, rounds, rounds_published."""
        return json.loads(self._request("GET", "/status")[0])

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and the headers (names in lower case) of the answer to ``method path``."""
        request = urllib.request.Request(f"{self.url}{API}{path}", data=body, method=method)
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.add_header("Content-Type", "application/octet-stream")
        context = ssl.create_default_context(cafile=self.ca_file) if self.url.startswith("https") else None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as response:
                data = response.read()
                headers = {name.lower(): value for name, value in response.headers.items()}
        except urllib.error.HTTPError as exc:
            reason = exc.read().decode("utf-8", "replace").strip()
            raise KeyServerError(f"key server {method} {path}: HTTP {exc.code}: {reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise KeyServerError(f"key server {self.url} unreachable ({method} {path}): {exc}") from None
        self.bytes_sent += len(body or b"")
        self.bytes_received += len(data)
        return data, headers
