"""The CUDA kernels' arithmetic against Python ints: on the CPU through the host harness everywhere, and on
the GPU through the ``cupy`` backend where there is one (skipped otherwise)."""

import ctypes
import re
import secrets
from pathlib import Path

import gmpy2
import numpy as np
import phe
import pytest
from cuda_host import HostKernelBackend, WarpEmulatorBackend, build_harness, host_compiler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dphe_bench import generate_keypair, get_backend
from dphe_bench.backends import available_backends
from dphe_bench.backends.cuda_layout import (
    CONFIGS,
    KERNEL_NAMES,
    MAX_BLOCK_THREADS,
    MAX_MODULUS_BITS,
    POW_WINDOW,
    MontgomeryConstants,
    block_threads,
    config_for,
    exponent_digits,
    grid_blocks,
    nvcc_compile,
    random_below,
    random_limbs,
    rows_below,
    source_dir,
)
from dphe_bench.backends.kernel_backend import KernelBackend
from dphe_bench.crypto.batch import CiphertextBatch
from dphe_bench.crypto.limbs import ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.crypto.paillier import PrivateKey
from dphe_bench.errors import CiphertextError, PlaintextRangeError

PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Modulus sizes of every key size: p^2 and n^2 of 1024-, 2048-, 3072- and 4096-bit keys, and a small one.
MODULUS_BITS = [255, 1024, 2048, 3072, 4096, 6144, 8192]
CUPY_AVAILABLE = available_backends()["cupy"].available


@pytest.fixture(scope="session")
def harness_folder(tmp_path_factory) -> Path:
    """Where the host harness and the warp emulator are built (skips without a host C++ compiler)."""
    if host_compiler() is None:
        pytest.skip("no host C++ compiler to build the kernel harness")
    return tmp_path_factory.mktemp("cuda_harness")


@pytest.fixture(params=["host-harness", "cupy"])
def make_kernels(request):
    """Builds the kernel backend with given options: on the host harness, and on the GPU where CuPy sees one."""
    if request.param == "cupy":
        if not CUPY_AVAILABLE:
            pytest.skip(f"cupy backend unavailable: {available_backends()['cupy'].reason}")
        return lambda **options: get_backend("cupy", **options)
    folder = request.getfixturevalue("harness_folder")
    return lambda **options: HostKernelBackend(folder, **options)


@pytest.fixture
def kernels(make_kernels) -> KernelBackend:
    return make_kernels()


def random_modulus(bits: int) -> int:
    """A random odd modulus of exactly ``bits`` bits."""
    return secrets.randbits(bits) | 1 | (1 << (bits - 1))


def edge_moduli(bits: int) -> list[int]:
    """Odd moduli of ``bits`` bits with awkward limbs: all ones, low limb 0xFFFFFFFF, low limb 1."""
    top = 1 << (bits - 1)
    return [(1 << bits) - 1, top | 0xFFFFFFFF, top | 1, top | secrets.randbits(bits - 33) << 32 | 0xFFFFFFFF]


