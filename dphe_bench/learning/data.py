"""Datasets, their features, and their split among users.

Datasets (nothing is downloaded):

- ``digits`` (default): scikit-learn's 8x8 handwritten digits, shipped inside scikit-learn; split into
  train/test by ``test_fraction`` and the seed.
- ``fashion-mnist``: the IDX files of Debian's package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``, or ``path``); its official 60,000/10,000 train/test split is
  kept, so ``test_fraction`` does not apply.
- ``folder``: any directory ``path`` of images in class sub-folders (the Caltech-101/256 layout); split
  into train/test by ``test_fraction`` and the seed, stratified by class.

Features:

- ``pixels``: grayscale pixels scaled to [0, 1] (digits: 8x8 divided by 16; Fashion-MNIST: its 28x28;
  a folder: resized to ``image_size`` x ``image_size``).
- ``efficientnet-lite0``: 1280-d ImageNet features (see dphe_bench.learning.features) of the images resized to
  ``image_size``, divided by 6 (the bound of the network's ReLU6) so they lie in [0, 1] like pixels; cached
  on disk under ``cache_dir``.

``max_train_samples`` / ``max_test_samples`` (0 = all) keep a stratified random subset of each part,
drawn from the seed, before any feature is extracted.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from dphe_bench.errors import unknown_name
from dphe_bench.learning.feature_cache import default_cache_dir
from dphe_bench.learning.features import ENGINES, FEATURES, efficientnet_features, pixel_features
from dphe_bench.learning.images import (
    FASHION_MNIST_CLASSES,
    ArrayImages,
    DatasetError,
    FileImages,
    ImageSet,
    list_image_folder,
    load_fashion_mnist,
)

if TYPE_CHECKING:
    from dphe_bench.learning.config import DataConfig

DATASETS = ("digits", "fashion-mnist", "folder")
SPLITS = ("iid", "dirichlet")
# Upper bound of EfficientNet-Lite's activations (ReLU6): pooled features / 6 lie in [0, 1].
EFFICIENTNET_FEATURE_SCALE = 1.0 / 6.0

__all__ = [
    "DATASETS",
    "ENGINES",
    "FEATURES",
    "SPLITS",
    "Dataset",
    "DatasetError",
    "dataset_from_config",
    "load_dataset",
    "split_among_users",
]


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays: X float64 (samples, features), y int64 (samples,)."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    features: str = "pixels"
    class_names: tuple[str, ...] = ()

    @property
    def classes(self) -> np.ndarray:
        """Sorted class labels, int64 (n_classes,)."""
        return np.unique(np.concatenate([self.y_train, self.y_test]))

    @property
    def n_features(self) -> int:
        """Number of features per sample."""
        return self.X_train.shape[1]


@dataclass(frozen=True)
class _Images:
    """A dataset before features: image sets with pixel values in [0, pixel_max], and labels."""

    train: ImageSet
    y_train: np.ndarray
    test: ImageSet
    y_test: np.ndarray
    class_names: tuple[str, ...]
    pixel_max: int  # 16 for digits, 255 otherwise
    native_size: int | None  # side of every image when all have the same size, else None


def load_dataset(
    name: str,
    test_fraction: float,
    seed: int,
    *,
    features: str = "pixels",
    path: str | Path | None = None,
    max_train_samples: int = 0,
    max_test_samples: int = 0,
    image_size: int = 96,
    engine: str = "onnx",
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> Dataset:
    """Load dataset ``name``, split it (stratified, fixed by ``seed``) and compute its ``features``.

    Parameters
    ----------
    name : {"digits", "fashion-mnist", "folder"}
    test_fraction : float
        Share of the test part (digits and folder; Fashion-MNIST keeps its official split).
    seed : int
        Fixes the train/test split and the subsets.
    features : {"pixels", "efficientnet-lite0"}
    path : str or Path, optional
        Fashion-MNIST's folder (None: Debian's location) or the image folder (required for ``folder``).
    max_train_samples, max_test_samples : int
        Keep a stratified random subset of at most this many samples (0: all).
    image_size : int
        Network input side for efficientnet-lite0, and the pixel grid of ``pixels`` on a folder dataset.
    engine : {"onnx", "torch"}
        How efficientnet-lite0 runs.
    batch_size : int
        Images per forward pass of the network.
    cache_dir : str or Path, optional
        Feature cache folder (None: ``$XDG_CACHE_HOME/dphe-bench``, else ``~/.cache/dphe-bench``).
    progress : bool
        Progress bars while extracting features.

    Raises DatasetError (missing or malformed data), FeatureError (features extra missing), ValueError.
    """
    if name not in DATASETS:
        raise ValueError(unknown_name("dataset", name, DATASETS))
    if features not in FEATURES:
        raise ValueError(unknown_name("feature kind", features, FEATURES))
    if engine not in ENGINES:
        raise ValueError(unknown_name("feature engine", engine, ENGINES))
    if max_train_samples < 0 or max_test_samples < 0:
        raise ValueError("max_train_samples and max_test_samples must be >= 0 (0 keeps all samples)")
    if name == "digits":
        images = _digits(test_fraction, seed)
    elif name == "fashion-mnist":
        images = _fashion_mnist(path)
    else:
        if path is None:
            raise DatasetError("dataset 'folder' needs data.path: the directory holding one sub-folder per class")
        images = _folder(path, test_fraction, seed)

    train_seed, test_seed = np.random.SeedSequence(seed).generate_state(2)
    train, y_train = _subset(images.train, images.y_train, max_train_samples, int(train_seed), "max_train_samples")
    test, y_test = _subset(images.test, images.y_test, max_test_samples, int(test_seed), "max_test_samples")

    if features == "pixels":
        size = images.native_size or image_size
        X_train = pixel_features(train, size, images.pixel_max)
        X_test = pixel_features(test, size, images.pixel_max)
    else:
        options = {
            "image_size": image_size,
            "engine": engine,
            "batch_size": batch_size,
            "cache_dir": Path(cache_dir) if cache_dir is not None else default_cache_dir(),
            "progress": progress,
        }
        X_train = _scaled_efficientnet(_as_0_255(train, images.pixel_max), label=f"{name}-train", **options)
        X_test = _scaled_efficientnet(_as_0_255(test, images.pixel_max), label=f"{name}-test", **options)
    return Dataset(name, X_train, y_train, X_test, y_test, features=features, class_names=images.class_names)


def dataset_from_config(data: "DataConfig", seed: int, progress: bool = False) -> Dataset:
    """load_dataset with the options of the config's [data] section."""
    return load_dataset(
        data.dataset,
        data.test_fraction,
        seed,
        features=data.features,
        path=data.path,
        max_train_samples=data.max_train_samples,
        max_test_samples=data.max_test_samples,
        image_size=data.image_size,
        engine=data.engine,
        batch_size=data.batch_size,
        cache_dir=data.cache_dir,
        progress=progress,
    )


