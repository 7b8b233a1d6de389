"""The ``numba`` backend: its Montgomery kernels against Python ints, its batched primitives against ``pow``,
serial against parallel, and Paillier through it against python-paillier."""

import importlib
import secrets
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paillier_checks import check_round_trip

from dphe_bench import get_backend
from dphe_bench.backends.numba_backend import MAX_MODULUS_BITS, NARROW_BITS, _Modulus
from dphe_bench.crypto.limbs import ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.crypto.paillier import PrivateKey
from dphe_bench.crypto.primes import random_prime

pytest.importorskip("numba")

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MODULUS_BITS = [5, 64, 255, 1024, 2048, 4096]


def odd_modulus(bits: int) -> int:
    return secrets.randbits(bits) | 1 | (1 << (bits - 1))


@pytest.fixture(scope="module")
def kernels():
    return importlib.import_module("dphe_bench.backends.numba_kernels")


@pytest.fixture(scope="module")
def serial():
    return get_backend("numba", threads=1, kernel="narrow")


@pytest.fixture(scope="module")
def parallel():
    return get_backend("numba", threads=2, kernel="narrow")


@pytest.fixture(scope="module", params=MODULUS_BITS, ids=lambda bits: f"{bits}bit")
def modulus(request):
    return odd_modulus(request.param)


def to_int(limbs: np.ndarray, count: int) -> int:
    return sum(int(v) << (NARROW_BITS * i) for i, v in enumerate(limbs[:count]))


