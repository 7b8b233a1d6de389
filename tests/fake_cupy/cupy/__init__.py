"""A stand-in for CuPy on a machine without a GPU (test code, never shipped): put ``tests/fake_cupy`` and
``tests`` on PYTHONPATH and ``import cupy`` gets this module.

Device arrays are numpy arrays; ``RawModule`` "compiles" the kernels by building the host harness
(``tests/cuda_host.py``) for the configuration its -D options name, and a launch runs the harness after the
checks a real launch would fail: the kernel source must be the backend's, blocks must be a multiple of 32
threads and at most the ``__launch_bounds__`` size, and the grid must cover every number. ``empty`` fills
arrays with a junk pattern, so a word the kernels leave unwritten shows. Environment:

- ``FAKE_CUPY_COMPILE_ERROR``: set to make every compilation fail as NVRTC without headers does.
- ``FAKE_CUPY_BUILD_DIR``: where harness libraries are built (default: a folder in the temp directory).
"""

import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from cuda_host import build_harness, kernel_argument

from dphe_bench.backends.cuda_layout import KERNEL_NAMES, KernelConfig, kernel_source

__version__ = "0.0-fake"
MULTIPROCESSORS = 132
JUNK = np.uint32(0xA5A5A5A5)
# Position of ``count`` in each kernel's arguments (paillier_kernels.cu).
COUNT_ARGUMENT = {"dphe_powmod": 4, "dphe_mulmod": 6, "dphe_walk": 8, "dphe_product": 5, "dphe_crt": 6}

uint32 = np.uint32
ndarray = np.ndarray
stack = np.stack
ascontiguousarray = np.ascontiguousarray
launches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
"""Every launch: kernel, grid, block."""


def asarray(array, dtype=None):
    return np.array(array, dtype=dtype, copy=True)


def asnumpy(array):
    return np.array(array, copy=True)


def empty(shape, dtype=np.uint32):
    return np.full(shape, JUNK, dtype=dtype)


def zeros(shape, dtype=np.uint32):
    return np.zeros(shape, dtype=dtype)


class MemoryPool:
    def __init__(self):
        self.frees = 0

    def free_all_blocks(self):
        self.frees += 1


_memory_pool, _pinned_pool = MemoryPool(), MemoryPool()


def get_default_memory_pool():
    return _memory_pool


def get_default_pinned_memory_pool():
    return _pinned_pool


class CompileException(Exception):
    """As cupy.cuda.compiler.CompileException."""


class Kernel:
    """One loaded kernel: CuPy's RawKernel attributes and a launch that checks its geometry."""

    def __init__(self, name: str, config: KernelConfig | None, max_block: int, library):
        self.name, self.config, self.library = name, config, library
        self.max_threads_per_block = max_block
        self.num_regs = 64
        self.local_size_bytes = 0

    def __call__(self, grid, block, arguments):
        launches.append((self.name, tuple(grid), tuple(block)))
        threads, blocks = block[0], grid[0]
        if threads % 32 or not 0 < threads <= self.max_threads_per_block:
            raise RuntimeError(f"CUDA_ERROR_INVALID_VALUE: block of {threads} threads")
        if self.library is None:
            return
        count = int(arguments[COUNT_ARGUMENT[self.name]])
        if blocks * threads < count * self.config.threads_per_number:
            raise AssertionError(f"{self.name}: {blocks} blocks of {threads} threads miss some of {count} numbers")
        getattr(self.library, self.name)(*(kernel_argument(value) for value in arguments))


class RawModule:
    def __init__(self, code: str, options: tuple[str, ...] = ()):
        self.code = code
        self.defined = dict(option[2:].split("=", 1) for option in options if option.startswith("-D"))

    def get_function(self, name: str) -> Kernel:
        if os.environ.get("FAKE_CUPY_COMPILE_ERROR"):
            raise CompileException('catastrophic error: cannot open source file "cuda_fp16.h"')
        max_block = int(self.defined.get("DPHE_MAX_BLOCK", 1024))
        if name == "dphe_probe":
            return Kernel(name, None, max_block, None)
        if name not in KERNEL_NAMES or self.code != kernel_source():
            raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found: {name}")
        config = KernelConfig(int(self.defined["DPHE_LIMBS"]), int(self.defined["DPHE_TPI"]))
        return Kernel(name, config, max_block, build_harness(config, _build_dir()))


def _build_dir() -> Path:
    folder = Path(os.environ.get("FAKE_CUPY_BUILD_DIR") or Path(tempfile.gettempdir()) / f"fake_cupy_{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Device:
    def __init__(self, device: int = 0):
        self.id = device
        self.attributes = {"MultiProcessorCount": MULTIPROCESSORS}


class Event:
    def record(self):
        self.time = time.perf_counter()

    def synchronize(self):
        pass


def get_elapsed_time(start: Event, end: Event) -> float:
    return (end.time - start.time) * 1000


def _device_properties(device: int) -> dict:
    return {
        "name": b"fake device (host harness)",
        "major": 0,
        "minor": 0,
        "multiProcessorCount": MULTIPROCESSORS,
        "totalGlobalMem": 2**30,
    }


cuda = SimpleNamespace(
    Device=Device,
    Event=Event,
    get_elapsed_time=get_elapsed_time,
    runtime=SimpleNamespace(
        getDeviceCount=lambda: 1, getDeviceProperties=_device_properties, runtimeGetVersion=lambda: 0
    ),
    nvrtc=SimpleNamespace(getVersion=lambda: (0, 0)),
    compiler=SimpleNamespace(CompileException=CompileException),
)
