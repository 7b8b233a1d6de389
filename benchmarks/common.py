"""Helpers shared by the asv benchmarks: parameter lists from the registries, backends, keys, weights.

Parameters list every *registered* scheme and backend (asv needs them at import); a backend that cannot
run here is skipped in ``setup`` with ``SkipNotImplemented``, never failed. New schemes and backends join
the suite through their registries, without a change here.
"""

import warnings

from asv_runner.benchmarks.mark import SkipNotImplemented

from dphe_bench import generate_keypair
from dphe_bench.backends import BACKENDS, DEFAULT_BACKEND, Backend, available_backends, get_backend
from dphe_bench.bench.baseline import BASELINE_NAME, PythonPaillierBaseline
from dphe_bench.schemes import SCHEMES

KEY_BITS = [1024, 2048, 3072]
SPARSITIES = [0.5, 0.9, 0.99]

# Options per scheme for every benchmark that builds the scheme's parties, e.g. {"packed": {"quantization_bits": 16}}.
# Empty: each scheme's defaults.
SCHEME_OPTIONS: dict[str, dict[str, object]] = {}


def scheme_names() -> list[str]:
    """Every registered scheme."""
    return list(SCHEMES)


def runnable_scheme_names() -> list[str]:
    """The registered schemes that can run here (``ckks`` needs TenSEAL): those a ``setup_cache`` can build."""
    return [name for name, scheme in SCHEMES.items() if scheme.unavailable_reason() is None]


def skip_unless_runnable(scheme: str) -> None:
    """Raise SkipNotImplemented, saying how to install what is missing, when ``scheme`` cannot run here."""
    if reason := SCHEMES[scheme].unavailable_reason():
        raise SkipNotImplemented(reason)


def backend_names(with_baseline: bool = True) -> list[str]:
    """Every registered backend, then the python-paillier baseline."""
    return [*BACKENDS, *([BASELINE_NAME] if with_baseline else [])]


def make_backend(name: str) -> Backend:
    """The backend ``name`` (or the baseline); raises SkipNotImplemented when it cannot run here."""
    if name == BASELINE_NAME:
        reason = PythonPaillierBaseline.unavailable_reason()
        if reason:
            raise SkipNotImplemented(reason)
        return PythonPaillierBaseline()
    status = available_backends()[name]
    if not status.available:
        raise SkipNotImplemented(f"backend {name} is not available here: {status.reason}")
    return get_backend(name)


def fast_backend() -> Backend:
    """The default backend if it runs here, else the first one that does: for untimed preparation."""
    statuses = available_backends()
    name = (
        DEFAULT_BACKEND if statuses[DEFAULT_BACKEND].available else next(n for n, s in statuses.items() if s.available)
    )
    return get_backend(name)


def keypair(bits: int):
    """A key pair, without the warning that 1024-bit keys are for benchmarks only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return generate_keypair(bits)


def make_key_generator(scheme: str, dimension: int, users: int, key_bits: int, backend: Backend):
    """The key generator party of ``scheme`` for ``users`` users, as ``Federation`` builds it."""
    spec = SCHEMES[scheme]
    options = dict(SCHEME_OPTIONS.get(scheme, {}))
    if spec.encrypted:
        options["key_bits"] = key_bits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spec.key_generator(dimension, list(range(users)), backend, **options)
