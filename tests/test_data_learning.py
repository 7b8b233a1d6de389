"""Tests for dphe_bench.learning.data (datasets, splits among users) and .trainer (local SGD models)."""

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier

from dphe_bench.learning.data import load_dataset, split_among_users
from dphe_bench.learning.trainer import (
    LocalTrainer,
    ModelSpec,
    accuracy,
    flatten,
    model_rows,
    sparsity,
    unflatten,
    weight_dimension,
)

N_DIGITS = 1797
N_FEATURES = 64


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", 0.25, seed=0)


# ----------------------------------------------------------------------------------------------- data


def test_load_digits_shapes_and_scaling(digits):
    assert digits.name == "digits"
    assert digits.n_features == N_FEATURES
    assert digits.X_train.shape[1] == digits.X_test.shape[1] == N_FEATURES
    assert digits.X_train.shape[0] == digits.y_train.shape[0]
    assert digits.X_test.shape[0] == digits.y_test.shape[0]
    assert digits.X_train.shape[0] + digits.X_test.shape[0] == N_DIGITS
    assert digits.X_test.shape[0] == pytest.approx(0.25 * N_DIGITS, abs=1)
    assert digits.X_train.dtype == np.float64 and digits.X_test.dtype == np.float64
    assert digits.y_train.dtype == np.int64 and digits.y_test.dtype == np.int64
    for X in (digits.X_train, digits.X_test):
        assert X.min() >= 0.0 and X.max() <= 1.0
    # scaled by 16: the raw pixel maximum 16 maps to exactly 1
    assert max(digits.X_train.max(), digits.X_test.max()) == 1.0
    np.testing.assert_array_equal(digits.classes, np.arange(10))


def test_split_is_stratified(digits):
    train_fraction = np.bincount(digits.y_train) / digits.y_train.size
    test_fraction = np.bincount(digits.y_test) / digits.y_test.size
    np.testing.assert_allclose(train_fraction, test_fraction, atol=0.01)


def test_split_reproducible_by_seed(digits):
    again = load_dataset("digits", 0.25, seed=0)
    np.testing.assert_array_equal(again.X_train, digits.X_train)
    np.testing.assert_array_equal(again.y_train, digits.y_train)
    np.testing.assert_array_equal(again.X_test, digits.X_test)
    np.testing.assert_array_equal(again.y_test, digits.y_test)
    other = load_dataset("digits", 0.25, seed=1)
    assert not np.array_equal(other.y_train, digits.y_train)


def test_test_fraction_is_used():
    ds = load_dataset("digits", 0.5, seed=0)
    assert ds.X_test.shape[0] == pytest.approx(0.5 * N_DIGITS, abs=1)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="nosuch"):
        load_dataset("nosuch", 0.25, seed=0)


def _check_partition(shards, n):
    everything = np.concatenate(shards)
    assert everything.size == n, "shards overlap or miss samples"
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))
    for shard in shards:
        assert shard.dtype == np.int64
        np.testing.assert_array_equal(shard, np.sort(shard))


@pytest.mark.parametrize("method", ["iid", "dirichlet"])
@pytest.mark.parametrize("n_users", [1, 3, 7])
def test_split_among_users_is_a_partition(digits, method, n_users):
    y = digits.y_train
    shards = split_among_users(y, n_users, method, seed=3)
    assert len(shards) == n_users
    _check_partition(shards, y.size)
    assert min(s.size for s in shards) >= 10


def test_iid_shards_are_equal_sized(digits):
    shards = split_among_users(digits.y_train, 4, "iid", seed=0)
    sizes = [s.size for s in shards]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("method", ["iid", "dirichlet"])
def test_split_among_users_reproducible_by_seed(digits, method):
    y = digits.y_train
    first = split_among_users(y, 5, method, seed=11)
    second = split_among_users(y, 5, method, seed=11)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    other = split_among_users(y, 5, method, seed=12)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_dirichlet_respects_min_samples(digits):
    shards = split_among_users(digits.y_train, 5, "dirichlet", seed=0, dirichlet_alpha=0.3, min_samples=40)
    assert min(s.size for s in shards) >= 40
    _check_partition(shards, digits.y_train.size)


def _mean_max_class_fraction(y, shards):
    return float(np.mean([np.bincount(y[s], minlength=10).max() / s.size for s in shards]))


def test_dirichlet_small_alpha_is_more_class_skewed_than_iid(digits):
    y = digits.y_train
    iid = np.mean([_mean_max_class_fraction(y, split_among_users(y, 5, "iid", seed)) for seed in range(3)])
    skewed = np.mean(
        [
            _mean_max_class_fraction(y, split_among_users(y, 5, "dirichlet", seed, dirichlet_alpha=0.1))
            for seed in range(3)
        ]
    )
    mild = np.mean(
        [
            _mean_max_class_fraction(y, split_among_users(y, 5, "dirichlet", seed, dirichlet_alpha=100.0))
            for seed in range(3)
        ]
    )
    # iid: each user sees about 10 % of each class
    assert iid < 0.2
    assert skewed > iid + 0.15
    assert skewed > mild


