"""Host-side layout of the CUDA kernels: configurations, per-modulus constants, exponent digits, randomness.

Nothing here imports CuPy. The kernels (``backends/cuda/*.cu``, shipped as package data) share one number
of ``limbs`` 32-bit limbs among ``threads_per_number`` threads; a module is compiled per configuration, and
the smallest configuration that holds the modulus is used (moduli of fewer limbs are zero-padded: the
Montgomery arithmetic only needs an odd modulus below R = 2^(32 limbs)).
"""

import ctypes
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from dphe_bench.crypto.limbs import LIMB_BITS, limb_width

POW_WINDOW = 4
"""Window of the variable-base exponentiation; must match POW_WINDOW in ``bigint.cuh``."""
MAX_BLOCK_THREADS = 256
"""Most threads per block: the kernels' ``__launch_bounds__`` (-DDPHE_MAX_BLOCK) and the launcher's largest block."""
MIN_BLOCK_THREADS = 32
BLOCKS_PER_MULTIPROCESSOR = 2
"""Below this many blocks per multiprocessor at the largest block size, blocks shrink (see ``block_threads``)."""
COMPILE_OPTIONS = ("-std=c++17",)
"""Options the ``cupy`` backend passes to NVRTC with a configuration's definitions (CuPy adds -arch for the
device and -ftz=true)."""
KERNEL_NAMES = ("dphe_powmod", "dphe_mulmod", "dphe_walk", "dphe_product", "dphe_crt")


@dataclass(frozen=True)
class KernelConfig:
    """One compiled variant: numbers of ``limbs`` 32-bit limbs, ``threads_per_number`` threads each."""

    limbs: int
    threads_per_number: int

    @property
    def max_modulus_bits(self) -> int:
        return self.limbs * LIMB_BITS

    @property
    def definitions(self) -> tuple[str, ...]:
        """The preprocessor definitions that select this variant (for nvcc, NVRTC and the host compiler)."""
        return (
            f"-DDPHE_LIMBS={self.limbs}",
            f"-DDPHE_TPI={self.threads_per_number}",
            f"-DDPHE_MAX_BLOCK={MAX_BLOCK_THREADS}",
        )


CONFIGS = (
    KernelConfig(32, 4),  # up to 1024-bit moduli: p^2 of 1024-bit keys
    KernelConfig(64, 8),  # 2048: n^2 of 1024-bit keys, p^2 of 2048-bit keys
    KernelConfig(96, 16),  # 3072: p^2 of 3072-bit keys
    KernelConfig(128, 16),  # 4096: n^2 of 2048-bit keys, p^2 of 4096-bit keys
    KernelConfig(192, 32),  # 6144: n^2 of 3072-bit keys
    KernelConfig(256, 32),  # 8192: n^2 of 4096-bit keys
)
MAX_MODULUS_BITS = CONFIGS[-1].max_modulus_bits


def config_for(modulus: int) -> KernelConfig:
    """The smallest configuration whose numbers hold ``modulus``; ValueError if it is not odd and > 1."""
    if modulus <= 1 or modulus % 2 == 0:
        raise ValueError(f"the CUDA kernels need an odd modulus > 1 (Montgomery arithmetic), got {modulus}")
    for config in CONFIGS:
        if modulus.bit_length() <= config.max_modulus_bits:
            return config
    raise ValueError(f"the CUDA kernels handle moduli up to {MAX_MODULUS_BITS} bits, got {modulus.bit_length()}")


