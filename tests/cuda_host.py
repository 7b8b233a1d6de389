"""The CUDA kernels on the CPU: ``backends/cuda/host_harness.cpp`` built with the host C++ compiler, and
the kernels' device form on ``tests/warp_emulator.cpp``.

``bigint.cuh`` runs a group's lanes in lockstep when compiled for the host, so these are the kernels'
arithmetic, lane exchanges included. ``HostKernelBackend`` is the ``cupy`` backend's driver
(``KernelBackend``) on this harness instead of a GPU.
"""

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np

from dphe_bench.backends.cuda_layout import KERNEL_NAMES, KernelConfig, source_dir
from dphe_bench.backends.kernel_backend import KernelBackend


def host_compiler() -> str | None:
    """The host C++ compiler, or None."""
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def build_harness(config: KernelConfig, folder: Path) -> ctypes.CDLL:
    """Compile and load the host harness for ``config`` (once per source version and folder)."""
    return _build(config, folder, source_dir() / "host_harness.cpp", ["-std=c++17", "-Werror"])


def build_warp_emulator(config: KernelConfig, folder: Path) -> ctypes.CDLL:
    """Compile and load the warp emulator (the kernels' device form on OS threads) for ``config``."""
    return _build(config, folder, Path(__file__).with_name("warp_emulator.cpp"), ["-std=c++20", "-pthread"])


def _build(config: KernelConfig, folder: Path, main_source: Path, flags: list[str]) -> ctypes.CDLL:
    sources = [source_dir() / "bigint.cuh", source_dir() / "paillier_kernels.cu", main_source]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()[:16]
    library = folder / f"{main_source.stem}_{config.limbs}_{config.threads_per_number}_{digest}.so"
    if not library.exists():
        command = [host_compiler(), "-O2", *flags, "-Wall", "-Wextra", "-Wno-unknown-pragmas", "-shared", "-fPIC"]
        command += [f"-I{source_dir()}", *config.definitions, str(main_source), "-o", str(library)]
        subprocess.run(command, check=True, capture_output=True, text=True)
    library_handle = ctypes.CDLL(str(library))
    built = (library_handle.dphe_limbs(), library_handle.dphe_threads_per_number())
    assert built == (config.limbs, config.threads_per_number)
    return library_handle


def _argument(value: object) -> object:
    if isinstance(value, np.ndarray):
        assert value.dtype == np.uint32 and value.flags.c_contiguous
        return ctypes.c_void_p(value.ctypes.data)
    if isinstance(value, np.int32):
        return ctypes.c_int32(int(value))
    if isinstance(value, np.uint32):
        return ctypes.c_uint32(int(value))
    raise TypeError(f"unexpected kernel argument {value!r}")


class HostHarnessDevice:
    """A ``KernelDevice`` whose 'device' is host memory and whose kernels are the compiled harness."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.libraries: dict[KernelConfig, ctypes.CDLL] = {}
        self.launches: list[tuple[KernelConfig, str, int]] = []

    def to_device(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, dtype=np.uint32, order="C", copy=True)

    def to_host(self, array: np.ndarray) -> np.ndarray:
        return array.copy()

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=np.uint32)

    def library(self, config: KernelConfig) -> ctypes.CDLL:
        if config not in self.libraries:
            self.libraries[config] = build_harness(config, self.folder)
        return self.libraries[config]

    def launch(self, config: KernelConfig, kernel: str, count: int, arguments: tuple) -> None:
        assert kernel in KERNEL_NAMES
        self.launches.append((config, kernel, count))
        getattr(self.library(config), kernel)(*(_argument(value) for value in arguments))


class WarpEmulatorDevice(HostHarnessDevice):
    """A ``KernelDevice`` that runs the kernels' device form on the warp emulator, ``threads`` per block."""

    def __init__(self, folder: Path, threads: int = 64):
        super().__init__(folder)
        self.threads = threads

    def library(self, config: KernelConfig) -> ctypes.CDLL:
        if config not in self.libraries:
            self.libraries[config] = build_warp_emulator(config, self.folder)
        return self.libraries[config]

    def launch(self, config: KernelConfig, kernel: str, count: int, arguments: tuple) -> None:
        assert kernel in KERNEL_NAMES
        self.launches.append((config, kernel, count))
        blocks = -(-count // (self.threads // config.threads_per_number))
        emulate = getattr(self.library(config), f"emulate_{kernel}")
        emulate(ctypes.c_int(blocks), ctypes.c_int(self.threads), *(_argument(value) for value in arguments))


class HostKernelBackend(KernelBackend):
    """The ``cupy`` backend's driver on the host harness (not registered: for tests)."""

    name = "cuda-host-harness"
    device_type: type[HostHarnessDevice] = HostHarnessDevice

    def __init__(self, folder: Path, **options: object):
        super().__init__(self.device_type(folder), **options)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if host_compiler() else "no host C++ compiler"


class WarpEmulatorBackend(HostKernelBackend):
    """The ``cupy`` backend's driver on the warp emulator (not registered: for tests)."""

    name = "cuda-warp-emulator"
    device_type = WarpEmulatorDevice