def test_too_few_samples(digits):
    with pytest.raises(ValueError, match="too few"):
        split_among_users(digits.y_train[:50], 6, "iid", seed=0)
    with pytest.raises(ValueError, match="too few"):
        split_among_users(digits.y_train, 2, "dirichlet", seed=0, min_samples=digits.y_train.size)
    # exactly enough is fine
    shards = split_among_users(digits.y_train[:50], 5, "iid", seed=0)
    assert [s.size for s in shards] == [10] * 5


def test_unknown_split(digits):
    with pytest.raises(ValueError, match="nosuch"):
        split_among_users(digits.y_train, 3, "nosuch", seed=0)


# ------------------------------------------------------------------------------------------- learning


def test_model_rows_and_dimension():
    assert model_rows(2) == 1
    assert model_rows(3) == 3
    assert model_rows(10) == 10
    assert weight_dimension(10, 64) == 650
    assert weight_dimension(2, 64) == 65
    with pytest.raises(ValueError):
        model_rows(1)


@pytest.mark.parametrize(("n_classes", "rows"), [(10, 10), (3, 3), (2, 1)])
def test_flatten_unflatten_round_trip(n_classes, rows):
    rng = np.random.default_rng(0)
    n_features = 7
    coef = rng.normal(size=(rows, n_features))
    intercept = rng.normal(size=rows)
    flat = flatten(coef, intercept)
    assert flat.shape == (rows * (n_features + 1),)
    assert flat.dtype == np.float64
    # the documented layout: coef row-major, then the intercepts
    np.testing.assert_array_equal(flat[: rows * n_features], coef.ravel())
    np.testing.assert_array_equal(flat[rows * n_features :], intercept)
    coef2, intercept2 = unflatten(flat, n_classes, n_features)
    assert coef2.shape == (rows, n_features)
    assert intercept2.shape == (rows,)
    np.testing.assert_array_equal(coef2, coef)
    np.testing.assert_array_equal(intercept2, intercept)
    # unflatten returns copies: changing them leaves the flat vector alone
    coef2[0, 0] += 1.0
    intercept2[0] += 1.0
    np.testing.assert_array_equal(flat[: rows * n_features], coef.ravel())
    np.testing.assert_array_equal(flat[rows * n_features :], intercept)


@pytest.mark.parametrize(
    ("length", "n_classes", "n_features"),
    [(649, 10, 64), (651, 10, 64), (130, 2, 64), (65, 3, 64), (0, 2, 3)],
)
def test_unflatten_wrong_shape(length, n_classes, n_features):
    with pytest.raises(ValueError):
        unflatten(np.zeros(length), n_classes, n_features)


def test_unflatten_rejects_2d():
    with pytest.raises(ValueError):
        unflatten(np.zeros((1, 65)), 2, 64)


def _sklearn_model(X, y, seed=0):
    model = SGDClassifier(
        loss="hinge", penalty="elasticnet", alpha=0.01, l1_ratio=0.9, max_iter=5, tol=None, random_state=seed
    )
    return model.fit(X, y)


def test_accuracy_matches_sklearn_score_multiclass(digits):
    model = _sklearn_model(digits.X_train, digits.y_train)
    weights = flatten(model.coef_, model.intercept_)
    assert weights.shape == (weight_dimension(10, N_FEATURES),)
    ours = accuracy(weights, model.classes_, digits.X_test, digits.y_test)
    assert ours == pytest.approx(model.score(digits.X_test, digits.y_test), abs=1e-12)
    assert 0.5 < ours <= 1.0
    # on the training data as well
    ours_train = accuracy(weights, model.classes_, digits.X_train, digits.y_train)
    assert ours_train == pytest.approx(model.score(digits.X_train, digits.y_train), abs=1e-12)


@pytest.mark.parametrize("pair", [(0, 1), (3, 8), (4, 9)])
def test_accuracy_matches_sklearn_score_two_classes(digits, pair):
    train = np.isin(digits.y_train, pair)
    test = np.isin(digits.y_test, pair)
    model = _sklearn_model(digits.X_train[train], digits.y_train[train])
    assert model.coef_.shape == (1, N_FEATURES)
    weights = flatten(model.coef_, model.intercept_)
    classes = np.array(pair)
    X, y = digits.X_test[test], digits.y_test[test]
    assert accuracy(weights, classes, X, y) == pytest.approx(model.score(X, y), abs=1e-12)


def test_accuracy_two_classes_sign_convention():
    # score > 0 picks classes[1], otherwise classes[0]
    classes = np.array([5, 7])
    weights = np.array([1.0, 0.0, 0.0])  # coef (1, 2) = [[1, 0]], intercept [0]
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 3.0]])
    assert accuracy(weights, classes, X, np.array([7, 5, 7])) == 1.0
    assert accuracy(weights, classes, X, np.array([5, 7, 5])) == 0.0
    assert accuracy(weights, classes, X, np.array([7, 7, 7])) == pytest.approx(2 / 3)


