"""The ``numba`` backend: Montgomery arithmetic compiled with Numba, in two kernel families. Needs
``pip install 'dphe-bench[numba]'``.

- ``ifma``: 52-bit limbs, 8 numbers per 512-bit vector (one per lane), products by the AVX-512 IFMA
  multiply-adds ``vpmadd52luq`` / ``vpmadd52huq`` (``numba_ifma_kernels``); batches are padded to a multiple
  of 8. Selected by default when numba's JIT target (the host CPU) reports ``avx512ifma``.
- ``narrow``: 27-bit limbs with lazy carries, vectorised by LLVM within each number (``numba_kernels``); runs
  on every CPU, and is the reference the ``ifma`` family is tested against. Selected by default elsewhere.

The option ``kernel="ifma"`` or ``"narrow"`` forces a family; ``ifma`` on a CPU without IFMA is a
``BackendUnavailableError``. Both families implement the same three kernels: ``powmod`` (shared exponent:
``standard`` obfuscation and the two CRT exponentiations of decryption), ``mulmod`` (encryption's product
and aggregation's product reduction) and the ``djn`` fixed-base table walk.

Numbers cross the boundary as the usual uint32 limb batches (``dphe_bench.crypto.limbs``); inside, each family
has its own limbs (see its kernel module for the representation and why its lazy carries are exact). Numba is
imported when the backend is constructed, never when the package is imported. Kernels are compiled on
first use and cached on disk (``cache=True``): the first call in a fresh environment compiles for tens of
seconds, later processes load the cache in about a second.

``threads=1`` runs the serial compilation of each kernel; any other value runs the ``parallel=True``
compilation, a ``prange`` over chunks of rows (of groups of 8 rows for ``ifma``), on that many threads
(``None``: numba's default, ``NUMBA_NUM_THREADS``), except for batches too small to pay for waking the
threads (``PARALLEL_MIN_ROWS``, ``IFMA_PARALLEL_MIN_ROWS``).
Parallel kernels must not be launched from several Python threads at once under numba's ``workqueue``
threading layer (numba refuses); use ``threads=1`` inside thread pools.
"""

import importlib
import importlib.util
import operator
from collections.abc import Sequence

import numpy as np

from dphe_bench.backends.base import Backend
from dphe_bench.backends.fixed_base import FixedBaseTable, window_digits
from dphe_bench.backends.numba_ifma_layout import WideModulus, group_count
from dphe_bench.crypto.limbs import LIMB_BITS as WORD_BITS
from dphe_bench.crypto.limbs import limb_width
from dphe_bench.errors import BackendUnavailableError

NARROW_BITS = 27
"""Bits per limb inside the kernels."""
MAX_LIMBS = 508
"""Most 27-bit limbs per modulus: the lazy-carry bound (2k + 1) 2^54 + 2^38 < 2^64 (see ``numba_kernels``)."""
MAX_MODULUS_BITS = NARROW_BITS * MAX_LIMBS - 2
PAD = 16
"""Zero limbs past kp in every kernel buffer (the squaring reads up to k + 9, the products up to kp + 7)."""
CHUNKS_PER_THREAD = 4
"""A parallel batch is split into this many contiguous chunks per thread (balance against scratch setup)."""
PARALLEL_MIN_ROWS = {"powmod": 2, "walk": 2, "mulmod": 1024}
"""Smaller batches run the serial kernel: waking the thread pool costs from ~50 us on an idle machine to a
scheduler slice (~15 ms measured) on a busy one, more than a few hundred 7 us multiplications."""
IFMA_PARALLEL_MIN_ROWS = {"powmod": 9, "walk": 9, "mulmod": 1024}
"""The same for the ``ifma`` family, whose unit of work is a group of 8 rows: one group runs serially."""
KERNELS = ("ifma", "narrow")
"""Kernel families (the ``kernel`` option)."""
MAX_CACHED_MODULI = 64
MAX_CACHED_TABLES = 8
"""52-bit copies of fixed-base tables kept by an ``ifma`` backend (the oldest is dropped first)."""


def vector_length(limbs: int) -> int:
    """kp: the limb count rounded up to a multiple of 8, the trip count of the vectorised loops."""
    return (limbs + 7) & ~7


def padded_length(limbs: int) -> int:
    """Length of a kernel buffer for a modulus of ``limbs`` limbs: kp + PAD, zero past the value."""
    return vector_length(limbs) + PAD


