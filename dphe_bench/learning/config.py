"""Pipeline configuration: TOML files (stdlib tomllib) plus ``section.key=value`` overrides, validated.

Every option has a default; ``dphe-bench run`` with no file runs the defaults. Sections and keys:

[data]        dataset ("digits" | "fashion-mnist" | "folder"), features ("pixels" | "efficientnet-lite0"),
              path (unset: Debian's Fashion-MNIST folder; the image folder for "folder"), test_fraction (0.25:
              digits, folder), max_train_samples (0 = all), max_test_samples (0 = all), image_size (96),
              engine ("onnx" | "torch"), batch_size (64), cache_dir (unset: ~/.cache/dphe-bench)
[federation]  users (5), rounds (3), split ("iid" | "dirichlet"), dirichlet_alpha (0.5),
              dropout (0.0: probability that a user misses a round), min_contributors (2: the key generator
              publishes no round whose aggregate claims fewer contributors; it cannot check the claim, so
              this stops only an aggregator that counts honestly; a one-user federation needs 1, set explicitly)
[model]       loss ("hinge"), alpha (0.01), l1_ratio (0.9), local_epochs (2)
[crypto]      scheme ("dphe" | "dense" | "packed" | "plain" | "ckks": needs the ckks extra), backend (unset:
              $DPHE_BACKEND, then "gmpy2"), key_bits (2048: Paillier schemes), precision_bits (32: dense, dphe),
              quantization_bits (16: packed), quantization_range (8.0: packed, largest |weight|), obfuscation
              ("standard" | "djn" | "pool"), window_bits (8: djn table), and for the backends that take them
              (unset: their defaults) inner ("gmpy2"), workers, start_method (multiprocessing), scheduler (dask),
              threads (numba)
[run]         seed (0), output_dir ("reports/runs"), compare_plain (true)
"""

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_type_hints

from dphe_bench.backends import BACKENDS, OBFUSCATIONS
from dphe_bench.crypto.paillier import KEY_SIZES
from dphe_bench.errors import ConfigError, plain_list, unknown_name
from dphe_bench.learning.data import DATASETS, ENGINES, FEATURES, SPLITS
from dphe_bench.learning.trainer import ModelSpec
from dphe_bench.schemes import SCHEMES
from dphe_bench.schemes.base import DEFAULT_MIN_CONTRIBUTORS

LOSSES = ("hinge", "log_loss", "modified_huber", "squared_hinge", "perceptron")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    features: str = "pixels"
    path: str | None = None
    test_fraction: float = 0.25
    max_train_samples: int = 0
    max_test_samples: int = 0
    image_size: int = 96
    engine: str = "onnx"
    batch_size: int = 64
    cache_dir: str | None = None


@dataclass(frozen=True)
class FederationConfig:
    users: int = 5
    rounds: int = 3
    split: str = "iid"
    dirichlet_alpha: float = 0.5
    dropout: float = 0.0
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS


