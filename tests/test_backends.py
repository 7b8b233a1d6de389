"""Every backend against the same reference (Python ints) and against python-paillier."""

import secrets
import subprocess
import sys

import phe
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dphe_bench import CiphertextBatch, available_backends, get_backend
from dphe_bench.backends import BACKENDS, Backend, resolve_backend_name
from dphe_bench.crypto.limbs import ints_to_limbs, limb_width, limbs_to_ints
from dphe_bench.errors import BackendUnavailableError, CiphertextError, KeyMismatchError, PlaintextRangeError

CRYPTO_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def edge_values(modulus: int) -> list[int]:
    return [0, 1, 2, modulus - 1, modulus - 2, modulus // 2, 2**32 - 1, 2**32]


def test_registry_lists_python_and_gmpy2():
    assert {"python", "gmpy2"} <= set(BACKENDS)
    statuses = available_backends()
    assert set(statuses) == set(BACKENDS)
    assert statuses["python"].available and statuses["python"].reason is None
    for status in statuses.values():
        assert status.available == (status.reason is None)


def test_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match=f"valid backends: {', '.join(BACKENDS)}$"):
        get_backend("nope")


def test_unknown_backend_option_is_refused(backend_name):
    with pytest.raises(TypeError, match="takes no option"):
        get_backend(backend_name, frobnicate=True)


def test_unavailable_backend_says_why_and_does_not_fall_back(monkeypatch):
    monkeypatch.setattr(BACKENDS["gmpy2"], "unavailable_reason", classmethod(lambda cls: "gmpy2 is missing"))
    with pytest.raises(BackendUnavailableError, match="gmpy2 is missing"):
        get_backend("gmpy2")
    assert available_backends()["gmpy2"].available is False


def test_backend_precedence_explicit_then_config_then_env_then_default(monkeypatch):
    monkeypatch.delenv("DPHE_BACKEND", raising=False)
    assert resolve_backend_name() == "gmpy2"
    monkeypatch.setenv("DPHE_BACKEND", "python")
    assert resolve_backend_name() == "python"
    assert resolve_backend_name(configured="gmpy2") == "gmpy2"
    assert resolve_backend_name(explicit="python", configured="gmpy2") == "python"


def test_importing_the_package_imports_no_optional_accelerator_library():
    code = "import sys, dphe_bench; print(sorted({'numba', 'cupy', 'dask', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@CRYPTO_SETTINGS
@given(data=st.data())
def test_powmod_matches_python_pow(backend_name, small_keypair, data):
    public_key, _ = small_keypair
    backend = get_backend(backend_name)
    modulus = public_key.nsquare
    base_strategy = st.one_of(st.integers(0, modulus - 1), st.sampled_from(edge_values(modulus)))
    bases = data.draw(st.lists(base_strategy, min_size=0, max_size=6))
    exponent = data.draw(st.one_of(st.integers(0, public_key.n), st.sampled_from([0, 1, 2, public_key.n])))
    result = backend.powmod(ints_to_limbs(bases, limb_width(modulus)), exponent, modulus)
    assert result.shape == (len(bases), limb_width(modulus))
    assert limbs_to_ints(result) == [pow(b, exponent, modulus) for b in bases]


@CRYPTO_SETTINGS
@given(data=st.data())
def test_mulmod_matches_python_ints(backend_name, small_keypair, data):
    public_key, _ = small_keypair
    backend = get_backend(backend_name)
    modulus = public_key.nsquare
    value = st.one_of(st.integers(0, modulus - 1), st.sampled_from(edge_values(modulus)))
    pairs = data.draw(st.lists(st.tuples(value, value), max_size=6))
    width = limb_width(modulus)
    a = ints_to_limbs([x for x, _ in pairs], width)
    b = ints_to_limbs([y for _, y in pairs], width)
    assert limbs_to_ints(backend.mulmod(a, b, modulus)) == [x * y % modulus for x, y in pairs]


def test_powmod_reduces_bases_wider_than_the_modulus(backend_name, keypair_1024):
    public_key, private_key = keypair_1024
    backend = get_backend(backend_name)
    bases = [public_key.nsquare - 1, private_key.psquare + 5, 3]
    result = backend.powmod(
        ints_to_limbs(bases, limb_width(public_key.nsquare)), private_key.p - 1, private_key.psquare
    )
    assert limbs_to_ints(result) == [pow(b, private_key.p - 1, private_key.psquare) for b in bases]


@CRYPTO_SETTINGS
@given(data=st.data())
def test_encrypt_decrypt_round_trip_on_random_and_edge_plaintexts(backend_name, small_keypair, data):
    public_key, private_key = small_keypair
    backend = get_backend(backend_name)
    plaintext = st.one_of(st.integers(0, public_key.n - 1), st.sampled_from(edge_values(public_key.n)))
    values = data.draw(st.lists(plaintext, max_size=8))
    batch = backend.encrypt(public_key, values)
    assert len(batch) == len(values)
    assert backend.decrypt(private_key, batch) == values


