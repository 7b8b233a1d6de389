"""The backend interface: batched big-integer primitives, and Paillier written once on top of them.

A backend implements ``powmod`` and ``mulmod`` over (count, width) uint32 limb arrays
(see ``dphe_bench.crypto.limbs``). Fixed-base tables (``build_fixed_base_table``, ``fixed_base_powmod``),
``encrypt``, ``decrypt`` and ``aggregate`` are generic; a backend may override any of them with a faster
implementation that passes the same tests.

Obfuscation modes (the ``obfuscation`` option of every backend; same ciphertext format and decryption):

- ``standard``: r^n mod n^2 with r uniform in Z*_n (textbook Paillier).
- ``djn``: hs^a mod n^2 with hs = (-x^2)^n mod n^2 for a random unit x drawn once per key, and a uniform
  of ceil(n_bits / 2) bits, computed by walking a fixed-base table (Damgard-Jurik-Nielsen).
- ``pool``: r^n mod n^2 computed ahead of time by ``precompute`` (the offline phase); online encryption
  is one multiplication, and each obfuscator is used exactly once.
"""

import math
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from dphe_bench.backends.fixed_base import (
    FixedBaseTable,
    check_window_bits,
    window_count,
    window_digits,
    window_powers,
)
from dphe_bench.crypto.batch import CiphertextBatch
from dphe_bench.crypto.limbs import exact_ints, ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.crypto.paillier import PrivateKey, PublicKey
from dphe_bench.crypto.secure_random import random_units
from dphe_bench.errors import CiphertextError, ObfuscatorPoolError, PlaintextRangeError, plain_list, unknown_name

DEFAULT_WINDOW_BITS = 8
OBFUSCATIONS: dict[str, str] = {
    "standard": "decisional composite residuosity (DCR), the textbook Paillier assumption",
    "djn": "DCR plus a short-exponent assumption: hs^a with a of n_bits/2 bits looks like a random n-th residue",
    "pool": "DCR, as standard: the same r^n obfuscators, computed ahead of time and each used once",
}


