"""Probable-prime generation for Paillier keys (pure Python, OS CSPRNG)."""

import secrets

_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]
_MILLER_RABIN_ROUNDS = 40


def small_factor(candidate: int) -> int | None:
    """The smallest prime below 2000 that divides ``candidate`` (other than itself), or None."""
    return next((p for p in (2, *_SMALL_PRIMES) if candidate % p == 0 and candidate != p), None)


def is_probable_prime(candidate: int, rounds: int = _MILLER_RABIN_ROUNDS) -> bool:
    """Miller-Rabin with random bases from ``secrets``; error probability below 4**-rounds."""
    if candidate < 2:
        return False
    if candidate in (2, 3):
        return True
    if candidate % 2 == 0:
        return False
    for p in _SMALL_PRIMES:
        if candidate == p:
            return True
        if candidate % p == 0:
            return False
    d, s = candidate - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        a = secrets.randbelow(candidate - 3) + 2
        x = pow(a, d, candidate)
        if x in (1, candidate - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, candidate)
            if x == candidate - 1:
                break
        else:
            return False
    return True


def random_prime(bits: int) -> int:
    """A random probable prime of exactly ``bits`` bits with its two top bits set.

    Setting the two top bits makes the product of two such primes exactly ``2 * bits`` bits long.
    """
    if bits < 16:
        raise ValueError(f"prime size must be at least 16 bits, got {bits}")
    top_bits = 0b11 << (bits - 2)
    while True:
        candidate = secrets.randbits(bits) | top_bits | 1
        if is_probable_prime(candidate):
            return candidate
