"""Write the Flower app folder (``pyproject.toml`` only; the code is the installed ``dphe_bench``) and
the ``flwr`` CLI's SuperLink connection (``$FLWR_HOME/config.toml``). ``flwr new`` needs the network,
so dphe-bench writes these itself."""

from pathlib import Path

from dphe_bench.deploy.runconfig import config_to_sections, toml_table_body, toml_value
from dphe_bench.files import write_text_atomically
from dphe_bench.learning.config import Config

SERVER_APP = "dphe_bench.deploy.flower_server:app"
CLIENT_APP = "dphe_bench.deploy.flower_client:app"
DEFAULT_ROUND_TIMEOUT_S = 300.0


def write_flower_app(
    app_dir: Path,
    config: Config,
    keyserver_url: str,
    aggregator_token_file: str,
    aggregator_ca_file: str = "",
    round_timeout: float = DEFAULT_ROUND_TIMEOUT_S,
    results_file: str = "",
) -> Path:
    """Write ``app_dir/pyproject.toml`` for ``flwr run``: the two components and the run config; returns its path.

    The run config holds the aggregator's settings (see ``flower_server``) and the whole pipeline config
    under ``dphe.<section>.<key>``. Every node receives the run config: it names the aggregator's token
    file but never holds a token.
    """
    settings = {
        "keyserver-url": keyserver_url,
        "aggregator-token-file": aggregator_token_file,
        "aggregator-ca-file": aggregator_ca_file,
        "round-timeout": float(round_timeout),
        "results-file": results_file,
    }
    pipeline = "".join(
        f"\n[tool.flwr.app.config.dphe.{section}]\n{toml_table_body(values)}"
        for section, values in config_to_sections(config).items()
    )
    text = f"""# Written by dphe-bench: ServerApp = the DPHE aggregator, ClientApp = a user.
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "dphe-flower"
version = "1.0.0"
description = "Federated learning with DPHE-encrypted aggregation (dphe-bench)"
license = "MIT"
dependencies = ["dphe-bench[flower]"]

[tool.flwr.app]
publisher = "dphe-bench"

[tool.flwr.app.components]
serverapp = {toml_value(SERVER_APP)}
clientapp = {toml_value(CLIENT_APP)}

[tool.flwr.app.config]
{toml_table_body(settings)}{pipeline}"""
    path = Path(app_dir) / "pyproject.toml"
    write_text_atomically(path, text)
    return path


def write_superlink_connection(
    flwr_home: Path, name: str, address: str, insecure: bool, root_certificates: str | None = None
) -> Path:
    """Write ``flwr_home/config.toml`` with one SuperLink connection ``name`` (the default); returns its path."""
    connection = {"address": address, "insecure": insecure}
    if root_certificates:
        connection["root-certificates"] = root_certificates
    text = f"[superlink]\ndefault = {toml_value(name)}\n\n[superlink.{name}]\n{toml_table_body(connection)}"
    path = Path(flwr_home) / "config.toml"
    write_text_atomically(path, text)
    return path