class Backend(ABC):
    """A crypto backend. Subclasses set ``name`` and implement the two primitives and ``unavailable_reason``.

    Parameters
    ----------
    obfuscation : str
        ``standard`` (default), ``djn`` or ``pool`` (see the module docstring and ``OBFUSCATIONS``).
    window_bits : int
        Window size of the ``djn`` fixed-base table (1..12; 8 = 128 multiplications and 16 MiB per
        2048-bit key).
    """

    name: ClassVar[str]
    # True for backends that run threads of their own (they must not be wrapped in worker processes).
    threaded: ClassVar[bool] = False

    def __init__(self, obfuscation: str = "standard", window_bits: int = DEFAULT_WINDOW_BITS, **options: object):
        if options:
            raise TypeError(
                f"backend {self.name!r} takes no option(s) {plain_list(sorted(options))}; "
                f"its options: {plain_list(self.option_names())}"
            )
        if not isinstance(obfuscation, str) or obfuscation not in OBFUSCATIONS:
            raise ValueError(unknown_name("obfuscation", obfuscation, OBFUSCATIONS))
        self.obfuscation = obfuscation
        self.window_bits = check_window_bits(window_bits)
        self._djn_tables: dict[int, FixedBaseTable] = {}
        self._pools: dict[int, np.ndarray] = {}

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None when this backend can run here, else a sentence saying why not."""

    @abstractmethod
    def powmod(self, bases: np.ndarray, exponent: int, modulus: int) -> np.ndarray:
        """bases[i] ** exponent mod modulus for every row.

        bases: (count, any width) uint32 limbs; exponent >= 0 shared by all rows;
        returns (count, limb_width(modulus)) uint32 limbs.
        """

    @abstractmethod
    def mulmod(self, a: np.ndarray, b: np.ndarray, modulus: int) -> np.ndarray:
        """a[i] * b[i] mod modulus; a and b are (count, width) uint32 limbs of values below modulus."""

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The keyword options ``get_backend(name, ...)`` accepts for this backend."""
        return ("obfuscation", "window_bits")

    def options(self) -> dict[str, object]:
        """The keyword options that rebuild this backend with ``get_backend(name, **options)``."""
        return {"obfuscation": self.obfuscation, "window_bits": self.window_bits}

    def resolved_options(self) -> dict[str, object]:
        """``options()`` with every default resolved: the options this backend runs with. Backends resolve their
        defaults when built, so this is ``options()`` unless a subclass leaves one open (numba's threads)."""
        return self.options()

    def describe(self) -> str:
        """One line naming the backend and its obfuscation mode."""
        detail = f", {self.window_bits}-bit windows" if self.obfuscation == "djn" else ""
        return f"{self.name} ({self.obfuscation} obfuscation{detail})"

    def close(self) -> None:
        """Release the workers or devices this backend holds (serial backends hold none)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.options().items())
        return f"{type(self).__name__}({arguments})"

    def build_fixed_base_table(self, base: int, modulus: int, exponent_bits: int, window_bits: int) -> FixedBaseTable:
        """Table of base^(j * 2^(w*i)) mod modulus covering exponents of ``exponent_bits`` bits.

        Row by row with batched ``mulmod`` calls: 2**w - 2 calls over all windows at once.
        """
        windows = window_count(exponent_bits, window_bits)
        width = limb_width(modulus)
        entries = np.empty((windows, 1 << window_bits, width), dtype=np.uint32)
        entries[:, 0] = ints_to_limbs([1 % modulus], width)[0]
        if window_bits:
            entries[:, 1] = ints_to_limbs(window_powers(base, modulus, windows, window_bits), width)
        for j in range(2, 1 << window_bits):
            entries[:, j] = self.mulmod(entries[:, j - 1], entries[:, 1], modulus)
        return FixedBaseTable(modulus=modulus, window_bits=window_bits, entries=entries)

    def fixed_base_powmod(self, table: FixedBaseTable, exponents: Sequence[int]) -> np.ndarray:
        """base^exponents[i] mod table.modulus from the table: one multiplication per window, every window.

        Returns (count, limb_width(modulus)) uint32 limbs.
        """
        digits = window_digits(list(exponents), table.window_bits, table.windows)
        result = table.entries[0, digits[:, 0]]
        for window in range(1, table.windows):
            result = self.mulmod(result, table.entries[window, digits[:, window]], table.modulus)
        return np.ascontiguousarray(result)

    def djn_table(self, public_key: PublicKey) -> FixedBaseTable:
        """The ``djn`` fixed-base table for this key, built on first use and kept (see ``table_nbytes``)."""
        table = self._djn_tables.get(public_key.n)
        if table is None:
            n, nsquare = public_key.n, public_key.nsquare
            x = random_units(n, 1)[0]
            hs = pow((n - x * x % n) % n, n, nsquare)
            table = self.build_fixed_base_table(hs, nsquare, djn_exponent_bits(public_key), self.window_bits)
            self._djn_tables[public_key.n] = table
        return table

    def table_nbytes(self) -> int:
        """Memory held by this backend's ``djn`` tables, all keys together."""
        return sum(table.nbytes for table in self._djn_tables.values())

    def precompute(self, public_key: PublicKey, count: int) -> None:
        """Offline phase of ``pool`` obfuscation: add ``count`` fresh r^n mod n^2 to this key's pool."""
        if self.obfuscation != "pool":
            raise ValueError(f"precompute is for pool obfuscation; this backend uses {self.obfuscation!r}")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        fresh = self.standard_obfuscators(public_key, count)
        current = self._pools.get(public_key.n)
        self._pools[public_key.n] = fresh if current is None else np.concatenate([current, fresh])

    def pool_size(self, public_key: PublicKey) -> int:
        """Unused obfuscators left in this key's pool."""
        pool = self._pools.get(public_key.n)
        return 0 if pool is None else len(pool)

    def standard_obfuscators(self, public_key: PublicKey, count: int) -> np.ndarray:
        """``count`` values r^n mod n^2 with r uniform in Z*_n: uint32 limbs (count, width of n^2)."""
        n, nsquare = public_key.n, public_key.nsquare
        return self.powmod(ints_to_limbs(random_units(n, count), limb_width(nsquare)), n, nsquare)

    def djn_obfuscators(self, public_key: PublicKey, count: int) -> np.ndarray:
        """``count`` values hs^a mod n^2 with a uniform of ceil(n_bits / 2) bits, from the fixed-base table."""
        bits = djn_exponent_bits(public_key)
        return self.fixed_base_powmod(self.djn_table(public_key), [secrets.randbits(bits) for _ in range(count)])

    def obfuscators(self, public_key: PublicKey, count: int) -> np.ndarray:
        """``count`` obfuscators in this backend's mode: uint32 limbs (count, width of n^2)."""
        if self.obfuscation == "standard":
            return self.standard_obfuscators(public_key, count)
        if self.obfuscation == "djn":
            return self.djn_obfuscators(public_key, count)
        available = self.pool_size(public_key)
        if available < count:
            raise ObfuscatorPoolError(
                f"the obfuscator pool for key {public_key.key_id:016x} holds {available}, encrypting needs {count}: "
                f"call precompute(public_key, {count - available}) first"
            )
        pool = self._pools.get(public_key.n, np.empty((0, limb_width(public_key.nsquare)), dtype=np.uint32))
        self._pools[public_key.n] = pool[count:]
        return pool[:count]

    def encrypt(self, public_key: PublicKey, plaintexts: Sequence[int]) -> CiphertextBatch:
        """Encrypt ints in [0, n): (1 + m n) * obfuscator mod n^2, the obfuscator from this backend's mode."""
        plain_parts = plaintext_parts(public_key, plaintexts)
        obfuscators = self.obfuscators(public_key, len(plain_parts))
        return CiphertextBatch(public_key, self.mulmod(plain_parts, obfuscators, public_key.nsquare))

    def decrypt(self, private_key: PrivateKey, ciphertexts: CiphertextBatch) -> list[int]:
        """Decrypt with CRT (two half-size exponentiations); returns ints in [0, n)."""
        private_key.public_key.check_same(ciphertexts.public_key)
        p, q = private_key.p, private_key.q
        cp = limbs_to_ints(self.powmod(ciphertexts.limbs, p - 1, private_key.psquare))
        cq = limbs_to_ints(self.powmod(ciphertexts.limbs, q - 1, private_key.qsquare))
        hp, hq, p_inverse = private_key.hp, private_key.hq, private_key.p_inverse
        plaintexts = []
        for xp, xq in zip(cp, cq, strict=True):
            mp = (xp - 1) // p * hp % p
            mq = (xq - 1) // q * hq % q
            plaintexts.append(mp + (mq - mp) * p_inverse % q * p)
        return plaintexts

    def aggregate(self, public_key: PublicKey, batches: Sequence[CiphertextBatch]) -> CiphertextBatch:
        """Element-wise product mod n^2 of equal-length batches: decrypts to the element-wise sum."""
        self.check_aggregate(public_key, batches)
        product = batches[0].limbs
        for batch in batches[1:]:
            product = self.mulmod(product, batch.limbs, public_key.nsquare)
        return CiphertextBatch(public_key, product)

    @staticmethod
    def check_aggregate(public_key: PublicKey, batches: Sequence[CiphertextBatch]) -> None:
        """Raise CiphertextError or KeyMismatchError unless ``batches`` is a non-empty list of equal-length
        batches under ``public_key``."""
        if not batches:
            raise CiphertextError("aggregate needs at least one batch")
        for batch in batches:
            public_key.check_same(batch.public_key)
        lengths = {len(batch) for batch in batches}
        if len(lengths) != 1:
            raise CiphertextError(f"batches to aggregate have different lengths {plain_list(sorted(lengths))}")


