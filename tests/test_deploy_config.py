"""The deployment's plumbing: config as TOML and as a Flower run config, the app files, users' data and trainers."""

import numpy as np
import pytest
from cli_helpers import call_cli

from dphe_bench.deploy.flower_app import CLIENT_APP, SERVER_APP, write_flower_app, write_superlink_connection
from dphe_bench.deploy.partition import (
    export_trainer_state,
    load_partition,
    load_run_dataset,
    model_dimension,
    restore_trainer_state,
)
from dphe_bench.deploy.runconfig import config_from_run_config, config_to_run_config, config_to_toml, toml_value
from dphe_bench.errors import ConfigError
from dphe_bench.learning.config import load_config
from dphe_bench.learning.data import split_among_users

OVERRIDES = [
    "federation.users=3",
    "federation.split='dirichlet'",
    "model.alpha=0.003",
    "crypto.backend='multiprocessing'",
    "crypto.workers=2",
    "data.path='/data/with \"quotes\" and \\\\ backslash'",
    "run.seed=7",
]


def test_config_survives_toml_and_the_flower_run_config(tmp_path):
    config = load_config(None, OVERRIDES)
    path = tmp_path / "config.toml"
    path.write_text(config_to_toml(config), encoding="utf-8")
    assert load_config(path) == config
    run_config = {**config_to_run_config(config), "keyserver-url": "http://127.0.0.1:1"}
    assert run_config["dphe.crypto.workers"] == 2
    assert "dphe.crypto.threads" not in run_config  # unset options stay unset
    assert config_from_run_config(run_config) == config


def test_a_run_config_without_dphe_entries_is_an_error():
    with pytest.raises(ConfigError, match="no dphe"):
        config_from_run_config({"num-server-rounds": 3})
    with pytest.raises(ConfigError, match="unknown option"):
        config_from_run_config({"dphe.crypto.colour": "blue"})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), None, [1, 2]])
def test_toml_value_refuses_what_toml_cannot_hold(value):
    with pytest.raises(ValueError, match="TOML scalar"):
        toml_value(value)


def test_flower_app_is_a_valid_flower_project(tmp_path):
    flwr_config = pytest.importorskip("flwr.common.config")
    config = load_config(None, OVERRIDES)
    path = write_flower_app(
        tmp_path / "app",
        config,
        keyserver_url="https://keys.example.org:8443",
        aggregator_token_file="/secrets/aggregator.token",
        round_timeout=42,
    )
    project = flwr_config.get_project_config(path.parent)
    valid, errors, _ = flwr_config.validate_config(project, check_module=True, project_dir=path.parent)
    assert valid, errors
    assert project["tool"]["flwr"]["app"]["components"] == {"serverapp": SERVER_APP, "clientapp": CLIENT_APP}
    run_config = flwr_config.get_fused_config_from_dir(path.parent, {})
    assert run_config["round-timeout"] == 42.0
    assert run_config["aggregator-ca-file"] == "" and run_config["results-file"] == ""
    assert config_from_run_config(run_config) == config

    home = write_superlink_connection(tmp_path / "home", "here", "127.0.0.1:9093", insecure=True)
    assert 'default = "here"' in home.read_text() and "insecure = true" in home.read_text()


def test_partitions_are_the_pipelines_shards():
    config = load_config(None, ["federation.users=4", "run.seed=3"])
    dataset = load_run_dataset(config)
    assert model_dimension(dataset) == 650
    seeds = np.random.SeedSequence(3).generate_state(4)
    shards = split_among_users(dataset.y_train, 4, "iid", int(seeds[1]))
    parts = [load_partition(config, u, dataset) for u in range(4)]
    for part, shard in zip(parts, shards, strict=True):
        np.testing.assert_array_equal(part.y, dataset.y_train[shard])
    assert len({part.trainer_seed for part in parts}) == 4
    with pytest.raises(ValueError, match="outside the federation"):
        load_partition(config, 4, dataset)


def test_a_restored_trainer_continues_exactly():
    """A ClientApp runs in a new process each round: export + restore must equal one trainer kept alive."""
    config = load_config(None, ["federation.users=3"])
    part = load_partition(config, 1)
    alive = part.trainer(config)
    starts = [np.zeros(650)]
    expected = []
    for _ in range(3):
        expected.append(alive.train(part.X, part.y, starts[-1]))
        starts.append(expected[-1] * 0.5)
    state: dict = {}
    for round_index in range(3):
        fresh = part.trainer(config)
        restore_trainer_state(fresh, state)
        np.testing.assert_array_equal(fresh.train(part.X, part.y, starts[round_index]), expected[round_index])
        state = export_trainer_state(fresh)
    assert export_trainer_state(part.trainer(config)) == {}
    with pytest.raises(ValueError, match="624"):
        restore_trainer_state(part.trainer(config), {**state, "mt_keys": b"\0" * 8})


def test_serve_refuses_simulated_dropouts_and_used_run_folders(tmp_path):
    code, _, err = call_cli(["serve", "--set", "federation.dropout=0.2", "--run-dir", str(tmp_path / "a")])
    assert code == 2 and "federation.dropout" in err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.log").write_text("x")
    code, _, err = call_cli(["serve", "--run-dir", str(tmp_path / "b")])
    assert code == 2 and "is not empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_flower_app_command_writes_the_app_and_refuses_plain_http(tmp_path):
    args = ["flower-app", "--set", "federation.users=4", "--aggregator-token-file", "/secure/aggregator.token"]
    code, _, err = call_cli([*args, "--keyserver-url", "http://10.0.0.7:8443", "--out", str(tmp_path / "a")])
    assert code == 2 and "plain http to another machine" in err
    assert not (tmp_path / "a").exists()
    code, out, _ = call_cli([*args, "--keyserver-url", "https://keys.example.org:8443", "--out", str(tmp_path / "b")])
    assert code == 0 and "flwr run" in out
    text = (tmp_path / "b" / "pyproject.toml").read_text()
    assert 'keyserver-url = "https://keys.example.org:8443"' in text and "users = 4" in text
