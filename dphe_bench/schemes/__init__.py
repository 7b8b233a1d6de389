"""Aggregation schemes: an explicit registry of name -> the scheme's three party classes."""

from dataclasses import dataclass

from dphe_bench.schemes import dense, dphe, plain
from dphe_bench.schemes.base import Aggregator, KeyGenerator, SetupMessages, User


@dataclass(frozen=True)
class Scheme:
    """A scheme's parties, whether it encrypts, and what it leaks to the aggregator."""

    name: str
    key_generator: type[KeyGenerator]
    user: type[User]
    aggregator: type[Aggregator]
    encrypted: bool
    leakage: str


SCHEMES: dict[str, Scheme] = {
    "plain": Scheme(
        "plain", plain.PlainKeyGenerator, plain.PlainUser, plain.PlainAggregator, encrypted=False, leakage=plain.LEAKAGE
    ),
    "dense": Scheme(
        "dense", dense.DenseKeyGenerator, dense.DenseUser, dense.DenseAggregator, encrypted=True, leakage=dense.LEAKAGE
    ),
    "dphe": Scheme(
        "dphe", dphe.DpheKeyGenerator, dphe.DpheUser, dphe.DpheAggregator, encrypted=True, leakage=dphe.LEAKAGE
    ),
}


def get_scheme(name: str) -> Scheme:
    """The registered scheme ``name``; raises ValueError listing the valid names."""
    if name not in SCHEMES:
        raise ValueError(f"unknown scheme {name!r}; valid schemes: {', '.join(SCHEMES)}")
    return SCHEMES[name]


__all__ = ["SCHEMES", "Aggregator", "KeyGenerator", "Scheme", "SetupMessages", "User", "get_scheme"]
