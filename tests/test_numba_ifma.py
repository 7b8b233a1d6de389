"""The numba backend's ``ifma`` kernel family (52-bit limbs, 8 numbers per vector): the multiply-add
intrinsics and the Montgomery product against Python ints, the backend's primitives against ``pow`` and
against the ``narrow`` family on the same inputs, Paillier through it, kernel selection, and the assembly.

On a CPU with AVX-512 IFMA every test runs the real ``vpmadd52luq`` / ``vpmadd52huq`` instructions. On a
CPU without it the kernels compile to the portable lowering of the same two operations
(``numba_ifma_ops``), so the 52-bit algorithms are still checked here; the tests that need the instructions
themselves (selection, in-process assembly) skip, saying so, and the assembly is still checked by compiling
for an IFMA CPU (Sapphire Rapids) in a subprocess without running the code.
"""

import json
import os
import secrets
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paillier_checks import check_round_trip

from dphe_bench import get_backend
from dphe_bench.backends.numba_ifma_layout import LANES, LIMB_BITS, WideModulus, from_lanes, to_lanes
from dphe_bench.crypto.limbs import ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.crypto.paillier import KEY_SIZES, PrivateKey
from dphe_bench.crypto.primes import random_prime
from dphe_bench.errors import BackendUnavailableError

pytest.importorskip("numba")

from numba import njit

from dphe_bench.backends import numba_ifma_kernels as kernels
from dphe_bench.backends import numba_ifma_ops as ops

