"""The ``cupy`` backend's own code (availability probe, launch geometry, device memory, description) on the
fake CuPy of ``tests/fake_cupy``, which runs the kernels on the host harness: no GPU needed."""

import secrets
import sys
from pathlib import Path

import numpy as np
import pytest
from cuda_host import host_compiler, load_fake_cupy

from dphe_bench.backends import available_backends, get_backend
from dphe_bench.backends.cuda_layout import MAX_BLOCK_THREADS, block_threads, config_for
from dphe_bench.backends.cupy_backend import CupyBackend, probe_compiler
from dphe_bench.crypto.limbs import ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.errors import BackendUnavailableError


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    if host_compiler() is None:
        pytest.skip("no host C++ compiler to build the kernel harness")
    return tmp_path_factory.mktemp("fake_cupy")


@pytest.fixture
def fake_cupy(monkeypatch, build_dir):
    """The fake CuPy as ``cupy`` for one test (sys.modules and the probe's cache restored afterwards)."""
    module = load_fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.setenv("FAKE_CUPY_BUILD_DIR", str(build_dir))
    probe_compiler.cache_clear()
    yield module
    probe_compiler.cache_clear()


def test_available_when_cupy_compiles_a_trivial_kernel(fake_cupy):
    assert CupyBackend.unavailable_reason() is None
    assert available_backends()["cupy"].available


def test_a_missing_compiler_is_a_reason_not_a_crash(fake_cupy, monkeypatch):
    monkeypatch.setenv("FAKE_CUPY_COMPILE_ERROR", "1")
    reason = CupyBackend.unavailable_reason()
    assert reason is not None
    assert "cannot compile a CUDA kernel" in reason and "CompileException" in reason and "cuda_fp16.h" in reason
    with pytest.raises(BackendUnavailableError, match="cannot compile a CUDA kernel"):
        get_backend("cupy")


def test_backend_runs_paillier_on_the_fake_device_with_the_chosen_blocks(fake_cupy, small_keypair):
    public_key, private_key = small_keypair
    backend = get_backend("cupy", obfuscation="djn")
    plaintexts = [0, 1, public_key.n - 1, *(secrets.randbelow(public_key.n) for _ in range(5))]
    ciphertexts = backend.encrypt(public_key, plaintexts)
    assert get_backend("python").decrypt(private_key, ciphertexts) == plaintexts
    assert backend.decrypt(private_key, ciphertexts) == plaintexts
    tpi = config_for(public_key.nsquare).threads_per_number
    expected = block_threads(len(plaintexts), tpi, fake_cupy.MULTIPROCESSORS)
    assert expected < MAX_BLOCK_THREADS
    walk = [block for name, _, block in fake_cupy.launches if name == "dphe_walk"]
    assert walk == [(expected,)]


def test_outputs_are_not_zero_filled_and_every_word_is_written(fake_cupy):
    backend = get_backend("cupy")
    modulus = (1 << 1023) | secrets.randbits(1022) | 1
    a = [secrets.randbelow(modulus) for _ in range(4)]
    b = [secrets.randbelow(modulus) for _ in range(4)]
    width = limb_width(modulus)
    product = backend.mulmod(ints_to_limbs(a, width), ints_to_limbs(b, width), modulus)
    assert limbs_to_ints(product) == [x * y % modulus for x, y in zip(a, b, strict=True)]
    assert (fake_cupy.empty((2, 3)) == fake_cupy.JUNK).all()


def test_close_frees_the_device_pool_and_the_pinned_host_pool(fake_cupy):
    backend = get_backend("cupy")
    backend.close()
    assert fake_cupy.get_default_memory_pool().frees == 1
    assert fake_cupy.get_default_pinned_memory_pool().frees == 1


def test_description_names_the_compiler_and_the_device(fake_cupy):
    description = get_backend("cupy", obfuscation="djn").describe()
    assert description.startswith("cupy (djn obfuscation")
    assert "NVRTC 0.0 through CuPy 0.0-fake" in description and "fake device" in description


def test_device_arrays_are_checked_before_a_launch(fake_cupy):
    backend = get_backend("cupy")
    modulus = (1 << 511) | 1
    rows = np.zeros((4, 16), dtype=np.uint32)
    with pytest.raises(ValueError, match="not C-contiguous"):
        backend.mulmod_on_device(rows[:, :8], 8, rows[:, :8].copy(), 8, 4, modulus)
    with pytest.raises(ValueError, match=r"shape \(>= 5, 16\)"):
        backend.mulmod_on_device(rows, 16, rows, 16, 5, modulus)
    assert fake_cupy.launches == []