def block_threads(count: int, threads_per_number: int, multiprocessors: int) -> int:
    """Threads per block for ``count`` numbers of ``threads_per_number`` threads on a device of
    ``multiprocessors`` SMs: the largest power of two from MAX_BLOCK_THREADS down to MIN_BLOCK_THREADS (32, a
    warp) that still gives BLOCKS_PER_MULTIPROCESSOR blocks per SM, else 32. Small batches thus spread over
    every SM instead of filling a few large blocks (1,000 numbers x 8 threads: 32 blocks of 256 threads on
    132 SMs, 250 blocks of 32). Every size is a multiple of 32 and of ``threads_per_number``."""
    if count < 0 or multiprocessors < 1:
        raise ValueError(f"need count >= 0 and multiprocessors >= 1, got {count} and {multiprocessors}")
    threads = MAX_BLOCK_THREADS
    while (
        threads > MIN_BLOCK_THREADS
        and -(-count * threads_per_number // threads) < BLOCKS_PER_MULTIPROCESSOR * multiprocessors
    ):
        threads //= 2
    return threads


def grid_blocks(count: int, threads_per_number: int, threads: int) -> int:
    """Blocks of ``threads`` threads that cover ``count`` numbers of ``threads_per_number`` threads."""
    return -(-count // (threads // threads_per_number))


@dataclass(frozen=True)
class MontgomeryConstants:
    """What the kernels need for one modulus n under R = 2^(32 limbs): n0inv = -n^-1 mod 2^32, R^2, R^3."""

    modulus: int
    config: KernelConfig

    @property
    def words(self) -> int:
        """Limbs of a value below the modulus (the width of results)."""
        return limb_width(self.modulus)

    @property
    def r(self) -> int:
        return 1 << (LIMB_BITS * self.config.limbs)

    @property
    def n0inv(self) -> int:
        return -pow(self.modulus, -1, 1 << LIMB_BITS) % (1 << LIMB_BITS)

    def r_power(self, exponent: int) -> int:
        """R^exponent mod n."""
        return pow(self.r, exponent, self.modulus)

    def limbs(self, value: int) -> np.ndarray:
        """``value`` as one row of ``config.limbs`` uint32 limbs: shape (limbs,)."""
        return np.frombuffer(value.to_bytes(4 * self.config.limbs, "little"), dtype="<u4").astype(np.uint32)


def exponent_digits(exponent: int) -> np.ndarray:
    """The POW_WINDOW-bit digits of ``exponent`` >= 0, most significant first: uint32 (>= 1,)."""
    if exponent < 0:
        raise ValueError(f"exponent must be >= 0, got {exponent}")
    count = max(1, -(-exponent.bit_length() // POW_WINDOW))
    mask = (1 << POW_WINDOW) - 1
    return np.array([(exponent >> (POW_WINDOW * i)) & mask for i in reversed(range(count))], dtype=np.uint32)


def random_limbs(count: int, bits: int) -> np.ndarray:
    """``count`` uniform integers of ``bits`` bits from os.urandom: uint32 (count, ceil(bits / 32))."""
    width = max(1, -(-bits // LIMB_BITS))
    limbs = np.frombuffer(os.urandom(4 * width * count), dtype="<u4").astype(np.uint32).reshape(count, width)
    spare = width * LIMB_BITS - bits
    if spare:
        limbs[:, -1] &= np.uint32((1 << (LIMB_BITS - spare)) - 1)
    return limbs


def rows_below(limbs: np.ndarray, bound: int) -> np.ndarray:
    """For each row of a (count, width) uint32 array, whether its value is below ``bound``: bool (count,)."""
    count, width = limbs.shape
    if bound.bit_length() > LIMB_BITS * width:
        return np.ones(count, dtype=bool)
    bound_limbs = np.frombuffer(bound.to_bytes(4 * width, "little"), dtype="<u4")
    below = np.zeros(count, dtype=bool)
    decided = np.zeros(count, dtype=bool)
    for k in reversed(range(width)):
        below |= ~decided & (limbs[:, k] < bound_limbs[k])
        decided |= limbs[:, k] != bound_limbs[k]
    return below


def random_below(count: int, bound: int) -> np.ndarray:
    """``count`` integers uniform in [1, bound) by rejection from os.urandom: uint32 (count, limb_width(bound))."""
    if bound < 2:
        raise ValueError(f"bound must be >= 2, got {bound}")
    bits = (bound - 1).bit_length()
    values = random_limbs(count, bits)
    while True:
        rejected = ~rows_below(values, bound) | ~values.any(axis=1)
        if not rejected.any():
            return values
        values[rejected] = random_limbs(int(rejected.sum()), bits)


def source_dir() -> Path:
    """The folder holding the .cu/.cuh sources (package data)."""
    return Path(str(resources.files("dphe_bench.backends") / "cuda"))


def kernel_source() -> str:
    """The kernels' translation unit with ``bigint.cuh`` pasted in place of its #include, so that the text
    alone determines the compiled code (CuPy's kernel cache is keyed by the source text and options)."""
    kernels = (source_dir() / "paillier_kernels.cu").read_text()
    include = '#include "bigint.cuh"'
    if include not in kernels:
        raise RuntimeError(f"paillier_kernels.cu no longer contains {include!r}")
    return kernels.replace(include, (source_dir() / "bigint.cuh").read_text())


@dataclass(frozen=True)
class KernelResources:
    """What ptxas reported for one compiled kernel."""

    config: KernelConfig
    kernel: str
    registers: int
    stack_bytes: int
    spill_store_bytes: int
    spill_load_bytes: int


def nvcc_compile(
    config: KernelConfig, output: Path, arch: str = "sm_90", keep_dir: Path | None = None
) -> list[KernelResources]:
    """Compile the kernels for ``config`` with ``nvcc -cubin -Xptxas -v``; returns ptxas's resource report.
    With ``keep_dir``, nvcc's intermediate files (the PTX among them) are kept there.

    Raises FileNotFoundError when nvcc is not on PATH and CalledProcessError (with nvcc's output) when the
    sources do not compile.
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise FileNotFoundError("nvcc is not on PATH")
    command = [nvcc, "-cubin", f"-arch={arch}", "-Xptxas", "-v", *COMPILE_OPTIONS, *config.definitions]
    if keep_dir is not None:
        command += ["--keep", f"--keep-dir={keep_dir}"]
    command += [str(source_dir() / "paillier_kernels.cu"), "-o", str(output)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_ptxas_report(config, completed.stdout + completed.stderr)


def nvrtc_compile(config: KernelConfig, library: str, arch: str = "sm_90") -> list[KernelResources]:
    """Compile the kernels for ``config`` as the ``cupy`` backend does (NVRTC, the source of ``kernel_source``,
    COMPILE_OPTIONS, the definitions, CuPy's -ftz=true, a cubin for ``arch``) with ``-Xptxas=-v``; returns
    ptxas's resource report. ``library`` is NVRTC's shared library (a path, or a name the loader finds:
    libnvrtc.so.13 comes with ``pip install nvidia-cuda-nvrtc``). No GPU needed.

    Raises OSError when the library does not load and RuntimeError with NVRTC's log when compilation fails.
    """
    nvrtc = ctypes.CDLL(library)
    program = ctypes.c_void_p()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(program), kernel_source().encode(), b"paillier_kernels.cu", 0, None, None):
        raise RuntimeError("nvrtcCreateProgram failed")
    try:
        options = [*COMPILE_OPTIONS, *config.definitions, f"-arch={arch}", "-ftz=true", "-Xptxas=-v"]
        encoded = (ctypes.c_char_p * len(options))(*(option.encode() for option in options))
        status = nvrtc.nvrtcCompileProgram(program, len(options), encoded)
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(program, log)
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    if status:
        raise RuntimeError(f"NVRTC could not compile the kernels for {config}: {log.value.decode()}")
    return parse_ptxas_report(config, log.value.decode())


def nvrtc_version(library: str) -> str:
    """NVRTC's version, "major.minor", from its shared library."""
    nvrtc = ctypes.CDLL(library)
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return f"{major.value}.{minor.value}"


# nvcc prints "ptxas info    : Function properties for K" then "    N bytes stack frame, ..."; NVRTC's log
# prints "ptxas         .     N bytes stack frame, ..." on the second line.
_FUNCTION = re.compile(
    r"Function properties for (\w+)\s*\n[^\n\d]*(\d+) bytes stack frame, (\d+) bytes spill stores, "
    r"(\d+) bytes spill loads\s*\n.*?Used (\d+) registers"
)


def parse_ptxas_report(config: KernelConfig, text: str) -> list[KernelResources]:
    """The per-kernel lines of ``ptxas -v`` output, in the order ptxas printed them."""
    return [
        KernelResources(config, name, int(registers), int(stack), int(stores), int(loads))
        for name, stack, stores, loads, registers in _FUNCTION.findall(text)
    ]
