"""Shared fixtures: keys are generated once per session (key generation is the slow part)."""

import warnings

import pytest

from dphe_bench import generate_keypair
from dphe_bench.backends import BACKENDS, available_backends
from dphe_bench.crypto.paillier import PrivateKey
from dphe_bench.crypto.primes import random_prime

AVAILABLE_BACKENDS = [name for name, status in available_backends().items() if status.available]


def pytest_report_header(config):
    return f"dphe-bench backends available here: {AVAILABLE_BACKENDS} (registered: {list(BACKENDS)})"


@pytest.fixture(scope="session")
def keypair_1024():
    """A real 1024-bit key pair (the smallest size generate_keypair allows)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return generate_keypair(1024)


@pytest.fixture(scope="session")
def small_keypair():
    """A 256-bit key pair from random 128-bit primes: fast enough for property tests on arithmetic (built
    through the test-only path: ``PublicKey(n)`` refuses keys below 1024 bits)."""
    while True:
        p, q = random_prime(128), random_prime(128)
        if p != q:
            private_key = PrivateKey.insecure_for_tests(p, q)
            return private_key.public_key, private_key


@pytest.fixture(params=AVAILABLE_BACKENDS)
def backend_name(request):
    """Every backend that can run on this machine."""
    return request.param


def pytest_collection_modifyitems(config, items):
    """Skip the cases of a registered scheme that cannot run here (``ckks`` without TenSEAL), saying how to install."""
    from dphe_bench.schemes import SCHEMES

    for item in items:
        for value in getattr(getattr(item, "callspec", None), "params", {}).values():
            if isinstance(value, str) and value in SCHEMES and (reason := SCHEMES[value].unavailable_reason()):
                item.add_marker(pytest.mark.skip(reason=f"scheme {value!r} cannot run here: {reason}"))
