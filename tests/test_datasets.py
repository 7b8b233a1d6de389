"""Tests for the image datasets: folder layout, Fashion-MNIST IDX files, subsets, pixel features, config options."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from dphe_bench.errors import ConfigError
from dphe_bench.learning.config import DataConfig, load_config
from dphe_bench.learning.data import Dataset, dataset_from_config, load_dataset
from dphe_bench.learning.images import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_FILES,
    ArrayImages,
    DatasetError,
    FileImages,
    list_image_folder,
    load_fashion_mnist,
    read_idx,
)

# Every image of class k is a flat gray of CLASS_GRAY[k] (in every channel), so a loaded pixel tells its class.
CLASSES = ("cat", "dog", "emu")
CLASS_GRAY = (40, 120, 220)
PER_CLASS = 6


def _write_image(path: Path, gray: int, size: tuple[int, int], mode: str) -> None:
    from PIL import Image

    colour = {"L": gray, "RGB": (gray, gray, gray), "RGBA": (gray, gray, gray, 255)}[mode]
    image = Image.new(mode, size, colour)
    image.save(path, quality=100) if path.suffix == ".jpg" else image.save(path)


@pytest.fixture
def image_folder(tmp_path):
    """root/<class>/<images>: mixed sizes, modes (gray, RGB, RGBA) and formats, plus files to ignore."""
    pytest.importorskip("PIL")
    root = tmp_path / "images"
    kinds = [("png", "RGB", (30, 20)), ("png", "L", (16, 16)), ("png", "RGBA", (20, 40)), ("jpg", "RGB", (24, 24))]
    for label, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            suffix, mode, size = kinds[i % len(kinds)]
            _write_image(folder / f"img{i:02d}.{suffix.upper() if i == 5 else suffix}", CLASS_GRAY[label], size, mode)
        (folder / "notes.txt").write_text("not an image")
        (folder / ".hidden.png").write_bytes(b"not read")
    (root / "README").write_text("top-level files are ignored")
    return root


# ---------------------------------------------------------------------------------------------- folders


def test_list_image_folder(image_folder):
    paths, labels, class_names = list_image_folder(image_folder)
    assert class_names == CLASSES
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, np.repeat(np.arange(3), PER_CLASS))
    assert len(paths) == 3 * PER_CLASS
    assert all(p.parent.name == CLASSES[label] for p, label in zip(paths, labels, strict=True))
    assert not any(p.name in ("notes.txt", ".hidden.png") for p in paths)
    assert any(p.name == "img05.PNG" for p in paths)  # suffixes match in any case


def test_folder_pixels_shapes_labels_and_values(image_folder):
    ds = load_dataset("folder", 0.5, seed=0, path=image_folder, image_size=12)
    assert isinstance(ds, Dataset)
    assert ds.name == "folder" and ds.features == "pixels"
    assert ds.class_names == CLASSES
    assert ds.X_train.shape == (9, 144) and ds.X_test.shape == (9, 144)
    assert ds.X_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    # stratified: every class in both parts, equally
    np.testing.assert_array_equal(np.bincount(ds.y_train), [3, 3, 3])
    np.testing.assert_array_equal(np.bincount(ds.y_test), [3, 3, 3])
    # each row is its class's flat gray: labels and images stay aligned (JPEG may be off by a level or two)
    for X, y in ((ds.X_train, ds.y_train), (ds.X_test, ds.y_test)):
        expected = np.asarray(CLASS_GRAY, dtype=np.float64)[y] / 255.0
        np.testing.assert_allclose(X, np.repeat(expected[:, None], 144, axis=1), atol=3 / 255)


def test_folder_split_reproducible_by_seed(image_folder):
    first = load_dataset("folder", 0.5, seed=3, path=image_folder, image_size=8)
    again = load_dataset("folder", 0.5, seed=3, path=image_folder, image_size=8)
    np.testing.assert_array_equal(first.X_train, again.X_train)
    np.testing.assert_array_equal(first.y_train, again.y_train)
    np.testing.assert_array_equal(first.X_test, again.X_test)


def test_folder_split_chooses_different_files_per_seed(image_folder, monkeypatch):
    seen = []
    original = FileImages.load

    def spy(self, start, stop, size, mode):
        seen.append(tuple(p.name for p in self.paths))
        return original(self, start, stop, size, mode)

    monkeypatch.setattr(FileImages, "load", spy)
    for seed in range(4):
        load_dataset("folder", 0.5, seed=seed, path=image_folder, image_size=8)
    train_parts = seen[::2]
    assert len(set(train_parts)) > 1
    for train_names, test_names in zip(seen[::2], seen[1::2], strict=True):
        assert len(train_names) == len(test_names) == 9


def test_folder_test_fraction(image_folder):
    ds = load_dataset("folder", 1 / 3, seed=0, path=image_folder, image_size=8)
    assert ds.X_train.shape[0] == 12 and ds.X_test.shape[0] == 6


def test_read_image_grayscale_becomes_three_equal_channels(image_folder):
    gray_png = image_folder / "dog" / "img01.png"  # written in mode L
    rgb = FileImages((gray_png,)).load(0, 1, 10, "RGB")
    assert rgb.shape == (1, 10, 10, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 1])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    assert np.all(rgb == CLASS_GRAY[1])


def test_read_image_keeps_the_centre_of_a_wide_image(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, :20] = (255, 0, 0)
    wide[:, 20:40] = (0, 255, 0)
    wide[:, 40:] = (0, 0, 255)
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    out = FileImages((path,)).load(0, 1, 10, "RGB")[0]
    assert out.shape == (10, 10, 3)
    # shorter side scaled to 10, then the centre square: green only, away from the borders
    np.testing.assert_array_equal(out[:, 2:8], np.broadcast_to([0, 255, 0], (10, 6, 3)))


def test_folder_errors(tmp_path, image_folder):
    pytest.importorskip("PIL")
    with pytest.raises(DatasetError, match=r"needs data\.path"):
        load_dataset("folder", 0.25, seed=0)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("folder", 0.25, seed=0, path=tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_dataset("folder", 0.25, seed=0, path=empty)
    (empty / "only").mkdir()
    with pytest.raises(DatasetError, match="only one class"):
        list_image_folder(empty)
    (image_folder / "fox").mkdir()
    (image_folder / "fox" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"class folder .*fox has no image files"):
        load_dataset("folder", 0.25, seed=0, path=image_folder)


def test_folder_class_with_a_single_image(image_folder):
    (image_folder / "fox").mkdir()
    _write_image(image_folder / "fox" / "a.png", 10, (8, 8), "L")
    with pytest.raises(DatasetError, match=r"\['fox'\].*single image"):
        load_dataset("folder", 0.25, seed=0, path=image_folder)


def test_folder_unreadable_image_is_named(image_folder):
    broken = image_folder / "emu" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(DatasetError, match=r"broken\.png cannot be read"):
        load_dataset("folder", 0.5, seed=0, path=image_folder, image_size=8)


def test_test_fraction_too_small_for_the_classes(image_folder):
    with pytest.raises(DatasetError, match="cannot split"):
        load_dataset("folder", 0.05, seed=0, path=image_folder, image_size=8)


# ---------------------------------------------------------------------------------------------- subsets


def test_max_samples_keep_a_stratified_subset_in_order(image_folder):
    full = load_dataset("folder", 0.5, seed=1, path=image_folder, image_size=8)
    small = load_dataset(
        "folder", 0.5, seed=1, path=image_folder, image_size=8, max_train_samples=6, max_test_samples=3
    )
    assert small.X_train.shape == (6, 64) and small.X_test.shape == (3, 64)
    np.testing.assert_array_equal(np.bincount(small.y_train), [2, 2, 2])
    np.testing.assert_array_equal(np.bincount(small.y_test), [1, 1, 1])
    np.testing.assert_array_equal(small.y_train, np.sort(small.y_train))  # file order kept
    # a limit at or above the size keeps everything
    same = load_dataset("folder", 0.5, seed=1, path=image_folder, image_size=8, max_train_samples=9)
    np.testing.assert_array_equal(same.X_train, full.X_train)


def test_max_samples_on_digits():
    full = load_dataset("digits", 0.25, seed=0)
    ds = load_dataset("digits", 0.25, seed=0, max_train_samples=500, max_test_samples=100)
    assert ds.X_train.shape == (500, 64) and ds.X_test.shape == (100, 64)
    # the subset is made of rows of the full split, class proportions kept within one sample
    full_rows = {row.tobytes() for row in full.X_train}
    assert all(row.tobytes() in full_rows for row in ds.X_train)
    expected = np.bincount(full.y_train) / full.y_train.size * 500
    assert np.all(np.abs(np.bincount(ds.y_train) - expected) <= 1)
    again = load_dataset("digits", 0.25, seed=0, max_train_samples=500, max_test_samples=100)
    np.testing.assert_array_equal(again.X_train, ds.X_train)
    other = load_dataset("digits", 0.25, seed=1, max_train_samples=500, max_test_samples=100)
    assert not np.array_equal(other.X_train, ds.X_train)


def test_max_samples_below_the_number_of_classes():
    with pytest.raises(DatasetError, match="max_train_samples=5"):
        load_dataset("digits", 0.25, seed=0, max_train_samples=5)


def test_digits_pixels_unchanged():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y.astype(np.int64), test_size=0.25, random_state=7, stratify=y
    )
    ds = load_dataset("digits", 0.25, seed=7)
    np.testing.assert_array_equal(ds.X_train, X_train)
    np.testing.assert_array_equal(ds.X_test, X_test)
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.y_test, y_test)


def test_unknown_features_and_engine():
    with pytest.raises(ValueError, match="nosuch"):
        load_dataset("digits", 0.25, seed=0, features="nosuch")
    with pytest.raises(ValueError, match="nosuch"):
        load_dataset("digits", 0.25, seed=0, engine="nosuch")


# ---------------------------------------------------------------------------------------------- array images


def test_array_images_resize_and_channels():
    pytest.importorskip("PIL")
    images = np.zeros((3, 4, 4), dtype=np.uint8)
    images[1] = 100
    images[2, :, 2:] = 255
    source = ArrayImages(images)
    assert len(source) == 3
    same = source.load(0, 3, 4, "L")
    np.testing.assert_array_equal(same, images)
    rgb = source.load(1, 3, 8, "RGB")
    assert rgb.shape == (2, 8, 8, 3) and rgb.dtype == np.uint8
    assert np.all(rgb[0] == 100)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    assert rgb[1, :, 0].max() == 0 and rgb[1, :, -1].min() == 255  # left dark, right bright after resizing


def test_array_images_fingerprint_tracks_content_and_order():
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert ArrayImages(a).fingerprint() == ArrayImages(a.copy()).fingerprint()
    assert ArrayImages(a).fingerprint() != ArrayImages(a[::-1].copy()).fingerprint()
    b = a.copy()
    b[1, 2, 2] += 1
    assert ArrayImages(a).fingerprint() != ArrayImages(b).fingerprint()
    assert ArrayImages(a).fingerprint() != ArrayImages(a.reshape(2, 9, 1)[..., 0].reshape(2, 1, 9)).fingerprint()


def test_array_images_rejects_bad_arrays():
    with pytest.raises(ValueError):
        ArrayImages(np.zeros((2, 3, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        ArrayImages(np.zeros((2, 3, 3, 4), dtype=np.uint8))


def test_file_images_fingerprint_tracks_files(image_folder):
    paths = tuple(list_image_folder(image_folder)[0][:4])
    first = FileImages(paths).fingerprint()
    assert FileImages(paths).fingerprint() == first
    assert FileImages(paths[::-1]).fingerprint() != first
    _write_image(paths[0], 1, (50, 50), "L")  # rewritten: new size
    assert FileImages(paths).fingerprint() != first


# ---------------------------------------------------------------------------------------------- Fashion-MNIST


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def tiny_fashion(tmp_path):
    """Fashion-MNIST-shaped IDX files: 40 train and 20 test images of 28x28, image value = 10 * label + index."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion"
    folder.mkdir()
    parts = {}
    for split, n in (("train", 40), ("test", 20)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels * 20  # a pixel that encodes the label
        parts[split] = (images, labels)
    prefix = {"train": "train", "test": "t10k"}
    for split, (images, labels) in parts.items():
        (folder / f"{prefix[split]}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (folder / f"{prefix[split]}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return folder, parts


def test_read_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    plain = tmp_path / "a-idx3-ubyte"
    plain.write_bytes(_idx(array))
    np.testing.assert_array_equal(read_idx(plain), array)
    packed = tmp_path / "a-idx3-ubyte.gz"
    packed.write_bytes(gzip.compress(_idx(array)))
    np.testing.assert_array_equal(read_idx(packed), array)


def test_read_idx_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_idx(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(DatasetError, match="magic"):
        read_idx(bad)
    floats = tmp_path / "floats"
    floats.write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01" + b"\x00" * 4)
    with pytest.raises(DatasetError, match="0x0d"):
        read_idx(floats)
    short = tmp_path / "short"
    short.write_bytes(_idx(np.zeros((4, 4), dtype=np.uint8))[:-3])
    with pytest.raises(DatasetError, match="holds 13"):
        read_idx(short)
    broken_gz = tmp_path / "broken.gz"
    broken_gz.write_bytes(gzip.compress(_idx(np.zeros((40,), dtype=np.uint8)))[:-10])
    with pytest.raises(DatasetError, match="cannot be read"):
        read_idx(broken_gz)
    # A hostile header whose sizes multiply past 2**64: an int64 product would wrap around to 0 and match an
    # empty body; the exact product is refused instead.
    wrapping = tmp_path / "wrapping"
    wrapping.write_bytes(b"\x00\x00\x08\x03" + (2**22).to_bytes(4, "big") * 3)
    with pytest.raises(DatasetError, match=r"says \(4194304, 4194304, 4194304\)"):
        read_idx(wrapping)


def test_load_fashion_mnist_from_a_folder(tiny_fashion):
    folder, parts = tiny_fashion
    X_train, y_train, X_test, _ = load_fashion_mnist(folder)
    np.testing.assert_array_equal(X_train, parts["train"][0])
    np.testing.assert_array_equal(y_train, parts["train"][1])
    np.testing.assert_array_equal(X_test, parts["test"][0])
    assert y_train.dtype == np.int64 and X_train.dtype == np.uint8


def test_fashion_mnist_pixels(tiny_fashion):
    folder, parts = tiny_fashion
    ds = load_dataset("fashion-mnist", 0.25, seed=0, path=folder)
    assert ds.X_train.shape == (40, 784) and ds.X_test.shape == (20, 784)  # official split, test_fraction unused
    np.testing.assert_array_equal(ds.X_train, parts["train"][0].reshape(40, 784) / 255.0)
    np.testing.assert_array_equal(ds.y_test, parts["test"][1])
    assert ds.class_names[0] == "T-shirt/top" and len(ds.class_names) == 10
    small = load_dataset("fashion-mnist", 0.25, seed=0, path=folder, max_train_samples=20, max_test_samples=10)
    assert small.X_train.shape == (20, 784)
    np.testing.assert_array_equal(np.bincount(small.y_train), [2] * 10)
    # rows stay with their labels: pixel (0, 0) encodes the label
    np.testing.assert_array_equal(np.round(small.X_train[:, 0] * 255), small.y_train * 20)


def test_fashion_mnist_missing_says_how_to_install(tmp_path, tiny_fashion):
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", 0.25, seed=0, path=tmp_path / "nowhere")
    folder, _ = tiny_fashion
    (folder / FASHION_MNIST_FILES["test_labels"]).unlink()
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz is missing.*apt-get install"):
        load_fashion_mnist(folder)


def test_fashion_mnist_mismatched_files(tiny_fashion):
    folder, _ = tiny_fashion
    (folder / FASHION_MNIST_FILES["test_labels"]).write_bytes(gzip.compress(_idx(np.zeros(5, dtype=np.uint8))))
    with pytest.raises(DatasetError, match="do not match"):
        load_fashion_mnist(folder)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist():
    X_train, y_train, X_test, y_test = load_fashion_mnist()
    assert X_train.shape == (60000, 28, 28) and X_test.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)


# ---------------------------------------------------------------------------------------------- config


def test_data_config_defaults_and_overrides(tmp_path):
    default = load_config().data
    assert default == DataConfig()
    assert (default.dataset, default.features, default.max_train_samples, default.engine) == (
        "digits",
        "pixels",
        0,
        "onnx",
    )
    config = load_config(
        overrides=[
            "data.dataset=fashion-mnist",
            "data.features=efficientnet-lite0",
            "data.max_train_samples=5000",
            "data.image_size=64",
            f"data.cache_dir={tmp_path}",
            "data.engine=torch",
        ]
    ).data
    assert config.dataset == "fashion-mnist" and config.features == "efficientnet-lite0"
    assert config.max_train_samples == 5000 and config.image_size == 64 and config.engine == "torch"
    assert config.cache_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.features=resnet", "data.features: unknown feature kind 'resnet'; valid feature kinds: "),
        ("data.dataset=caltech", "data.dataset: unknown dataset 'caltech'; valid datasets: "),
        ("data.max_train_samples=-1", "data.max_train_samples must be >= 0"),
        ("data.max_test_samples=1.5", "data.max_test_samples must be of type int"),
        ("data.image_size=4", "data.image_size must be in"),
        ("data.engine=tensorflow", "data.engine: unknown feature engine 'tensorflow'; valid feature engines: "),
        ("data.batch_size=0", "data.batch_size must be in"),
        ('data.path=""', "data.path must be a non-empty path"),
        ('data.cache_dir=""', "data.cache_dir must be a non-empty path"),
        ("data.imagesize=64", "unknown option"),
    ],
)
def test_data_config_validation(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_dataset_from_config(image_folder):
    data = DataConfig(dataset="folder", path=str(image_folder), image_size=8, test_fraction=0.5, max_test_samples=6)
    ds = dataset_from_config(data, seed=0)
    assert ds.X_train.shape == (9, 64) and ds.X_test.shape == (6, 64)
    assert ds.class_names == CLASSES
