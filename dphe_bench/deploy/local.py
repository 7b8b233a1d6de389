"""A whole federation on 127.0.0.1 (``dphe-bench serve``): the key server, a Flower SuperLink running the
aggregator's ServerApp, and one SuperNode per user running the ClientApp, each a separate process.

Everything goes into one run folder: ``config.toml`` (the resolved pipeline config), ``tokens/`` (one token
per party, mode 0600), ``keyserver/`` (the published averages), ``app/`` (the Flower app), ``flwr-home/``
(``FLWR_HOME``), ``logs/`` (one log per process) and ``aggregator-rounds.json`` (the ServerApp's record
of each round). Every process started here is stopped on exit, on errors and on Ctrl-C.
"""

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dphe_bench.backends import resolve_backend_name
from dphe_bench.deploy.flower_app import write_flower_app, write_superlink_connection
from dphe_bench.deploy.keyclient import KeyServerClient, KeyServerError
from dphe_bench.deploy.keyserver import AGGREGATOR, USER, Party, token_filename
from dphe_bench.deploy.partition import load_run_dataset, model_dimension
from dphe_bench.deploy.processes import (
    Child,
    DeploymentError,
    free_ports,
    kill_child,
    start_child,
    stop_children,
    wait_for_port,
)
from dphe_bench.deploy.runconfig import check_deployable, config_to_toml
from dphe_bench.errors import ConfigError
from dphe_bench.learning.config import Config

HOST = "127.0.0.1"
CONNECTION = "dphe-local"
STARTUP_TIMEOUT_S = 120.0
POLL_S = 0.2


@dataclass
class LocalRunResult:
    """What a local deployment produced.

    Attributes
    ----------
    average : numpy.ndarray
        The model the key generator published after the last round, float64 (D,).
    rounds : list of dict
        The aggregator's record per round: ``seconds`` (from sending the instructions to the key
        generator's publication), ``contributors`` (user ids), ``dropped`` (node id and reason),
        ``aggregate_bytes`` and ``nodes`` (per user id: ``update_bytes``, ``flower_reply_bytes``,
        ``flower_instruction_bytes``, ``keyserver_bytes``, ``train_s``, ``encrypt_s``, ``ciphertexts``).
    startup_s, run_s : float
        Seconds to start every process, and from ``flwr run`` to its end.
    run_dir : Path
        The run folder (logs, tokens, app, published averages).
    backend : str
        The crypto backend every party ran.
    """

    average: np.ndarray
    rounds: list[dict[str, Any]]
    startup_s: float
    run_s: float
    run_dir: Path
    backend: str


