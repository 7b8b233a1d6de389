import json
import math
import stat
import warnings

import pytest

from dphe_bench import PrivateKey, PublicKey, generate_keypair
from dphe_bench.crypto.paillier import read_private_key, write_private_key
from dphe_bench.crypto.primes import is_probable_prime, random_prime
from dphe_bench.errors import KeyFormatError, KeyMismatchError


def test_generated_1024_bit_key_has_the_right_shape(keypair_1024):
    public_key, private_key = keypair_1024
    assert public_key.n.bit_length() == 1024
    assert public_key.nsquare == public_key.n**2
    assert private_key.p * private_key.q == public_key.n
    assert private_key.p != private_key.q
    assert private_key.public_key == public_key
    assert math.gcd(public_key.n, (private_key.p - 1) * (private_key.q - 1)) == 1


def test_1024_bit_keys_warn():
    with pytest.warns(UserWarning, match="benchmarks only"):
        generate_keypair(1024)


def test_2048_bit_key_is_the_default_and_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        public_key, private_key = generate_keypair()
    assert public_key.bits == 2048
    assert private_key.p.bit_length() == private_key.q.bit_length() == 1024


@pytest.mark.parametrize("bits", [512, 1000, 2047, 8192, "2048"])
def test_unsupported_key_sizes_are_refused(bits):
    with pytest.raises(ValueError, match="key size must be one of"):
        generate_keypair(bits)


def test_two_key_pairs_differ(keypair_1024):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other, _ = generate_keypair(1024)
    assert other != keypair_1024[0]


def test_primality_test_agrees_with_trial_division():
    for candidate in range(2000):
        expected = candidate > 1 and all(candidate % d for d in range(2, math.isqrt(candidate) + 1))
        assert is_probable_prime(candidate) == expected
    carmichael = 561
    assert not is_probable_prime(carmichael)
    assert not is_probable_prime(2**127 - 3)
    assert is_probable_prime(2**127 - 1)


def test_random_prime_has_its_two_top_bits_set():
    p = random_prime(64)
    assert p.bit_length() == 64 and p >> 62 == 0b11
    assert is_probable_prime(p)


def test_private_key_rejects_bad_primes(small_keypair):
    _, private_key = small_keypair
    p, q = private_key.p, private_key.q
    with pytest.raises(ValueError, match="distinct"):
        PrivateKey(PublicKey.insecure_for_tests(p * p), p, p)
    with pytest.raises(ValueError, match="prime"):
        PrivateKey.insecure_for_tests(p, 15)
    with pytest.raises(KeyMismatchError):
        PrivateKey(PublicKey.insecure_for_tests(p * q + 2), p, q)


def test_public_key_rejects_bad_moduli():
    with pytest.raises(ValueError, match="odd"):
        PublicKey(2**1100)
    with pytest.raises(TypeError):
        PublicKey(3.0)
    with pytest.raises(TypeError):
        PublicKey(True)


@pytest.mark.parametrize("loader", ["constructor", "json"])
def test_keys_loaded_meet_the_rules_of_generated_keys(small_keypair, loader):
    """A loaded n that no key generation could give is refused with a KeyFormatError naming the problem."""

    def make(n):
        if loader == "constructor":
            return PublicKey(n)
        return PublicKey.from_json(PublicKey.insecure_for_tests(n).to_json())

    sizes = "a Paillier key has 1024, 2048, 3072, 4096 bits"
    p = random_prime(1024)
    cases = [
        (small_keypair[0].n, f"n has 256 bits; {sizes}"),
        (2**127 - 1, "n has 127 bits"),
        (2**4096 + 1, "n has 4097 bits"),
        (3 * random_prime(1023), "n has 1025 bits"),
        (p * p, "n is a perfect square"),
        (3 * (2**2046 + 1), "small factor 3"),
        (random_prime(1024), "n is prime"),
    ]
    for n, message in cases:
        with pytest.raises(KeyFormatError, match=message):
            make(n)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "not valid JSON|longer than any key"),
        ('{"format": "dphe-paillier-public", "version": 1, "n": "0x' + "f" * 5000 + '"}', "longer than any key"),
        ('{"format": "dphe-paillier-public", "version": ' + "9" * 3000 + ', "n": "0x3"}', "version"),
        ('{"format": "dphe-paillier-public", "version": true, "n": "0x3"}', "version True"),
        ('{"format": "dphe-paillier-public", "version": 1, "n": "0x3", "p": "0x1"}', "unknown field"),
    ],
)
def test_hostile_key_json_is_a_key_format_error(text, message):
    with pytest.raises(KeyFormatError, match=message):
        PublicKey.from_json(text)


def test_loaded_keys_of_every_generated_size_are_accepted(keypair_1024):
    public_key, private_key = keypair_1024
    assert PublicKey(public_key.n) == public_key
    assert PrivateKey.from_primes(private_key.p, private_key.q) == private_key


def test_the_test_only_path_builds_tiny_keys_that_work(small_keypair):
    public_key, private_key = small_keypair
    assert public_key.bits == 256
    rebuilt = PrivateKey.insecure_for_tests(private_key.p, private_key.q)
    assert rebuilt == private_key and rebuilt.public_key == public_key
    with pytest.raises(KeyFormatError, match="n has 256 bits"):
        PrivateKey.from_primes(private_key.p, private_key.q)


def test_repr_never_shows_the_primes(keypair_1024):
    public_key, private_key = keypair_1024
    text = repr(private_key) + str(private_key) + repr(public_key)
    for secret in (private_key.p, private_key.q):
        assert str(secret) not in text and hex(secret)[2:] not in text


def test_keys_round_trip_through_json(keypair_1024):
    public_key, private_key = keypair_1024
    assert PublicKey.from_json(public_key.to_json()) == public_key
    restored = PrivateKey.from_json(private_key.to_json())
    assert restored == private_key
    assert (restored.hp, restored.hq, restored.p_inverse) == (private_key.hp, private_key.hq, private_key.p_inverse)
    assert "p" not in json.loads(public_key.to_json())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"format": "other", "version": 1, "n": "0x3"}', "not a"),
        ('{"format": "dphe-paillier-public", "version": 9, "n": "0x3"}', "version"),
        ('{"format": "dphe-paillier-public", "version": 1}', "missing"),
        ('{"format": "dphe-paillier-public", "version": 1, "n": 35}', "hex string"),
        ('{"format": "dphe-paillier-public", "version": 1, "n": "0xzz"}', "not valid hex"),
    ],
)
def test_malformed_public_key_json_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        PublicKey.from_json(text)


def test_private_key_file_is_written_with_mode_0600(tmp_path, keypair_1024):
    _, private_key = keypair_1024
    path = tmp_path / "key.json"
    write_private_key(private_key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_private_key(path) == private_key
    assert list(tmp_path.iterdir()) == [path]
