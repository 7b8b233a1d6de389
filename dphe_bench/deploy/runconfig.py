"""The pipeline config as a Flower run config (flat ``dphe.section.key`` entries) and as TOML text."""

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from dphe_bench.errors import ConfigError
from dphe_bench.learning.config import Config, config_from_dict

PREFIX = "dphe."


def check_deployable(config: Config) -> None:
    """A deployment has no simulated dropouts (nodes drop out for real): refuse ``federation.dropout`` > 0."""
    if config.federation.dropout:
        raise ConfigError(
            "federation.dropout simulates dropouts inside one process; in a deployment nodes drop out for real: "
            "set it to 0"
        )


def config_to_sections(config: Config) -> dict[str, dict[str, Any]]:
    """``{section: {key: value}}`` of ``config`` without the unset (None) options."""
    return {
        section: {key: value for key, value in values.items() if value is not None}
        for section, values in dataclasses.asdict(config).items()
    }


def config_to_toml(config: Config) -> str:
    """``config`` as a TOML document that ``load_config`` reads back to an equal Config."""
    sections = config_to_sections(config)
    return "".join(f"[{section}]\n{toml_table_body(values)}\n" for section, values in sections.items())


def toml_table_body(values: Mapping[str, Any]) -> str:
    """``key = value`` lines for scalar values (str, int, float, bool)."""
    return "".join(f"{toml_key(key)} = {toml_value(value)}\n" for key, value in values.items())


def toml_key(key: str) -> str:
    """A TOML key: bare when it only has letters, digits, '-' and '_', else quoted."""
    if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
        return key
    return json.dumps(key)


def toml_value(value: Any) -> str:
    """A TOML literal for a str, int, finite float or bool (JSON's spelling is valid TOML for these)."""
    if isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value)):
        return json.dumps(value)
    raise ValueError(f"cannot write {value!r} ({type(value).__name__}) as a TOML scalar")


def config_to_run_config(config: Config) -> dict[str, Any]:
    """Flat ``{"dphe.section.key": value}`` entries for ``[tool.flwr.app.config]``."""
    return {
        f"{PREFIX}{section}.{key}": value
        for section, values in config_to_sections(config).items()
        for key, value in values.items()
    }


def config_from_run_config(run_config: Mapping[str, Any]) -> Config:
    """The Config that ``config_to_run_config`` flattened into a Flower run config (other entries ignored)."""
    sections: dict[str, dict[str, Any]] = {}
    for name, value in run_config.items():
        if not name.startswith(PREFIX):
            continue
        section, dot, key = name[len(PREFIX) :].partition(".")
        if not dot or not key:
            raise ConfigError(f"run config entry {name!r} must look like {PREFIX}section.key")
        sections.setdefault(section, {})[key] = value
    if not sections:
        raise ConfigError(f"the run config holds no {PREFIX}* entries: it was not written by dphe-bench")
    return config_from_dict(sections)
