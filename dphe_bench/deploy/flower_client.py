"""A user U_i as a Flower ClientApp: local training, then encryption of its update with the configured backend.

Node config entries (``flower-supernode --node-config``): ``partition-id`` (this user's id, which must match
its key server token), ``keyserver-token-file`` (the user's token on its machine) and optionally
``keyserver-ca-file`` (PEM bundle for the key server's certificate). The key server's URL and the pipeline
config come from the run config (``keyserver-url``, ``dphe.*``).

Per round: fetch the setup once (pk, P, P_i; kept in the node's local state), fetch the average that the key
generator published after the previous round (zeros before round 0), train from it, encrypt, and return the
UPDATE message as opaque bytes in the ConfigRecord ``dphe`` of the reply.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from dphe_bench.backends import get_backend, resolve_backend_name
from dphe_bench.deploy.keyclient import KeyServerClient, read_token
from dphe_bench.deploy.partition import export_trainer_state, load_partition, restore_trainer_state
from dphe_bench.deploy.runconfig import config_from_run_config
from dphe_bench.errors import ConfigError, ProtocolError
from dphe_bench.learning.config import backend_options
from dphe_bench.schemes import get_scheme

RECORD = "dphe"
STATE = "dphe-user"


@dataclass(frozen=True)
class UserSettings:
    """A node's entries of the node config, plus the key server URL of the run config."""

    user_id: int
    keyserver_url: str
    token_file: str
    ca_file: str | None

    @classmethod
    def from_context(cls, node_config: Mapping[str, Any], run_config: Mapping[str, Any]) -> "UserSettings":
        """Read and check the entries listed in the module docstring."""
        for key in ("partition-id", "keyserver-token-file"):
            if key not in node_config:
                raise ConfigError(f"the node config lacks {key!r} (flower-supernode --node-config)")
        if "keyserver-url" not in run_config:
            raise ConfigError("the Flower run config lacks 'keyserver-url'")
        return cls(
            user_id=int(node_config["partition-id"]),
            keyserver_url=str(run_config["keyserver-url"]),
            token_file=str(node_config["keyserver-token-file"]),
            ca_file=str(node_config.get("keyserver-ca-file", "")) or None,
        )


app = ClientApp()


@app.train()
def train(message: Message, context: Context) -> Message:
    """One round of user ``partition-id``: train from the published average, encrypt, reply with the UPDATE."""
    settings = UserSettings.from_context(context.node_config, context.run_config)
    config = config_from_run_config(context.run_config)
    round_index = int(message.content[RECORD]["round"])
    key_server = KeyServerClient(settings.keyserver_url, read_token(settings.token_file), settings.ca_file)
    state = dict(context.state.config_records[STATE]) if STATE in context.state.config_records else {}
    setup = state.pop("setup") if "setup" in state else key_server.setup()

    backend_name = resolve_backend_name(None, config.crypto.backend)
    with get_backend(backend_name, **backend_options(config.crypto, backend_name)) as backend:
        user = get_scheme(config.crypto.scheme).user(setup, backend)
        if user.user_id != settings.user_id:
            raise ProtocolError(
                f"the token {settings.token_file} belongs to user {user.user_id}, "
                f"but this node's partition-id is {settings.user_id}"
            )
        start = np.zeros(user.dimension) if round_index == 0 else key_server.average(round_index - 1, user.dimension)
        partition = load_partition(config, settings.user_id)
        trainer = partition.trainer(config)
        restore_trainer_state(trainer, state)
        began = time.perf_counter()
        weights = trainer.train(partition.X, partition.y, start)
        trained = time.perf_counter()
        if backend.obfuscation == "pool" and get_scheme(config.crypto.scheme).encrypted:
            backend.precompute(user.public_key, user.ciphertexts_needed(weights))
        update = user.submit(weights, round_index)
        encrypted = time.perf_counter()

    context.state[STATE] = ConfigRecord({"setup": setup, **export_trainer_state(trainer)})
    reply = ConfigRecord(
        {
            "update": update,
            "train-s": trained - began,
            "encrypt-s": encrypted - trained,
            "keyserver-bytes": key_server.bytes_received + key_server.bytes_sent,
            "ciphertexts": user.last_ciphertext_count,
        }
    )
    return Message(RecordDict({RECORD: reply}), reply_to=message)
