"""Datasets and their split among users.

``digits`` (scikit-learn's 8x8 handwritten digits, shipped inside scikit-learn: no download) is the
default. Features are scaled to [0, 1].
"""

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DATASETS = ("digits",)
SPLITS = ("iid", "dirichlet")


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays: X float64 (samples, features), y int64 (samples,)."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def classes(self) -> np.ndarray:
        """Sorted class labels, int64 (n_classes,)."""
        return np.unique(np.concatenate([self.y_train, self.y_test]))

    @property
    def n_features(self) -> int:
        """Number of features per sample."""
        return self.X_train.shape[1]


def load_dataset(name: str, test_fraction: float, seed: int) -> Dataset:
    """Load dataset ``name`` and split it into stratified train/test parts fixed by ``seed``."""
    if name != "digits":
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float64) / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        X, y.astype(np.int64), test_size=test_fraction, random_state=seed, stratify=y
    )
    return Dataset(name, X_train, y_train, X_test, y_test)


def split_among_users(
    y: np.ndarray, n_users: int, method: str, seed: int, dirichlet_alpha: float = 0.5, min_samples: int = 10
) -> list[np.ndarray]:
    """Split sample indices among ``n_users``.

    ``iid``: a random permutation cut into equal parts. ``dirichlet``: for every class, its samples
    are shared among users in proportions drawn from Dirichlet(alpha) (small alpha = strong class
    skew); redrawn until every user has at least ``min_samples`` samples.

    Returns one sorted int64 index array per user.
    """
    if method not in SPLITS:
        raise ValueError(f"unknown split {method!r}; valid splits: {', '.join(SPLITS)}")
    if n_users * min_samples > y.size:
        raise ValueError(
            f"{y.size} training samples are too few for {n_users} users with at least {min_samples} samples each"
        )
    rng = np.random.default_rng(seed)
    if method == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(y.size), n_users)]
    for _ in range(1000):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_users)]
        for label in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == label))
            proportions = rng.dirichlet(np.full(n_users, dirichlet_alpha))
            cuts = (np.cumsum(proportions)[:-1] * members.size).astype(int)
            for user, chunk in enumerate(np.split(members, cuts)):
                parts[user].append(chunk)
        shards = [np.sort(np.concatenate(chunks)) for chunks in parts]
        if min(s.size for s in shards) >= min_samples:
            return shards
    raise ValueError(
        f"could not draw a Dirichlet(alpha={dirichlet_alpha}) split giving each of {n_users} users "
        f"at least {min_samples} samples; raise alpha or lower the number of users"
    )
