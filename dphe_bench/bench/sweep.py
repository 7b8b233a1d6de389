"""The crypto sweep: time, bytes and correctness of every scheme x backend x key size x sparsity x users.

Each cell draws synthetic weight vectors (one per user, D values, exact zeros at the requested sparsity),
runs one round of the scheme with ``simulate_round``, checks that the published mean equals numpy's mean
within the scheme's error bound, and only then appends the cell's row to a CSV file. Cells already in the
file are skipped, so an interrupted sweep resumes where it stopped.

Schemes and backends come from their registries (``SCHEMES``, ``available_backends()``), so new ones join
the default grid without a change here. A scheme or backend is given as ``NAME`` or
``NAME:key=value,key=value``: the options go to ``get_backend(NAME, **options)`` for a backend and to
``simulate_round(..., scheme=NAME, **options)`` for a scheme (``dphe:precision_bits=24``,
``packed:quantization_bits=16``). For every Paillier scheme the sweep also runs a
``python-paillier`` baseline cell (``dphe_bench.bench.baseline``): the same scheme on the same values with
python-paillier doing the crypto, the reference for speed-up ratios. With ``heu`` variants given
(``SweepGrid(heu=("ZPaillier",))``, ``dphe-bench sweep --heu ZPaillier``), ``dense`` and ``packed`` also get a
SecretFlow HEU cell (backend ``heu:variant=NAME``; ``dphe_bench.bench.heu.run_round``): the same plaintexts
encrypted, added and decrypted by HEU under its own key of the same size, checked against the same bound.

``ckks`` (TenSEAL) does not use the Paillier backend or key size, so its time and bytes do not depend on them: like
``plain``, it runs once per (users, sparsity) point, with backend ``none`` and key bits 0. The default grid holds
the schemes that can run here (``ckks`` needs the ``ckks`` extra); naming one that cannot is a SweepError saying
how to install it.

Obfuscation is an axis: a backend given without an ``obfuscation`` option runs once per mode of
``SweepGrid.obfuscations`` (``gmpy2:obfuscation=standard``, ``gmpy2:obfuscation=djn``, ...); one that names it runs
as given. Each row records every setting the cell ran with, resolved (``backend_config``, ``obfuscation``,
``window_bits``, ``parallelism``, ``kernel``, ``precision_bits``, ``quantization_bits``, ``quantization_range``), so
rows that differ in any setting never look alike. One-time costs stay out of the per-round times: cells run one
(key size, backend) group at a time, and before a group's first cell its backend (or the python-paillier baseline)
runs a small untimed-for-cells warm-up (``warm_up``: numba loads or compiles its kernels, worker pools and dask
clusters start), whose seconds fill the ``warm_up_s`` column of the group's rows (empty for ``none`` and ``heu``,
which use no backend of the sweep); with ``djn`` the fixed-base table of each cell's key is built at set-up and
timed as ``tables_s`` (``Federation``), not inside ``encrypt_s``.
"""

import csv
import io
import itertools
import math
import os
import platform
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import dphe_bench
from dphe_bench.backends import BACKENDS, OBFUSCATIONS, Backend, available_backends, get_backend
from dphe_bench.backends.chunked import ChunkedBackend
from dphe_bench.backends.cupy_backend import CupyBackend
from dphe_bench.backends.numba_backend import IFMA_PARALLEL_MIN_ROWS, PARALLEL_MIN_ROWS, NumbaBackend
from dphe_bench.bench import heu
from dphe_bench.bench.baseline import BASELINE_NAME, PythonPaillierBaseline
from dphe_bench.crypto.encoding import DEFAULT_PRECISION_BITS
from dphe_bench.crypto.limbs import ints_to_limbs, limb_width
from dphe_bench.crypto.packing import quantization_step
from dphe_bench.crypto.paillier import DEFAULT_KEY_BITS, KEY_SIZES, PrivateKey, PublicKey, generate_keypair
from dphe_bench.errors import DestinationError, DpheError, plain_list, unknown_name
from dphe_bench.files import prepare_file, write_text_atomically
from dphe_bench.learning.run_settings import backend_label
from dphe_bench.schemes import SCHEMES, ckks, get_scheme
from dphe_bench.schemes.base import DEFAULT_MIN_CONTRIBUTORS
from dphe_bench.schemes.federation import PHASES, RoundResult, simulate_round
from dphe_bench.schemes.messages import MAX_DIMENSION
from dphe_bench.schemes.packed import DEFAULT_QUANTIZATION_BITS, DEFAULT_QUANTIZATION_RANGE

