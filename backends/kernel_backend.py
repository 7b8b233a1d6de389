"""A backend driven by the CUDA kernels of ``backends/cuda``, whatever runs them.

``KernelBackend`` holds everything between Paillier and a kernel launch: per-modulus Montgomery constants,
exponent digits, widths, fixed-base tables kept on the device, randomness drawn in bulk from os.urandom.
A ``KernelDevice`` moves arrays and launches kernels: ``CupyDevice`` on a GPU (``cupy_backend``), and the
test suite's host harness on the CPU, which runs the same kernel sources compiled by the host C++ compiler.

The ``*_on_device`` methods take and return device arrays, so benchmarks can time the kernels alone. A
kernel gets a bare pointer (CuPy's RawKernel passes ``data.ptr`` whatever the array's strides), so every
device array is checked before every launch: uint32, C-contiguous, the row width the call names and at least
``count`` rows; a view or a short array would otherwise give wrong results or an illegal address that leaves
the CUDA context unusable.
"""

import operator
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from dphe_bench.backends.base import Backend, djn_exponent_bits, plaintext_parts
from dphe_bench.backends.cuda_layout import (
    KernelConfig,
    MontgomeryConstants,
    config_for,
    exponent_digits,
    random_below,
    random_limbs,
)
from dphe_bench.backends.fixed_base import FixedBaseTable
from dphe_bench.crypto.batch import CiphertextBatch
from dphe_bench.crypto.limbs import ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.crypto.paillier import PrivateKey, PublicKey

MAX_CACHED_MODULI = 64
MAX_CACHED_TABLES = 4
MAX_CACHED_EXPONENTS = 8


class KernelDevice(Protocol):
    """Moves uint32 arrays to and from a device and launches the kernels of ``paillier_kernels.cu``."""

    def to_device(self, array: np.ndarray) -> Any:
        """A device copy of a C-contiguous uint32 array."""

    def to_host(self, array: Any) -> np.ndarray:
        """A host copy of a device array (waits for the kernels that write it)."""

    def empty(self, shape: tuple[int, ...]) -> Any:
        """A new C-contiguous uint32 device array; its contents are undefined (the kernels write every word)."""

    def launch(self, config: KernelConfig, kernel: str, count: int, arguments: tuple) -> None:
        """Run ``kernel`` of ``config``'s module over ``count`` numbers. Arguments are device arrays,
        ``numpy.int32`` and ``numpy.uint32`` scalars, in the kernel's order."""


class _Modulus:
    """A modulus's constants, uploaded once: the modulus, R^2 and R^3, and R^k on demand."""

    def __init__(self, modulus: int, device: KernelDevice):
        self.constants = MontgomeryConstants(modulus, config_for(modulus))
        self.config = self.constants.config
        self.words = self.constants.words
        self.n0inv = np.uint32(self.constants.n0inv)
        self._device = device
        self.modulus = device.to_device(self.constants.limbs(modulus))
        self.r2 = device.to_device(self.constants.limbs(self.constants.r_power(2)))
        self.r3 = device.to_device(self.constants.limbs(self.constants.r_power(3)))
        self._r_powers: dict[int, Any] = {}
        self._digits: dict[int, tuple[Any, int]] = {}

    def r_power(self, exponent: int) -> Any:
        """R^exponent mod n on the device."""
        if exponent not in self._r_powers:
            self._r_powers[exponent] = self._device.to_device(self.constants.limbs(self.constants.r_power(exponent)))
        return self._r_powers[exponent]

    def digits(self, exponent: int) -> tuple[Any, int]:
        """The POW_WINDOW-bit digits of ``exponent`` on the device and their number, uploaded once (a few
        exponents are kept: r^n's n, decryption's p - 1 and q - 1 repeat for every batch)."""
        cached = self._digits.get(exponent)
        if cached is None:
            digits = exponent_digits(exponent)
            if len(self._digits) >= MAX_CACHED_EXPONENTS:
                self._digits.pop(next(iter(self._digits)))
            cached = self._digits[exponent] = (self._device.to_device(digits), len(digits))
        return cached


class _CrtKey:
    """A private key's constants for the ``dphe_crt`` kernel, uploaded once (they stay in this process)."""

    def __init__(self, private_key: PrivateKey, device: KernelDevice):
        p, q, n = private_key.p, private_key.q, private_key.public_key.n
        self.config = config_for(max(n, private_key.psquare, private_key.qsquare))
        constants = {m: MontgomeryConstants(m, self.config) for m in (p, q, n)}
        r = constants[n].r
        values = [p, q, n, private_key.hp * r % p, private_key.hq * r % q, private_key.p_inverse * r % q, p * r % n]
        self.constants = device.to_device(np.concatenate([constants[n].limbs(value) for value in values]))
        self.p0inv, self.q0inv, self.n0inv = (np.uint32(constants[m].n0inv) for m in (p, q, n))
        self.words = limb_width(n)


