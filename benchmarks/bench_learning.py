"""The learning pipeline: one full federated round (local training + aggregation) and the accuracy reached.

Digits (no download), 5 users, 1024-bit keys (accuracy does not depend on the key size, time does: see
bench_paillier for key sizes). Run: ``asv run --python=same --quick --bench bench_learning``.
"""

import warnings
from typing import ClassVar

import numpy as np

from dphe_bench.learning.config import load_config
from dphe_bench.learning.data import load_dataset, split_among_users
from dphe_bench.learning.pipeline import run_pipeline
from dphe_bench.learning.trainer import LocalTrainer, ModelSpec
from dphe_bench.schemes.federation import Federation

from .common import backend_names, fast_backend, make_backend, scheme_names, skip_unless_runnable

USERS = 5
KEY_BITS = 1024
ACCURACY_USERS = [5, 10]


class LearningRound:
    """Every user trains locally from the current average, then the scheme aggregates: one round."""

    params: ClassVar = (scheme_names(), backend_names())
    param_names: ClassVar = ["scheme", "backend"]
    number = 1
    warmup_time = 0
    timeout = 600

    def setup(self, scheme, backend):
        skip_unless_runnable(scheme)
        crypto = make_backend(backend)
        self.dataset = load_dataset("digits", 0.25, 0)
        self.shards = split_among_users(self.dataset.y_train, USERS, "iid", 0)
        spec = ModelSpec()
        self.trainers = [LocalTrainer(self.dataset.classes, self.dataset.n_features, spec, s) for s in range(USERS)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.federation = Federation(scheme, self.trainers[0].dimension, USERS, crypto, KEY_BITS)
        self.average = np.zeros(self.trainers[0].dimension)

    def time_round(self, scheme, backend):
        data = self.dataset
        local = {
            uid: trainer.train(data.X_train[shard], data.y_train[shard], self.average)
            for uid, (trainer, shard) in enumerate(zip(self.trainers, self.shards, strict=True))
        }
        self.federation.run_round(local)


class LearningAccuracy:
    """Test accuracy (%) of the federated model after the default 3 rounds, per scheme and number of users."""

    params: ClassVar = (scheme_names(), ACCURACY_USERS)
    param_names: ClassVar = ["scheme", "users"]
    timeout = 600

    def track_accuracy(self, scheme, users):
        skip_unless_runnable(scheme)
        overrides = [
            f"crypto.scheme={scheme}",
            f"crypto.key_bits={KEY_BITS}",
            f"federation.users={users}",
            "run.compare_plain=false",
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_pipeline(load_config(None, overrides), backend=fast_backend().name, progress=False)
        return 100.0 * result.outcomes[scheme].accuracy

    track_accuracy.unit = "%"