def test_ciphertexts_are_textbook_paillier(backend_name, keypair_1024):
    """c^lambda mod n^2 = 1 + m*lambda*n: checks the ciphertext shape without knowing r."""
    public_key, private_key = keypair_1024
    backend = get_backend(backend_name)
    n, nsquare = public_key.n, public_key.nsquare
    lam = (private_key.p - 1) * (private_key.q - 1)
    values = [0, 1, n - 1, secrets.randbelow(n)]
    for m, c in zip(values, backend.encrypt(public_key, values).to_ints(), strict=True):
        assert 1 <= c < nsquare
        assert pow(c, lam, nsquare) == (1 + m * lam * n) % nsquare


def test_encryption_is_randomised(backend_name, keypair_1024):
    public_key, _ = keypair_1024
    backend = get_backend(backend_name)
    first, second = backend.encrypt(public_key, [7, 7]).to_ints()
    assert first != second


def test_aggregate_decrypts_to_the_sum_mod_n(backend_name, keypair_1024):
    public_key, private_key = keypair_1024
    backend = get_backend(backend_name)
    n = public_key.n
    rows = [[secrets.randbelow(n) for _ in range(5)] for _ in range(4)]
    rows.append([0, 1, n - 1, n - 1, 0])
    batches = [backend.encrypt(public_key, row) for row in rows]
    total = backend.aggregate(public_key, batches)
    assert backend.decrypt(private_key, total) == [sum(col) % n for col in zip(*rows, strict=True)]


def test_phe_decrypts_our_ciphertexts(backend_name, keypair_1024):
    public_key, private_key = keypair_1024
    phe_public = phe.PaillierPublicKey(public_key.n)
    phe_private = phe.PaillierPrivateKey(phe_public, private_key.p, private_key.q)
    values = [0, 1, 123456789, public_key.n - 1]
    ours = get_backend(backend_name).encrypt(public_key, values)
    assert [phe_private.raw_decrypt(c) for c in ours.to_ints()] == values


def test_we_decrypt_phe_ciphertexts(backend_name, keypair_1024):
    public_key, private_key = keypair_1024
    phe_public = phe.PaillierPublicKey(public_key.n)
    values = [0, 1, 987654321, public_key.n - 1]
    theirs = CiphertextBatch.from_ints(public_key, [phe_public.raw_encrypt(v) for v in values])
    assert get_backend(backend_name).decrypt(private_key, theirs) == values


def test_phe_and_our_ciphertexts_add_together(keypair_1024):
    public_key, private_key = keypair_1024
    phe_public = phe.PaillierPublicKey(public_key.n)
    backend = get_backend("python")
    ours = backend.encrypt(public_key, [40, 2])
    theirs = CiphertextBatch.from_ints(public_key, [phe_public.raw_encrypt(2), phe_public.raw_encrypt(40)])
    assert backend.decrypt(private_key, backend.aggregate(public_key, [ours, theirs])) == [42, 42]


def test_plaintexts_outside_0_n_are_refused(backend_name, small_keypair):
    public_key, _ = small_keypair
    backend = get_backend(backend_name)
    for bad in (-1, public_key.n, public_key.n + 5):
        with pytest.raises(PlaintextRangeError, match="plaintext 1"):
            backend.encrypt(public_key, [0, bad])


def test_decrypting_with_the_wrong_key_is_refused(backend_name, small_keypair, keypair_1024):
    backend = get_backend(backend_name)
    batch = backend.encrypt(small_keypair[0], [1, 2])
    with pytest.raises(KeyMismatchError):
        backend.decrypt(keypair_1024[1], batch)


def test_aggregating_across_keys_or_lengths_is_refused(backend_name, small_keypair, keypair_1024):
    backend = get_backend(backend_name)
    small = backend.encrypt(small_keypair[0], [1, 2])
    with pytest.raises(KeyMismatchError):
        backend.aggregate(keypair_1024[0], [small])
    with pytest.raises(CiphertextError, match="different lengths"):
        backend.aggregate(small_keypair[0], [small, backend.encrypt(small_keypair[0], [1])])
    with pytest.raises(CiphertextError, match="at least one"):
        backend.aggregate(small_keypair[0], [])


def test_empty_batches_work(backend_name, small_keypair):
    public_key, private_key = small_keypair
    backend = get_backend(backend_name)
    empty = backend.encrypt(public_key, [])
    assert len(empty) == 0
    assert backend.decrypt(private_key, empty) == []
    assert len(backend.aggregate(public_key, [empty, empty])) == 0


def test_backend_is_abstract():
    with pytest.raises(TypeError):
        Backend()


def test_backends_agree_with_each_other(keypair_1024):
    public_key, private_key = keypair_1024
    names = [name for name, status in available_backends().items() if status.available]
    values = [secrets.randbelow(public_key.n) for _ in range(6)]
    batches = {name: get_backend(name).encrypt(public_key, values) for name in names}
    for name in names:
        for other in names:
            assert get_backend(name).decrypt(private_key, batches[other]) == values
