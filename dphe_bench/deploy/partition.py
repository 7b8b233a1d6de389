"""What a deployed user trains on, derived from the config exactly as ``pipeline.run_pipeline`` does.

A node of the local demo holds shard ``user_id`` of the configured dataset and the SGD seed that user
gets in the in-process pipeline, so a deployment reproduces the simulation's model. ClientApps run in a
fresh process for every round, so the trainer's state (SGD step count and shuffling generator) is
exported after each round and restored before the next.
"""

from dataclasses import dataclass

import numpy as np

from dphe_bench.learning.config import Config
from dphe_bench.learning.data import Dataset, dataset_from_config, split_among_users
from dphe_bench.learning.trainer import LocalTrainer, weight_dimension


@dataclass(frozen=True)
class Partition:
    """One user's training data and the seed of its trainer."""

    X: np.ndarray
    y: np.ndarray
    classes: np.ndarray
    n_features: int
    trainer_seed: int

    def trainer(self, config: Config) -> LocalTrainer:
        """A fresh trainer for this partition, seeded as the pipeline seeds this user's."""
        return LocalTrainer(self.classes, self.n_features, config.model, self.trainer_seed)


def _seeds(config: Config) -> np.ndarray:
    # The pipeline's derivation (run_pipeline/_run_all): [dataset, split, centralised, users].
    return np.random.SeedSequence(config.run.seed).generate_state(4)


def load_run_dataset(config: Config) -> Dataset:
    """The dataset of the run, split into train and test as the pipeline splits it."""
    return dataset_from_config(config.data, int(_seeds(config)[0]))


def model_dimension(dataset: Dataset) -> int:
    """D, the length of the weight vectors for ``dataset``."""
    return weight_dimension(len(dataset.classes), dataset.n_features)


def load_partition(config: Config, user_id: int, dataset: Dataset | None = None) -> Partition:
    """User ``user_id``'s shard and trainer seed (``_run_federated``'s derivation), from ``config`` alone."""
    fed = config.federation
    if not 0 <= user_id < fed.users:
        raise ValueError(f"user id {user_id} is outside the federation's users 0..{fed.users - 1}")
    seeds = _seeds(config)
    dataset = load_run_dataset(config) if dataset is None else dataset
    shards = split_among_users(dataset.y_train, fed.users, fed.split, int(seeds[1]), fed.dirichlet_alpha)
    user_seeds = np.random.SeedSequence(int(seeds[3])).generate_state(fed.users + 1)
    shard = shards[user_id]
    return Partition(
        X=dataset.X_train[shard],
        y=dataset.y_train[shard],
        classes=dataset.classes,
        n_features=dataset.n_features,
        trainer_seed=int(user_seeds[user_id]),
    )


def export_trainer_state(trainer: LocalTrainer) -> dict[str, int | float | bytes]:
    """The state a trainer carries from round to round: SGD's step count ``t_`` and its shuffling generator.

    Empty before the first ``train`` call.
    """
    model = trainer.model
    if not hasattr(model, "t_"):
        return {}
    name, keys, position, has_gauss, cached_gaussian = model.random_state.get_state(legacy=True)
    if name != "MT19937":
        raise ValueError(f"unexpected bit generator {name!r} in the trainer's random state")
    return {
        "t": float(model.t_),
        "mt_keys": np.asarray(keys, dtype="<u4").tobytes(),
        "mt_position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def restore_trainer_state(trainer: LocalTrainer, state: dict[str, int | float | bytes]) -> None:
    """Put a fresh trainer where ``export_trainer_state`` left another one (no-op for an empty state)."""
    if not state:
        return
    keys = np.frombuffer(state["mt_keys"], dtype="<u4").astype(np.uint32)
    if keys.size != 624:
        raise ValueError(f"trainer state holds {keys.size} MT19937 words, expected 624")
    trainer.model.random_state.set_state(
        ("MT19937", keys, int(state["mt_position"]), int(state["has_gauss"]), float(state["cached_gaussian"]))
    )
    trainer.model.t_ = float(state["t"])