DEFAULT_OUT = Path("reports/runs/sweep.csv")
NO_BACKEND = "none"
HEU_NAME = "heu"
WEIGHT_SCALE = 0.05
MIN_MAGNITUDE = 1e-6

# The obfuscation a backend named without one runs (Backend's default): an older file's ``gmpy2`` cell.
DEFAULT_OBFUSCATION = "standard"
# Resolved scheme settings recorded in every row (empty where the scheme takes no such option): option -> default.
SCHEME_SETTINGS: dict[str, object] = {
    "precision_bits": DEFAULT_PRECISION_BITS,
    "quantization_bits": DEFAULT_QUANTIZATION_BITS,
    "quantization_range": DEFAULT_QUANTIZATION_RANGE,
}
# The warm-up: two batches of this many values encrypted, added and decrypted (enough rows for numba's ifma
# family to run its parallel powmod and table walk: IFMA_PARALLEL_MIN_ROWS).
WARM_UP_VALUES = 16
# Then one powmod and one mulmod over this many rows, so that batch sizes the round does not reach also load their
# code (numba's parallel mulmod, multiprocessing and dask workers); a small exponent keeps it cheap everywhere.
WARM_UP_ROWS = max(PARALLEL_MIN_ROWS["mulmod"], IFMA_PARALLEL_MIN_ROWS["mulmod"])
WARM_UP_EXPONENT = 65537

CELL_COLUMNS = ("dimension", "users", "sparsity", "key_bits", "scheme", "backend", "seed")
SETTING_COLUMNS = (
    "backend_config",
    "obfuscation",
    "window_bits",
    "parallelism",
    "kernel",
    *SCHEME_SETTINGS,
)
SWEEP_COLUMNS = (
    *CELL_COLUMNS,
    "scheme_name",
    "backend_name",
    *SETTING_COLUMNS,
    "nonzeros_per_user",
    "union_sparsity",
    "warm_up_s",
    *(f"{phase}_s" for phase in PHASES),
    "encrypt_per_user_s",
    "ciphertexts",
    "ciphertexts_per_user",
    "bytes_key_generator",
    "bytes_users",
    "bytes_per_user",
    "bytes_aggregator",
    "max_abs_error",
    "error_bound",
    "time_utc",
    "host",
    "os",
    "cpu",
    "cpu_count",
    "load_average",
    "python",
    "dphe_bench",
)


# As the pipeline's federation.users: more users than this is a different experiment than a sweep cell.
MAX_SWEEP_USERS = 10_000


class SweepError(DpheError, ValueError):
    """A sweep that cannot start or a cell whose result is wrong."""


@dataclass(frozen=True)
class Component:
    """A scheme or backend with its options, written ``NAME`` or ``NAME:key=value,key=value``."""

    name: str
    options: tuple[tuple[str, object], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Component":
        """Parse ``NAME[:key=value,...]``; values become int, float or bool where they look like one."""
        name, _, rest = text.strip().partition(":")
        if not name:
            raise SweepError(f"empty name in {text!r}; expected NAME or NAME:key=value,...")
        options = {}
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SweepError(f"option {item!r} in {text!r} is not key=value")
            if key.strip() in options:
                raise SweepError(f"option {key.strip()!r} appears twice in {text!r}")
            options[key.strip()] = _parse_value(value.strip())
        return cls(name, tuple(sorted(options.items())))

    @property
    def label(self) -> str:
        """The canonical text form (options sorted by key), used in result files."""
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.options)


@dataclass(frozen=True)
class Cell:
    """One point of the grid; ``backend`` is ``none`` and ``key_bits`` 0 for a scheme without Paillier (plain, ckks)."""

    dimension: int
    users: int
    sparsity: float
    key_bits: int
    scheme: Component
    backend: Component
    seed: int

    def key(self) -> tuple:
        """What identifies the cell in a result file (the values of ``CELL_COLUMNS``)."""
        return _cell_key(
            self.dimension,
            self.users,
            self.sparsity,
            self.key_bits,
            self.scheme.label,
            self.backend.label,
            self.seed,
        )

    def __str__(self) -> str:
        bits = f" {self.key_bits}-bit" if self.key_bits else ""
        return f"{self.scheme.label}/{self.backend.label}{bits} s={self.sparsity:g} N={self.users} D={self.dimension}"


def _all_schemes() -> tuple[Component, ...]:
    return tuple(Component(name) for name, scheme in SCHEMES.items() if scheme.unavailable_reason() is None)