def _executable(name: str) -> str:
    """A console script of flwr installed next to this Python (the apps it runs import dphe_bench from here)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise DeploymentError(f"{path} does not exist: install the flower extra, pip install 'dphe-bench[flower]'")
    return str(path)


def _literal(value: str) -> str:
    """A TOML literal string for ``--node-config`` (flwr's parser takes '...' verbatim)."""
    if "'" in value or "\n" in value:
        raise DeploymentError(f"path {value!r} cannot be passed in a Flower node config (it holds a quote)")
    return f"'{value}'"


class LocalFederation:
    """Key server + SuperLink + one SuperNode per user on 127.0.0.1; use as a context manager.

    Parameters
    ----------
    config : Config
        The pipeline config: ``federation.users`` nodes, ``federation.rounds`` rounds. Simulated dropouts
        (``federation.dropout``) must be 0: nodes drop out for real here.
    run_dir : Path
        The run folder (created; must be empty or absent).
    round_timeout : float
        Seconds the aggregator waits for the replies of a round (a node that does not answer in time is
        a dropout), and for the nodes to connect before the first round.
    """

    def __init__(self, config: Config, run_dir: Path, round_timeout: float = 300.0):
        check_deployable(config)
        if round_timeout <= 0:
            raise ConfigError(f"the round timeout must be > 0 seconds, got {round_timeout}")
        backend = resolve_backend_name(None, config.crypto.backend)
        self.config = dataclasses.replace(config, crypto=dataclasses.replace(config.crypto, backend=backend))
        self.run_dir = Path(run_dir).absolute()
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise DeploymentError(f"run folder {self.run_dir} is not empty")
        self.round_timeout = round_timeout
        self.keyserver: Child | None = None
        self.superlink: Child | None = None
        self.supernodes: dict[int, Child] = {}
        self.keyserver_url = ""
        self.superlink_address = ""
        self._children: list[Child] = []
        self.startup_s = 0.0

    @property
    def children(self) -> list[Child]:
        """Every process started so far, in start order."""
        return list(self._children)

    @property
    def users(self) -> int:
        """The number of users, one SuperNode each."""
        return self.config.federation.users

    def __enter__(self) -> "LocalFederation":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)

    def _env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        return {
            **os.environ,
            "FLWR_HOME": str(self._path("flwr-home")),
            "FLWR_TELEMETRY_ENABLED": "0",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }

    def _start(self, name: str, argv: list[str]) -> Child:
        child = start_child(name, argv, self._path("logs", f"{name}.log"), self._env(), cwd=self.run_dir)
        self._children.append(child)
        return child

    def start(self) -> None:
        """Start the key server, the SuperLink and the SuperNodes, and wait until each is up."""
        began = time.perf_counter()
        superlink_exe, supernode_exe = _executable("flower-superlink"), _executable("flower-supernode")
        _executable("flwr")
        for folder in ("logs", "tokens", "keyserver", "app", "flwr-home"):
            self._path(folder).mkdir(parents=True, exist_ok=True)
        config_path = self._path("config.toml")
        config_path.write_text(config_to_toml(self.config), encoding="utf-8")
        dimension = model_dimension(load_run_dataset(self.config))
        keyserver_port, superlink_port, *node_ports = free_ports(2 + self.users)

        self.keyserver = self._start(
            "keyserver",
            [
                sys.executable, "-m", "dphe_bench.cli", "keyserver", "--config", str(config_path),
                "--dimension", str(dimension), "--host", HOST, "--port", str(keyserver_port),
                "--tokens-dir", str(self._path("tokens")), "--out", str(self._path("keyserver")),
                "--insecure-local-test",
            ],
        )  # fmt: skip
        self.keyserver_url = f"http://{HOST}:{keyserver_port}"
        self._wait_for_keyserver()

        write_flower_app(
            self._path("app"),
            self.config,
            keyserver_url=self.keyserver_url,
            aggregator_token_file=str(self._path("tokens", token_filename(Party(AGGREGATOR)))),
            round_timeout=self.round_timeout,
            results_file=str(self._path("aggregator-rounds.json")),
        )
        self.superlink_address = f"{HOST}:{superlink_port}"
        write_superlink_connection(self._path("flwr-home"), CONNECTION, self.superlink_address, insecure=True)
        self.superlink = self._start(
            "superlink",
            [
                superlink_exe, "--insecure", "--disable-runtime-dependency-installation",
                "--host", HOST, "--port", str(superlink_port),
            ],
        )  # fmt: skip
        wait_for_port(self.superlink, HOST, superlink_port, STARTUP_TIMEOUT_S)
        for user_id, port in enumerate(node_ports):
            token = self._path("tokens", token_filename(Party(USER, user_id)))
            node_config = (
                f"partition-id={user_id} num-partitions={self.users} keyserver-token-file={_literal(str(token))}"
            )
            self.supernodes[user_id] = self._start(
                f"supernode-{user_id}",
                [
                    supernode_exe, "--insecure", "--superlink", self.superlink_address,
                    "--port", str(port), "--node-config", node_config,
                ],
            )  # fmt: skip
        for user_id, port in enumerate(node_ports):
            wait_for_port(self.supernodes[user_id], HOST, port, STARTUP_TIMEOUT_S)
        self.startup_s = time.perf_counter() - began

    def _wait_for_keyserver(self) -> None:
        status_client = KeyServerClient(self.keyserver_url, token=None, timeout=5.0)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if not self.keyserver.running():
                raise self.keyserver.died_error()
            try:
                status_client.status()
            except KeyServerError:
                if time.monotonic() > deadline:
                    raise DeploymentError(
                        f"the key server did not answer within {STARTUP_TIMEOUT_S} s; see {self.keyserver.log_path}"
                    ) from None
                time.sleep(POLL_S)
                continue
            parties = [Party(AGGREGATOR), *(Party(USER, uid) for uid in range(self.users))]
            missing = [str(p) for p in parties if not self._path("tokens", token_filename(p)).exists()]
            if missing:
                raise DeploymentError(f"the key server is up but wrote no token for {missing}")
            return

    def kill_node(self, user_id: int) -> None:
        """Crash user ``user_id``'s SuperNode (and its ClientApp) with SIGKILL, as a machine dying would."""
        kill_child(self.supernodes[user_id])

    def run(
        self, on_round_published: Callable[[int], None] | None = None, timeout: float | None = None
    ) -> LocalRunResult:
        """Run the app with ``flwr run`` until every round is published; returns the final model and the record.

        ``on_round_published(r)`` is called once the key generator has published round r (polled; used to
        inject failures). ``timeout`` (default: rounds x round timeout + 300 s) bounds the whole run.
        """
        rounds = self.config.federation.rounds
        timeout = rounds * self.round_timeout + 300.0 if timeout is None else timeout
        status_client = KeyServerClient(self.keyserver_url, token=None, timeout=5.0)
        began = time.perf_counter()
        runner = self._start("flwr-run", [_executable("flwr"), "run", str(self._path("app")), CONNECTION, "--stream"])
        announced = 0
        while runner.running():
            if time.perf_counter() - began > timeout:
                raise DeploymentError(f"the run did not finish within {timeout:.0f} s; see {self._path('logs')}")
            for child in (self.keyserver, self.superlink):
                if not child.running():
                    raise child.died_error()
            published = status_client.status()["rounds_published"]
            while announced < published:
                if on_round_published is not None:
                    on_round_published(announced)
                announced += 1
            time.sleep(POLL_S)
        run_s = time.perf_counter() - began
        published = status_client.status()["rounds_published"]
        results = self._path("aggregator-rounds.json")
        if published != rounds or not results.exists():
            raise DeploymentError(
                f"the run ended after {published} of {rounds} published rounds; see {runner.log_path}:\n"
                f"{runner.log_tail(30)}"
            )
        record = json.loads(results.read_text(encoding="utf-8"))
        average = np.load(self._path("keyserver", f"average-round-{rounds - 1}.npy"), allow_pickle=False)
        return LocalRunResult(
            average=average,
            rounds=record["rounds"],
            startup_s=self.startup_s,
            run_s=run_s,
            run_dir=self.run_dir,
            backend=record["backend"],
        )

    def stop(self) -> None:
        """Stop every process started here, all at once (each one's whole process group)."""
        stop_children(self._children)