def edge_values(modulus: int) -> list[int]:
    return [0, 1, 2, modulus - 1, modulus - 2, modulus // 2, 2**32 - 1, 2**32, (1 << (modulus.bit_length() - 1)) - 1]


def as_limbs(values: list[int], modulus: int) -> np.ndarray:
    return ints_to_limbs(values, limb_width(modulus))


# ---- The Montgomery product alone. ----


def mont_mul(harness_folder: Path, a: int, b: int, modulus: int) -> int:
    constants = MontgomeryConstants(modulus, config_for(modulus))
    library = build_harness(constants.config, harness_folder)
    out = np.zeros(constants.config.limbs, dtype=np.uint32)
    arrays = [constants.limbs(a), constants.limbs(b), out, constants.limbs(modulus)]
    library.dphe_mont_mul(*(ctypes.c_void_p(array.ctypes.data) for array in arrays), ctypes.c_uint32(constants.n0inv))
    return int.from_bytes(out.tobytes(), "little")


@pytest.mark.parametrize("bits", MODULUS_BITS)
def test_montgomery_product_is_a_b_over_r_mod_n_for_edge_values(harness_folder, bits):
    for modulus in [random_modulus(bits), *edge_moduli(bits)]:
        r = MontgomeryConstants(modulus, config_for(modulus)).r
        # The first operand may be anything below R, the second anything below n.
        for a in [value for value in (*edge_values(modulus), r - 1, modulus, modulus + 1) if value < r]:
            for b in edge_values(modulus):
                assert mont_mul(harness_folder, a, b, modulus) == a * b * pow(r, -1, modulus) % modulus


@PROPERTY_SETTINGS
@given(data=st.data(), bits=st.sampled_from(MODULUS_BITS))
def test_montgomery_product_on_random_inputs(harness_folder, data, bits):
    modulus = data.draw(st.integers(1 << (bits - 1), (1 << bits) - 1).map(lambda m: m | 1))
    r = MontgomeryConstants(modulus, config_for(modulus)).r
    a = data.draw(st.integers(0, r - 1))
    b = data.draw(st.integers(0, modulus - 1))
    assert mont_mul(harness_folder, a, b, modulus) == a * b * pow(r, -1, modulus) % modulus


# ---- The four kernels, through the backend driver. ----


@pytest.mark.parametrize("bits", MODULUS_BITS)
def test_powmod_matches_pow_on_random_and_edge_inputs(kernels, bits):
    for modulus in [random_modulus(bits), edge_moduli(bits)[0], edge_moduli(bits)[1]]:
        config = config_for(modulus)
        # Bases up to twice the configured width, so values far above the modulus (ciphertexts mod p^2).
        wide = 2 * config.limbs
        bases = [*edge_values(modulus), modulus, modulus + 1, (1 << (32 * wide)) - 1, secrets.randbits(32 * wide)]
        for exponent in [0, 1, 2, 2**POW_WINDOW - 1, 2**POW_WINDOW, secrets.randbits(67), 2**160 - 1]:
            result = kernels.powmod(ints_to_limbs(bases, wide), exponent, modulus)
            assert result.shape == (len(bases), limb_width(modulus))
            assert limbs_to_ints(result) == [pow(base, exponent, modulus) for base in bases]


@PROPERTY_SETTINGS
@given(data=st.data())
def test_powmod_on_random_inputs(kernels, data):
    bits = data.draw(st.sampled_from([64, 255, 1024, 2048]))
    modulus = data.draw(st.integers(1 << (bits - 1), (1 << bits) - 1).map(lambda m: m | 1))
    width = data.draw(st.integers(1, 2 * config_for(modulus).limbs))
    bases = data.draw(st.lists(st.integers(0, (1 << (32 * width)) - 1), min_size=1, max_size=5))
    exponent = data.draw(st.integers(0, 2**300))
    result = kernels.powmod(ints_to_limbs(bases, width), exponent, modulus)
    assert limbs_to_ints(result) == [pow(base, exponent, modulus) for base in bases]


@pytest.mark.parametrize("bits", MODULUS_BITS)
def test_mulmod_matches_python_on_edge_values(kernels, bits):
    for modulus in [random_modulus(bits), *edge_moduli(bits)]:
        values = edge_values(modulus)
        shuffled = values[1:] + values[:1]
        result = kernels.mulmod(as_limbs(values, modulus), as_limbs(shuffled, modulus), modulus)
        assert limbs_to_ints(result) == [a * b % modulus for a, b in zip(values, shuffled, strict=True)]


@PROPERTY_SETTINGS
@given(data=st.data())
def test_mulmod_on_random_inputs_of_any_width(kernels, data):
    bits = data.draw(st.sampled_from(MODULUS_BITS))
    modulus = random_modulus(bits)
    limit = config_for(modulus).limbs
    a_width, b_width = data.draw(st.integers(1, limit)), data.draw(st.integers(1, limit))
    count = data.draw(st.integers(1, 6))
    a = [secrets.randbits(32 * a_width) for _ in range(count)]
    b = [secrets.randbits(32 * b_width) for _ in range(count)]
    result = kernels.mulmod(ints_to_limbs(a, a_width), ints_to_limbs(b, b_width), modulus)
    assert limbs_to_ints(result) == [x * y % modulus for x, y in zip(a, b, strict=True)]


@pytest.mark.parametrize(
    ("window_bits", "modulus_bits", "exponent_bits"), [(1, 2048, 1024), (5, 2048, 1024), (8, 4096, 1024), (12, 512, 90)]
)
def test_fixed_base_walk_matches_pow(kernels, window_bits, modulus_bits, exponent_bits):
    modulus = random_modulus(modulus_bits)
    base = secrets.randbelow(modulus)
    table = get_backend("gmpy2").build_fixed_base_table(base, modulus, exponent_bits, window_bits)
    top = (1 << table.exponent_bits) - 1
    exponents = [0, 1, 2, top, top - 1, 1 << (table.exponent_bits - 1)]
    exponents += [secrets.randbits(exponent_bits) for _ in range(4)]
    result = kernels.fixed_base_powmod(table, exponents)
    assert limbs_to_ints(result) == [pow(base, exponent, modulus) for exponent in exponents]
    # The same walk from exponent limbs drawn in bulk.
    limbs = random_limbs(5, table.exponent_bits)
    walked = limbs_to_ints(kernels._walk(table, limbs))
    assert walked == [pow(base, exponent, modulus) for exponent in limbs_to_ints(limbs)]


def test_fixed_base_walk_refuses_exponents_the_table_does_not_cover(kernels):
    modulus = random_modulus(512)
    table = get_backend("python").build_fixed_base_table(3, modulus, 64, 4)
    with pytest.raises(ValueError, match=r"exponents must be in \[0, 2\*\*64\)"):
        kernels.fixed_base_powmod(table, [1 << 64])
    with pytest.raises(ValueError, match="exponents must be in"):
        kernels.fixed_base_powmod(table, [-1])


@pytest.mark.parametrize("rows", [1, 2, 7])
def test_column_products_match_python(kernels, small_keypair, rows):
    public_key, private_key = small_keypair
    backend = get_backend("python")
    columns = [[secrets.randbelow(1000) for _ in range(9)] for _ in range(rows)]
    batches = [backend.encrypt(public_key, column) for column in columns]
    product = kernels.aggregate(public_key, batches)
    expected = [1] * 9
    for batch in batches:
        expected = [e * c % public_key.nsquare for e, c in zip(expected, limbs_to_ints(batch.limbs), strict=True)]
    assert limbs_to_ints(product.limbs) == expected
    assert backend.decrypt(private_key, product) == [sum(values) for values in zip(*columns, strict=True)]


def test_aggregate_refuses_what_the_reference_refuses(kernels, small_keypair):
    public_key, _ = small_keypair
    batch = get_backend("python").encrypt(public_key, [1, 2])
    with pytest.raises(CiphertextError, match="at least one batch"):
        kernels.aggregate(public_key, [])
    with pytest.raises(CiphertextError, match="different lengths"):
        kernels.aggregate(public_key, [batch, get_backend("python").encrypt(public_key, [1])])


# ---- Paillier on the kernels, against the reference backend and python-paillier. ----


@pytest.mark.parametrize("obfuscation", ["standard", "djn", "pool"])
def test_paillier_round_trip_and_aggregation_1024(make_kernels, keypair_1024, obfuscation):
    public_key, private_key = keypair_1024
    backend = make_kernels(obfuscation=obfuscation)
    plaintexts = [0, 1, 2, public_key.n - 1, *(secrets.randbelow(public_key.n) for _ in range(6))]
    if obfuscation == "pool":
        backend.precompute(public_key, len(plaintexts))
    ciphertexts = backend.encrypt(public_key, plaintexts)
    assert get_backend("python").decrypt(private_key, ciphertexts) == plaintexts
    assert backend.decrypt(private_key, ciphertexts) == plaintexts
    total = backend.aggregate(public_key, [ciphertexts, ciphertexts, ciphertexts])
    assert backend.decrypt(private_key, total) == [3 * m % public_key.n for m in plaintexts]


@PROPERTY_SETTINGS
@given(data=st.data())
def test_decryption_recovers_any_plaintext(kernels, small_keypair, data):
    """The CRT kernel (exact divisions by p and q, Garner's step) on random and edge plaintexts."""
    public_key, private_key = small_keypair
    n = public_key.n
    plaintexts = data.draw(
        st.lists(st.one_of(st.integers(0, n - 1), st.sampled_from([0, 1, n - 1, n // 2])), min_size=1, max_size=8)
    )
    ciphertexts = get_backend("python").encrypt(public_key, plaintexts)
    assert kernels.decrypt(private_key, ciphertexts) == plaintexts


def test_python_paillier_decrypts_kernel_ciphertexts_and_vice_versa(kernels, keypair_1024):
    public_key, private_key = keypair_1024
    phe_public = phe.PaillierPublicKey(public_key.n)
    phe_private = phe.PaillierPrivateKey(phe_public, private_key.p, private_key.q)
    plaintexts = [0, 7, 123456789, public_key.n - 1]
    ours = kernels.encrypt(public_key, plaintexts)
    for value, ciphertext in zip(plaintexts, limbs_to_ints(ours.limbs), strict=True):
        assert phe_private.raw_decrypt(ciphertext) == value
    theirs = ints_to_limbs([phe_public.raw_encrypt(m) for m in plaintexts], limb_width(public_key.nsquare))
    assert kernels.decrypt(private_key, CiphertextBatch(public_key, theirs)) == plaintexts


@pytest.mark.slow
def test_paillier_round_trip_with_a_2048_bit_key(harness_folder):
    public_key, private_key = generate_keypair(2048)
    for obfuscation in ("standard", "djn"):
        backend = HostKernelBackend(harness_folder, obfuscation=obfuscation)
        plaintexts = [0, public_key.n - 1, secrets.randbelow(public_key.n)]
        ciphertexts = backend.encrypt(public_key, plaintexts)
        assert get_backend("gmpy2").decrypt(private_key, ciphertexts) == plaintexts
        assert backend.decrypt(private_key, backend.aggregate(public_key, [ciphertexts] * 2)) == [
            2 * m % public_key.n for m in plaintexts
        ]


def test_every_launch_uses_the_configuration_of_its_modulus(harness_folder, keypair_1024):
    public_key, private_key = keypair_1024
    backend = HostKernelBackend(harness_folder)
    backend.decrypt(private_key, backend.encrypt(public_key, [5]))
    launched = {(config.limbs, kernel) for config, kernel, _ in backend._device.launches}
    # n^2 (2048 bits) runs on 64 limbs; the CRT halves p^2, q^2 and their recombination mod n (1024 bits) on 32.
    assert launched == {(64, "dphe_powmod"), (64, "dphe_mulmod"), (32, "dphe_powmod"), (32, "dphe_crt")}


# ---- The kernels' device form (warp shuffles and ballots, group set-up, tails) on the warp emulator. ----


def key_of_bits(bits: int) -> PrivateKey:
    """A key whose n has ``bits`` or ``bits - 1`` bits, so that its CRT kernel runs on config_for(2**bits - 1)."""
    p = int(gmpy2.next_prime(secrets.randbits(bits // 2) | 3 << (bits // 2 - 2)))
    q = int(gmpy2.next_prime(secrets.randbits(bits // 2) | 3 << (bits // 2 - 2)))
    return PrivateKey.insecure_for_tests(p, q)


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.limbs}x{c.threads_per_number}")
def test_every_kernel_in_device_form_on_the_warp_emulator(harness_folder, config):
    """Every kernel in its device form at every configuration, on 3 numbers (2 for the exponentiation): blocks
    of the size the cupy backend picks on one SM, so groups of 4 to 16 threads leave idle groups in the tail.
    The CRT kernel runs at the configurations of n for 1024- to 4096-bit keys (those the key sizes use)."""
    emulated = WarpEmulatorBackend(harness_folder)
    modulus = edge_moduli(config.max_modulus_bits)[3]
    assert config_for(modulus) == config
    width = limb_width(modulus)
    a = [modulus - 1, *(secrets.randbelow(modulus) for _ in range(2))]
    b = [modulus - 2, *(secrets.randbelow(modulus) for _ in range(2))]
    product = emulated.mulmod(ints_to_limbs(a, width), ints_to_limbs(b, width), modulus)
    assert limbs_to_ints(product) == [x * y % modulus for x, y in zip(a, b, strict=True)]
    stacked = np.stack([ints_to_limbs(a, width), ints_to_limbs(b, width)])
    assert limbs_to_ints(emulated.product_on_device(stacked, 2, 3, width, modulus)) == limbs_to_ints(product)
    wide = [secrets.randbits(64 * config.limbs) for _ in range(2)]
    powers = emulated.powmod(ints_to_limbs(wide, 2 * config.limbs), 0x1F, modulus)
    assert limbs_to_ints(powers) == [pow(value, 0x1F, modulus) for value in wide]
    table = get_backend("gmpy2").build_fixed_base_table(7, modulus, 12, 4)
    exponents = [0, 0xFFF, secrets.randbits(12)]
    assert limbs_to_ints(emulated.fixed_base_powmod(table, exponents)) == [pow(7, e, modulus) for e in exponents]
    launched = {
        (kernel, threads)
        for (_, kernel, _), (_, threads) in zip(emulated._device.launches, emulated._device.blocks, strict=True)
    }
    assert {kernel for kernel, _ in launched} == {"dphe_mulmod", "dphe_product", "dphe_powmod", "dphe_walk"}
    if config.limbs > 128:
        return
    private_key = key_of_bits(config.max_modulus_bits)
    assert config_for(private_key.public_key.n) == config
    n = private_key.public_key.n
    plaintexts = [0, n - 1, secrets.randbelow(n)]
    ciphertexts = limbs_to_ints(get_backend("gmpy2").encrypt(private_key.public_key, plaintexts).limbs)
    p, q = private_key.p, private_key.q
    xp = ints_to_limbs([pow(c, p - 1, private_key.psquare) for c in ciphertexts], limb_width(private_key.psquare))
    xq = ints_to_limbs([pow(c, q - 1, private_key.qsquare) for c in ciphertexts], limb_width(private_key.qsquare))
    assert limbs_to_ints(emulated.crt_on_device(private_key, xp, xq, len(plaintexts))) == plaintexts


# ---- Errors. ----


def test_kernel_arguments_are_checked(kernels):
    modulus = random_modulus(512)
    limbs = config_for(modulus).limbs
    with pytest.raises(ValueError, match="odd modulus > 1"):
        kernels.powmod(ints_to_limbs([3], 1), 5, 1 << 100)
    with pytest.raises(ValueError, match="odd modulus > 1"):
        kernels.mulmod(ints_to_limbs([3], 1), ints_to_limbs([3], 1), 1)
    with pytest.raises(ValueError, match=f"up to {MAX_MODULUS_BITS} bits"):
        kernels.powmod(ints_to_limbs([3], 1), 5, random_modulus(MAX_MODULUS_BITS + 1))
    with pytest.raises(ValueError, match="exponent must be >= 0"):
        kernels.powmod(ints_to_limbs([3], 1), -1, modulus)
    with pytest.raises(ValueError, match=f"too wide for a 512-bit modulus \\(at most {2 * limbs}\\)"):
        kernels.powmod(np.zeros((1, 2 * limbs + 1), dtype=np.uint32), 5, modulus)
    with pytest.raises(ValueError, match=f"too wide for a 512-bit modulus \\(at most {limbs}\\)"):
        kernels.mulmod(np.zeros((1, limbs + 1), dtype=np.uint32), np.zeros((1, 1), dtype=np.uint32), modulus)
    with pytest.raises(ValueError, match="same number of rows"):
        kernels.mulmod(np.zeros((2, 4), dtype=np.uint32), np.zeros((1, 4), dtype=np.uint32), modulus)
    with pytest.raises(ValueError, match="uint32 limb array"):
        kernels.powmod(np.zeros((2, 4), dtype=np.int64), 3, modulus)


def test_device_arrays_are_checked_before_every_launch(harness_folder, small_keypair):
    """A kernel reads through a bare pointer: views, other dtypes, other widths and short arrays are refused
    before anything is launched."""
    backend = HostKernelBackend(harness_folder)
    modulus = random_modulus(512)
    good = np.zeros((4, 16), dtype=np.uint32)
    bad = {
        "a view": good[:, :8],
        "int64": good.astype(np.int64),
        "short": good[:3].copy(),
        "wrong width": np.zeros((4, 12), dtype=np.uint32),
        "one-dimensional": np.zeros(64, dtype=np.uint32),
        "not an array": [[0] * 16] * 4,
    }
    table = get_backend("python").build_fixed_base_table(3, modulus, 64, 4)
    _, private_key = small_keypair
    crt_width = limb_width(private_key.psquare)
    for array in bad.values():
        launches = [
            lambda array=array: backend.powmod_on_device(array, 16, 4, 5, modulus),
            lambda array=array: backend.mulmod_on_device(good, 16, array, 16, 4, modulus),
            lambda array=array: backend.walk_on_device(table, array, 16, 4),
            lambda array=array: backend.crt_on_device(private_key, array, np.zeros((4, crt_width), np.uint32), 4),
        ]
        for launch in launches:
            with pytest.raises(ValueError, match=r"must be a C-contiguous uint32|must have shape"):
                launch()
    with pytest.raises(ValueError, match=r"values must have shape \(>= 2, 4, 16\)"):
        backend.product_on_device(np.zeros((2, 5, 16), dtype=np.uint32), 2, 4, 16, modulus)
    with pytest.raises(ValueError, match="count must be >= 0"):
        backend.powmod_on_device(good, 16, -1, 5, modulus)
    assert backend._device.launches == []


def test_exponent_digits_are_uploaded_once_per_exponent(harness_folder):
    backend = HostKernelBackend(harness_folder)
    uploads = []
    upload = backend._device.to_device
    backend._device.to_device = lambda array: uploads.append(array.shape) or upload(array)
    modulus = random_modulus(1024)
    bases = backend._device.to_device(ints_to_limbs([3, 5], 32))
    exponent = secrets.randbits(1000)
    first = backend.powmod_on_device(bases, 32, 2, exponent, modulus)
    uploaded = len(uploads)
    second = backend.powmod_on_device(bases, 32, 2, exponent, modulus)
    assert len(uploads) == uploaded
    assert limbs_to_ints(first) == limbs_to_ints(second) == [pow(b, exponent, modulus) for b in (3, 5)]


def test_encrypt_refuses_out_of_range_plaintexts_before_drawing_obfuscators(make_kernels, small_keypair):
    public_key, _ = small_keypair
    backend = make_kernels(obfuscation="pool")
    backend.precompute(public_key, 3)
    with pytest.raises(PlaintextRangeError, match="plaintext 1 is outside"):
        backend.encrypt(public_key, [1, public_key.n, 2])
    assert backend.pool_size(public_key) == 3


def test_empty_batches_launch_nothing(harness_folder):
    backend = HostKernelBackend(harness_folder)
    modulus = random_modulus(256)
    assert backend.powmod(np.zeros((0, 8), dtype=np.uint32), 3, modulus).shape == (0, 8)
    assert backend.mulmod(np.zeros((0, 8), dtype=np.uint32), np.zeros((0, 8), dtype=np.uint32), modulus).shape == (0, 8)
    assert backend._device.launches == []


# ---- Host-side layout helpers. ----


@given(st.integers(0, 10**7), st.sampled_from([4, 8, 16, 32]), st.integers(1, 200))
def test_blocks_cover_the_batch_and_shrink_only_for_small_batches(count, threads_per_number, multiprocessors):
    threads = block_threads(count, threads_per_number, multiprocessors)
    assert threads in (32, 64, 128, MAX_BLOCK_THREADS)
    assert threads % threads_per_number == 0
    blocks = grid_blocks(count, threads_per_number, threads)
    assert blocks * threads >= count * threads_per_number
    assert (blocks - 1) * threads < count * threads_per_number or count == 0
    if threads < MAX_BLOCK_THREADS:
        # A larger block would have given fewer than two blocks per SM.
        larger = 2 * threads
        assert grid_blocks(count, threads_per_number, larger) < 2 * multiprocessors
    else:
        assert grid_blocks(count, threads_per_number, threads) >= 2 * multiprocessors or threads == 32


def test_small_batches_spread_over_the_multiprocessors():
    # 1,000 numbers of 8 threads on 132 SMs: 32 blocks of 256 threads would leave 100 SMs idle.
    assert block_threads(1000, 8, 132) == 32
    assert grid_blocks(1000, 8, 32) == 250
    assert block_threads(100_000, 8, 132) == MAX_BLOCK_THREADS
    with pytest.raises(ValueError, match="multiprocessors >= 1"):
        block_threads(10, 8, 0)


def test_configuration_is_the_smallest_that_holds_the_modulus():
    assert config_for(3) == CONFIGS[0]
    for config in CONFIGS:
        top = (1 << config.max_modulus_bits) - 1
        assert config_for(top) == config
        assert config.limbs % config.threads_per_number == 0
    assert [config_for(random_modulus(bits)).limbs for bits in (1024, 2048, 3072, 4096, 6144, 8192)] == [
        32,
        64,
        96,
        128,
        192,
        256,
    ]


@given(st.integers(0, 2**600))
def test_exponent_digits_rebuild_the_exponent(exponent):
    digits = exponent_digits(exponent)
    rebuilt = 0
    for digit in digits:
        assert 0 <= digit < 2**POW_WINDOW
        rebuilt = (rebuilt << POW_WINDOW) | int(digit)
    assert rebuilt == exponent
    assert len(digits) == max(1, -(-exponent.bit_length() // POW_WINDOW))


@given(st.lists(st.integers(0, 2**96 - 1), min_size=1, max_size=20), st.integers(1, 2**97))
def test_rows_below_compares_like_python(values, bound):
    assert rows_below(ints_to_limbs(values, 3), bound).tolist() == [value < bound for value in values]


@given(st.integers(2, 2**200), st.integers(0, 50))
def test_random_below_stays_in_range(bound, count):
    values = limbs_to_ints(random_below(count, bound))
    assert len(values) == count
    assert all(1 <= value < bound for value in values)


def test_random_limbs_have_the_requested_bits_and_vary():
    limbs = random_limbs(2000, 37)
    values = limbs_to_ints(limbs)
    assert limbs.shape == (2000, 2)
    assert max(values).bit_length() == 37
    assert len(set(values)) == 2000


def test_random_below_refuses_a_bound_below_two():
    with pytest.raises(ValueError, match="bound must be >= 2"):
        random_below(3, 1)


# ---- The CUDA sources, compiled for the H100/H200 (sm_90) by nvcc where it is installed. ----


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.limbs}x{c.threads_per_number}")
def test_kernels_compile_for_sm_90_without_spills(tmp_path, config):
    try:
        report = nvcc_compile(config, tmp_path / "kernels.cubin", keep_dir=tmp_path)
    except FileNotFoundError:
        pytest.skip("nvcc is not installed")
    # Every kernel declares its block limit, and every global load of an input takes the read-only path
    # (const __restrict__): ld.global.nc, never a plain ld.global.
    ptx = (tmp_path / "paillier_kernels.ptx").read_text()
    entries = re.split(r"\.entry ", ptx)[1:]
    assert sorted(entry.split("(")[0] for entry in entries) == sorted(KERNEL_NAMES)
    for entry in entries:
        assert f".maxntid {MAX_BLOCK_THREADS}, 1, 1" in entry and ".minnctapersm 1" in entry
        assert "ld.global.nc" in entry
        assert not re.search(r"ld\.global\.(?!nc)", entry)
    assert sorted(resources.kernel for resources in report) == sorted(KERNEL_NAMES)
    for resources in report:
        assert resources.spill_store_bytes == 0 and resources.spill_load_bytes == 0, resources
        # __launch_bounds__(MAX_BLOCK_THREADS, 1): a full block always has the registers it needs.
        assert resources.registers * MAX_BLOCK_THREADS <= 65536, resources


def test_kernel_sources_ship_as_package_data():
    names = {path.name for path in source_dir().iterdir()}
    assert {"bigint.cuh", "paillier_kernels.cu", "host_harness.cpp"} <= names


def test_cupy_backend_reports_why_it_cannot_run_here():
    status = available_backends()["cupy"]
    assert status.available == (status.reason is None)
    if not status.available:
        assert "cupy" in status.reason.lower() or "cuda" in status.reason.lower()