def _available_backends() -> tuple[Component, ...]:
    return tuple(Component(name) for name, status in available_backends().items() if status.available)


@dataclass(frozen=True)
class SweepGrid:
    """The axes of a sweep. Defaults: the paper's D = 200,000, every scheme, every backend that runs here.

    The default grid is long (see the README for its expected time); ``quick_grid()`` is a small one.
    """

    dimension: int = 200_000
    users: tuple[int, ...] = (1,)
    sparsities: tuple[float, ...] = (0.0, 0.5, 0.9, 0.956, 0.99)
    key_bits: tuple[int, ...] = (1024, 2048, 3072)
    schemes: tuple[Component, ...] = field(default_factory=_all_schemes)
    backends: tuple[Component, ...] = field(default_factory=_available_backends)
    baseline: bool = True
    seed: int = 0
    heu: tuple[str, ...] = ()
    obfuscations: tuple[str, ...] = tuple(OBFUSCATIONS)

    def expanded_backends(self) -> tuple[Component, ...]:
        """The backends with the obfuscation axis applied, in order, without repeats.

        A backend whose options name ``obfuscation`` is kept as given; any other becomes one component per mode of
        ``obfuscations`` (``gmpy2`` -> ``gmpy2:obfuscation=standard``, ``gmpy2:obfuscation=djn``, ...).
        """
        expanded: list[Component] = []
        for backend in self.backends:
            options = dict(backend.options)
            if "obfuscation" in options:
                expanded.append(backend)
            else:
                expanded += [_with_option(backend, "obfuscation", mode) for mode in self.obfuscations]
        return tuple(dict.fromkeys(expanded))

    def cells(self) -> list[Cell]:
        """Every cell, in the order a sweep runs them: cheapest key size first and, within a key size, backend by
        backend (the python-paillier baseline after ours, HEU variants last), so that one backend's workers run
        at a time. ``plain`` and ``ckks`` cells (backend ``none``) come first, once."""
        self.validate()
        points = list(itertools.product(self.users, self.sparsities))
        paillier = [scheme for scheme in self.schemes if get_scheme(scheme.name).paillier]
        groups = [(backend, paillier) for backend in self.expanded_backends()]
        if self.baseline:
            groups.append((Component(BASELINE_NAME), paillier))
        on_heu = [scheme for scheme in paillier if scheme.name in heu.ROUND_SCHEMES]
        groups += [(_heu_component(variant), on_heu) for variant in self.heu]
        cells = [
            self._cell(0, Component(NO_BACKEND), scheme, users, sparsity)
            for users, sparsity in points
            for scheme in self.schemes
            if not get_scheme(scheme.name).paillier
        ]
        for key_bits in self.key_bits:
            for backend, schemes in groups:
                cells += [
                    self._cell(key_bits, backend, scheme, users, sparsity)
                    for users, sparsity in points
                    for scheme in schemes
                ]
        return cells

    def _cell(self, key_bits: int, backend: Component, scheme: Component, users: int, sparsity: float) -> Cell:
        return Cell(self.dimension, users, sparsity, key_bits, scheme, backend, self.seed)

    def validate(self) -> None:
        """Raise SweepError (or ValueError from a registry) naming the first thing that cannot run."""
        if self.dimension < 1:
            raise SweepError(f"dimension must be >= 1, got {self.dimension}")
        if self.dimension > MAX_DIMENSION:
            raise SweepError(f"dimension must be <= {MAX_DIMENSION} (what a message can carry), got {self.dimension}")
        for name, axis in (("users", self.users), ("sparsity", self.sparsities), ("key_bits", self.key_bits)):
            if not axis:
                raise SweepError(f"the {name} axis is empty")
        if not self.schemes or not self.backends:
            raise SweepError("the grid needs at least one scheme and one backend")
        for users in self.users:
            if not 1 <= users <= MAX_SWEEP_USERS:
                raise SweepError(f"users must be in [1, {MAX_SWEEP_USERS}], got {users}")
        for sparsity in self.sparsities:
            if not 0.0 <= sparsity < 1.0:
                raise SweepError(f"sparsity must be in [0, 1), got {sparsity}")
        for bits in self.key_bits:
            if bits not in KEY_SIZES:
                raise SweepError(f"key bits must be one of {plain_list(KEY_SIZES)}, got {bits}")
        if not 0 <= self.seed < 2**32:
            raise SweepError(f"seed must be in [0, 2**32), got {self.seed}")
        for scheme in self.schemes:
            if scheme.name not in SCHEMES:
                raise SweepError(unknown_name("scheme", scheme.name, SCHEMES))
            _check_options("scheme", scheme, SCHEMES[scheme.name].options)
            if reason := SCHEMES[scheme.name].unavailable_reason():
                raise SweepError(f"scheme {scheme.name!r} cannot run here: {reason}")
            if SCHEMES[scheme.name].encrypted:
                for bits in self.key_bits:
                    try:
                        SCHEMES[scheme.name].key_generator.check_options(bits, max(self.users), **dict(scheme.options))
                    except (TypeError, ValueError) as exc:
                        raise SweepError(f"scheme {scheme.label} with {bits}-bit keys: {exc}") from None
        if not self.obfuscations:
            raise SweepError("the obfuscation axis is empty")
        for mode in self.obfuscations:
            if mode not in OBFUSCATIONS:
                raise SweepError(unknown_name("obfuscation", mode, OBFUSCATIONS))
        statuses = available_backends()
        # The backends as given first, so that an error names what the user wrote; then each obfuscation mode.
        for backend in dict.fromkeys((*self.backends, *self.expanded_backends())):
            if backend.name not in statuses:
                raise SweepError(unknown_name("backend", backend.name, statuses))
            if not statuses[backend.name].available:
                raise SweepError(f"backend {backend.name!r} is not available here: {statuses[backend.name].reason}")
            _check_options("backend", backend, BACKENDS[backend.name].option_names())
            try:  # construction checks the option values; workers, pools and devices start only on first use
                get_backend(backend.name, **dict(backend.options)).close()
            except (TypeError, ValueError) as exc:
                raise SweepError(f"backend {backend.label}: {exc}") from None
        for variant in self.heu:
            if variant not in heu.PAILLIER_VARIANTS:
                raise SweepError(unknown_name("HEU Paillier variant", variant, heu.PAILLIER_VARIANTS))
            if reason := heu.unavailable_reason():
                raise SweepError(f"the HEU baseline cannot run: {reason}")
        if self.baseline and (reason := PythonPaillierBaseline.unavailable_reason()):
            raise SweepError(f"the {BASELINE_NAME} baseline cannot run: {reason}; or pass --no-baseline")


