"""Sparse linear classifiers trained locally with elastic-net SGD, as flat weight vectors.

A model is one-vs-rest ``sklearn.linear_model.SGDClassifier(penalty="elasticnet")``; its weights
are flattened as ``concatenate([coef.ravel(), intercept])``, i.e. coef (rows, n_features) in
row-major order followed by the rows intercepts: D = rows * (n_features + 1), where rows is the
number of classes (1 for a two-class problem, as in scikit-learn).
"""

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import SGDClassifier


@dataclass(frozen=True)
class ModelSpec:
    """Hyper-parameters of the local SGD model."""

    loss: str = "hinge"
    alpha: float = 0.01
    l1_ratio: float = 0.9
    local_epochs: int = 2


def model_rows(n_classes: int) -> int:
    """Rows of coef: one per class, or a single one for two classes."""
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
    return 1 if n_classes == 2 else n_classes


def weight_dimension(n_classes: int, n_features: int) -> int:
    """D for a model of this shape."""
    return model_rows(n_classes) * (n_features + 1)


def flatten(coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """coef (rows, n_features) and intercept (rows,) -> float64 (D,)."""
    return np.concatenate([coef.ravel(), intercept]).astype(np.float64)


def unflatten(weights: np.ndarray, n_classes: int, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 (D,) -> coef (rows, n_features), intercept (rows,)."""
    rows = model_rows(n_classes)
    if weights.shape != (rows * (n_features + 1),):
        raise ValueError(f"weights of shape {weights.shape} do not fit {n_classes} classes x {n_features} features")
    split = rows * n_features
    return weights[:split].reshape(rows, n_features).copy(), weights[split:].copy()


class LocalTrainer:
    """One party's SGD classifier; keeps its optimiser state (step count) across rounds.

    Parameters
    ----------
    classes : numpy.ndarray
        All class labels of the federation (a shard may lack some).
    n_features : int
        Features per sample.
    spec : ModelSpec
        Loss, regularisation and epochs per round.
    seed : int
        Seeds the shuffling of this party's samples.
    """

    def __init__(self, classes: np.ndarray, n_features: int, spec: ModelSpec, seed: int):
        self.classes = np.asarray(classes)
        self.n_features = n_features
        self.spec = spec
        self.model = SGDClassifier(
            loss=spec.loss,
            penalty="elasticnet",
            alpha=spec.alpha,
            l1_ratio=spec.l1_ratio,
            random_state=np.random.RandomState(seed),
        )

    @property
    def dimension(self) -> int:
        """D of this model's weight vector."""
        return weight_dimension(len(self.classes), self.n_features)

    def train(self, X: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Run ``local_epochs`` epochs of SGD on (X, y) from the weights ``start``; return the new weights (D,)."""
        coef, intercept = unflatten(start, len(self.classes), self.n_features)
        # partial_fit continues from coef_/intercept_ when they exist, so the shared average is the start.
        self.model.coef_, self.model.intercept_ = coef, intercept
        for _ in range(self.spec.local_epochs):
            self.model.partial_fit(X, y, classes=self.classes)
        return flatten(self.model.coef_, self.model.intercept_)


def accuracy(weights: np.ndarray, classes: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Fraction of samples whose arg-max one-vs-rest score picks the true class."""
    coef, intercept = unflatten(weights, len(classes), X.shape[1])
    scores = X @ coef.T + intercept
    winners = (scores[:, 0] > 0).astype(int) if len(classes) == 2 else np.argmax(scores, axis=1)
    predicted = classes[winners]
    return float(np.mean(predicted == y))


def sparsity(weights: np.ndarray) -> float:
    """Fraction of exactly-zero entries."""
    return float(np.mean(weights == 0.0))