IFMA_MISSING = ops.ifma_unavailable_reason()
needs_ifma = pytest.mark.skipif(IFMA_MISSING is not None, reason=f"needs AVX-512 IFMA: {IFMA_MISSING}")
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Small odd moduli, then n and n^2 for every key size (p^2 and q^2 of CRT decryption have n's size).
MODULUS_BITS = [5, 64, 104, *KEY_SIZES, *(2 * bits for bits in KEY_SIZES[1:])]
BATCH_SIZES = [1, 7, 8, 9]
MASK = (1 << LIMB_BITS) - 1


def odd_modulus(bits: int) -> int:
    return secrets.randbits(bits) | 1 | (1 << (bits - 1))


@pytest.fixture(scope="module", params=MODULUS_BITS, ids=lambda bits: f"{bits}bit")
def modulus(request):
    return odd_modulus(request.param)


@pytest.fixture(scope="module")
def ifma():
    """The ifma family on 1 thread; where the CPU lacks IFMA, with the CPU check patched (portable lowering)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ops, "ifma_unavailable_reason", lambda: None)
        return get_backend("numba", kernel="ifma", threads=1)


@pytest.fixture(scope="module")
def ifma_parallel():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ops, "ifma_unavailable_reason", lambda: None)
        return get_backend("numba", kernel="ifma", threads=2)


@pytest.fixture(scope="module")
def narrow():
    return get_backend("numba", kernel="narrow", threads=1)


@njit(cache=True)
def _multiply_adds(accumulator, x, y, out):
    a, b, c = ops.load(accumulator, 0), ops.load(x, 0), ops.load(y, 0)
    ops.store(out, 0, ops.madd52lo(a, b, c))
    ops.store(out, 1, ops.madd52hi(a, b, c))
    ops.store(out, 2, ops.add(ops.low52(a), ops.high52(b)))
    ops.store(out, 3, ops.add(ops.splat(y[0, 0]), ops.zero()))


def test_multiply_adds_match_python_ints_and_ignore_the_top_12_bits():
    edges = [0, 1, MASK, MASK + 1, 2**64 - 1, 2**63]
    for _ in range(20):
        lanes = [[secrets.choice([*edges, secrets.randbits(64)]) for _ in range(LANES)] for _ in range(3)]
        accumulator, x, y = (np.array([row], np.uint64) for row in lanes)
        out = np.zeros((4, LANES), np.uint64)
        _multiply_adds(accumulator, x, y, out)
        for lane, (a, b, c) in enumerate(zip(*lanes, strict=True)):
            product = (b & MASK) * (c & MASK)
            assert int(out[0, lane]) == (a + (product & MASK)) % 2**64
            assert int(out[1, lane]) == (a + (product >> LIMB_BITS)) % 2**64
            assert int(out[2, lane]) == (a & MASK) + (b >> LIMB_BITS)
            assert int(out[3, lane]) == lanes[2][0]


def edge_values(modulus: int) -> list[int]:
    """0, 1, values next to m and 2m, all-ones limbs (52-bit and 32-bit) that fit below 2m."""
    k = WideModulus(modulus).k
    candidates = [0, 1, 2, modulus - 1, modulus, modulus + 1, 2 * modulus - 1, modulus // 2, 2**32 - 1]
    candidates += [2 ** (LIMB_BITS * j) - 1 for j in (1, 2, k - 1, k)] + [2 ** (32 * limb_width(modulus)) - 1]
    return sorted({v for v in candidates if 0 <= v < 2 * modulus})


@SETTINGS
@given(data=st.data())
def test_montgomery_product_matches_python_ints(modulus, data):
    """mont_mul(a, b) = a b / R mod m and mont_sqr(a) = a^2 / R mod m, below 2m, lane by lane, for a, b in
    [0, 2m); also mont_mul(a, a) with every operand the same array."""
    context = WideModulus(modulus)
    value = st.one_of(st.integers(0, 2 * modulus - 1), st.sampled_from(edge_values(modulus)))
    a = data.draw(st.lists(value, min_size=LANES, max_size=LANES))
    b = data.draw(st.lists(value, min_size=LANES, max_size=LANES))
    scratch = np.zeros((2 * context.k + 2, LANES), np.uint64)
    product, square, self_product = (to_lanes(a, context.rows) for _ in range(3))
    kernels.mont_mul(product, to_lanes(b, context.rows), context.limbs, context.n0, context.k, scratch, product)
    kernels.mont_sqr(square, context.limbs, context.n0, context.k, scratch, square)
    kernels.mont_mul(self_product, self_product, context.limbs, context.n0, context.k, scratch, self_product)
    r_inverse = pow(context.r, -1, modulus)
    for result in (product, square, self_product):
        assert result.max() <= MASK, "limbs must come out normalised"
        assert not result[context.k].any(), "the padding row must stay zero"
    for x, y, got, got_square, got_self in zip(
        a, b, from_lanes(product), from_lanes(square), from_lanes(self_product), strict=True
    ):
        assert got < 2 * modulus and got % modulus == x * y * r_inverse % modulus
        for value in (got_square, got_self):
            assert value < 2 * modulus and value % modulus == x * x * r_inverse % modulus


def test_limb_layout_keeps_the_lazy_carry_bound():
    for bits in (5, 2048, 8192, 13714):
        context = WideModulus(odd_modulus(bits))
        assert context.r > 4 * context.modulus and context.k == -(-(bits + 2) // LIMB_BITS)
        assert (4 * context.k + 3) * 2**LIMB_BITS + 4 * context.k + 2 < 2**64


def short_exponents(bits: int) -> list[int]:
    """Edge exponents, and random ones whose length shrinks with the modulus (the loop is the same)."""
    length = max(8, min(bits, 20_000 // max(1, bits // 64)))
    return [0, 1, 2, 65537, 2**length - 1, secrets.randbits(length)]


@pytest.mark.parametrize("count", BATCH_SIZES)
def test_powmod_matches_pow_and_the_narrow_family(ifma, narrow, modulus, count):
    width = limb_width(modulus)
    pool = [v for v in edge_values(modulus) if v < 2 ** (32 * width)]
    bases = [pool[i % len(pool)] if i % 2 else secrets.randbelow(modulus) for i in range(count)]
    limbs = ints_to_limbs(bases, width)
    for exponent in short_exponents(modulus.bit_length()):
        result = ifma.powmod(limbs, exponent, modulus)
        assert result.dtype == np.uint32 and result.shape == (count, width)
        assert limbs_to_ints(result) == [pow(b, exponent, modulus) for b in bases], exponent
        assert np.array_equal(result, narrow.powmod(limbs, exponent, modulus))


@pytest.mark.parametrize("modulus", [1, 3, 2**52 - 1, 2**52 + 1, 2**104 - 3, 2**156 + 1])
def test_tiny_and_limb_boundary_moduli(ifma, narrow, modulus):
    values = [0, 1, 2, 5, 2**64 - 1, secrets.randbits(64), secrets.randbits(64)]
    a, b = ints_to_limbs(values, 2), ints_to_limbs(values[::-1], 2)
    powers = ifma.powmod(a, 65537, modulus)
    assert limbs_to_ints(powers) == [pow(x, 65537, modulus) for x in values]
    assert np.array_equal(powers, narrow.powmod(a, 65537, modulus))
    products = [x * y % modulus for x, y in zip(values, values[::-1], strict=True)]
    assert limbs_to_ints(ifma.mulmod(a, b, modulus)) == products


@pytest.mark.parametrize("extra_words", [-1, 1, 130])
def test_powmod_reduces_bases_of_any_width(ifma, extra_words):
    modulus = odd_modulus(1024)
    width = max(1, limb_width(modulus) + extra_words)
    bases = [0, 1, 2 ** (32 * width) - 1, *(secrets.randbits(32 * width) for _ in range(6))]
    exponent = secrets.randbits(300)
    result = ifma.powmod(ints_to_limbs(bases, width), exponent, modulus)
    assert limbs_to_ints(result) == [pow(b, exponent, modulus) for b in bases]


@SETTINGS
@given(data=st.data())
def test_mulmod_matches_python_ints_and_the_narrow_family(ifma, narrow, modulus, data):
    width = limb_width(modulus)
    edges = [v for v in edge_values(modulus) if v < 2 ** (32 * width)]
    value = st.one_of(st.integers(0, 2 ** (32 * width) - 1), st.sampled_from(edges))
    count = data.draw(st.sampled_from(BATCH_SIZES))
    pairs = data.draw(st.lists(st.tuples(value, value), min_size=count, max_size=count))
    a, b = ints_to_limbs([x for x, _ in pairs], width), ints_to_limbs([y for _, y in pairs], width)
    result = ifma.mulmod(a, b, modulus)
    assert limbs_to_ints(result) == [x * y % modulus for x, y in pairs]
    assert np.array_equal(result, narrow.mulmod(a, b, modulus))


def test_mulmod_of_operands_with_different_widths(ifma):
    modulus = odd_modulus(700)
    width = limb_width(modulus)
    a = [secrets.randbits(32 * width) for _ in range(9)]
    b = [secrets.randbits(32 * 3 * width) for _ in range(9)]
    result = ifma.mulmod(ints_to_limbs(a, width), ints_to_limbs(b, 3 * width), modulus)
    assert limbs_to_ints(result) == [x * y % modulus for x, y in zip(a, b, strict=True)]


@pytest.mark.parametrize("window_bits", [1, 5, 8])
def test_fixed_base_walk_matches_pow_and_the_narrow_family(ifma, ifma_parallel, narrow, window_bits):
    modulus = odd_modulus(2048)
    base = secrets.randbelow(modulus)
    table = narrow.build_fixed_base_table(base, modulus, 520, window_bits)
    top = 2**table.exponent_bits - 1
    exponents = [0, 1, top, 2**519, *(secrets.randbits(520) for _ in range(13))]
    expected = [pow(base, e, modulus) for e in exponents]
    for count in (*BATCH_SIZES, len(exponents)):
        result = ifma.fixed_base_powmod(table, exponents[:count])
        assert limbs_to_ints(result) == expected[:count]
        assert np.array_equal(result, narrow.fixed_base_powmod(table, exponents[:count]))
    assert limbs_to_ints(ifma_parallel.fixed_base_powmod(table, exponents)) == expected


def test_the_djn_table_copy_in_52_bit_limbs_is_made_once_and_counted(key_from_primes):
    public_key, private_key = key_from_primes
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ops, "ifma_unavailable_reason", lambda: None)
        backend = get_backend("numba", kernel="ifma", threads=1, obfuscation="djn", window_bits=4)
    values = [0, 1, public_key.n - 1]
    assert backend.decrypt(private_key, backend.encrypt(public_key, values)) == values
    table = backend.djn_table(public_key)
    copies = list(backend._wide_tables.values())
    backend.encrypt(public_key, values)
    again = list(backend._wide_tables.values())
    assert len(copies) == len(again) == 1 and again[0][1] is copies[0][1] and copies[0][0] is table
    k = WideModulus(public_key.nsquare).k
    assert copies[0][1].shape == (table.windows, 16, k)
    assert backend.table_nbytes() == table.nbytes + table.windows * 16 * k * 8


def test_parallel_kernels_agree_with_pow_on_batches_of_every_padding(ifma_parallel):
    modulus = odd_modulus(2048)
    width = limb_width(modulus)
    exponent = secrets.randbits(256)
    for count in (9, 23):
        bases = [secrets.randbelow(modulus) for _ in range(count)]
        result = ifma_parallel.powmod(ints_to_limbs(bases, width), exponent, modulus)
        assert limbs_to_ints(result) == [pow(b, exponent, modulus) for b in bases]
    many = [secrets.randbelow(modulus) for _ in range(2 * 1027)]
    product = ifma_parallel.mulmod(ints_to_limbs(many[::2], width), ints_to_limbs(many[1::2], width), modulus)
    assert limbs_to_ints(product) == [x * y % modulus for x, y in zip(many[::2], many[1::2], strict=True)]


@pytest.fixture(scope="module")
def key_from_primes():
    p, q = random_prime(512), random_prime(512)
    while q == p:
        q = random_prime(512)
    private_key = PrivateKey.from_primes(p, q)
    return private_key.public_key, private_key


@pytest.mark.parametrize("obfuscation", ["standard", "djn"])
def test_paillier_round_trip_aggregate_crt_decryption_and_python_paillier(key_from_primes, obfuscation):
    public_key, private_key = key_from_primes
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ops, "ifma_unavailable_reason", lambda: None)
        backend = get_backend("numba", kernel="ifma", threads=2, obfuscation=obfuscation, window_bits=6)
    n = public_key.n
    rows = [[0, 1, n - 1, *(secrets.randbelow(n) for _ in range(6))], [n - 1, 1, 1, *range(6)], [5, 0, n - 2, *[7] * 6]]
    check_round_trip(backend, public_key, private_key, rows)


def test_kernel_option_is_validated_and_rebuilds_the_backend(narrow):
    with pytest.raises(ValueError, match="kernel must be one of ifma, narrow"):
        get_backend("numba", kernel="wide")
    assert narrow.options()["kernel"] == "narrow" and "kernel" in type(narrow).option_names()
    assert narrow.describe().endswith("narrow kernels (chosen by the kernel option)")
    assert get_backend("numba", **narrow.options()).options() == narrow.options()


@pytest.mark.skipif(IFMA_MISSING is None, reason="this CPU has AVX-512 IFMA")
def test_without_ifma_the_default_is_narrow_and_forcing_ifma_is_refused():
    backend = get_backend("numba")
    assert backend.kernel == "narrow" and backend.kernel_reason == IFMA_MISSING
    assert backend.describe().endswith(f"narrow kernels ({IFMA_MISSING})")
    with pytest.raises(BackendUnavailableError, match=r"ifma kernels need AVX-512 IFMA: .*avx512ifma"):
        get_backend("numba", kernel="ifma")


def check_hot_loops(listings: dict[str, str]) -> None:
    """Both hot loops are IFMA multiply-adds, with no scalar 64-bit product left (no silent fallback)."""
    for name, listing in listings.items():
        lines = listing.splitlines()
        assert sum("vpmadd52luq" in line for line in lines) >= 3, name
        assert sum("vpmadd52huq" in line for line in lines) >= 2, name
        assert not any("\tmulq" in line or "\tmulx" in line for line in lines), f"{name}: a scalar product is left"


@needs_ifma
def test_with_ifma_the_default_is_ifma_and_the_hot_loops_use_vpmadd52luq():
    backend = get_backend("numba")
    assert backend.kernel == "ifma" and backend.describe().endswith("ifma kernels (the CPU reports avx512ifma)")
    check_hot_loops(kernels.assembly())


ASSEMBLY_PROBE = """
import json
from dphe_bench.backends import numba_ifma_kernels
print(json.dumps(numba_ifma_kernels.assembly()))
"""


def test_compiled_for_an_ifma_cpu_the_hot_loops_are_vpmadd52():
    """Compile (never run) the Montgomery product and square for Sapphire Rapids in a subprocess."""
    environment = {**os.environ, "NUMBA_CPU_NAME": "sapphirerapids", "NUMBA_CPU_FEATURES": "+avx512f,+avx512ifma"}
    result = subprocess.run(
        [sys.executable, "-c", ASSEMBLY_PROBE], env=environment, capture_output=True, text=True, check=True
    )
    check_hot_loops(json.loads(result.stdout))


def test_the_portable_lowering_is_used_only_without_ifma():
    listings = kernels.assembly()
    has_instruction = any("vpmadd52luq" in listing for listing in listings.values())
    assert has_instruction == (IFMA_MISSING is None)