def _check_options(kind: str, component: Component, accepted: Iterable[str]) -> None:
    """Raise SweepError naming the first option of ``component`` that its scheme or backend does not take."""
    accepted = list(accepted)
    for key, _ in component.options:
        if key not in accepted:
            raise SweepError(f"{kind} {component.name!r}: {unknown_name('option', key, accepted)}")


def _heu_component(variant: str) -> Component:
    return Component(HEU_NAME, (("variant", variant),))


def _with_option(component: Component, key: str, value: object) -> Component:
    """``component`` with option ``key`` set to ``value`` (options kept sorted, as ``Component.parse`` makes them)."""
    return Component(component.name, tuple(sorted({**dict(component.options), key: value}.items())))


def quick_grid(**overrides: object) -> SweepGrid:
    """The smoke grid: every scheme, available backend and obfuscation mode plus the baseline, on small cells.

    D = 32, 2 users, 1024-bit keys, sparsity 0.5 and 0.9; measured in the README (under 90 s on 2 idle cores
    with numba's kernel cache warm).
    """
    settings = {"dimension": 32, "users": (2,), "sparsities": (0.5, 0.9), "key_bits": (1024,)}
    return SweepGrid(**{**settings, **overrides})


def fixed_point_error_bound(cell: Cell, max_abs_weight: float) -> float:
    """Rounding to multiples of 2**-f moves each weight, and so the mean, by at most 2**-(f+1).

    Plus float64 rounding of a sum of ``users`` values and one division.
    """
    precision_bits = int(dict(cell.scheme.options).get("precision_bits", DEFAULT_PRECISION_BITS))
    return 2.0 ** -(precision_bits + 1) + _float_error(cell, max_abs_weight)


def packed_error_bound(cell: Cell, max_abs_weight: float) -> float:
    """Quantisation to steps of range / (2**(b-1) - 1) moves each weight, and so the mean, by at most step / 2."""
    options = dict(cell.scheme.options)
    step = quantization_step(
        int(options.get("quantization_bits", DEFAULT_QUANTIZATION_BITS)),
        float(options.get("quantization_range", DEFAULT_QUANTIZATION_RANGE)),
    )
    return step / 2.0 + _float_error(cell, max_abs_weight)


def ckks_error_bound(cell: Cell, max_abs_weight: float) -> float:
    """Rounding of the published average to 2**-20, plus CKKS's noise bound (``dphe_bench.schemes.ckks``)."""
    return ckks.error_bound(max_abs_weight, cell.users) + _float_error(cell, max_abs_weight)


