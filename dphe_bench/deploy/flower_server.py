"""The aggregator A as a Flower ServerApp: ``DpheStrategy`` multiplies the users' ciphertexts, holding no key.

Run config entries it reads (besides the pipeline config under ``dphe.``):

- ``keyserver-url``: the key server's base URL (https, or http on loopback only);
- ``aggregator-token-file``: the aggregator's token on the aggregator's machine;
- ``aggregator-ca-file``: PEM bundle to verify the key server's certificate ("" = the system's);
- ``round-timeout``: seconds to wait for the nodes' replies in a round (and for the nodes to connect);
- ``results-file``: where to write the per-round record as JSON ("" = nowhere).

Round r (Flower's server round r + 1): every connected node gets a TRAIN message holding ``{"round": r}``
in the ConfigRecord ``dphe``; each reply carries the node's UPDATE message (``update``, opaque bytes in
the format of ``dphe_bench.schemes.messages``). Replies with an error, updates the aggregator rejects and nodes
that do not answer within ``round-timeout`` are dropouts: the round goes on with the others, and the
AGGREGATE says how many contributed, so the key generator divides by that number.
"""

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from dphe_bench.backends import get_backend, resolve_backend_name
from dphe_bench.deploy.keyclient import KeyServerClient, read_token
from dphe_bench.deploy.runconfig import check_deployable, config_from_run_config
from dphe_bench.errors import ConfigError, DpheError, ProtocolError
from dphe_bench.files import write_text_atomically
from dphe_bench.learning.config import backend_options
from dphe_bench.schemes import Aggregator, get_scheme

RECORD = "dphe"


def wire_bytes(message: Message) -> int:
    """Bytes of ``message``'s serialised objects, as Flower pushes them (HTTP framing excluded)."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())


@dataclass(frozen=True)
class AggregatorSettings:
    """The aggregator's entries of the run config."""

    keyserver_url: str
    token_file: str
    ca_file: str | None
    round_timeout: float
    results_file: str | None

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> "AggregatorSettings":
        """Read and check the entries listed in the module docstring."""
        missing = [
            key
            for key in ("keyserver-url", "aggregator-token-file", "aggregator-ca-file", "round-timeout", "results-file")
            if key not in run_config
        ]
        if missing:
            raise ConfigError(f"the Flower run config lacks {missing}")
        timeout = float(run_config["round-timeout"])
        if timeout <= 0:
            raise ConfigError(f"round-timeout must be > 0 seconds, got {timeout}")
        return cls(
            keyserver_url=str(run_config["keyserver-url"]),
            token_file=str(run_config["aggregator-token-file"]),
            ca_file=str(run_config["aggregator-ca-file"]) or None,
            round_timeout=timeout,
            results_file=str(run_config["results-file"]) or None,
        )


