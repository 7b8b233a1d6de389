"""On-disk cache of extracted features, so a second run reuses them.

One ``.npz`` file per entry (arrays ``features`` and ``metadata``, the latter a JSON string; no pickle)
named ``<label>-<key>.npz``, where ``key`` is a SHA-256 over everything that determines the features
(dataset, the exact images, model, weights, preprocessing). Writes go to a temporary file in the same
folder and are renamed into place, so a crash or a concurrent run never leaves a half-written entry.
The default folder is ``$XDG_CACHE_HOME/dphe-bench`` (``~/.cache/dphe-bench`` when unset); deleting it
is always safe.
"""

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dphe_bench.errors import DpheError
from dphe_bench.files import write_atomically

CACHE_FORMAT = 1


class FeatureCacheError(DpheError, ValueError):
    """A cache entry exists but cannot be read or does not match what it should hold."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dphe-bench``, or ``~/.cache/dphe-bench`` when XDG_CACHE_HOME is unset or empty."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dphe-bench"


def cache_key(description: dict[str, Any]) -> str:
    """SHA-256 hex digest of ``description`` (JSON-serialisable; key order does not matter)."""
    text = json.dumps({"cache_format": CACHE_FORMAT, **description}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """Feature arrays stored under ``directory`` (created on the first write).

    Parameters
    ----------
    directory : str or Path
        Folder holding the entries.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def path_for(self, label: str, key: str) -> Path:
        """File of the entry ``key``; ``label`` (e.g. ``fashion-mnist-train-efficientnet-lite0-96px``) is for
        people reading the folder."""
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ValueError(f"cache key must be a SHA-256 hex digest, got {key!r}")
        safe_label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
        return self.directory / f"{safe_label}-{key[:24]}.npz"

    def load(self, label: str, key: str, rows: int) -> np.ndarray | None:
        """The cached float32 (rows, dim) array for ``key``, or None when there is no entry.

        Raises FeatureCacheError naming the file when an entry exists but is unreadable, was stored under
        another key, or does not have ``rows`` rows.
        """
        path = self.path_for(label, key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                features = entry["features"]
                metadata = json.loads(str(entry["metadata"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise FeatureCacheError(
                f"feature cache file {path} cannot be read ({exc}); delete it to recompute"
            ) from None
        if not isinstance(metadata, dict) or metadata.get("key") != key:
            raise FeatureCacheError(f"feature cache file {path} was stored under another key; delete it to recompute")
        if features.dtype != np.float32 or features.ndim != 2 or features.shape[0] != rows:
            raise FeatureCacheError(
                f"feature cache file {path} holds {features.dtype} {features.shape}, expected float32 with {rows} "
                "rows; delete it to recompute"
            )
        return features

    def save(self, label: str, key: str, features: np.ndarray, description: dict[str, Any]) -> Path:
        """Store float32 (rows, dim) ``features`` under ``key`` atomically; ``description`` goes into the metadata.

        Returns the entry's path.
        """
        if features.dtype != np.float32 or features.ndim != 2:
            raise ValueError(f"features must be float32 (rows, dim), got {features.dtype} {features.shape}")
        path = self.path_for(label, key)
        metadata = json.dumps({"key": key, "shape": list(features.shape), **description}, sort_keys=True)
        write_atomically(path, lambda file: np.savez(file, features=features, metadata=np.array(metadata)))
        return path
