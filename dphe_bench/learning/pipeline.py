"""The learning pipeline: centralised baseline, federated ``plain`` run, federated run of the chosen scheme.

Everything that is not crypto is fixed by ``run.seed``: the train/test split, the users' shards,
their SGD shuffling and which users drop out of which round. Keys, obfuscators and permutations come
from the OS CSPRNG, and the decrypted averages do not depend on them, so a ``dphe`` run gives the
``plain`` run's model up to fixed-point rounding.
"""

import dataclasses
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dphe_bench.backends import Backend, get_backend, resolve_backend_name
from dphe_bench.crypto.packing import quantization_step
from dphe_bench.learning.config import Config, backend_options
from dphe_bench.learning.data import Dataset, dataset_from_config, split_among_users
from dphe_bench.learning.trainer import LocalTrainer, ModelSpec, accuracy, sparsity, weight_dimension
from dphe_bench.schemes import ckks, get_scheme
from dphe_bench.schemes.federation import PHASES, Federation


@dataclass
class FederatedOutcome:
    """Result of one federated training run with one scheme."""

    scheme: str
    weights: np.ndarray
    accuracy: float
    timings: dict[str, float]
    bytes_sent: dict[str, int]
    ciphertexts_per_round: list[int]
    user_sparsity: list[float]
    union_sparsity: float
    rounds: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PipelineResult:
    """Everything one ``dphe-bench run`` measured."""

    config: Config
    backend: str
    backend_description: str
    backend_options: dict[str, Any]
    dimension: int
    centralised_accuracy: float
    outcomes: dict[str, FederatedOutcome]
    max_abs_diff_vs_plain: float | None
    environment: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (weights left out)."""
        outcomes = {}
        for name, outcome in self.outcomes.items():
            outcomes[name] = {
                "accuracy": outcome.accuracy,
                "timings_s": outcome.timings,
                "bytes_sent": outcome.bytes_sent,
                "ciphertexts_per_round": outcome.ciphertexts_per_round,
                "user_sparsity": outcome.user_sparsity,
                "union_sparsity": outcome.union_sparsity,
                "rounds": outcome.rounds,
            }
        return {
            "config": self.config.to_dict(),
            "backend": self.backend,
            "backend_options": self.backend_options,
            "backend_description": self.backend_description,
            "dimension": self.dimension,
            "centralised_accuracy": self.centralised_accuracy,
            "federated": outcomes,
            "max_abs_diff_vs_plain": self.max_abs_diff_vs_plain,
            "environment": self.environment,
        }


def run_pipeline(config: Config, backend: str | None = None, progress: bool = True) -> PipelineResult:
    """Run the whole pipeline for ``config``; ``backend`` (explicit) overrides the config and $DPHE_BACKEND."""
    backend_name = resolve_backend_name(backend, config.crypto.backend)
    with get_backend(backend_name, **backend_options(config.crypto, backend_name)) as crypto_backend:
        return _run_all(config, backend_name, crypto_backend, progress)


def aggregation_error_bound(scheme: str, config: Config, contributed: np.ndarray) -> float | None:
    """The most a published average may differ from the exact mean of ``contributed`` (float64 (users, D)),
    per weight, for one aggregation of ``scheme``; None for ``plain`` (float64 sums, no encoding).

    dense, dphe: each user's fixed-point rounding, 2**-(f+1); packed: each user's quantisation, step / 2; ckks:
    ``ckks.error_bound`` (encoding noise and the published rounding).
    """
    if scheme in ("dense", "dphe"):
        return 2.0 ** -(config.crypto.precision_bits + 1)
    if scheme == "packed":
        return quantization_step(config.crypto.quantization_bits, config.crypto.quantization_range) / 2
    if scheme == "ckks":
        return ckks.error_bound(float(np.max(np.abs(contributed))), len(contributed))
    return None


def _run_all(config: Config, backend_name: str, crypto_backend: Backend, progress: bool) -> PipelineResult:
    """The pipeline's body, with the backend built (and later closed) by ``run_pipeline``."""
    seeds = np.random.SeedSequence(config.run.seed).generate_state(4)
    dataset = dataset_from_config(config.data, int(seeds[0]), progress)
    fed = config.federation
    shards = split_among_users(dataset.y_train, fed.users, fed.split, int(seeds[1]), fed.dirichlet_alpha)
    spec = config.model
    centralised = _train_centralised(dataset, spec, fed.rounds, int(seeds[2]))

    schemes = [config.crypto.scheme]
    if config.run.compare_plain and config.crypto.scheme != "plain":
        schemes.insert(0, "plain")
    outcomes = {
        scheme: _run_federated(scheme, dataset, shards, spec, config, crypto_backend, int(seeds[3]), progress)
        for scheme in schemes
    }
    diff = None
    if "plain" in outcomes and config.crypto.scheme != "plain":
        diff = float(np.max(np.abs(outcomes[config.crypto.scheme].weights - outcomes["plain"].weights)))
    return PipelineResult(
        config=config,
        backend=backend_name,
        backend_description=crypto_backend.describe(),
        backend_options=crypto_backend.resolved_options(),
        dimension=weight_dimension(len(dataset.classes), dataset.n_features),
        centralised_accuracy=accuracy(centralised, dataset.classes, dataset.X_test, dataset.y_test),
        outcomes=outcomes,
        max_abs_diff_vs_plain=diff,
        environment={
            "python": platform.python_version(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


def _train_centralised(dataset: Dataset, spec: ModelSpec, rounds: int, seed: int) -> np.ndarray:
    """The same model trained on all training data for as many epochs as a federated user gets."""
    central_spec = dataclasses.replace(spec, local_epochs=spec.local_epochs * rounds)
    trainer = LocalTrainer(dataset.classes, dataset.n_features, central_spec, seed)
    return trainer.train(dataset.X_train, dataset.y_train, np.zeros(trainer.dimension))


def _run_federated(
    scheme: str,
    dataset: Dataset,
    shards: list[np.ndarray],
    spec: ModelSpec,
    config: Config,
    backend,
    seed: int,
    progress: bool,
) -> FederatedOutcome:
    """R rounds of local training + aggregation with ``scheme``. Same seed, same shuffles and dropouts."""
    fed = config.federation
    user_seeds = np.random.SeedSequence(seed).generate_state(fed.users + 1)
    dropout_rng = np.random.default_rng(int(user_seeds[-1]))
    trainers = [LocalTrainer(dataset.classes, dataset.n_features, spec, int(s)) for s in user_seeds[:-1]]
    dimension = trainers[0].dimension
    options = {name: getattr(config.crypto, name) for name in get_scheme(scheme).options}
    federation = Federation(
        scheme, dimension, fed.users, backend, config.crypto.key_bits, fed.min_contributors, **options
    )
    average = np.zeros(dimension)
    timings = dict.fromkeys(("train", *PHASES), 0.0)
    bytes_sent = {"key_generator": 0, "users": 0, "aggregator": 0}
    rounds, ciphertexts_per_round, local = [], [], {}
    for round_index in tqdm(
        range(fed.rounds), desc=f"{scheme} rounds", unit="round", disable=None if progress else True
    ):
        present = _present_users(fed.users, fed.dropout, fed.min_contributors, dropout_rng)
        start = time.perf_counter()
        local = {
            uid: trainers[uid].train(dataset.X_train[shards[uid]], dataset.y_train[shards[uid]], average)
            for uid in present
        }
        train_seconds = time.perf_counter() - start
        result = federation.run_round(local, progress=progress)
        average = result.mean
        timings["train"] += train_seconds
        for phase, seconds in result.timings.items():
            timings[phase] += seconds
        for party, count in result.bytes_sent.items():
            bytes_sent[party] += count
        ciphertexts_per_round.append(sum(result.ciphertexts.values()))
        contributed = np.stack([local[uid] for uid in result.contributors])
        round_error = {"max_abs_error": float(np.max(np.abs(average - contributed.mean(axis=0))))}
        bound = aggregation_error_bound(scheme, config, contributed)
        if bound is not None:
            round_error["error_bound"] = bound
        rounds.append(
            {
                "round": round_index,
                "contributors": result.contributors,
                "accuracy": accuracy(average, dataset.classes, dataset.X_test, dataset.y_test),
                "timings_s": {"train": train_seconds, **result.timings},
                "bytes_sent": result.bytes_sent,
                "ciphertexts": {str(k): v for k, v in result.ciphertexts.items()},
                **round_error,
            }
        )
    last_local = list(local.values())
    union = np.any(np.stack(last_local) != 0, axis=0)
    return FederatedOutcome(
        scheme=scheme,
        weights=average,
        accuracy=accuracy(average, dataset.classes, dataset.X_test, dataset.y_test),
        timings=timings,
        bytes_sent=bytes_sent,
        ciphertexts_per_round=ciphertexts_per_round,
        user_sparsity=[sparsity(w) for w in last_local],
        union_sparsity=float(1.0 - union.mean()),
        rounds=rounds,
    )


def _present_users(n_users: int, dropout: float, min_present: int, rng: np.random.Generator) -> list[int]:
    """Users taking part in a round: each drops with probability ``dropout``; at least ``min_present`` stay.

    When too few stay, randomly chosen dropouts are brought back (the key generator would refuse the round).
    """
    present = [uid for uid in range(n_users) if rng.random() >= dropout]
    if len(present) < min_present:
        absent = [uid for uid in range(n_users) if uid not in present]
        present = sorted(present + [int(u) for u in rng.choice(absent, min_present - len(present), replace=False)])
    return present