def _digits(test_fraction: float, seed: int) -> _Images:
    X, y = load_digits(return_X_y=True)
    y = y.astype(np.int64)
    train, test = train_test_split(np.arange(y.size), test_size=test_fraction, random_state=seed, stratify=y)
    images = X.reshape(-1, 8, 8).astype(np.uint8)  # integer values 0..16
    return _Images(
        ArrayImages(images[train]),
        y[train],
        ArrayImages(images[test]),
        y[test],
        tuple(str(d) for d in range(10)),
        pixel_max=16,
        native_size=8,
    )


def _fashion_mnist(path: str | Path | None) -> _Images:
    X_train, y_train, X_test, y_test = load_fashion_mnist(path)
    return _Images(
        ArrayImages(X_train),
        y_train,
        ArrayImages(X_test),
        y_test,
        FASHION_MNIST_CLASSES,
        pixel_max=255,
        native_size=X_train.shape[1] if X_train.shape[1] == X_train.shape[2] else None,
    )


def _folder(path: str | Path, test_fraction: float, seed: int) -> _Images:
    paths, labels, class_names = list_image_folder(path)
    counts = np.bincount(labels, minlength=len(class_names))
    if counts.min() < 2:
        lonely = [class_names[i] for i in np.flatnonzero(counts < 2)]
        raise DatasetError(f"class folder(s) {lonely} in {path} hold a single image; a train/test split needs >= 2")
    try:
        train, test = train_test_split(
            np.arange(labels.size), test_size=test_fraction, random_state=seed, stratify=labels
        )
    except ValueError as exc:
        raise DatasetError(
            f"cannot split the {labels.size} images of {len(class_names)} classes in {path} with "
            f"test_fraction={test_fraction} so that every class is in both parts: {exc}"
        ) from None
    train, test = np.sort(train), np.sort(test)
    return _Images(
        FileImages(tuple(paths[i] for i in train)),
        labels[train],
        FileImages(tuple(paths[i] for i in test)),
        labels[test],
        class_names,
        pixel_max=255,
        native_size=None,
    )


def _subset(images: ImageSet, labels: np.ndarray, limit: int, seed: int, option: str) -> tuple[ImageSet, np.ndarray]:
    """At most ``limit`` samples (0: all), stratified by label, drawn with ``seed``, in their original order."""
    if limit == 0 or limit >= labels.size:
        return images, labels
    try:
        chosen, _ = train_test_split(np.arange(labels.size), train_size=limit, random_state=seed, stratify=labels)
    except ValueError as exc:
        raise DatasetError(
            f"{option}={limit} cannot keep every one of the {np.unique(labels).size} classes of {labels.size} "
            f"samples: {exc}"
        ) from None
    chosen = np.sort(chosen)
    if isinstance(images, ArrayImages):
        return ArrayImages(images.images[chosen]), labels[chosen]
    if isinstance(images, FileImages):
        return FileImages(tuple(images.paths[i] for i in chosen)), labels[chosen]
    raise TypeError(f"cannot take a subset of {type(images).__name__}")


def _as_0_255(images: ImageSet, pixel_max: int) -> ImageSet:
    """The image set with pixel values stretched from [0, pixel_max] to [0, 255] (what the network expects)."""
    if pixel_max == 255:
        return images
    if not isinstance(images, ArrayImages):
        raise TypeError("only in-memory images can be rescaled")
    stretched = np.round(images.images.astype(np.float64) * (255.0 / pixel_max))
    return ArrayImages(stretched.astype(np.uint8))


def _scaled_efficientnet(images: ImageSet, **options: Any) -> np.ndarray:
    """efficientnet_features(images, **options) as float64 scaled into [0, 1]."""
    return efficientnet_features(images, **options).astype(np.float64) * EFFICIENTNET_FEATURE_SCALE


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
        raise ValueError(unknown_name("split", method, SPLITS))
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