def _float_error(cell: Cell, max_abs_weight: float) -> float:
    return (cell.users + 2) * np.finfo(np.float64).eps * max(1.0, max_abs_weight) * cell.users


# Error bound of the published mean per scheme name: fn(cell, largest |weight|) -> bound. The hook for a
# scheme whose rounding differs from the fixed-point codec's; schemes not listed use the fixed-point bound.
ERROR_BOUNDS: dict[str, Callable[[Cell, float], float]] = {"packed": packed_error_bound, "ckks": ckks_error_bound}


def synthetic_weights(dimension: int, users: int, sparsity: float, seed: int) -> list[np.ndarray]:
    """Weight vectors that look like trained sparse ones: Laplace magnitudes and exact zeros.

    Each user gets round((1 - sparsity) * D) non-zeros at uniformly random positions (drawn independently
    per user, so supports overlap as little as chance allows) with Laplace(0, 0.05) values, kept at least
    1e-6 away from zero so that none rounds to zero in fixed point. The values depend only on
    (D, users, sparsity, seed): every scheme and backend of a grid point sees the same vectors.

    Returns
    -------
    list of numpy.ndarray
        ``users`` float64 arrays of shape (D,).
    """
    rng = np.random.default_rng([seed, dimension, users, round(sparsity * 1_000_000)])
    nonzeros = round((1.0 - sparsity) * dimension)
    vectors = []
    for _ in range(users):
        weights = np.zeros(dimension)
        support = rng.choice(dimension, size=nonzeros, replace=False)
        values = rng.laplace(0.0, WEIGHT_SCALE, size=nonzeros)
        weights[support] = np.copysign(np.maximum(np.abs(values), MIN_MAGNITUDE), values)
        vectors.append(weights)
    return vectors


def run_cell(
    cell: Cell, backend: Backend, machine: Mapping[str, object], warm_up_s: float = math.nan
) -> dict[str, object]:
    """Run one cell, check its result, and return its row (``SWEEP_COLUMNS``).

    ``warm_up_s`` is the seconds of ``backend``'s warm-up in this sweep (``warm_up``; NaN, an empty cell, when none
    ran). Raises SweepError when the published mean differs from numpy's mean by more than the error bound:
    a wrong result is never recorded as a timing.
    """
    vectors = synthetic_weights(cell.dimension, cell.users, cell.sparsity, cell.seed)
    if cell.backend.name == HEU_NAME:
        result = _heu_round(cell, vectors)
    else:
        result = simulate_round(
            vectors,
            scheme=cell.scheme.name,
            backend=backend,
            key_bits=cell.key_bits or DEFAULT_KEY_BITS,
            # A one-user cell measures cost only; its "average" is that user's weights, so the key generator must be
            # told explicitly to publish a round of one contributor.
            min_contributors=1 if cell.users == 1 else DEFAULT_MIN_CONTRIBUTORS,
            **dict(cell.scheme.options),
        )
    stacked = np.stack(vectors)
    max_abs_weight = float(np.max(np.abs(stacked)))
    error = float(np.max(np.abs(result.mean - stacked.mean(axis=0))))
    bound = ERROR_BOUNDS.get(cell.scheme.name, fixed_point_error_bound)(cell, max_abs_weight)
    if not error <= bound:
        raise SweepError(f"cell {cell}: the decrypted mean is off by {error:.3g}, more than the bound {bound:.3g}")
    row = _row(cell, result, stacked, error, bound, machine)
    row.update(backend_settings(cell, backend), **scheme_settings(cell.scheme), warm_up_s=warm_up_s)
    return row


