"""Obfuscation modes standard / djn / pool on every backend, and the fixed-base tables behind djn."""

import secrets

import phe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dphe_bench import get_backend
from dphe_bench.backends.base import OBFUSCATIONS, djn_exponent_bits
from dphe_bench.backends.fixed_base import window_count, window_digits
from dphe_bench.crypto.limbs import ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.errors import ObfuscatorPoolError

MODES = list(OBFUSCATIONS)


def make_backend(name: str, mode: str, public_key, count: int = 8, window_bits: int = 4):
    backend = get_backend(name, obfuscation=mode, window_bits=window_bits)
    if mode == "pool":
        backend.precompute(public_key, count)
    return backend


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_round_trips_and_python_paillier_decrypts_it(backend_name, keypair_1024, mode):
    public_key, private_key = keypair_1024
    backend = make_backend(backend_name, mode, public_key)
    values = [0, 1, public_key.n - 1, *(secrets.randbelow(public_key.n) for _ in range(5))]
    batch = backend.encrypt(public_key, values)
    assert backend.decrypt(private_key, batch) == values
    theirs = phe.PaillierPrivateKey(phe.PaillierPublicKey(public_key.n), private_key.p, private_key.q)
    assert [theirs.raw_decrypt(c) for c in batch.to_ints()] == values


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_makes_textbook_ciphertexts_and_randomises(backend_name, keypair_1024, mode):
    public_key, private_key = keypair_1024
    n, nsquare = public_key.n, public_key.nsquare
    lam = (private_key.p - 1) * (private_key.q - 1)
    ciphertexts = make_backend(backend_name, mode, public_key).encrypt(public_key, [42] * 4).to_ints()
    assert len(set(ciphertexts)) == 4
    for c in ciphertexts:
        assert pow(c, lam, nsquare) == (1 + 42 * lam * n) % nsquare


def test_djn_obfuscators_are_powers_of_one_n_th_residue(keypair_1024):
    public_key, private_key = keypair_1024
    backend = get_backend("gmpy2", obfuscation="djn", window_bits=6)
    obfuscators = limbs_to_ints(backend.obfuscators(public_key, 5))
    lam = (private_key.p - 1) * (private_key.q - 1)
    assert all(pow(r, lam, public_key.nsquare) == 1 for r in obfuscators)
    table = backend.djn_table(public_key)
    assert table.exponent_bits >= djn_exponent_bits(public_key) == 512
    assert backend.table_nbytes() == table.nbytes == table.windows * 64 * limb_width(public_key.nsquare) * 4


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.data())
def test_window_digits_rebuild_the_exponent(window_bits, data):
    windows = window_count(100, window_bits)
    exponents = data.draw(st.lists(st.integers(0, 2 ** (windows * window_bits) - 1), max_size=6))
    digits = window_digits(exponents, window_bits, windows)
    assert digits.shape == (len(exponents), windows)
    rebuilt = [sum(int(d) << (window_bits * i) for i, d in enumerate(row)) for row in digits]
    assert rebuilt == exponents


def test_window_digits_refuse_exponents_the_table_cannot_cover():
    with pytest.raises(ValueError, match="exponents must be in"):
        window_digits([2**16], 4, 4)
    with pytest.raises(ValueError, match="exponents must be in"):
        window_digits([-1], 4, 4)


@pytest.mark.parametrize("window_bits", [1, 3, 8])
def test_fixed_base_powmod_matches_pow_on_random_and_edge_exponents(backend_name, small_keypair, window_bits):
    public_key, _ = small_keypair
    backend = get_backend(backend_name)
    modulus = public_key.nsquare
    base = secrets.randbelow(modulus)
    table = backend.build_fixed_base_table(base, modulus, 130, window_bits)
    assert table.entries.shape == (window_count(130, window_bits), 2**window_bits, limb_width(modulus))
    top = 2**table.exponent_bits - 1
    exponents = [0, 1, 2, top, 2**129, *(secrets.randbits(130) for _ in range(6))]
    result = limbs_to_ints(backend.fixed_base_powmod(table, exponents))
    assert result == [pow(base, e, modulus) for e in exponents]