@dataclass(frozen=True)
class CryptoConfig:
    scheme: str = "dphe"
    backend: str | None = None
    key_bits: int = 2048
    precision_bits: int = 32
    quantization_bits: int = 16
    quantization_range: float = 8.0
    obfuscation: str = "standard"
    window_bits: int = 8
    inner: str | None = None
    workers: int | None = None
    start_method: str | None = None
    scheduler: str | None = None
    threads: int | None = None


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    output_dir: str = "reports/runs"
    compare_plain: bool = True


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    crypto: CryptoConfig = field(default_factory=CryptoConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (for results files)."""
        return dataclasses.asdict(self)


_SECTIONS: dict[str, type] = {f.name: f.type for f in dataclasses.fields(Config)}

# (what it names, the valid values) per option that takes one of a few names; None is valid where the option's
# default is None.
_CHOICES: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("data", "dataset"): ("dataset", tuple(DATASETS)),
    ("data", "features"): ("feature kind", tuple(FEATURES)),
    ("data", "engine"): ("feature engine", tuple(ENGINES)),
    ("federation", "split"): ("split", tuple(SPLITS)),
    ("model", "loss"): ("loss", tuple(LOSSES)),
    ("crypto", "scheme"): ("scheme", tuple(SCHEMES)),
    ("crypto", "backend"): ("backend", tuple(BACKENDS)),
    ("crypto", "obfuscation"): ("obfuscation", tuple(OBFUSCATIONS)),
    ("crypto", "inner"): ("backend", tuple(BACKENDS)),
}

# (predicate, message) per option; the message completes "<section>.<key> must ...".
_RULES: dict[tuple[str, str], tuple[Any, str]] = {
    ("data", "path"): (lambda v: v is None or bool(v), "be a non-empty path"),
    ("data", "test_fraction"): (lambda v: 0 < v < 1, "be in (0, 1)"),
    ("data", "max_train_samples"): (lambda v: v >= 0, "be >= 0 (0 keeps all samples)"),
    ("data", "max_test_samples"): (lambda v: v >= 0, "be >= 0 (0 keeps all samples)"),
    ("data", "image_size"): (lambda v: 8 <= v <= 1024, "be in [8, 1024]"),
    ("data", "batch_size"): (lambda v: 1 <= v <= 4096, "be in [1, 4096]"),
    ("data", "cache_dir"): (lambda v: v is None or bool(v), "be a non-empty path"),
    ("federation", "users"): (lambda v: 1 <= v <= 10_000, "be in [1, 10000]"),
    ("federation", "rounds"): (lambda v: 1 <= v <= 10_000, "be in [1, 10000]"),
    ("federation", "dirichlet_alpha"): (lambda v: v > 0, "be > 0"),
    ("federation", "dropout"): (lambda v: 0 <= v < 1, "be in [0, 1)"),
    ("federation", "min_contributors"): (
        lambda v: v >= 1,
        "be >= 1 (2 by default: with one contributor the published average is that user's weights)",
    ),
    ("model", "alpha"): (lambda v: v > 0, "be > 0"),
    ("model", "l1_ratio"): (lambda v: 0 <= v <= 1, "be in [0, 1]"),
    ("model", "local_epochs"): (lambda v: v >= 1, "be >= 1"),
    ("crypto", "key_bits"): (lambda v: v in KEY_SIZES, f"be one of {plain_list(KEY_SIZES)}"),
    ("crypto", "precision_bits"): (lambda v: 1 <= v <= 52, "be in [1, 52]"),
    ("crypto", "quantization_bits"): (lambda v: 2 <= v <= 32, "be in [2, 32]"),
    ("crypto", "quantization_range"): (lambda v: v > 0, "be > 0"),
    ("crypto", "window_bits"): (lambda v: 1 <= v <= 12, "be in [1, 12]"),
    ("crypto", "workers"): (lambda v: v >= 1, "be >= 1"),
    ("crypto", "start_method"): (lambda v: v in ("fork", "forkserver", "spawn"), "be fork, forkserver or spawn"),
    ("crypto", "scheduler"): (lambda v: bool(v), "be a scheduler address such as tcp://host:8786"),
    ("crypto", "threads"): (lambda v: v >= 1, "be >= 1"),
    ("run", "seed"): (lambda v: 0 <= v < 2**32, "be in [0, 2**32)"),
    ("run", "output_dir"): (lambda v: bool(v), "be a non-empty path"),
}


BACKEND_OPTIONS = ("obfuscation", "window_bits", "inner", "workers", "start_method", "scheduler", "threads")


def backend_options(crypto: CryptoConfig, backend: str) -> dict[str, object]:
    """The [crypto] options to build ``backend`` with: those it takes and that are set.

    Raises ConfigError when an option is set that ``backend`` does not take (instead of ignoring it).
    """
    if backend not in BACKENDS:
        raise ConfigError(unknown_name("backend", backend, BACKENDS))
    accepted = BACKENDS[backend].option_names()
    options = {}
    for name in BACKEND_OPTIONS:
        value = getattr(crypto, name)
        if value is None:
            continue
        if name not in accepted:
            raise ConfigError(
                f"crypto.{name} does not apply to backend {backend!r}, which takes {plain_list(accepted)}"
            )
        options[name] = value
    return options


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read ``path`` (TOML; None = defaults), apply ``section.key=value`` overrides, validate.

    Raises ConfigError naming the file, option and problem.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text (TOML files must be UTF-8)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for override in overrides:
        section, key, value = _parse_override(override)
        if not isinstance(raw.setdefault(section, {}), dict):
            raise ConfigError(f"[{section}] must be a table")
        raw[section][key] = value
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a Config from nested dicts (as tomllib returns)."""
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(unknown_name("config section", f"[{unknown[0]}]", [f"[{name}]" for name in _SECTIONS]))
    sections = {}
    for name, section_type in _SECTIONS.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table")
        sections[name] = _build_section(name, section_type, values)
    federation = sections["federation"]
    if federation.min_contributors > federation.users:
        raise ConfigError(
            f"federation.min_contributors ({federation.min_contributors}) must be <= federation.users "
            f"({federation.users}): no round could be published; a one-user federation needs "
            "federation.min_contributors=1, set explicitly (its published average is that user's weights)"
        )
    return Config(**sections)


def _build_section(name: str, section_type: type, values: dict[str, Any]) -> Any:
    hints = get_type_hints(section_type)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(unknown_name("option", f"{name}.{unknown[0]}", [f"{name}.{key}" for key in sorted(hints)]))
    checked = {}
    for key, value in values.items():
        value = _coerce(f"{name}.{key}", hints[key], value)
        if (name, key) in _CHOICES and value is not None:
            kind, valid = _CHOICES[(name, key)]
            if value not in valid:
                raise ConfigError(f"{name}.{key}: {unknown_name(kind, value, valid)}")
        predicate, requirement = _RULES.get((name, key), (lambda v: True, ""))
        if not predicate(value):
            raise ConfigError(f"{name}.{key} must {requirement}, got {value!r}")
        checked[key] = value
    return section_type(**checked)


def _coerce(option: str, expected: Any, value: Any) -> Any:
    """Check ``value`` against the option's type (``X | None`` means X); ints are accepted for floats."""
    base = next(arg for arg in get_args(expected) if arg is not type(None)) if get_args(expected) else expected
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, base)
    if not ok:
        type_name = "finite float" if base is float else base.__name__
        raise ConfigError(f"{option} must be of type {type_name}, got {type(value).__name__} {value!r}")
    return value


def _parse_override(override: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> (section, key, value); value is a TOML literal, or else a bare string."""
    key_part, sep, value_text = override.partition("=")
    section, dot, key = key_part.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"value = {value_text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = value_text.strip()
    return section, key, value
