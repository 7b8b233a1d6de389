"""The ``cupy`` backend: Paillier on an NVIDIA GPU through CuPy. Needs ``pip install 'dphe-bench[cuda]'``
and a CUDA device.

The kernels are CUDA C++ in ``backends/cuda`` (package data). Each configuration (limbs per number,
threads per number; see ``cuda_layout``) is compiled with NVRTC by ``cupy.RawModule`` the first time a
modulus needs it, never at import; CuPy keeps the compiled code in its on-disk kernel cache
(``~/.cupy/kernel_cache``), so later processes skip the compilation. CuPy is imported when the backend is
constructed or asked whether it can run, never when the package is imported. Kernels run on CuPy's current
device (device 0 unless ``CUDA_VISIBLE_DEVICES`` or ``cupy.cuda.Device`` says otherwise).

Launches: blocks of ``block_threads`` threads (fewer than MAX_BLOCK_THREADS when the batch would give fewer
than two blocks per SM). ``unavailable_reason`` compiles and loads a trivial module, so a machine without
NVRTC or the CUDA headers (CuPy 14 needs its ``ctk`` extra for them) gets a reason instead of a crash at the
first kernel call.

Randomness (r for ``standard``, the exponents for ``djn``) comes from the host's os.urandom and is
copied to the device with the batch; nothing is drawn from a device generator.
"""

import functools
import importlib
import importlib.util
from typing import Any

import numpy as np

from dphe_bench.backends.cuda_layout import COMPILE_OPTIONS, KernelConfig, block_threads, grid_blocks, kernel_source
from dphe_bench.backends.kernel_backend import KernelBackend

PROBE_SOURCE = 'extern "C" __global__ void dphe_probe(unsigned int* out) { out[threadIdx.x] = threadIdx.x; }'


def compiler_version(cupy: Any) -> str:
    """NVRTC's version as CuPy loads it, as "major.minor"."""
    major, minor = cupy.cuda.nvrtc.getVersion()
    return f"{major}.{minor}"


@functools.cache
def probe_compiler() -> str | None:
    """None if CuPy can compile and load a trivial kernel on the current device (NVRTC, the CUDA headers, the
    driver all in place), else why not. Runs once per process."""
    cupy = importlib.import_module("cupy")
    try:
        cupy.RawModule(code=PROBE_SOURCE, options=COMPILE_OPTIONS).get_function("dphe_probe")
    except Exception as error:  # NVRTC missing (OSError, RuntimeError), headers missing (CompileException), driver
        return (
            f"CuPy cannot compile a CUDA kernel here (NVRTC and the CUDA headers come with "
            f"pip install 'dphe-bench[cuda]'): {type(error).__name__}: {error}"
        )
    return None


class CupyDevice:
    """A ``KernelDevice`` on CuPy's current CUDA device: one compiled module per kernel configuration."""

    def __init__(self) -> None:
        self._cupy = importlib.import_module("cupy")
        self._modules: dict[KernelConfig, Any] = {}
        self.multiprocessors = self._cupy.cuda.Device().attributes["MultiProcessorCount"]

    def to_device(self, array: np.ndarray) -> Any:
        return self._cupy.asarray(np.ascontiguousarray(array, dtype=np.uint32))

    def to_host(self, array: Any) -> np.ndarray:
        return self._cupy.asnumpy(array)

    def empty(self, shape: tuple[int, ...]) -> Any:
        return self._cupy.empty(shape, dtype=self._cupy.uint32)

    def module(self, config: KernelConfig) -> Any:
        """The compiled module for ``config`` (compiled on first use, then from CuPy's kernel cache)."""
        module = self._modules.get(config)
        if module is None:
            options = (*COMPILE_OPTIONS, *config.definitions)
            module = self._cupy.RawModule(code=kernel_source(), options=options)
            self._modules[config] = module
        return module

    def launch(self, config: KernelConfig, kernel: str, count: int, arguments: tuple) -> None:
        threads = block_threads(count, config.threads_per_number, self.multiprocessors)
        blocks = grid_blocks(count, config.threads_per_number, threads)
        self.module(config).get_function(kernel)((blocks,), (threads,), arguments)

    def describe(self) -> str:
        """The compiler and the device: "NVRTC 13.5 through CuPy 14.2.0; NVIDIA H200"."""
        name = self._cupy.cuda.runtime.getDeviceProperties(self._cupy.cuda.Device().id)["name"]
        name = name.decode() if isinstance(name, bytes) else name
        return f"NVRTC {compiler_version(self._cupy)} through CuPy {self._cupy.__version__}; {name}"

    def free_memory(self) -> None:
        """Return CuPy's cached device memory and pinned host memory blocks to the driver."""
        self._cupy.get_default_memory_pool().free_all_blocks()
        self._cupy.get_default_pinned_memory_pool().free_all_blocks()


class CupyBackend(KernelBackend):
    """Montgomery arithmetic on 32-bit limbs on an NVIDIA GPU, several threads per number.

    Parameters
    ----------
    obfuscation, window_bits
        As for every backend (see ``Backend``).
    """

    name = "cupy"

    def __init__(self, **options: object):
        super().__init__(CupyDevice(), **options)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("cupy") is None:
            return "cupy is not installed (pip install 'dphe-bench[cuda]')"
        try:
            cupy = importlib.import_module("cupy")
            devices = cupy.cuda.runtime.getDeviceCount()
        except Exception as error:  # CuPy raises its own runtime errors, or ImportError without CUDA libraries
            return f"CuPy cannot reach a CUDA device: {type(error).__name__}: {error}"
        if devices == 0:
            return "no CUDA device found"
        return probe_compiler()

    def describe(self) -> str:
        """The backend, its obfuscation mode, the compiler (NVRTC through CuPy) and the device."""
        return f"{super().describe()}; {self._device.describe()}"

    def close(self) -> None:
        """Release the device memory and the pinned host memory CuPy holds in its pools."""
        self._device.free_memory()