class IntegerBackend(Backend):
    """A backend whose arithmetic runs on Python-level integers (built-in ints, gmpy2 mpz, ...)."""

    @abstractmethod
    def powmod_ints(self, bases: list[int], exponent: int, modulus: int) -> list[int]:
        """bases[i] ** exponent mod modulus as ints."""

    @abstractmethod
    def mulmod_ints(self, a: list[int], b: list[int], modulus: int) -> list[int]:
        """a[i] * b[i] mod modulus as ints."""

    def powmod(self, bases: np.ndarray, exponent: int, modulus: int) -> np.ndarray:
        return ints_to_limbs(self.powmod_ints(limbs_to_ints(bases), exponent, modulus), limb_width(modulus))

    def mulmod(self, a: np.ndarray, b: np.ndarray, modulus: int) -> np.ndarray:
        product = self.mulmod_ints(limbs_to_ints(a), limbs_to_ints(b), modulus)
        return ints_to_limbs(product, limb_width(modulus))


def check_plaintexts(public_key: PublicKey, plaintexts: Sequence[int]) -> list[int]:
    """The plaintexts as Python ints in [0, n), taken exactly (ints, numpy integers of any dtype).

    Raises TypeError naming the first plaintext that is not an integer (a float, bool, string, ...; see
    ``exact_ints``) and PlaintextRangeError naming the first one outside [0, n).
    """
    n = public_key.n
    plaintexts = exact_ints(plaintexts, "plaintext")
    for i, m in enumerate(plaintexts):
        if not 0 <= m < n:
            raise PlaintextRangeError(f"plaintext {i} is outside [0, n) for a {public_key.bits}-bit key")
    return plaintexts


def plaintext_parts(public_key: PublicKey, plaintexts: Sequence[int]) -> np.ndarray:
    """(1 + m n) for each plaintext m in [0, n): uint32 limbs (count, width of n^2); checked as in
    ``check_plaintexts``."""
    n = public_key.n
    # (1 + m*n) mod n^2 is g^m for g = n + 1; it is below n^2 because m < n.
    return ints_to_limbs([1 + m * n for m in check_plaintexts(public_key, plaintexts)], limb_width(public_key.nsquare))


def djn_exponent_bits(public_key: PublicKey) -> int:
    """Bits of the DJN exponent a: ceil(n_bits / 2)."""
    return math.ceil(public_key.bits / 2)
