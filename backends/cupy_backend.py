"""The ``cupy`` backend: Paillier on an NVIDIA GPU through CuPy. Needs ``pip install 'dphe-bench[cuda]'``
and a CUDA device.

The kernels are CUDA C++ in ``backends/cuda`` (package data). Each configuration (limbs per number,
threads per number; see ``cuda_layout``) is compiled with NVRTC by ``cupy.RawModule`` the first time a
modulus needs it, never at import; CuPy keeps the compiled code in its on-disk kernel cache
(``~/.cupy/kernel_cache``), so later processes skip the compilation. CuPy is imported when the backend is
constructed or asked whether it can run, never when the package is imported. Kernels run on CuPy's current
device (device 0 unless ``CUDA_VISIBLE_DEVICES`` or ``cupy.cuda.Device`` says otherwise).

Randomness (r for ``standard``, the exponents for ``djn``) comes from the host's os.urandom and is
copied to the device with the batch; nothing is drawn from a device generator.
"""

import importlib
import importlib.util
from typing import Any

import numpy as np

from dphe_bench.backends.cuda_layout import THREADS_PER_BLOCK, KernelConfig, kernel_source
from dphe_bench.backends.kernel_backend import KernelBackend


class CupyDevice:
    """A ``KernelDevice`` on CuPy's current CUDA device: one compiled module per kernel configuration."""

    def __init__(self) -> None:
        self._cupy = importlib.import_module("cupy")
        self._modules: dict[KernelConfig, Any] = {}

    def to_device(self, array: np.ndarray) -> Any:
        return self._cupy.asarray(np.ascontiguousarray(array, dtype=np.uint32))

    def to_host(self, array: Any) -> np.ndarray:
        return self._cupy.asnumpy(array)

    def empty(self, shape: tuple[int, ...]) -> Any:
        return self._cupy.zeros(shape, dtype=self._cupy.uint32)

    def module(self, config: KernelConfig) -> Any:
        """The compiled module for ``config`` (compiled on first use, then from CuPy's kernel cache)."""
        module = self._modules.get(config)
        if module is None:
            options = ("-std=c++17", *config.definitions)
            module = self._cupy.RawModule(code=kernel_source(), options=options)
            self._modules[config] = module
        return module

    def launch(self, config: KernelConfig, kernel: str, count: int, arguments: tuple) -> None:
        numbers_per_block = THREADS_PER_BLOCK // config.threads_per_number
        blocks = -(-count // numbers_per_block)
        self.module(config).get_function(kernel)((blocks,), (THREADS_PER_BLOCK,), arguments)

    def free_memory(self) -> None:
        """Return CuPy's cached device memory blocks to the driver."""
        self._cupy.get_default_memory_pool().free_all_blocks()


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
        return None

    def close(self) -> None:
        """Release the device memory CuPy holds in its pool."""
        self._device.free_memory()
