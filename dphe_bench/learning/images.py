"""Image datasets as sets of images to turn into features: Fashion-MNIST's IDX files and image folders.

An image set (:class:`ArrayImages` or :class:`FileImages`) knows how many images it holds, a
fingerprint that identifies exactly those images in that order (the feature cache's key), and how to
produce any range of them as uint8 arrays at a requested size, in RGB (grayscale replicated to three
channels) or in grayscale. Pillow is imported only when an image is resized or read from a file.

Fashion-MNIST comes from Debian's package ``dataset-fashion-mnist`` (four gzipped IDX files in
``/usr/share/datasets/fashion-mnist``); nothing is ever downloaded.
"""

import gzip
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dphe_bench.errors import DpheError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_INSTALL = (
    "install Debian's package with `sudo apt-get install dataset-fashion-mnist` (it puts the four IDX files "
    f"in {FASHION_MNIST_DIR}), or set data.path to a folder holding {', '.join(FASHION_MNIST_FILES.values())}"
)
# File name endings read as images in a folder dataset (compared in lower case); other files are ignored.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
_IDX_DTYPE = {0x08: np.uint8}


class DatasetError(DpheError, ValueError):
    """A dataset is missing, empty, malformed or unreadable."""


class ImageSet(Protocol):
    """A fixed, ordered set of images."""

    def __len__(self) -> int: ...

    def fingerprint(self) -> str:
        """Hex digest that changes whenever the images or their order change."""
        ...

    def load(self, start: int, stop: int, size: int, mode: str) -> np.ndarray:
        """Images ``start:stop`` at ``size`` x ``size``: uint8 (n, size, size, 3) for mode "RGB", (n, size, size)
        for "L"."""
        ...


# ------------------------------------------------------------------------------------------ Fashion-MNIST


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped when its name ends in ``.gz``) as a uint8 array of its stored shape.

    Raises DatasetError when the file is missing, truncated or not an unsigned-byte IDX file.
    """
    path = Path(path)
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DatasetError(f"IDX file {path} does not exist") from None
    except (OSError, EOFError) as exc:
        raise DatasetError(f"IDX file {path} cannot be read: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path} is not an IDX file (bad magic number)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPE:
        raise DatasetError(f"{path}: IDX type 0x{type_code:02x} is not supported (only unsigned bytes, 0x08)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)  # exact: np.prod would wrap around on a hostile header
    if len(data) - header != expected:
        raise DatasetError(
            f"{path}: IDX header says {shape} ({expected} bytes) but the file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=_IDX_DTYPE[type_code], offset=header).reshape(shape)


def load_fashion_mnist(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST's official split from the folder ``path`` (None: Debian's location).

    Returns
    -------
    X_train : uint8 (60000, 28, 28)
    y_train : int64 (60000,)
    X_test : uint8 (10000, 28, 28)
    y_test : int64 (10000,)
    """
    folder = FASHION_MNIST_DIR if path is None else Path(path)
    if not folder.is_dir():
        raise DatasetError(f"Fashion-MNIST folder {folder} does not exist; {FASHION_MNIST_INSTALL}")
    arrays = {}
    for part, name in FASHION_MNIST_FILES.items():
        file = folder / name
        if not file.exists() and (folder / name.removesuffix(".gz")).exists():
            file = folder / name.removesuffix(".gz")
        if not file.exists():
            raise DatasetError(f"Fashion-MNIST file {name} is missing from {folder}; {FASHION_MNIST_INSTALL}")
        arrays[part] = read_idx(file)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DatasetError(
                f"Fashion-MNIST {split} files in {folder} do not match: images {images.shape}, labels {labels.shape}"
            )
        if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
            raise DatasetError(f"Fashion-MNIST {split} labels in {folder} go beyond the 10 classes")
    return (
        arrays["train_images"],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"],
        arrays["test_labels"].astype(np.int64),
    )


# ------------------------------------------------------------------------------------------ image folders