def backend_settings(cell: Cell, backend: Backend) -> dict[str, object]:
    """The backend settings ``cell`` ran with, every option resolved: the ``SETTING_COLUMNS`` of the backend.

    ``backend_config`` is ``NAME:key=value,...`` with every option of ``backend.options()`` (sorted; numba's default
    thread count resolved; options left None, such as dask's ``scheduler`` for a local cluster, left out), plain
    ``python-paillier`` for the baseline, ``heu:threads=N,variant=V`` for HEU (threads as HEU reads them) and
    ``none`` without a backend. ``parallelism`` is the number of cores the backend uses: numba's threads,
    the workers of multiprocessing and dask, HEU's threads, 1 for serial backends and the baseline; empty for
    ``none`` and for cupy (a GPU). ``obfuscation`` is empty for none, heu and the baseline (python-paillier's own
    r^n); ``window_bits`` only for ``djn``; ``kernel`` only for numba.
    """
    settings: dict[str, object] = dict.fromkeys(("obfuscation", "window_bits", "parallelism", "kernel"), "")
    if cell.backend.name == NO_BACKEND:
        return {**settings, "backend_config": NO_BACKEND}
    if cell.backend.name == HEU_NAME:
        threads = int(os.environ.get(heu.THREADS_VARIABLE, "0")) or (os.cpu_count() or 1)
        config = _with_option(cell.backend, "threads", threads).label
        return {**settings, "backend_config": config, "parallelism": threads}
    if cell.backend.name == BASELINE_NAME:
        return {**settings, "backend_config": BASELINE_NAME, "parallelism": 1}
    options = backend.resolved_options()
    if isinstance(backend, NumbaBackend):
        settings.update(parallelism=options["threads"], kernel=backend.kernel)
    elif isinstance(backend, ChunkedBackend):
        settings["parallelism"] = backend.workers
    elif not isinstance(backend, CupyBackend):
        settings["parallelism"] = 1
    settings.update(
        backend_config=backend_label(backend.name, options),
        obfuscation=backend.obfuscation,
        window_bits=backend.window_bits if backend.obfuscation == "djn" else "",
    )
    return settings


def scheme_settings(scheme: Component) -> dict[str, object]:
    """The scheme's values of ``SCHEME_SETTINGS``, defaults filled in; empty for an option the scheme does not take."""
    accepted, given = SCHEMES[scheme.name].options, dict(scheme.options)
    return {name: given.get(name, default) if name in accepted else "" for name, default in SCHEME_SETTINGS.items()}


def warm_up(backend: Backend, keypair: tuple[PublicKey, PrivateKey]) -> float:
    """Pay ``backend``'s one-time costs before its first cell; returns the seconds it took.

    Under ``keypair`` (one key of the grid's smallest size, shared by every backend's warm-up): two batches of
    ``WARM_UP_VALUES`` random plaintexts encrypted in the backend's obfuscation mode (pool precompute, djn table),
    added and decrypted, and one plaintext alone; then a powmod of one row and of ``WARM_UP_ROWS`` rows and a mulmod
    of ``WARM_UP_ROWS`` rows mod n^2: numba loads (or, with a cold cache, compiles) its serial and parallel kernels,
    multiprocessing and dask start their workers. Raises SweepError if a ciphertext decrypts wrong.
    """
    public_key, private_key = keypair
    n, nsquare = public_key.n, public_key.nsquare
    start = time.perf_counter()
    plaintexts = [secrets.randbelow(n) for _ in range(WARM_UP_VALUES)]
    if backend.obfuscation == "pool":
        backend.precompute(public_key, 2 * WARM_UP_VALUES + 1)
    batches = [backend.encrypt(public_key, plaintexts) for _ in range(2)]
    single = backend.encrypt(public_key, plaintexts[:1])  # one row: the serial code paths
    sums = backend.decrypt(private_key, backend.aggregate(public_key, batches))
    if sums != [2 * m % n for m in plaintexts] or backend.decrypt(private_key, single) != plaintexts[:1]:
        raise SweepError(f"the warm-up of backend {backend.describe()}: a ciphertext decrypted wrong")
    rows = ints_to_limbs([secrets.randbelow(nsquare) for _ in range(WARM_UP_ROWS)], limb_width(nsquare))
    backend.powmod(rows[:1], WARM_UP_EXPONENT, nsquare)
    backend.mulmod(backend.powmod(rows, WARM_UP_EXPONENT, nsquare), rows, nsquare)
    return time.perf_counter() - start


def _heu_round(cell: Cell, vectors: list[np.ndarray]) -> RoundResult:
    """A dense or packed round with HEU doing the crypto, as a RoundResult (HEU's own bytes; no setup messages)."""
    found = heu.run_round(
        vectors, cell.scheme.name, key_bits=cell.key_bits, **dict(cell.backend.options), **dict(cell.scheme.options)
    )
    users = cell.users
    return RoundResult(
        mean=found.mean,
        timings={
            **dict.fromkeys(PHASES, 0.0),
            "setup": found.setup_s,
            "encrypt": found.encrypt_s,
            "aggregate": found.aggregate_s,
            "decrypt": found.decrypt_s,
        },
        bytes_sent={
            "key_generator": 0,
            "users": round(found.bytes_per_user * users),
            "aggregator": round(found.bytes_per_user),
        },
        ciphertexts={uid: round(found.ciphertexts_per_user) for uid in range(users)},
    )