class DpheStrategy(Strategy):
    """Each round: ask every connected node for an update, aggregate what arrives, have K publish the average.

    Parameters
    ----------
    aggregator : Aggregator
        The scheme's aggregator party, built from the AGGREGATOR_SETUP message (pk and the P_i; no key).
    key_server : KeyServerClient
        The aggregator's client of the key server, to post each round's AGGREGATE.
    expected_nodes : int
        Nodes to wait for before the first round (the federation's users).
    connect_timeout : float
        Seconds to wait for them.
    min_contributors : int
        The fewest updates a round needs (``federation.min_contributors``): the key generator refuses fewer.
    """

    def __init__(
        self,
        aggregator: Aggregator,
        key_server: KeyServerClient,
        expected_nodes: int,
        connect_timeout: float,
        min_contributors: int,
    ):
        self.aggregator = aggregator
        self.key_server = key_server
        self.expected_nodes = expected_nodes
        self.connect_timeout = connect_timeout
        self.min_contributors = min_contributors
        self.rounds: list[dict[str, Any]] = []
        self._round_start = 0.0
        self._messages: list[Message] = []
        self._sent: dict[int, int] = {}

    def summary(self) -> None:
        log(INFO, "DpheStrategy: scheme %s, %d users, no key held", self.aggregator.scheme, self.expected_nodes)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._round_start = time.perf_counter()
        round_index = server_round - 1
        node_ids = self._wait_for_nodes(grid) if round_index == 0 else sorted(grid.get_node_ids())
        messages = [
            Message(RecordDict({RECORD: ConfigRecord({"round": round_index})}), node_id, MessageType.TRAIN)
            for node_id in node_ids
        ]
        self._messages = messages
        self._sent = {message.metadata.dst_node_id: wire_bytes(message) for message in messages}
        log(INFO, "round %d: asked %d nodes for an update", round_index, len(messages))
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        round_index = server_round - 1
        # Flower sets each message's id when it pushes it; an error reply may come from the SuperLink itself.
        node_of = {message.metadata.message_id: message.metadata.dst_node_id for message in self._messages}
        nodes: dict[str, dict[str, Any]] = {}
        dropped: list[dict[str, Any]] = []
        for reply in replies:
            node_id = node_of[reply.metadata.reply_to_message_id]
            if reply.has_error():
                dropped.append({"node_id": node_id, "reason": f"error {reply.error.code}: {reply.error.reason}"})
                continue
            try:
                record = reply.content[RECORD]
                update = record["update"]
                report = {
                    "node_id": node_id,
                    "update_bytes": len(update),
                    "flower_reply_bytes": wire_bytes(reply),
                    "flower_instruction_bytes": self._sent[node_id],
                    "keyserver_bytes": int(record["keyserver-bytes"]),
                    "train_s": float(record["train-s"]),
                    "encrypt_s": float(record["encrypt-s"]),
                    "ciphertexts": int(record["ciphertexts"]),
                }
                self.aggregator.receive(update)
            except (DpheError, KeyError, TypeError, ValueError) as exc:
                dropped.append({"node_id": node_id, "reason": f"update rejected: {exc!r}"})
                continue
            nodes[str(self.aggregator.contributors[-1])] = report
        replied = {entry["node_id"] for entry in dropped} | {entry["node_id"] for entry in nodes.values()}
        dropped += [
            {"node_id": n, "reason": "no reply before the round timeout"} for n in self._sent if n not in replied
        ]
        for entry in dropped:
            log(WARNING, "round %d: node %s dropped out (%s)", round_index, entry["node_id"], entry["reason"])
        if len(nodes) < self.min_contributors:
            raise ProtocolError(
                f"round {round_index}: {len(nodes)} node(s) returned an update, fewer than federation.min_contributors "
                f"= {self.min_contributors} (the key generator would refuse the round); dropouts: {dropped}"
            )
        contributors = self.aggregator.contributors
        aggregate = self.aggregator.finish()
        answer = self.key_server.publish(aggregate)
        if answer["round"] != round_index or answer["contributors"] != len(contributors):
            raise ProtocolError(f"round {round_index}: the key server published {answer}")
        seconds = time.perf_counter() - self._round_start
        self.rounds.append(
            {
                "round": round_index,
                "seconds": seconds,
                "contributors": sorted(contributors),
                "dropped": dropped,
                "aggregate_bytes": len(aggregate),
                "nodes": nodes,
            }
        )
        log(INFO, "round %d: %d contributors, published in %.2f s", round_index, len(contributors), seconds)
        return None, MetricRecord({"contributors": len(contributors), "seconds": seconds})

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def _wait_for_nodes(self, grid: Grid) -> list[int]:
        deadline = time.monotonic() + self.connect_timeout
        while len(node_ids := sorted(grid.get_node_ids())) < self.expected_nodes:
            if time.monotonic() > deadline:
                raise ProtocolError(
                    f"only {len(node_ids)} of {self.expected_nodes} nodes connected within {self.connect_timeout} s"
                )
            time.sleep(0.5)
        return node_ids


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Fetch the aggregator's setup from the key server and run the federation's rounds."""
    settings = AggregatorSettings.from_run_config(context.run_config)
    config = config_from_run_config(context.run_config)
    check_deployable(config)
    key_server = KeyServerClient(settings.keyserver_url, read_token(settings.token_file), settings.ca_file)
    backend_name = resolve_backend_name(None, config.crypto.backend)
    with get_backend(backend_name, **backend_options(config.crypto, backend_name)) as backend:
        aggregator = get_scheme(config.crypto.scheme).aggregator(key_server.setup(), backend)
        strategy = DpheStrategy(
            aggregator, key_server, config.federation.users, settings.round_timeout, config.federation.min_contributors
        )
        strategy.start(grid, ArrayRecord(), num_rounds=config.federation.rounds, timeout=settings.round_timeout)
    if settings.results_file:
        record = {"scheme": config.crypto.scheme, "backend": backend_name, "rounds": strategy.rounds}
        write_text_atomically(Path(settings.results_file), json.dumps(record, indent=2) + "\n")
