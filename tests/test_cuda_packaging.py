"""The built wheel ships every CUDA kernel source, and setuptools builds it without a packaging warning."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_holds_every_kernel_source_and_builds_without_packaging_warnings(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("dphe_bench", "backends"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(tmp_path / 'dist')!r}))"
    completed = subprocess.run(
        [sys.executable, "-W", "always", "-c", build], cwd=source, capture_output=True, text=True, check=True
    )
    output = completed.stdout + completed.stderr
    assert "absent from the `packages` configuration" not in output, output
    assert "would be ignored" not in output.lower(), output
    wheel = tmp_path / "dist" / completed.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("dphe_bench/backends/cuda/")}
    sources = {f"dphe_bench/backends/cuda/{path.name}" for path in (ROOT / "backends" / "cuda").iterdir()}
    assert sources == shipped
    assert {"dphe_bench/backends/cuda/bigint.cuh", "dphe_bench/backends/cuda/paillier_kernels.cu"} <= shipped