def edge_values(modulus: int) -> list[int]:
    """0, 1, values next to m and 2m, all-ones limbs of every kind that fits below 2m."""
    width, limbs = limb_width(modulus), _Modulus(modulus).k
    candidates = [0, 1, 2, modulus - 1, modulus, modulus + 1, 2 * modulus - 1, modulus // 2, 2**27 - 1, 2**32 - 1]
    candidates += [2 ** (27 * j) - 1 for j in (2, limbs - 1, limbs)] + [2 ** (32 * width) - 1]
    return sorted({v for v in candidates if 0 <= v < 2 * modulus})


@SETTINGS
@given(data=st.data())
def test_montgomery_multiply_and_square_match_python_ints(kernels, modulus, data):
    """mont_mul(a, b) = a b / R mod m and mont_sqr(a) = a^2 / R mod m, both below 2m, for a, b in [0, 2m)."""
    context = _Modulus(modulus)
    k, kp, r = context.k, context.kp, context.r
    value = st.one_of(st.integers(0, 2 * modulus - 1), st.sampled_from(edge_values(modulus)))
    a, b = data.draw(value), data.draw(value)
    scratch = np.zeros(2 * kp + 16, np.uint64)
    product, square = context.narrow(a), context.narrow(a)
    kernels.mont_mul(context.narrow(a), context.narrow(b), context.limbs, context.n0, k, kp, scratch, product)
    kernels.mont_sqr(square, context.limbs, context.n0, k, kp, scratch, square)
    r_inverse = pow(r, -1, modulus)
    for got, expected in ((to_int(product, k), a * b * r_inverse), (to_int(square, k), a * a * r_inverse)):
        assert got < 2 * modulus
        assert got % modulus == expected % modulus
    assert not product[k:].any() and not square[k:].any(), "the padding past k limbs must stay zero"


def test_limb_layout_keeps_the_lazy_carry_bound():
    for bits in (5, 2048, 4096, 8192, MAX_MODULUS_BITS):
        context = _Modulus(odd_modulus(bits))
        assert context.k % 4 == 0 and context.r > 4 * context.modulus
        assert (2 * context.k + 1) * 2**54 + 2**38 < 2**64


def exponents_for(bits: int) -> list[int]:
    return [0, 1, 2, 3, 65537, 2**bits - 1, secrets.randbits(bits), secrets.randbits(bits + 70) | (1 << (bits + 69))]


@pytest.mark.parametrize("threads", [1, 2])
def test_powmod_matches_pow_on_edge_bases_and_exponents(modulus, threads, serial, parallel):
    backend = serial if threads == 1 else parallel
    width = limb_width(modulus)
    bases = [v for v in edge_values(modulus) if v < 2 ** (32 * width)] + [secrets.randbelow(modulus) for _ in range(3)]
    for exponent in exponents_for(modulus.bit_length()):
        result = backend.powmod(ints_to_limbs(bases, width), exponent, modulus)
        assert result.dtype == np.uint32 and result.shape == (len(bases), width)
        assert limbs_to_ints(result) == [pow(b, exponent, modulus) for b in bases], exponent


@pytest.mark.parametrize("extra_words", [-1, 1, 5, 130])
def test_powmod_reduces_bases_of_any_width(serial, extra_words):
    modulus = odd_modulus(1024)
    width = max(1, limb_width(modulus) + extra_words)
    bases = [0, 1, 2 ** (32 * width) - 1, *(secrets.randbits(32 * width) for _ in range(4))]
    bases += [modulus, modulus + 1] if modulus < 2 ** (32 * width) else []
    exponent = secrets.randbits(300)
    result = serial.powmod(ints_to_limbs(bases, width), exponent, modulus)
    assert limbs_to_ints(result) == [pow(b, exponent, modulus) for b in bases]


def test_crt_style_powmod_of_ciphertexts_mod_p_squared(serial):
    p, q = random_prime(512), random_prime(512)
    nsquare, psquare = (p * q) ** 2, p * p
    ciphertexts = [nsquare - 1, psquare, psquare + 5, *(secrets.randbelow(nsquare) for _ in range(5))]
    result = serial.powmod(ints_to_limbs(ciphertexts, limb_width(nsquare)), p - 1, psquare)
    assert limbs_to_ints(result) == [pow(c, p - 1, psquare) for c in ciphertexts]


@SETTINGS
@given(data=st.data())
def test_mulmod_matches_python_ints(serial, parallel, modulus, data):
    width = limb_width(modulus)
    edges = [v for v in edge_values(modulus) if v < 2 ** (32 * width)]
    value = st.one_of(st.integers(0, 2 ** (32 * width) - 1), st.sampled_from(edges))
    pairs = data.draw(st.lists(st.tuples(value, value), min_size=1, max_size=5))
    a = ints_to_limbs([x for x, _ in pairs], width)
    b = ints_to_limbs([y for _, y in pairs], width)
    expected = [x * y % modulus for x, y in pairs]
    assert limbs_to_ints(serial.mulmod(a, b, modulus)) == expected
    assert limbs_to_ints(parallel.mulmod(a, b, modulus)) == expected


def test_mulmod_of_operands_with_different_widths(serial):
    modulus = odd_modulus(700)
    width = limb_width(modulus)
    a = [secrets.randbits(32 * width) for _ in range(4)]
    b = [secrets.randbits(32 * 3 * width) for _ in range(4)]
    result = serial.mulmod(ints_to_limbs(a, width), ints_to_limbs(b, 3 * width), modulus)
    assert limbs_to_ints(result) == [x * y % modulus for x, y in zip(a, b, strict=True)]


@pytest.mark.parametrize("window_bits", [1, 4, 8])
def test_fixed_base_walk_matches_pow(serial, parallel, window_bits):
    modulus = odd_modulus(2048)
    base = secrets.randbelow(modulus)
    table = serial.build_fixed_base_table(base, modulus, 1030, window_bits)
    top = 2**table.exponent_bits - 1
    exponents = [0, 1, 2, top, 2**1029, *(secrets.randbits(1030) for _ in range(5))]
    expected = [pow(base, e, modulus) for e in exponents]
    assert limbs_to_ints(serial.fixed_base_powmod(table, exponents)) == expected
    assert limbs_to_ints(parallel.fixed_base_powmod(table, exponents)) == expected


def test_fixed_base_walk_accepts_a_table_built_by_another_backend(serial):
    modulus = odd_modulus(1024)
    table = get_backend("python").build_fixed_base_table(7, modulus, 200, 5)
    exponents = [secrets.randbits(200) for _ in range(4)]
    assert limbs_to_ints(serial.fixed_base_powmod(table, exponents)) == [pow(7, e, modulus) for e in exponents]


def test_serial_and_parallel_kernels_agree(serial, parallel):
    default = get_backend("numba")
    modulus = odd_modulus(2048)
    width = limb_width(modulus)
    bases = ints_to_limbs([secrets.randbelow(modulus) for _ in range(19)], width)
    many = ints_to_limbs([secrets.randbelow(modulus) for _ in range(2 * 1100)], width)
    exponent = secrets.randbits(1024)
    powers = [b.powmod(bases, exponent, modulus) for b in (serial, parallel, default)]
    products = [b.mulmod(many[::2], many[1::2], modulus) for b in (serial, parallel, default)]
    assert all(np.array_equal(powers[0], p) for p in powers)
    assert all(np.array_equal(products[0], p) for p in products)
    assert limbs_to_ints(powers[0]) == [pow(b, exponent, modulus) for b in limbs_to_ints(bases)]
    pairs = zip(limbs_to_ints(many[::2]), limbs_to_ints(many[1::2]), strict=True)
    assert limbs_to_ints(products[0]) == [x * y % modulus for x, y in pairs]


@pytest.fixture(scope="module")
def key_from_primes():
    p, q = random_prime(512), random_prime(512)
    while q == p:
        q = random_prime(512)
    private_key = PrivateKey.from_primes(p, q)
    return private_key.public_key, private_key


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("obfuscation", ["standard", "djn"])
def test_paillier_round_trip_aggregate_and_python_paillier(key_from_primes, threads, obfuscation):
    public_key, private_key = key_from_primes
    backend = get_backend("numba", threads=threads, obfuscation=obfuscation, window_bits=6)
    n = public_key.n
    rows = [[0, 1, n - 1, secrets.randbelow(n)], [n - 1, 1, 1, secrets.randbelow(n)], [5, 0, n - 2, 7]]
    check_round_trip(backend, public_key, private_key, rows)


def test_powmod_modulo_the_square_of_a_4096_bit_key(serial):
    modulus = odd_modulus(8192)
    bases = [0, 1, modulus - 1, secrets.randbelow(modulus)]
    exponent = secrets.randbits(4096)
    result = serial.powmod(ints_to_limbs(bases, limb_width(modulus)), exponent, modulus)
    assert limbs_to_ints(result) == [pow(b, exponent, modulus) for b in bases]


@pytest.mark.parametrize("modulus", [0, -7, 2, 2**64, 2 ** (MAX_MODULUS_BITS + 1) + 1])
def test_unsupported_moduli_are_refused(serial, modulus):
    with pytest.raises(ValueError, match=r"odd modulus|moduli up to"):
        serial.powmod(ints_to_limbs([3], 1), 5, modulus)


def test_bad_arguments_are_refused(serial):
    with pytest.raises(ValueError, match="exponent must be >= 0"):
        serial.powmod(ints_to_limbs([3], 1), -1, 7)
    with pytest.raises(ValueError, match="uint32 limb array"):
        serial.powmod(np.array([[3]], dtype=np.int64), 1, 7)
    with pytest.raises(ValueError, match="same number of rows"):
        serial.mulmod(ints_to_limbs([3, 4], 1), ints_to_limbs([3], 1), 7)


@pytest.mark.parametrize(
    ("threads", "error"), [(0, ValueError), (10**6, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_bad_thread_counts_are_refused(threads, error):
    with pytest.raises(error, match="threads must be"):
        get_backend("numba", threads=threads)


def test_options_describe_and_rebuild_the_backend():
    backend = get_backend("numba", threads=1, obfuscation="djn", window_bits=5, kernel="narrow")
    assert backend.options() == {"obfuscation": "djn", "window_bits": 5, "threads": 1, "kernel": "narrow"}
    assert "threads" in type(backend).option_names()
    assert get_backend("numba", **backend.options()).options() == backend.options()
    expected = "numba (djn obfuscation, 5-bit windows), threads=1, narrow kernels (chosen by the kernel option)"
    assert backend.describe() == expected


def test_empty_batches(serial):
    assert serial.powmod(np.zeros((0, 4), np.uint32), 5, 7).shape == (0, 1)
    assert serial.mulmod(np.zeros((0, 1), np.uint32), np.zeros((0, 1), np.uint32), 7).shape == (0, 1)


def test_importing_the_backend_module_does_not_import_numba():
    code = "import sys, dphe_bench.backends.numba_backend; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
