"""Layer 3, the aggregation schemes: the parties of each scheme and the protocol they speak.

The parties of ``plain``, ``dense``, ``dphe``, ``packed`` and ``ckks`` (a module each, on ``base``), the wire format
between them (``messages``), and the one-process federation (``federation``: ``Federation``,
``simulate_round``). This module holds the explicit registry of name -> the scheme's three party classes.

Layer rule: crypto <- backends <- schemes <- learning <- bench, deploy <- cli. Modules here may import
crypto, backends, ``dphe_bench.errors`` and ``dphe_bench.files``; never learning, bench, deploy or the CLI.
"""

from collections.abc import Callable
from dataclasses import dataclass

from dphe_bench.errors import unknown_name
from dphe_bench.schemes import ckks, dense, dphe, packed, plain
from dphe_bench.schemes.base import Aggregator, KeyGenerator, SetupMessages, User


@dataclass(frozen=True)
class Scheme:
    """A scheme's parties, whether it encrypts, what it leaks, and the options its key generator takes.

    ``options`` name keyword arguments of ``key_generator`` (besides ``key_bits`` for encrypted schemes);
    the config's [crypto] section has an entry of the same name for each. ``paillier`` says whether the scheme's
    time and bytes depend on the Paillier backend and key size (False for ``plain`` and ``ckks``: a sweep runs
    them once per cell). ``unavailable_reason()`` is None when the scheme can run here, else why not.
    """

    name: str
    key_generator: type[KeyGenerator]
    user: type[User]
    aggregator: type[Aggregator]
    encrypted: bool
    leakage: str
    options: tuple[str, ...] = ()
    paillier: bool = True
    unavailable_reason: Callable[[], str | None] = lambda: None  # runs wherever the package imports


SCHEMES: dict[str, Scheme] = {
    "plain": Scheme(
        "plain", plain.PlainKeyGenerator, plain.PlainUser, plain.PlainAggregator, False, plain.LEAKAGE, paillier=False
    ),
    "dense": Scheme(
        "dense",
        dense.DenseKeyGenerator,
        dense.DenseUser,
        dense.DenseAggregator,
        True,
        dense.LEAKAGE,
        ("precision_bits",),
    ),
    "dphe": Scheme(
        "dphe", dphe.DpheKeyGenerator, dphe.DpheUser, dphe.DpheAggregator, True, dphe.LEAKAGE, ("precision_bits",)
    ),
    "packed": Scheme(
        "packed",
        packed.PackedKeyGenerator,
        packed.PackedUser,
        packed.PackedAggregator,
        True,
        packed.LEAKAGE,
        ("quantization_bits", "quantization_range"),
    ),
    "ckks": Scheme(
        "ckks",
        ckks.CkksKeyGenerator,
        ckks.CkksUser,
        ckks.CkksAggregator,
        True,
        ckks.LEAKAGE,
        paillier=False,
        unavailable_reason=ckks.unavailable_reason,
    ),
}


def get_scheme(name: str) -> Scheme:
    """The registered scheme ``name``; raises ValueError listing the valid names."""
    if name not in SCHEMES:
        raise ValueError(unknown_name("scheme", name, SCHEMES))
    return SCHEMES[name]


__all__ = ["SCHEMES", "Aggregator", "KeyGenerator", "Scheme", "SetupMessages", "User", "get_scheme"]