def _row(
    cell: Cell, result: RoundResult, stacked: np.ndarray, error: float, bound: float, machine: Mapping[str, object]
) -> dict[str, object]:
    ciphertexts = sum(result.ciphertexts.values())
    row: dict[str, object] = dict(zip(CELL_COLUMNS, cell.key(), strict=True))
    row.update(
        scheme_name=cell.scheme.name,
        backend_name=cell.backend.name,
        nonzeros_per_user=int(np.count_nonzero(stacked[0])),
        union_sparsity=float(1.0 - np.mean(np.any(stacked != 0, axis=0))),
        encrypt_per_user_s=result.timings["encrypt"] / cell.users,
        ciphertexts=ciphertexts,
        ciphertexts_per_user=ciphertexts / cell.users,
        bytes_key_generator=result.bytes_sent["key_generator"],
        bytes_users=result.bytes_sent["users"],
        bytes_per_user=result.bytes_sent["users"] / cell.users,
        bytes_aggregator=result.bytes_sent["aggregator"],
        max_abs_error=error,
        error_bound=bound,
        time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        load_average=_load_average(),
        **machine,
    )
    row.update({f"{phase}_s": result.timings[phase] for phase in PHASES})
    return row


@dataclass(frozen=True)
class SweepSummary:
    """What ``run_sweep`` did: cells run now, cells skipped because the file had them, the file."""

    ran: int
    skipped: int
    out: Path


def run_sweep(
    grid: SweepGrid, out: str | Path = DEFAULT_OUT, progress: bool = True, log: Callable[[str], None] | None = None
) -> SweepSummary:
    """Run every cell of ``grid`` that ``out`` does not hold yet, appending one row per cell.

    Cells run in the grid's order, one (key size, backend) group at a time: the group's backend is built, warmed up
    (``warm_up``, under one key of the grid's smallest size made for the sweep; not for ``none`` and ``heu``), used by
    every cell of the group and closed, so no other backend's workers run meanwhile. Rows are appended atomically
    (the file is rewritten through a temporary file and a rename), so an interrupted sweep leaves a valid file.
    ``log`` receives one line per warm-up and per finished cell.
    """
    out = check_out(prepare_file(out, "sweep results file"))
    cells = grid.cells()
    done = read_cell_keys(out)
    todo = [cell for cell in cells if cell.key() not in done]
    machine = machine_info()
    warm_up_keypair: tuple[PublicKey, PrivateKey] | None = None  # made when the first backend warms up
    finished = 0
    with tqdm(total=len(todo), desc="sweep", unit="cell", disable=None if progress else True) as bar:
        for (_, label), group in itertools.groupby(todo, key=lambda cell: (cell.key_bits, cell.backend.label)):
            group_cells = list(group)
            component = group_cells[0].backend
            with _build_backend(component) as backend:
                warm_up_s = math.nan
                if component.name not in (NO_BACKEND, HEU_NAME):
                    bar.set_postfix_str(f"warm-up {label}", refresh=True)
                    if warm_up_keypair is None:
                        warm_up_keypair = generate_keypair(min(grid.key_bits))
                    warm_up_s = warm_up(backend, warm_up_keypair)
                    if log is not None:
                        log(f"warm-up {label}: {warm_up_s:.3f} s")
                for cell in group_cells:
                    bar.set_postfix_str(str(cell), refresh=True)
                    row = run_cell(cell, backend, machine, warm_up_s)
                    try:
                        append_row(out, row)
                    except OSError as exc:
                        raise DestinationError(
                            f"cell {cell} was measured but not saved: {out} cannot be written "
                            f"({exc.strerror or exc}); the {finished} cell(s) finished before it are in the file"
                        ) from None
                    finished += 1
                    bar.update()
                    if log is not None:
                        log(
                            f"{cell}: encrypt {row['encrypt_per_user_s']:.3f} s/user, "
                            f"{row['ciphertexts_per_user']:g} ct/user"
                        )
    return SweepSummary(ran=len(todo), skipped=len(cells) - len(todo), out=out)


def check_out(out: str | Path) -> Path:
    """``out`` as a Path; raises SweepError unless it ends in ``.csv`` (sweep results are written as CSV)."""
    out = Path(out)
    if out.suffix != ".csv":
        raise SweepError(f"sweep results are written as CSV; {out} does not end in .csv")
    return out