def list_image_folder(root: str | Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """Images of a folder dataset laid out as ``root/<class name>/<image file>`` (Caltech-101/256 layout).

    Classes are the sub-folders of ``root`` in sorted name order, labelled 0, 1, ...; images are the files
    whose names end in one of IMAGE_SUFFIXES, sorted by name. Hidden entries (names starting with a dot)
    and other files are ignored.

    Returns
    -------
    paths : list of Path, one per image
    labels : int64 (n_images,)
    class_names : tuple of str, indexed by label
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"image folder {root} has no class sub-folders (expected {root}/<class>/<image files>)")
    if len(class_dirs) < 2:
        raise DatasetError(f"image folder {root} has only one class sub-folder ({class_dirs[0].name}); need >= 2")
    paths: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(
            p
            for p in class_dir.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(IMAGE_SUFFIXES)
        )
        if not files:
            raise DatasetError(
                f"class folder {class_dir} has no image files (looked for names ending in {', '.join(IMAGE_SUFFIXES)})"
            )
        paths.extend(files)
        labels.extend([label] * len(files))
    return paths, np.asarray(labels, dtype=np.int64), tuple(d.name for d in class_dirs)


# ------------------------------------------------------------------------------------------ image sets


@dataclass(frozen=True)
class ArrayImages:
    """Images held in memory: uint8 (n, height, width) grayscale or (n, height, width, 3) RGB."""

    images: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise ValueError(
                f"images must be uint8 (n, h, w) or (n, h, w, 3), got {self.images.dtype} {self.images.shape}"
            )
        if self.images.ndim == 4 and self.images.shape[3] != 3:
            raise ValueError(f"colour images must have 3 channels, got shape {self.images.shape}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def fingerprint(self) -> str:
        """SHA-256 of the shape and the pixel bytes."""
        digest = hashlib.sha256(repr(self.images.shape).encode())
        digest.update(np.ascontiguousarray(self.images).data)
        return digest.hexdigest()

    def load(self, start: int, stop: int, size: int, mode: str) -> np.ndarray:
        """Images ``start:stop`` resized (bilinear) to ``size`` x ``size``; see ImageSet.load."""
        _check_mode(mode)
        batch = self.images[start:stop]
        if batch.ndim == 4 and mode == "L":
            batch = np.stack([np.asarray(_pillow().fromarray(image).convert("L")) for image in batch])
        if batch.shape[1:3] != (size, size):
            batch = np.stack([_resize(image, size) for image in batch]) if len(batch) else batch
        if batch.ndim == 3 and mode == "RGB":
            batch = np.repeat(batch[..., np.newaxis], 3, axis=3)
        return np.ascontiguousarray(batch, dtype=np.uint8)


@dataclass(frozen=True)
class FileImages:
    """Images read from files on demand, in the given order."""

    paths: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """SHA-256 of every file's absolute path, size and modification time (files are not read)."""
        digest = hashlib.sha256()
        for path in self.paths:
            try:
                info = os.stat(path)
            except OSError as exc:
                raise DatasetError(f"image {path} cannot be read: {exc.strerror or exc}") from None
            digest.update(f"{Path(path).resolve()}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def load(self, start: int, stop: int, size: int, mode: str) -> np.ndarray:
        """Images ``start:stop`` decoded, converted to ``mode``, resized on the shorter side to ``size`` and
        centre-cropped to ``size`` x ``size``; see ImageSet.load."""
        _check_mode(mode)
        shape = (size, size, 3) if mode == "RGB" else (size, size)
        out = np.empty((len(self.paths[start:stop]), *shape), dtype=np.uint8)
        for row, path in enumerate(self.paths[start:stop]):
            out[row] = read_image(path, size, mode)
        return out


def read_image(path: str | Path, size: int, mode: str) -> np.ndarray:
    """One image file as uint8 (size, size, 3) for mode "RGB" or (size, size) for "L".

    Grayscale, palette and RGBA images are converted (grayscale is replicated to three channels); the image
    is scaled so its shorter side is ``size`` and centre-cropped to a square. Raises DatasetError naming the
    file when it cannot be decoded.
    """
    _check_mode(mode)
    image_module = _pillow()
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with image_module.open(path) as image:
            image.load()
            converted = image.convert(mode)
    except (OSError, UnidentifiedImageError, ValueError, image_module.DecompressionBombError) as exc:
        raise DatasetError(f"image {path} cannot be read: {exc}") from None
    fitted = ImageOps.fit(converted, (size, size), method=image_module.Resampling.BILINEAR)
    return np.asarray(fitted, dtype=np.uint8)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (h, w) or (h, w, 3) -> (size, size[, 3]), bilinear."""
    image_module = _pillow()
    return np.asarray(image_module.fromarray(image).resize((size, size), image_module.Resampling.BILINEAR))


def _check_mode(mode: str) -> None:
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")


def _pillow() -> Any:
    """The ``PIL.Image`` module, or a DatasetError saying how to install Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError(
            "reading or resizing images needs Pillow: pip install pillow (or the features extra: "
            "pip install torch==2.13.0 'dphe-bench[features]')"
        ) from None
    return Image
