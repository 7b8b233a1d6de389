"""Obfuscator randomness, drawn only from the OS CSPRNG.

Nothing here accepts a seed: a run's seed fixes the data split and the training, never keys,
obfuscators or permutations (DESIGN.md section 3, step 1). Primes: ``dphe_bench.crypto.primes``;
permutations: ``dphe_bench.crypto.permutations``.
"""

import math
import secrets


def random_units(n: int, count: int) -> list[int]:
    """Draw ``count`` integers uniformly from Z*_n (in [1, n) and coprime with n).

    Returns a list of Python ints. Uses ``secrets.randbelow`` (os.urandom underneath).
    """
    units = []
    while len(units) < count:
        r = secrets.randbelow(n - 1) + 1
        if math.gcd(r, n) == 1:
            units.append(r)
    return units
