"""Layer 2, the crypto backends, imported as ``dphe_bench.backends`` (this folder, mapped by setuptools).

Batched big-integer operations (python, gmpy2, multiprocessing, numba, cupy, dask) that Paillier and the
schemes are written on. Layer rule: crypto <- backends <- schemes <- learning <- bench, deploy <- cli.
Modules here import only crypto, each other, ``dphe_bench.errors`` and ``dphe_bench.files``.

The registry is an explicit dict; nothing is discovered and nothing falls back. Choosing a backend:
an explicit name wins, then the config file, then the ``DPHE_BACKEND`` environment variable, then
the default ``gmpy2``. Importing this package imports no optional library.
"""

import os
from dataclasses import dataclass

from dphe_bench.backends.base import OBFUSCATIONS, Backend, IntegerBackend
from dphe_bench.backends.cupy_backend import CupyBackend
from dphe_bench.backends.dask_backend import DaskBackend
from dphe_bench.backends.gmpy2_backend import Gmpy2Backend
from dphe_bench.backends.multiprocessing_backend import MultiprocessingBackend
from dphe_bench.backends.numba_backend import NumbaBackend
from dphe_bench.backends.python_backend import PythonBackend
from dphe_bench.errors import BackendUnavailableError, unknown_name

BACKENDS: dict[str, type[Backend]] = {
    PythonBackend.name: PythonBackend,
    Gmpy2Backend.name: Gmpy2Backend,
    MultiprocessingBackend.name: MultiprocessingBackend,
    DaskBackend.name: DaskBackend,
    NumbaBackend.name: NumbaBackend,
    CupyBackend.name: CupyBackend,
}
DEFAULT_BACKEND = "gmpy2"
BACKEND_ENV_VAR = "DPHE_BACKEND"


@dataclass(frozen=True)
class BackendStatus:
    """Whether a registered backend can run here; ``reason`` says why not when it cannot."""

    name: str
    available: bool
    reason: str | None


def available_backends() -> dict[str, BackendStatus]:
    """Every registered backend with whether it can run on this machine and, if not, why."""
    statuses = {}
    for name, cls in BACKENDS.items():
        reason = cls.unavailable_reason()
        statuses[name] = BackendStatus(name=name, available=reason is None, reason=reason)
    return statuses


def resolve_backend_name(explicit: str | None = None, configured: str | None = None) -> str:
    """The backend name by precedence: explicit, then config, then $DPHE_BACKEND, then ``gmpy2``."""
    for candidate in (explicit, configured, os.environ.get(BACKEND_ENV_VAR)):
        if candidate:
            return candidate
    return DEFAULT_BACKEND


def get_backend(name: str, **options: object) -> Backend:
    """Instantiate backend ``name`` with its ``options``.

    Raises ValueError listing the valid names for an unknown name, and BackendUnavailableError
    (saying why) for a registered backend that cannot run here. Never substitutes another backend.
    """
    if name not in BACKENDS:
        raise ValueError(unknown_name("backend", name, BACKENDS))
    cls = BACKENDS[name]
    reason = cls.unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} is not available here: {reason}")
    return cls(**options)


__all__ = [
    "BACKENDS",
    "BACKEND_ENV_VAR",
    "DEFAULT_BACKEND",
    "OBFUSCATIONS",
    "Backend",
    "BackendStatus",
    "IntegerBackend",
    "available_backends",
    "get_backend",
    "resolve_backend_name",
]