def _check_limbs(limbs: np.ndarray, what: str) -> np.ndarray:
    """A C-contiguous (count, width) uint32 array, or ValueError naming ``what``."""
    array = np.asarray(limbs)
    if array.ndim != 2 or array.dtype != np.uint32:
        raise ValueError(f"{what} must be a (count, width) uint32 limb array, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


def _check_device_array(array: Any, what: str, rows: int, *row_shape: int) -> None:
    """ValueError unless ``array`` is a C-contiguous uint32 device array of shape (>= rows, *row_shape): what
    a kernel may read through a bare pointer. ``rows`` must be >= 0."""
    if rows < 0:
        raise ValueError(f"count must be >= 0, got {rows}")
    shape = tuple(getattr(array, "shape", ()))
    dtype = getattr(array, "dtype", None)
    flags = getattr(array, "flags", None)
    if dtype != np.uint32 or flags is None or not flags.c_contiguous:
        raise ValueError(
            f"{what} must be a C-contiguous uint32 device array, got {dtype} of shape {shape}"
            + ("" if flags is None or flags.c_contiguous else " (not C-contiguous: a view?)")
        )
    if len(shape) != 1 + len(row_shape) or shape[1:] != row_shape or shape[0] < rows:
        expected = ", ".join(str(size) for size in row_shape)
        raise ValueError(f"{what} must have shape (>= {rows}, {expected}) for this launch, got {shape}")


class KernelBackend(Backend):
    """Paillier on the CUDA kernels; subclasses supply the ``KernelDevice``."""

    def __init__(self, device: KernelDevice, **options: object):
        super().__init__(**options)
        self._device = device
        self._moduli: dict[int, _Modulus] = {}
        self._tables: dict[tuple[int, int], tuple[np.ndarray, Any]] = {}
        self._crt_keys: dict[int, _CrtKey] = {}

    def _modulus(self, modulus: int) -> _Modulus:
        context = self._moduli.get(modulus)
        if context is None:
            context = _Modulus(operator.index(modulus), self._device)
            if len(self._moduli) >= MAX_CACHED_MODULI:
                self._moduli.pop(next(iter(self._moduli)))
            self._moduli[modulus] = context
        return context

    # Device-resident operations (arrays stay on the device).

    def powmod_on_device(self, bases: Any, width: int, count: int, exponent: int, modulus: int) -> Any:
        """bases^exponent mod modulus for ``count`` device rows of ``width`` <= 2 * config.limbs words.

        Returns a (count, limb_width(modulus)) device array.
        """
        context = self._modulus(modulus)
        if width > 2 * context.config.limbs:
            raise ValueError(
                f"bases of {width} limbs are too wide for a {modulus.bit_length()}-bit modulus "
                f"(at most {2 * context.config.limbs})"
            )
        exponent = operator.index(exponent)
        if exponent < 0:
            raise ValueError(f"exponent must be >= 0, got {exponent}")
        _check_device_array(bases, "bases", count, width)
        out = self._device.empty((count, context.words))
        if count:
            digits, digit_count = context.digits(exponent)
            arguments = (
                *(bases, np.int32(width), out, np.int32(context.words), np.int32(count)),
                *(context.modulus, context.n0inv, context.r2, context.r3, digits, np.int32(digit_count)),
            )
            self._device.launch(context.config, "dphe_powmod", count, arguments)
        return out

    def mulmod_on_device(self, a: Any, a_width: int, b: Any, b_width: int, count: int, modulus: int) -> Any:
        """a[i] * b[i] mod modulus for ``count`` device rows of at most config.limbs words each."""
        context = self._modulus(modulus)
        widest = max(a_width, b_width)
        if widest > context.config.limbs:
            raise ValueError(
                f"operands of {widest} limbs are too wide for a {modulus.bit_length()}-bit modulus "
                f"(at most {context.config.limbs})"
            )
        _check_device_array(a, "a", count, a_width)
        _check_device_array(b, "b", count, b_width)
        out = self._device.empty((count, context.words))
        if count:
            arguments = (
                *(a, np.int32(a_width), b, np.int32(b_width), out, np.int32(context.words), np.int32(count)),
                *(context.modulus, context.n0inv, context.r2),
            )
            self._device.launch(context.config, "dphe_mulmod", count, arguments)
        return out

    def walk_on_device(self, table: FixedBaseTable, exponents: Any, exponent_width: int, count: int) -> Any:
        """Fixed-base powers from ``table`` for ``count`` device rows of exponent limbs."""
        context = self._modulus(table.modulus)
        _check_device_array(exponents, "exponents", count, exponent_width)
        out = self._device.empty((count, context.words))
        if count:
            arguments = (
                *(self._device_table(table), np.int32(table.entries.shape[2]), np.int32(table.window_bits)),
                *(np.int32(table.windows), exponents, np.int32(exponent_width), out, np.int32(context.words)),
                *(np.int32(count), context.modulus, context.n0inv, context.r_power(table.windows)),
            )
            self._device.launch(context.config, "dphe_walk", count, arguments)
        return out

    def product_on_device(self, values: Any, rows: int, count: int, width: int, modulus: int) -> Any:
        """Column products mod modulus of a (rows, count, width) device array of values below modulus."""
        context = self._modulus(modulus)
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        _check_device_array(values, "values", rows, count, width)
        out = self._device.empty((count, context.words))
        if count:
            arguments = (
                *(values, np.int32(width), np.int32(rows), out, np.int32(context.words), np.int32(count)),
                *(context.modulus, context.n0inv, context.r_power(rows)),
            )
            self._device.launch(context.config, "dphe_product", count, arguments)
        return out

    def decrypt_on_device(self, private_key: PrivateKey, ciphertexts: Any, width: int, count: int) -> Any:
        """Plaintexts of ``count`` device rows of ciphertext limbs: the two CRT exponentiations, then
        ``dphe_crt`` (L-functions and Garner's recombination). Returns a (count, limb_width(n)) device array."""
        p, q = private_key.p, private_key.q
        xp = self.powmod_on_device(ciphertexts, width, count, p - 1, private_key.psquare)
        xq = self.powmod_on_device(ciphertexts, width, count, q - 1, private_key.qsquare)
        return self.crt_on_device(private_key, xp, xq, count)

    def crt_on_device(self, private_key: PrivateKey, xp: Any, xq: Any, count: int) -> Any:
        """m from device rows xp = c^(p-1) mod p^2 and xq = c^(q-1) mod q^2 (of limb_width(p^2), limb_width(q^2)
        words): the ``dphe_crt`` kernel. Returns a (count, limb_width(n)) device array."""
        key = self._crt_keys.get(private_key.public_key.n)
        if key is None:
            key = self._crt_keys[private_key.public_key.n] = _CrtKey(private_key, self._device)
        _check_device_array(xp, "xp", count, limb_width(private_key.psquare))
        _check_device_array(xq, "xq", count, limb_width(private_key.qsquare))
        out = self._device.empty((count, key.words))
        if count:
            arguments = (
                *(xp, np.int32(limb_width(private_key.psquare)), xq, np.int32(limb_width(private_key.qsquare))),
                *(out, np.int32(key.words), np.int32(count), key.constants, key.p0inv, key.q0inv, key.n0inv),
            )
            self._device.launch(key.config, "dphe_crt", count, arguments)
        return out

    def _device_table(self, table: FixedBaseTable) -> Any:
        """The table's entries on the device, uploaded once per table (a few are kept)."""
        key = (table.modulus, id(table.entries))
        cached = self._tables.get(key)
        if cached is None or cached[0] is not table.entries:
            if len(self._tables) >= MAX_CACHED_TABLES:
                self._tables.pop(next(iter(self._tables)))
            entries = np.ascontiguousarray(table.entries, dtype=np.uint32)
            cached = self._tables[key] = (table.entries, self._device.to_device(entries))
        return cached[1]

    # The Backend primitives, on host arrays.

    def powmod(self, bases: np.ndarray, exponent: int, modulus: int) -> np.ndarray:
        """bases[i] ** exponent mod modulus (odd, > 1); bases of up to twice the modulus's configured limbs."""
        exponent = operator.index(exponent)
        if exponent < 0:
            raise ValueError(f"exponent must be >= 0, got {exponent}")
        bases = _check_limbs(bases, "bases")
        count, width = bases.shape
        return self._device.to_host(
            self.powmod_on_device(self._device.to_device(bases), width, count, exponent, modulus)
        )

    def mulmod(self, a: np.ndarray, b: np.ndarray, modulus: int) -> np.ndarray:
        """a[i] * b[i] mod modulus (odd, > 1). Returns uint32 (count, limb_width(modulus))."""
        a, b = _check_limbs(a, "a"), _check_limbs(b, "b")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must have the same number of rows, got {a.shape[0]} and {b.shape[0]}")
        device = self._device
        a_device, b_device = device.to_device(a), device.to_device(b)
        return device.to_host(self.mulmod_on_device(a_device, a.shape[1], b_device, b.shape[1], len(a), modulus))

    def fixed_base_powmod(self, table: FixedBaseTable, exponents: Sequence[int]) -> np.ndarray:
        """Walk ``table`` for every exponent in one launch. Returns uint32 (count, limb_width(modulus))."""
        exponents = list(exponents)
        if exponents and (min(exponents) < 0 or max(exponents).bit_length() > table.exponent_bits):
            raise ValueError(f"exponents must be in [0, 2**{table.exponent_bits}) for this table")
        limbs = ints_to_limbs(exponents, limb_width(1 << table.exponent_bits))
        return self._walk(table, limbs)

    def _walk(self, table: FixedBaseTable, exponent_limbs: np.ndarray) -> np.ndarray:
        count, width = exponent_limbs.shape
        device = self._device
        return device.to_host(self.walk_on_device(table, device.to_device(exponent_limbs), width, count))

    def djn_obfuscators_on_device(self, public_key: PublicKey, count: int) -> Any:
        """hs^a mod n^2 with a uniform of ceil(n_bits / 2) bits drawn in bulk from os.urandom, on the device."""
        exponents = random_limbs(count, djn_exponent_bits(public_key))
        table = self.djn_table(public_key)
        return self.walk_on_device(table, self._device.to_device(exponents), exponents.shape[1], count)

    def standard_obfuscators_on_device(self, public_key: PublicKey, count: int) -> Any:
        """r^n mod n^2 with r uniform in [1, n) drawn in bulk from os.urandom, on the device.

        r is not checked for coprimality with n: an r sharing a factor with n has probability below
        2^(1 - n_bits / 2) and would itself factor n.
        """
        n = public_key.n
        r = self._device.to_device(random_below(count, n))
        return self.powmod_on_device(r, limb_width(n), count, n, public_key.nsquare)

    def djn_obfuscators(self, public_key: PublicKey, count: int) -> np.ndarray:
        return self._device.to_host(self.djn_obfuscators_on_device(public_key, count))

    def standard_obfuscators(self, public_key: PublicKey, count: int) -> np.ndarray:
        return self._device.to_host(self.standard_obfuscators_on_device(public_key, count))

    def encrypt(self, public_key: PublicKey, plaintexts: Sequence[int]) -> CiphertextBatch:
        """As ``Backend.encrypt``, with the ``standard`` and ``djn`` obfuscators kept on the device."""
        plain_parts = plaintext_parts(public_key, plaintexts)
        count, width = plain_parts.shape
        if self.obfuscation == "standard":
            obfuscators = self.standard_obfuscators_on_device(public_key, count)
        elif self.obfuscation == "djn":
            obfuscators = self.djn_obfuscators_on_device(public_key, count)
        else:
            obfuscators = self._device.to_device(self.obfuscators(public_key, count))
        parts = self._device.to_device(plain_parts)
        product = self.mulmod_on_device(parts, width, obfuscators, width, count, public_key.nsquare)
        return CiphertextBatch(public_key, self._device.to_host(product))

    def decrypt(self, private_key: PrivateKey, ciphertexts: CiphertextBatch) -> list[int]:
        """Decrypt on the device with CRT; returns ints in [0, n)."""
        private_key.public_key.check_same(ciphertexts.public_key)
        limbs = np.ascontiguousarray(ciphertexts.limbs)
        count, width = limbs.shape
        plaintexts = self.decrypt_on_device(private_key, self._device.to_device(limbs), width, count)
        return limbs_to_ints(self._device.to_host(plaintexts))

    def aggregate(self, public_key: PublicKey, batches: Sequence[CiphertextBatch]) -> CiphertextBatch:
        """Element-wise product mod n^2 of equal-length batches, all batches in one launch."""
        self.check_aggregate(public_key, batches)
        stacked = np.ascontiguousarray(np.stack([batch.limbs for batch in batches]))
        rows, count, width = stacked.shape
        nsquare = public_key.nsquare
        product = self.product_on_device(self._device.to_device(stacked), rows, count, width, nsquare)
        return CiphertextBatch(public_key, self._device.to_host(product))
