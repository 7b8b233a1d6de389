"""Paillier keys: generation, per-key constants and JSON serialisation.

The arithmetic on ciphertexts lives in the backends (``dphe_bench.backends``); this module holds
the keys and the constants every backend needs. g = n + 1 throughout, as in python-paillier, so
raw ciphertexts are interchangeable with ``phe``.
"""

import functools
import hashlib
import json
import math
import os
import warnings
from pathlib import Path

from dphe_bench.crypto.primes import is_probable_prime, random_prime, small_factor
from dphe_bench.errors import KeyFormatError, KeyMismatchError, plain_list

KEY_SIZES = (1024, 2048, 3072, 4096)
DEFAULT_KEY_BITS = 2048
MIN_KEY_BITS, MAX_KEY_BITS = KEY_SIZES[0], KEY_SIZES[-1]
_KEY_FORMAT_VERSION = 1
# A key file holds at most two 2048-bit primes in hex, or one 4096-bit n, and a few names.
_MAX_KEY_JSON_CHARS = 4096


class PublicKey:
    """A Paillier public key (n, g = n + 1).

    Attributes
    ----------
    n : int
        The modulus, a product of two distinct primes.
    nsquare : int
        n ** 2, the ciphertext modulus.
    max_int : int
        Largest absolute value a decoded signed plaintext may have (n // 3 - 1, as python-paillier).
    """

    def __init__(self, n: int):
        _check_modulus(n)
        if n.bit_length() not in KEY_SIZES:
            raise KeyFormatError(
                f"n has {n.bit_length()} bits; a Paillier key has {plain_list(KEY_SIZES)} bits, as generated keys do"
            )
        if math.isqrt(n) ** 2 == n:
            raise KeyFormatError("n is a perfect square; a Paillier modulus is the product of two distinct primes")
        factor = small_factor(n)
        if factor:
            raise KeyFormatError(
                f"n has the small factor {factor}; a Paillier modulus is the product of two large primes"
            )
        if _is_prime(n):
            raise KeyFormatError("n is prime; a Paillier modulus is the product of two primes")
        self._set_modulus(n)

    @classmethod
    def insecure_for_tests(cls, n: int) -> "PublicKey":
        """Test-only: a key of any odd n >= 15, without the size and primality rules of ``PublicKey(n)``.

        For fast property tests of the arithmetic on tiny moduli; never for data that must stay secret.
        """
        _check_modulus(n)
        key = cls.__new__(cls)
        key._set_modulus(n)
        return key

    def _set_modulus(self, n: int) -> None:
        self.n = n
        self.g = n + 1
        self.nsquare = n * n
        self.max_int = n // 3 - 1

    @property
    def bits(self) -> int:
        """Bit length of n."""
        return self.n.bit_length()

    @property
    def key_id(self) -> int:
        """A 64-bit fingerprint of n (first 8 bytes of SHA-256 of n, big-endian), used in messages."""
        digest = hashlib.sha256(self.n.to_bytes((self.bits + 7) // 8, "big")).digest()
        return int.from_bytes(digest[:8], "big")

    def check_same(self, other: "PublicKey", what: str = "ciphertexts") -> None:
        """Raise KeyMismatchError unless ``other`` is this key."""
        if other != self:
            raise KeyMismatchError(
                f"{what} were made under public key {other.key_id:016x}, expected key {self.key_id:016x}"
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.n == self.n

    def __hash__(self) -> int:
        return hash(self.n)

    def __repr__(self) -> str:
        return f"PublicKey(bits={self.bits}, key_id={self.key_id:016x})"

    def to_json(self) -> str:
        """Serialise as JSON: {"format": "dphe-paillier-public", "version": 1, "n": hex}."""
        return json.dumps({"format": "dphe-paillier-public", "version": _KEY_FORMAT_VERSION, "n": hex(self.n)})

    @classmethod
    def from_json(cls, text: str) -> "PublicKey":
        """Parse the output of ``to_json``; raises ValueError naming what is wrong (the rules of ``PublicKey(n)``
        included: 1024 to 4096 bits, not prime)."""
        data = _load_key_json(text, "dphe-paillier-public", ("n",))
        return cls(_parse_hex(data, "n"))


class PrivateKey:
    """A Paillier private key (p, q) with the CRT constants of python-paillier.

    The repr never shows p or q. Attributes ``p``, ``q``, ``psquare``, ``qsquare``, ``hp``, ``hq``
    and ``p_inverse`` (p^-1 mod q) are Python ints.
    """

    def __init__(self, public_key: PublicKey, p: int, q: int):
        if p == q:
            raise ValueError("p and q must be distinct primes")
        if p * q != public_key.n:
            raise KeyMismatchError("p * q does not equal the public key's n")
        if not (is_probable_prime(p) and is_probable_prime(q)):
            raise ValueError("p and q must both be prime")
        if math.gcd(public_key.n, (p - 1) * (q - 1)) != 1:
            raise ValueError("gcd(pq, (p-1)(q-1)) must be 1")
        self.public_key = public_key
        self.p = p
        self.q = q
        self.psquare = p * p
        self.qsquare = q * q
        self.p_inverse = pow(p, -1, q)
        self.hp = self._h_function(p, self.psquare)
        self.hq = self._h_function(q, self.qsquare)

    def _h_function(self, prime: int, prime_square: int) -> int:
        """h(x) = L_x(g^(x-1) mod x^2)^-1 mod x."""
        lx = (pow(self.public_key.g, prime - 1, prime_square) - 1) // prime
        return pow(lx, -1, prime)

    @classmethod
    def from_primes(cls, p: int, q: int) -> "PrivateKey":
        """Build a key pair's private half from two distinct primes (for interop); n = pq meets the rules of
        ``PublicKey(n)``."""
        return cls(PublicKey(p * q), p, q)

    @classmethod
    def insecure_for_tests(cls, p: int, q: int) -> "PrivateKey":
        """Test-only: ``from_primes`` for primes of any size (see ``PublicKey.insecure_for_tests``)."""
        return cls(PublicKey.insecure_for_tests(p * q), p, q)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivateKey) and {other.p, other.q} == {self.p, self.q}

    def __hash__(self) -> int:
        return hash((min(self.p, self.q), max(self.p, self.q)))

    def __repr__(self) -> str:
        return f"PrivateKey(for {self.public_key!r})"

    def to_json(self) -> str:
        """Serialise as JSON with p and q in hex. Secret: write it only with ``write_private_key``."""
        return json.dumps(
            {"format": "dphe-paillier-private", "version": _KEY_FORMAT_VERSION, "p": hex(self.p), "q": hex(self.q)}
        )

    @classmethod
    def from_json(cls, text: str) -> "PrivateKey":
        """Parse the output of ``to_json``; raises ValueError naming what is wrong."""
        data = _load_key_json(text, "dphe-paillier-private", ("p", "q"))
        return cls.from_primes(_parse_hex(data, "p"), _parse_hex(data, "q"))


def generate_keypair(bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
    """Generate a Paillier key pair with an n of exactly ``bits`` bits.

    ``bits`` must be one of 1024, 2048 (default), 3072, 4096; 1024 emits a warning because it is
    only fit for benchmarks. Primes come from the OS CSPRNG.
    """
    if bits not in KEY_SIZES:
        raise ValueError(f"key size must be one of {KEY_SIZES}, got {bits!r}")
    if bits == 1024:
        warnings.warn("1024-bit Paillier keys are too weak for real use; use them for benchmarks only", stacklevel=2)
    while True:
        p = random_prime(bits // 2)
        q = random_prime(bits // 2)
        if p != q and (p * q).bit_length() == bits and math.gcd(p * q, (p - 1) * (q - 1)) == 1:
            break
    public_key = PublicKey(p * q)
    return public_key, PrivateKey(public_key, p, q)


@functools.lru_cache(maxsize=256)
def _is_prime(n: int) -> bool:
    """``is_probable_prime``, remembered: every party parses the same n from every setup message."""
    return is_probable_prime(n)


def _check_modulus(n: object) -> None:
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 15 or n % 2 == 0:
        raise KeyFormatError(f"n must be an odd integer >= 15, got a {n.bit_length()}-bit value")


def write_private_key(private_key: PrivateKey, path: str | Path) -> None:
    """Write a private key as JSON to ``path`` with mode 0600, atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(private_key.to_json())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_private_key(path: str | Path) -> PrivateKey:
    """Read a key written by ``write_private_key``."""
    return PrivateKey.from_json(Path(path).read_text())


def _load_key_json(text: str, expected_format: str, fields: tuple[str, ...]) -> dict:
    """The key's JSON object: exactly ``format``, ``version`` and ``fields``; KeyFormatError naming what is wrong."""
    if len(text) > _MAX_KEY_JSON_CHARS:
        raise KeyFormatError(f"key text of {len(text)} characters is longer than any key ({_MAX_KEY_JSON_CHARS})")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError, as are over-long integers
        raise KeyFormatError(f"key is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != expected_format:
        raise KeyFormatError(f"not a {expected_format!r} key")
    version = data.get("version")
    if type(version) is not int or version != _KEY_FORMAT_VERSION:
        raise KeyFormatError(f"unsupported key format version {version!r}, expected {_KEY_FORMAT_VERSION}")
    missing = [name for name in fields if name not in data]
    if missing:
        raise KeyFormatError(f"key is missing field(s) {plain_list(missing)}")
    extra = sorted(set(data) - {"format", "version", *fields})
    if extra:
        raise KeyFormatError(f"key has unknown field(s) {plain_list(extra)}")
    return data


def _parse_hex(data: dict, name: str) -> int:
    value = data[name]
    if not isinstance(value, str) or not value.startswith("0x"):
        raise KeyFormatError(f"key field {name!r} must be a hex string starting with 0x")
    try:
        return int(value, 16)
    except ValueError:
        raise KeyFormatError(f"key field {name!r} is not valid hex") from None