def _narrow_limbs(value: int, length: int) -> np.ndarray:
    """``value`` as 27-bit limbs, least significant first, zero-padded: uint32 (length,)."""
    mask = (1 << NARROW_BITS) - 1
    count = max(1, -(-value.bit_length() // NARROW_BITS))
    limbs = np.zeros(length, dtype=np.uint32)
    limbs[:count] = [(value >> (NARROW_BITS * i)) & mask for i in range(count)]
    return limbs


def _powmod_window_bits(exponent_bits: int) -> int:
    """Fixed window size minimising table size plus multiplications, 2^w + ceil(bits / w)."""
    return min(range(1, 9), key=lambda w: (1 << w) + -(-exponent_bits // w))


class _Modulus:
    """Per-modulus constants of the kernels, computed once per modulus.

    k limbs of 27 bits with R = 2^(27 k) > 4m (k a multiple of 4); ``limbs`` is m zero-padded to the kernels'
    buffer length; n0 = -m^-1 mod 2^27; ``one`` = R mod m (Montgomery 1); ``unit`` = 1.
    """

    def __init__(self, modulus: int):
        bits = modulus.bit_length()
        k = -(-(bits + 2) // NARROW_BITS)
        self.modulus = modulus
        self.bits = bits
        self.k = k + (-k) % 4
        self.kp = vector_length(self.k)
        self.length = padded_length(self.k)
        self.words = limb_width(modulus)
        self.r = 1 << (NARROW_BITS * self.k)
        self.limbs = _narrow_limbs(modulus, self.length)
        self.n0 = np.uint64(-pow(modulus, -1, 1 << NARROW_BITS) % (1 << NARROW_BITS))
        self.one = self.narrow(self.r % modulus)
        self.unit = self.narrow(1)
        self._constants: dict[tuple[str, int], np.ndarray] = {}

    def narrow(self, value: int) -> np.ndarray:
        """A residue as the kernels' zero-padded 27-bit limbs."""
        return _narrow_limbs(value, self.length)

    def load_parameters(self, width: int) -> tuple[int, int]:
        """(limbs unpacked, reduction steps) for inputs of ``width`` uint32 words (see ``numba_kernels._load``)."""
        unpacked = -(-(WORD_BITS * width) // NARROW_BITS)
        return unpacked, max(0, unpacked - (self.bits - 1) // NARROW_BITS)

    def shift_constant(self, shift: int) -> np.ndarray:
        """2^(27 shift) R^2 mod m: undoes ``shift`` reduction steps and enters Montgomery form in one product."""
        key = ("shift", shift)
        if key not in self._constants:
            self._constants[key] = self.narrow(
                pow(2, NARROW_BITS * shift, self.modulus) * self.r * self.r % self.modulus
            )
        return self._constants[key]

    def r_power(self, exponent: int) -> np.ndarray:
        """R^exponent mod m."""
        key = ("r", exponent)
        if key not in self._constants:
            self._constants[key] = self.narrow(pow(self.r, exponent, self.modulus))
        return self._constants[key]


def _readonly(array: np.ndarray) -> np.ndarray:
    """A read-only C-contiguous view (a copy only if not contiguous).

    Kernel inputs are always read-only so that numba compiles one signature per kernel, whether the caller
    passes a fresh array or a ``CiphertextBatch``'s read-only limbs.
    """
    view = np.ascontiguousarray(array).view()
    view.flags.writeable = False
    return view


def _check_limbs(limbs: np.ndarray, what: str) -> np.ndarray:
    """A read-only C-contiguous (count, width) uint32 limb array, or ValueError naming ``what``."""
    array = np.asarray(limbs)
    if array.ndim != 2 or array.dtype != np.uint32:
        raise ValueError(f"{what} must be a (count, width) uint32 limb array, got {array.dtype} {array.shape}")
    return _readonly(array)


class NumbaBackend(Backend):
    """Montgomery multiplication and exponentiation compiled with Numba, ``ifma`` or ``narrow`` kernels.

    Parameters
    ----------
    threads : int or None
        1 runs the serial kernels; n > 1 the ``prange`` kernels on n threads; None (default) the
        ``prange`` kernels on numba's default thread count. At most ``NUMBA_NUM_THREADS``.
    kernel : str or None
        ``ifma`` (52-bit limbs, AVX-512 IFMA, 8 numbers per vector) or ``narrow`` (27-bit limbs, any CPU);
        None (default): ``ifma`` when the CPU reports ``avx512ifma``, else ``narrow``. ``kernel_reason``
        says why the family was chosen. Forcing ``ifma`` without IFMA raises BackendUnavailableError.
    obfuscation, window_bits
        As for every backend (see ``Backend``).
    """

    name = "numba"
    threaded = True

    def __init__(self, threads: int | None = None, kernel: str | None = None, **options: object):
        super().__init__(**options)
        if kernel is not None and kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)} or None, got {kernel!r}")
        self._numba = importlib.import_module("numba")
        missing = self.kernel_availability()["ifma"]
        if kernel == "ifma" and missing is not None:
            raise BackendUnavailableError(f"the numba backend's ifma kernels need AVX-512 IFMA: {missing}")
        if kernel is not None:
            self.kernel_reason = "chosen by the kernel option"
        else:
            kernel = "narrow" if missing is not None else "ifma"
            self.kernel_reason = "the CPU reports avx512ifma" if missing is None else missing
        self.kernel = kernel
        family = "numba_ifma_kernels" if kernel == "ifma" else "numba_kernels"
        self._kernels = importlib.import_module(f"dphe_bench.backends.{family}")
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int):
                raise TypeError(f"threads must be an int or None, got {threads!r}")
            limit = self._numba.config.NUMBA_NUM_THREADS
            if not 1 <= threads <= limit:
                raise ValueError(f"threads must be in [1, {limit}] (NUMBA_NUM_THREADS), got {threads}")
        self.threads = threads
        self._moduli: dict[int, _Modulus | WideModulus] = {}
        self._wide_tables: dict[int, tuple[FixedBaseTable, np.ndarray]] = {}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("numba") is None:
            return "numba is not installed (pip install 'dphe-bench[numba]')"
        return None

    @classmethod
    def kernel_availability(cls) -> dict[str, str | None]:
        """Each kernel family with None when it can run here, else why not (imports numba)."""
        return {
            "ifma": importlib.import_module("dphe_bench.backends.numba_ifma_ops").ifma_unavailable_reason(),
            "narrow": None,
        }

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return (*super().option_names(), "threads", "kernel")

    def options(self) -> dict[str, object]:
        return {**super().options(), "threads": self.threads, "kernel": self.kernel}

    def resolved_options(self) -> dict[str, object]:
        """``threads=None`` resolved to the thread count the parallel kernels run on (``numba.get_num_threads()``)."""
        options = self.options()
        if options["threads"] is None:
            options["threads"] = self._numba.get_num_threads()
        return options

    def describe(self) -> str:
        threads = "default" if self.threads is None else self.threads
        return f"{super().describe()}, threads={threads}, {self.kernel} kernels ({self.kernel_reason})"

    def powmod(self, bases: np.ndarray, exponent: int, modulus: int) -> np.ndarray:
        """bases[i] ** exponent mod modulus (odd); bases of any width and value (reduced in the kernel).

        Fixed-window exponentiation, window chosen from the exponent size; every window multiplies.
        Returns uint32 (count, limb_width(modulus)).
        """
        exponent = operator.index(exponent)
        if exponent < 0:
            raise ValueError(f"exponent must be >= 0, got {exponent}")
        context = self._modulus(modulus)
        bases = _check_limbs(bases, "bases")
        out = np.zeros((bases.shape[0], context.words), dtype=np.uint32)
        if bases.shape[0] == 0:
            return out
        window = _powmod_window_bits(exponent.bit_length())
        digits = window_digits([exponent], window, max(1, -(-exponent.bit_length() // window)))[0, ::-1].copy()
        unpacked, shift = context.load_parameters(bases.shape[1])
        arguments = (
            *(bases, out, context.limbs, context.n0, *self._sizes(context), unpacked, shift),
            *(context.shift_constant(shift), context.one, context.unit, digits, window),
        )
        self._run("powmod", arguments, bases.shape[0])
        return out

    def mulmod(self, a: np.ndarray, b: np.ndarray, modulus: int) -> np.ndarray:
        """a[i] * b[i] mod modulus (odd): two Montgomery multiplications per row. Returns uint32 (count, words)."""
        context = self._modulus(modulus)
        a, b = _check_limbs(a, "a"), _check_limbs(b, "b")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must have the same number of rows, got {a.shape[0]} and {b.shape[0]}")
        out = np.zeros((a.shape[0], context.words), dtype=np.uint32)
        if a.shape[0] == 0:
            return out
        unpacked_a, shift_a = context.load_parameters(a.shape[1])
        unpacked_b, shift_b = context.load_parameters(b.shape[1])
        arguments = (
            *(a, b, out, context.limbs, context.n0, *self._sizes(context), unpacked_a, shift_a, unpacked_b, shift_b),
            context.shift_constant(shift_a + shift_b),
            *(() if self.kernel == "ifma" else (context.unit,)),
        )
        self._run("mulmod", arguments, a.shape[0])
        return out

    def fixed_base_powmod(self, table: FixedBaseTable, exponents: Sequence[int]) -> np.ndarray:
        """Walk ``table`` for every exponent in one compiled kernel: one Montgomery product per window.

        The table's normal-form entries are multiplied as they are; the factor R^-(windows-1) this leaves is
        removed by one last product with R^windows mod m. The ``ifma`` family walks a copy of the table in
        52-bit limbs, made on the first walk and kept with the table (``table_nbytes`` counts it).
        Returns uint32 (count, limb_width(modulus)).
        """
        context = self._modulus(table.modulus)
        exponents = list(exponents)
        digits = window_digits(exponents, table.window_bits, table.windows)
        out = np.zeros((len(exponents), context.words), dtype=np.uint32)
        if not exponents:
            return out
        entries = _readonly(np.asarray(table.entries, dtype=np.uint32))
        if entries.shape[2] != context.words:
            raise ValueError(f"table entries have {entries.shape[2]} limbs, the modulus needs {context.words}")
        if self.kernel == "ifma":
            arguments = (self._wide_table(table, entries, context.k), digits, out, context.limbs, context.n0)
            self._run("walk", (*arguments, context.k, context.r_power(table.windows)), len(exponents))
            return out
        unpacked, _ = context.load_parameters(context.words)
        arguments = (
            *(entries, digits, out, context.limbs, context.n0, context.k, context.kp, unpacked),
            context.r_power(table.windows),
        )
        self._run("walk", arguments, len(exponents))
        return out

    def table_nbytes(self) -> int:
        """Memory held by this backend's ``djn`` tables, all keys together, with their 52-bit copies (``ifma``)."""
        return super().table_nbytes() + sum(limbs.nbytes for _, limbs in self._wide_tables.values())

    def _wide_table(self, table: FixedBaseTable, entries: np.ndarray, k: int) -> np.ndarray:
        """The ``ifma`` walk's copy of ``table``: uint64 (windows, 2^w, k) 52-bit limbs, made once per table."""
        key = id(table)
        held = self._wide_tables.get(key)
        if held is None or held[0] is not table:
            if len(self._wide_tables) >= MAX_CACHED_TABLES:
                self._wide_tables.pop(next(iter(self._wide_tables)))
            limbs = np.zeros((*entries.shape[:2], k), dtype=np.uint64)
            self._kernels.convert_table(entries, k, limbs)
            limbs.flags.writeable = False
            held = self._wide_tables[key] = (table, limbs)
        return held[1]

    def _sizes(self, context: "_Modulus | WideModulus") -> tuple[int, ...]:
        """The limb counts the family's kernels take: (k,) for ``ifma``, (k, kp) for ``narrow``."""
        return (context.k,) if self.kernel == "ifma" else (context.k, context.kp)

    def _modulus(self, modulus: int) -> "_Modulus | WideModulus":
        """The cached constants for ``modulus``; ValueError for an even, non-positive or too large modulus."""
        context = self._moduli.get(modulus)
        if context is None:
            modulus = operator.index(modulus)
            if modulus < 1 or modulus % 2 == 0:
                raise ValueError(f"the numba backend needs an odd modulus >= 1 (Montgomery arithmetic), got {modulus}")
            if modulus.bit_length() > MAX_MODULUS_BITS:
                raise ValueError(f"the numba backend handles moduli up to {MAX_MODULUS_BITS} bits")
            if len(self._moduli) >= MAX_CACHED_MODULI:
                self._moduli.pop(next(iter(self._moduli)))
            family = WideModulus if self.kernel == "ifma" else _Modulus
            context = self._moduli[modulus] = family(modulus)
        return context

    def _run(self, kernel: str, arguments: tuple, count: int) -> None:
        """Run ``<kernel>_serial`` (threads=1 or a small batch) or ``<kernel>_parallel`` on the chosen threads.

        The parallel kernels split rows (``narrow``) or groups of 8 rows (``ifma``) into chunks.
        """
        minimum = (IFMA_PARALLEL_MIN_ROWS if self.kernel == "ifma" else PARALLEL_MIN_ROWS)[kernel]
        if self.threads == 1 or count < minimum:
            getattr(self._kernels, f"{kernel}_serial")(*arguments)
            return
        parallel = getattr(self._kernels, f"{kernel}_parallel")
        numba = self._numba
        threads = numba.get_num_threads() if self.threads is None else self.threads
        units = group_count(count) if self.kernel == "ifma" else count
        chunks = min(units, CHUNKS_PER_THREAD * threads)
        if self.threads is None:
            parallel(*arguments, chunks)
            return
        previous = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        try:
            parallel(*arguments, chunks)
        finally:
            numba.set_num_threads(previous)