def _build_backend(component: Component) -> Backend:
    if component.name == BASELINE_NAME:
        return PythonPaillierBaseline()
    if component.name == HEU_NAME:
        # HEU cells make their own HEU keys (run_round); the cell never calls this backend.
        return get_backend(next(name for name, s in available_backends().items() if s.available))
    if component.name == NO_BACKEND:
        # Schemes without Paillier (plain, ckks) never call their backend; any available one satisfies the constructor.
        return get_backend(next(name for name, s in available_backends().items() if s.available))
    return get_backend(component.name, **dict(component.options))


def read_cell_keys(path: str | Path) -> set[tuple]:
    """Keys of the cells a sweep file already holds (empty if it does not exist or is empty).

    Cells are matched by the labels as given (``gmpy2:obfuscation=djn``), not by host or resolved options: a cell
    rerun on another machine or with another NUMBA_NUM_THREADS into the same file is taken as done. Raises
    SweepError naming the file, the line and the column of the first key value that is empty or not a number.
    """
    path = Path(path)
    keys = set()
    for line, row in enumerate(_read_rows(path), start=2):
        values = [(row.get(column) or "").strip() for column in CELL_COLUMNS]
        for column, value in zip(CELL_COLUMNS, values, strict=True):
            if not value:
                raise SweepError(f"{path} line {line}: column {column} is empty; it keys the cell")
            kind = _NUMERIC_KEYS.get(column)
            if kind is not None:
                try:
                    kind(value)
                except ValueError:
                    raise SweepError(f"{path} line {line}: column {column} holds {value!r}, not a number") from None
        try:
            keys.add(_cell_key(*values))
        except SweepError as exc:
            raise SweepError(f"{path} line {line}: {exc}") from None
    return keys


# The cell key columns that hold numbers, and how they are read.
_NUMERIC_KEYS: dict[str, Callable[[str], object]] = {
    "dimension": int,
    "users": int,
    "sparsity": float,
    "key_bits": int,
    "seed": int,
}


def append_row(path: str | Path, row: Mapping[str, object]) -> None:
    """Append ``row`` to the sweep CSV at ``path``, atomically (the file is rewritten and renamed).

    A file written by an earlier version, whose columns are a subset of ``SWEEP_COLUMNS`` (a phase was
    added since, say), is rewritten with the current columns; the old rows get empty cells for the new ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [*_read_rows(path), {column: _format(row[column]) for column in SWEEP_COLUMNS}]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SWEEP_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomically(path, buffer.getvalue())


def _read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a sweep file as text; none for a missing or 0-byte file."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            _check_header(path, reader.fieldnames)
            return list(reader)
    except UnicodeDecodeError:
        raise SweepError(f"{path} is not a UTF-8 text file, so not a sweep results file") from None


def machine_info() -> dict[str, object]:
    """Where the sweep ran: host, OS, CPU model and count, Python and dphe-bench versions."""
    return {
        "host": platform.node(),
        "os": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "python": platform.python_version(),
        "dphe_bench": dphe_bench.__version__,
    }


def _load_average() -> float:
    """The 1-minute load average when the cell ends (NaN where the OS has none): how busy the machine was."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return math.nan


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def is_sweep_header(fieldnames: Iterable[str]) -> bool:
    """True for the columns of a sweep file of this version or of an earlier one (a subset of them)."""
    columns = set(fieldnames)
    return set(CELL_COLUMNS) <= columns <= set(SWEEP_COLUMNS)


def _check_header(path: Path, fieldnames: list[str] | None) -> None:
    if not is_sweep_header(fieldnames or []):
        raise SweepError(f"{path} is not a sweep file of this version (different columns); move it aside")


def _cell_key(dimension, users, sparsity, key_bits, scheme, backend, seed) -> tuple:
    return (
        int(dimension),
        int(users),
        round(float(sparsity), 9),
        int(key_bits),
        str(scheme),
        _canonical_backend(str(backend)),
        int(seed),
    )


def _canonical_backend(label: str) -> str:
    """A registered backend named without an obfuscation ran with the default one: a file written before the
    obfuscation axis holds ``gmpy2`` for what is now the cell ``gmpy2:obfuscation=standard``."""
    component = Component.parse(label)
    if component.name not in BACKENDS or "obfuscation" in dict(component.options):
        return label
    return _with_option(component, "obfuscation", DEFAULT_OBFUSCATION).label


def _format(value: object) -> object:
    """CSV text of a value: floats (numpy's too) in their shortest exact form, NaN as an empty cell."""
    if isinstance(value, float | np.floating):
        return repr(float(value)) if math.isfinite(value) else ""
    if isinstance(value, np.integer):
        return int(value)
    return value


def _parse_value(text: str) -> object:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