def test_gmpy2_table_walk_agrees_with_the_generic_walk(small_keypair):
    public_key, _ = small_keypair
    gmpy2_backend, python_backend = get_backend("gmpy2"), get_backend("python")
    base, modulus = 3, public_key.nsquare
    exponents = [secrets.randbits(128) for _ in range(8)]
    fast = gmpy2_backend.fixed_base_powmod(gmpy2_backend.build_fixed_base_table(base, modulus, 128, 5), exponents)
    generic = python_backend.fixed_base_powmod(python_backend.build_fixed_base_table(base, modulus, 128, 5), exponents)
    assert limbs_to_ints(fast) == limbs_to_ints(generic) == [pow(base, e, modulus) for e in exponents]


def test_djn_table_is_built_once_per_key(small_keypair, keypair_1024):
    backend = get_backend("gmpy2", obfuscation="djn", window_bits=4)
    first = backend.djn_table(small_keypair[0])
    backend.encrypt(small_keypair[0], [1, 2])
    assert backend.djn_table(small_keypair[0]) is first
    backend.djn_table(keypair_1024[0])
    assert backend.table_nbytes() == first.nbytes + backend.djn_table(keypair_1024[0]).nbytes


def test_pool_obfuscators_are_used_exactly_once(backend_name, small_keypair):
    public_key, private_key = small_keypair
    backend = make_backend(backend_name, "pool", public_key, count=6)
    pooled = limbs_to_ints(backend._pools[public_key.n])
    assert backend.pool_size(public_key) == 6
    batch = backend.encrypt(public_key, [0, 0, 0, 0])
    assert backend.pool_size(public_key) == 2
    # An encryption of 0 is its obfuscator: the first four pooled values, in order, once each.
    assert batch.to_ints() == pooled[:4]
    assert backend.encrypt(public_key, [0, 0]).to_ints() == pooled[4:]
    with pytest.raises(ObfuscatorPoolError, match=r"holds 0, encrypting needs 1: call precompute"):
        backend.encrypt(public_key, [5])
    assert backend.decrypt(private_key, batch) == [0, 0, 0, 0]


def test_pool_exhaustion_leaves_the_pool_untouched(small_keypair):
    public_key, _ = small_keypair
    backend = make_backend("python", "pool", public_key, count=3)
    with pytest.raises(ObfuscatorPoolError, match="holds 3, encrypting needs 4"):
        backend.encrypt(public_key, [1, 2, 3, 4])
    assert backend.pool_size(public_key) == 3


def test_precompute_is_only_for_pool_mode(small_keypair):
    with pytest.raises(ValueError, match="precompute is for pool"):
        get_backend("python").precompute(small_keypair[0], 3)
    with pytest.raises(ValueError, match=">= 0"):
        get_backend("python", obfuscation="pool").precompute(small_keypair[0], -1)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"obfuscation": "fast"}, ValueError, "valid obfuscations: standard, djn, pool"),
        ({"window_bits": 0}, ValueError, r"window_bits must be in \[1, 12\]"),
        ({"window_bits": 13}, ValueError, r"window_bits must be in \[1, 12\]"),
        ({"window_bits": 8.0}, TypeError, "window_bits must be an int"),
    ],
)
def test_bad_obfuscation_options_are_refused(backend_name, options, error, match):
    with pytest.raises(error, match=match):
        get_backend(backend_name, **options)


def test_backend_describes_its_mode_and_assumption():
    assert get_backend("gmpy2", obfuscation="djn", window_bits=6).describe() == "gmpy2 (djn obfuscation, 6-bit windows)"
    assert get_backend("python").options() == {"obfuscation": "standard", "window_bits": 8}
    assert "short-exponent" in OBFUSCATIONS["djn"] and "DCR" in OBFUSCATIONS["standard"]


def test_fixed_base_table_entries_are_the_documented_powers(small_keypair):
    public_key, _ = small_keypair
    modulus = public_key.nsquare
    table = get_backend("python").build_fixed_base_table(7, modulus, 9, 3)
    expected = [[pow(7, j * 2 ** (3 * i), modulus) for j in range(8)] for i in range(3)]
    assert [limbs_to_ints(row) for row in table.entries] == expected
    assert ints_to_limbs([1], limb_width(modulus)).tolist()[0] == table.entries[0, 0].tolist()
