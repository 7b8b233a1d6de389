"""The CUDA kernels on the CPU: ``backends/cuda/host_harness.cpp`` built with the host C++ compiler, and
the kernels' device form on ``tests/warp_emulator.cpp``.

``bigint.cuh`` runs a group's lanes in lockstep when compiled for the host, so these are the kernels'
arithmetic, lane exchanges included. ``HostKernelBackend`` is the ``cupy`` backend's driver
(``KernelBackend``) on this harness instead of a GPU.
"""

import ctypes
import hashlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np

from dphe_bench.backends.cuda_layout import KERNEL_NAMES, KernelConfig, block_threads, grid_blocks, source_dir
from dphe_bench.backends.kernel_backend import KernelBackend

FAKE_CUPY_PATH = Path(__file__).with_name("fake_cupy")


def load_fake_cupy() -> ModuleType:
    """A fresh copy of the fake CuPy (``tests/fake_cupy``), not registered in sys.modules."""
    init = FAKE_CUPY_PATH / "cupy" / "__init__.py"
    spec = importlib.util.spec_from_file_location("cupy", init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def host_compiler() -> str | None:
    """The host C++ compiler, or None."""
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def build_harness(config: KernelConfig, folder: Path) -> ctypes.CDLL:
    """Compile and load the host harness for ``config`` (once per source version and folder)."""
    return _build(config, folder, source_dir() / "host_harness.cpp", ["-std=c++17", "-Werror"])


def build_warp_emulator(config: KernelConfig, folder: Path) -> ctypes.CDLL:
    """Compile and load the warp emulator (the kernels' device form on fibers) for ``config``."""
    return _build(config, folder, Path(__file__).with_name("warp_emulator.cpp"), ["-std=c++20"])


def _build(config: KernelConfig, folder: Path, main_source: Path, flags: list[str]) -> ctypes.CDLL:
    sources = [source_dir() / "bigint.cuh", source_dir() / "paillier_kernels.cu", main_source]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()[:16]
    library = folder / f"{main_source.stem}_{config.limbs}_{config.threads_per_number}_{digest}.so"
    if not library.exists():
        # Built under a private name and renamed: processes sharing the folder never load a partial file.
        partial = library.with_name(f"{library.stem}.{os.getpid()}.partial")
        command = [host_compiler(), "-O2", *flags, "-Wall", "-Wextra", "-Wno-unknown-pragmas", "-shared", "-fPIC"]
        command += [f"-I{source_dir()}", *config.definitions, str(main_source), "-o", str(partial)]
        subprocess.run(command, check=True, capture_output=True, text=True)
        os.replace(partial, library)
    library_handle = ctypes.CDLL(str(library))
    built = (library_handle.dphe_limbs(), library_handle.dphe_threads_per_number())
    assert built == (config.limbs, config.threads_per_number)
    return library_handle


def kernel_argument(value: object) -> object:
    """A kernel argument for ctypes: arrays by pointer, np.int32 and np.uint32 by value."""
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
        """Filled with a junk pattern, so a word the kernels leave unwritten shows in the results."""
        return np.full(shape, 0xA5A5A5A5, dtype=np.uint32)

    def library(self, config: KernelConfig) -> ctypes.CDLL:
        if config not in self.libraries:
            self.libraries[config] = build_harness(config, self.folder)
        return self.libraries[config]

    def launch(self, config: KernelConfig, kernel: str, count: int, arguments: tuple) -> None:
        assert kernel in KERNEL_NAMES
        self.launches.append((config, kernel, count))
        getattr(self.library(config), kernel)(*(kernel_argument(value) for value in arguments))


class WarpEmulatorDevice(HostHarnessDevice):
    """A ``KernelDevice`` that runs the kernels' device form on the warp emulator, with the block size the
    ``cupy`` backend would choose on a device of ``multiprocessors`` SMs (1: small batches still fill blocks
    of 32 to 256 threads, with idle groups in the tail)."""

    def __init__(self, folder: Path, multiprocessors: int = 1):
        super().__init__(folder)
        self.multiprocessors = multiprocessors
        self.blocks: list[tuple[int, int]] = []

    def library(self, config: KernelConfig) -> ctypes.CDLL:
        if config not in self.libraries:
            self.libraries[config] = build_warp_emulator(config, self.folder)
        return self.libraries[config]

    def launch(self, config: KernelConfig, kernel: str, count: int, arguments: tuple) -> None:
        assert kernel in KERNEL_NAMES
        self.launches.append((config, kernel, count))
        threads = block_threads(count, config.threads_per_number, self.multiprocessors)
        blocks = grid_blocks(count, config.threads_per_number, threads)
        self.blocks.append((blocks, threads))
        emulate = getattr(self.library(config), f"emulate_{kernel}")
        emulate(ctypes.c_int(blocks), ctypes.c_int(threads), *(kernel_argument(value) for value in arguments))


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
