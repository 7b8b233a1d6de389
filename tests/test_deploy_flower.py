"""Integration: a real federation on loopback ports (key server, Flower SuperLink, 3 SuperNodes), 2 rounds of dphe."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from cli_helpers import call_cli

from dphe_bench.deploy.local import LocalFederation
from dphe_bench.deploy.partition import load_partition, load_run_dataset, model_dimension
from dphe_bench.deploy.processes import DeploymentError
from dphe_bench.learning.config import load_config
from dphe_bench.learning.pipeline import run_pipeline
from dphe_bench.schemes.federation import Federation

pytestmark = [pytest.mark.flower, pytest.mark.slow, pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")]

CRYPTO = ["crypto.key_bits=1024", "crypto.backend='gmpy2'"]
OVERRIDES = ["federation.users=3", "federation.rounds=2", *CRYPTO]


def _processes_of(run_dir: Path) -> list[int]:
    """Pids of the processes (of this user) whose FLWR_HOME is this run's: every process a run started has it."""
    marker = f"FLWR_HOME={run_dir / 'flwr-home'}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


def test_serve_runs_the_federation_and_equals_the_in_process_simulation(tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = call_cli(["serve", *(a for o in OVERRIDES for a in ("--set", o)), "--run-dir", str(run_dir)])
    assert code == 0, err
    assert _processes_of(run_dir) == []
    assert "3 nodes, 2 rounds" in out and "final model: test accuracy" in out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulated = run_pipeline(load_config(None, [*OVERRIDES, "run.compare_plain=false"]), progress=False)
    published = np.load(run_dir / "keyserver" / "average-round-1.npy", allow_pickle=False)
    np.testing.assert_array_equal(published, simulated.outcomes["dphe"].weights)

    record = json.loads((run_dir / "result.json").read_text())
    assert record["accuracy"] == simulated.outcomes["dphe"].accuracy
    assert [r["contributors"] for r in record["rounds"]] == [[0, 1, 2], [0, 1, 2]]
    for entry, simulated_round in zip(record["rounds"], simulated.outcomes["dphe"].rounds, strict=True):
        assert entry["dropped"] == []
        nodes = entry["nodes"]
        assert sorted(nodes) == ["0", "1", "2"]
        # The UPDATE messages are byte for byte as large as the simulation's.
        assert sum(node["update_bytes"] for node in nodes.values()) == simulated_round["bytes_sent"]["users"]
        assert {u: n["ciphertexts"] for u, n in nodes.items()} == simulated_round["ciphertexts"]
        for node in nodes.values():
            assert node["flower_reply_bytes"] > node["update_bytes"] > 0
            assert node["keyserver_bytes"] > 0
    logs = {path.name for path in (run_dir / "logs").iterdir()}
    assert logs == {"keyserver.log", "superlink.log", "flwr-run.log", *(f"supernode-{u}.log" for u in range(3))}


def test_a_node_dying_mid_run_does_not_stop_the_round(tmp_path):
    """Node 2 is killed once round 0 is published: round 1 completes with users 0 and 1 and divides by 2."""
    config = load_config(None, OVERRIDES)
    with LocalFederation(config, tmp_path / "run", round_timeout=30) as federation:

        def kill_node_2(round_index: int) -> None:
            if round_index == 0:
                federation.kill_node(2)

        result = federation.run(on_round_published=kill_node_2)
    assert _processes_of(tmp_path / "run") == []
    assert all(child.process.returncode is not None for child in federation.children)

    assert [r["contributors"] for r in result.rounds] == [[0, 1, 2], [0, 1]]
    assert len(result.rounds[1]["dropped"]) == 1
    # The same rounds in process: all three users, then users 0 and 1 only.
    dimension = model_dimension(load_run_dataset(config))
    partitions = [load_partition(config, u) for u in range(3)]
    trainers = [p.trainer(config) for p in partitions]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulation = Federation("dphe", dimension, 3, "gmpy2", key_bits=1024, precision_bits=32)
    average = np.zeros(dimension)
    for present in ([0, 1, 2], [0, 1]):
        local = {u: trainers[u].train(partitions[u].X, partitions[u].y, average) for u in present}
        average = simulation.run_round(local).mean
    np.testing.assert_array_equal(result.average, average)


def test_a_node_whose_client_app_fails_is_a_dropout(tmp_path):
    """Node 2 holds user 1's token: its ClientApp refuses to run, the aggregator gets an error reply."""
    config = load_config(None, ["federation.users=3", "federation.rounds=1", *CRYPTO])
    with LocalFederation(config, tmp_path / "run", round_timeout=60) as federation:
        tokens = tmp_path / "run" / "tokens"
        (tokens / "user-2.token").write_text((tokens / "user-1.token").read_text())
        result = federation.run()
    assert _processes_of(tmp_path / "run") == []
    (record,) = result.rounds
    assert record["contributors"] == [0, 1]
    (dropped,) = record["dropped"]
    assert "belongs to user 1, but this node's partition-id is 2" in dropped["reason"]


def test_a_failing_aggregator_stops_the_run_with_its_log(tmp_path):
    config = load_config(None, ["federation.users=2", "federation.rounds=1", *CRYPTO])
    with (
        pytest.raises(DeploymentError, match=r"(?s)after 0 of 1 published rounds.*cannot read the key server token"),
        LocalFederation(config, tmp_path / "run", round_timeout=60) as federation,
    ):
        (tmp_path / "run" / "tokens" / "aggregator.token").unlink()
        federation.run()
    assert _processes_of(tmp_path / "run") == []
    assert all(child.process.returncode is not None for child in federation.children)
