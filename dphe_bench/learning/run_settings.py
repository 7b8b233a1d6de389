"""The settings that change a run's result, read from its JSON (``PipelineResult.to_dict()``) as one flat row.

``runs.csv`` (``results``) and the report (``bench.report_data``) both take a run's settings from here, so a
run reads the same from its CSV row as from its JSON file. It imports no sklearn or pandas (the report reads it).
"""

from typing import Any

from dphe_bench.schemes import SCHEMES

# (section, key) in the run's config of each setting that is a config option as written.
_CONFIG_SETTINGS: dict[str, tuple[str, str]] = {
    "dataset": ("data", "dataset"),
    "features": ("data", "features"),
    "data_path": ("data", "path"),
    "test_fraction": ("data", "test_fraction"),
    "max_train_samples": ("data", "max_train_samples"),
    "max_test_samples": ("data", "max_test_samples"),
    "image_size": ("data", "image_size"),
    "engine": ("data", "engine"),
    "users": ("federation", "users"),
    "rounds": ("federation", "rounds"),
    "split": ("federation", "split"),
    "dirichlet_alpha": ("federation", "dirichlet_alpha"),
    "dropout": ("federation", "dropout"),
    "min_contributors": ("federation", "min_contributors"),
    "loss": ("model", "loss"),
    "alpha": ("model", "alpha"),
    "l1_ratio": ("model", "l1_ratio"),
    "local_epochs": ("model", "local_epochs"),
    "scheme": ("crypto", "scheme"),
    "key_bits": ("crypto", "key_bits"),
    "precision_bits": ("crypto", "precision_bits"),
    "quantization_bits": ("crypto", "quantization_bits"),
    "quantization_range": ("crypto", "quantization_range"),
    "seed": ("run", "seed"),
}

RUN_SETTINGS = (
    "dataset",
    "features",
    "data_path",
    "test_fraction",
    "max_train_samples",
    "max_test_samples",
    "image_size",
    "engine",
    "users",
    "rounds",
    "split",
    "dirichlet_alpha",
    "dropout",
    "min_contributors",
    "loss",
    "alpha",
    "l1_ratio",
    "local_epochs",
    "scheme",
    "backend",
    "backend_config",
    "obfuscation",
    "window_bits",
    "parallelism",
    "key_bits",
    "precision_bits",
    "quantization_bits",
    "quantization_range",
    "seed",
)
"""Every setting that changes a run's result, in runs.csv's order: the data (dataset ... engine), the federation
(users ... min_contributors), the model (loss, ``alpha`` = the elastic-net alpha, l1_ratio, local_epochs), the
scheme, the Paillier backend as it ran (``backend_config`` = ``name:k=v,...`` of its resolved options sorted by
key, ``none`` for schemes with no Paillier backend; ``parallelism`` = cores it used), key and encoding sizes, seed."""

NO_BACKEND = "none"
"""``backend_config`` of a run whose scheme uses no Paillier backend (plain, ckks)."""

# Runs written before the ``features`` option existed used pixel features: they had no other.
_OLDEST_FEATURES = "pixels"


def backend_label(name: str, options: dict[str, Any]) -> str:
    """``name:k=v,...`` of ``options`` sorted by key, e.g. ``gmpy2:obfuscation=standard,window_bits=8``; options
    left None (dask's ``scheduler`` for a local cluster) are left out, and ``name`` alone has no options."""
    given = sorted((key, value) for key, value in options.items() if value is not None)
    return name + (":" + ",".join(f"{key}={value}" for key, value in given) if given else "")


def run_settings(run: dict[str, Any]) -> dict[str, Any]:
    """The RUN_SETTINGS of one run from its JSON dict; None where the file does not say.

    A run written before ``backend_options`` was recorded gets obfuscation and window_bits from its config and
    None for backend_config and parallelism (their defaults were resolved when it ran, and are not known).
    Raises KeyError (or TypeError) when the config, its scheme or the backend is missing, ValueError for a scheme
    this version does not know.
    """
    config = run["config"]
    settings: dict[str, Any] = {
        column: config.get(section, {}).get(key) for column, (section, key) in _CONFIG_SETTINGS.items()
    }
    if "features" not in config.get("data", {}):
        settings["features"] = _OLDEST_FEATURES
    scheme = config["crypto"]["scheme"]
    settings["scheme"] = scheme
    settings["backend"] = run["backend"]
    settings.update(_backend_settings(run, scheme))
    return {column: settings[column] for column in RUN_SETTINGS}


def _backend_settings(run: dict[str, Any], scheme: str) -> dict[str, Any]:
    """backend_config, obfuscation, window_bits (djn only) and parallelism of the run's Paillier backend."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme {scheme!r} is not one this version knows")
    if not SCHEMES[scheme].paillier:
        return {"backend_config": NO_BACKEND, "obfuscation": None, "window_bits": None, "parallelism": None}
    options = run.get("backend_options")
    if options is None:
        crypto = run["config"]["crypto"]
        obfuscation = crypto.get("obfuscation")
        return {
            "backend_config": None,
            "obfuscation": obfuscation,
            "window_bits": crypto.get("window_bits") if obfuscation == "djn" else None,
            "parallelism": None,
        }
    obfuscation = options["obfuscation"]
    return {
        "backend_config": backend_label(run["backend"], options),
        "obfuscation": obfuscation,
        "window_bits": options["window_bits"] if obfuscation == "djn" else None,
        "parallelism": next((options[key] for key in ("threads", "workers") if key in options), 1),
    }