def test_accuracy_multiclass_argmax():
    classes = np.array([10, 20, 30])
    # coef = identity (3 x 3), intercept 0: the largest feature wins
    weights = np.concatenate([np.eye(3).ravel(), np.zeros(3)])
    X = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 5.0], [3.0, 1.0, 0.0]])
    assert accuracy(weights, classes, X, np.array([10, 20, 30, 10])) == 1.0
    assert accuracy(weights, classes, X, np.array([10, 20, 30, 20])) == 0.75


def test_local_trainer_returns_full_vector(digits):
    trainer = LocalTrainer(digits.classes, N_FEATURES, ModelSpec(), seed=0)
    assert trainer.dimension == weight_dimension(10, N_FEATURES)
    start = np.zeros(trainer.dimension)
    weights = trainer.train(digits.X_train, digits.y_train, start)
    assert weights.shape == (trainer.dimension,)
    assert weights.dtype == np.float64
    assert np.all(np.isfinite(weights))
    np.testing.assert_array_equal(start, 0.0)  # the start vector is not modified
    assert accuracy(weights, digits.classes, digits.X_test, digits.y_test) > 0.8


def test_local_trainer_same_start_same_seed_is_deterministic(digits):
    X, y = digits.X_train[:300], digits.y_train[:300]
    start = np.random.default_rng(1).normal(size=weight_dimension(10, N_FEATURES))
    a = LocalTrainer(digits.classes, N_FEATURES, ModelSpec(), seed=5).train(X, y, start)
    b = LocalTrainer(digits.classes, N_FEATURES, ModelSpec(), seed=5).train(X, y, start)
    np.testing.assert_array_equal(a, b)
    # another shuffling seed gives another model
    c = LocalTrainer(digits.classes, N_FEATURES, ModelSpec(), seed=6).train(X, y, start)
    assert not np.array_equal(a, c)


def test_local_trainer_starts_from_given_weights(digits):
    X, y = digits.X_train[:40], digits.y_train[:40]
    dimension = weight_dimension(10, N_FEATURES)
    start = np.random.default_rng(2).normal(size=dimension) * 3
    from_start = LocalTrainer(digits.classes, N_FEATURES, ModelSpec(), seed=0).train(X, y, start)
    from_zero = LocalTrainer(digits.classes, N_FEATURES, ModelSpec(), seed=0).train(X, y, np.zeros(dimension))
    assert not np.allclose(from_start, from_zero)
    # a short run on few samples stays recognisably near its start...
    assert np.corrcoef(from_start, start)[0, 1] > 0.5
    # ...while a model started from zero knows nothing of that vector
    assert abs(np.corrcoef(from_zero, start)[0, 1]) < 0.3
    assert np.linalg.norm(from_start - start) < np.linalg.norm(from_zero - start)


def test_local_trainer_start_wrong_length(digits):
    trainer = LocalTrainer(digits.classes, N_FEATURES, ModelSpec(), seed=0)
    with pytest.raises(ValueError):
        trainer.train(digits.X_train, digits.y_train, np.zeros(trainer.dimension - 1))


def test_local_trainer_on_shard_missing_classes(digits):
    keep = digits.y_train < 4  # only classes 0..3 in this shard
    X, y = digits.X_train[keep], digits.y_train[keep]
    trainer = LocalTrainer(digits.classes, N_FEATURES, ModelSpec(), seed=0)
    weights = trainer.train(X, y, np.zeros(trainer.dimension))
    assert weights.shape == (weight_dimension(10, N_FEATURES),)
    assert np.all(np.isfinite(weights))
    # the shard's classes are learnt: its own samples are mostly predicted right
    assert accuracy(weights, digits.classes, X, y) > 0.8
    # and the model can be trained further on a shard with the other classes
    rest = ~keep
    more = trainer.train(digits.X_train[rest], digits.y_train[rest], weights)
    assert more.shape == weights.shape


def test_local_trainer_two_classes(digits):
    keep = np.isin(digits.y_train, (3, 8))
    trainer = LocalTrainer(np.array([3, 8]), N_FEATURES, ModelSpec(), seed=0)
    assert trainer.dimension == N_FEATURES + 1
    weights = trainer.train(digits.X_train[keep], digits.y_train[keep], np.zeros(N_FEATURES + 1))
    assert weights.shape == (N_FEATURES + 1,)
    test = np.isin(digits.y_test, (3, 8))
    assert accuracy(weights, np.array([3, 8]), digits.X_test[test], digits.y_test[test]) > 0.8


def test_elastic_net_gives_exact_zeros(digits):
    trainer = LocalTrainer(digits.classes, N_FEATURES, ModelSpec(alpha=0.01, l1_ratio=0.9), seed=0)
    weights = trainer.train(digits.X_train, digits.y_train, np.zeros(trainer.dimension))
    assert 0.0 < sparsity(weights) < 1.0


def test_sparsity():
    assert sparsity(np.zeros(4)) == 1.0
    assert sparsity(np.ones(4)) == 0.0
    assert sparsity(np.array([0.0, 1e-300, -0.0, 2.0])) == 0.5
    assert isinstance(sparsity(np.array([0.0, 1.0])), float)
