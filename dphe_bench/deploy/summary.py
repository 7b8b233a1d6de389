"""What ``dphe-bench serve`` prints and records: per-round time and bytes per node, against the simulation."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from dphe_bench.deploy.local import LocalRunResult
from dphe_bench.deploy.partition import load_run_dataset
from dphe_bench.files import write_text_atomically
from dphe_bench.learning.config import Config
from dphe_bench.learning.pipeline import run_pipeline
from dphe_bench.learning.trainer import accuracy

NODE_COLUMNS = ("update_bytes", "flower_reply_bytes", "flower_instruction_bytes", "keyserver_bytes")


def per_node_means(result: LocalRunResult) -> list[dict[str, float]]:
    """Per round: the mean over contributing nodes of each byte count in ``NODE_COLUMNS``."""
    return [
        {column: float(np.mean([node[column] for node in record["nodes"].values()])) for column in NODE_COLUMNS}
        for record in result.rounds
    ]


def deployed_accuracy(config: Config, average: np.ndarray) -> float:
    """Test accuracy of the published model on the run's dataset."""
    dataset = load_run_dataset(config)
    return accuracy(average, dataset.classes, dataset.X_test, dataset.y_test)


def compare_with_simulation(config: Config, result: LocalRunResult) -> dict[str, Any]:
    """Run the in-process pipeline on the same config and compare its model, time and bytes with the deployment."""
    simulated = run_pipeline(
        dataclasses.replace(config, run=dataclasses.replace(config.run, compare_plain=False)), progress=False
    )
    outcome = simulated.outcomes[config.crypto.scheme]
    return {
        "identical": bool(np.array_equal(result.average, outcome.weights)),
        "max_abs_diff": float(np.max(np.abs(result.average - outcome.weights))),
        "accuracy": outcome.accuracy,
        # Key generation happens before the first round in a deployment, so it is left out here too.
        "seconds_per_round": [
            float(sum(seconds for phase, seconds in r["timings_s"].items() if phase != "setup")) for r in outcome.rounds
        ],
        "update_bytes_per_node": [r["bytes_sent"]["users"] / len(r["contributors"]) for r in outcome.rounds],
    }


def format_deployment(
    config: Config, result: LocalRunResult, test_accuracy: float, comparison: dict[str, Any] | None
) -> str:
    """The table ``dphe-bench serve`` prints."""
    crypto = config.crypto
    lines = [
        f"dphe-bench serve: {config.data.dataset} ({config.data.features}), D = {result.average.size} weights, "
        f"{config.federation.users} nodes, {config.federation.rounds} rounds, seed {config.run.seed}",
        f"scheme {crypto.scheme}, backend {result.backend} ({crypto.obfuscation} obfuscation), "
        f"{crypto.key_bits}-bit keys",
        f"startup {result.startup_s:.1f} s, run {result.run_s:.1f} s (flwr run, submission to end)",
        "",
        "bytes per node (mean over contributors): update = the UPDATE message, Flower up/down = the reply and",
        "the instruction as Flower serialises them, key server = HTTP bodies to and from the key server",
        "",
        f"{'round':>5}  {'contributors':<12}  {'dropped':>7}  {'seconds':>7}  {'update':>10}  {'Flower up':>10}  "
        f"{'Flower down':>11}  {'key server':>10}",
    ]
    for record, means in zip(result.rounds, per_node_means(result), strict=True):
        lines.append(
            f"{record['round']:>5}  {','.join(map(str, record['contributors'])):<12}  {len(record['dropped']):>7}  "
            f"{record['seconds']:>7.2f}  {means['update_bytes']:>10,.0f}  {means['flower_reply_bytes']:>10,.0f}  "
            f"{means['flower_instruction_bytes']:>11,.0f}  {means['keyserver_bytes']:>10,.0f}"
        )
    lines += ["", f"final model: test accuracy {test_accuracy:.4f}"]
    if comparison is not None:
        verdict = "identical" if comparison["identical"] else f"max |difference| {comparison['max_abs_diff']:.3g}"
        seconds = np.mean(comparison["seconds_per_round"])
        update = np.mean(comparison["update_bytes_per_node"])
        lines += [
            f"in-process simulation, same config: test accuracy {comparison['accuracy']:.4f}; model {verdict}",
            f"  seconds per round: deployed {np.mean([r['seconds'] for r in result.rounds]):.2f}, simulated"
            f" {seconds:.2f} (train + encrypt + aggregate + decrypt; users one after another; no key generation)",
            f"  update bytes per node and round: deployed "
            f"{np.mean([m['update_bytes'] for m in per_node_means(result)]):,.0f}, simulated {update:,.0f}",
        ]
    return "\n".join(lines)


def write_deployment_record(
    config: Config, result: LocalRunResult, test_accuracy: float, comparison: dict[str, Any] | None
) -> Path:
    """Write ``result.json`` into the run folder (config, per-round record, comparison); returns its path."""
    record = {
        "config": config.to_dict(),
        "backend": result.backend,
        "dimension": int(result.average.size),
        "startup_s": result.startup_s,
        "run_s": result.run_s,
        "rounds": result.rounds,
        "accuracy": test_accuracy,
        "simulation": comparison,
    }
    path = result.run_dir / "result.json"
    write_text_atomically(path, json.dumps(record, indent=2) + "\n")
    return path
