"""Registers, stack and spills of every CUDA kernel configuration, as ptxas reports them (no GPU needed).

``python benchmarks/gpu/kernel_resources.py --nvrtc libnvrtc.so.13`` compiles as the ``cupy`` backend does
(NVRTC with CuPy's options: what runs on the GPU; ``pip install nvidia-cuda-nvrtc`` gives the library);
``--nvcc`` compiles with nvcc instead. ``--arch`` defaults to sm_90. Prints a Markdown table.
"""

import argparse
import tempfile
from pathlib import Path

from dphe_bench.backends.cuda_layout import CONFIGS, KERNEL_NAMES, nvcc_compile, nvrtc_compile, nvrtc_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    compiler = parser.add_mutually_exclusive_group(required=True)
    compiler.add_argument("--nvrtc", metavar="LIBRARY", help="NVRTC's shared library (path or name)")
    compiler.add_argument("--nvcc", action="store_true", help="compile with nvcc from PATH")
    parser.add_argument("--arch", default="sm_90")
    arguments = parser.parse_args()
    compiled_by = f"NVRTC {nvrtc_version(arguments.nvrtc)}" if arguments.nvrtc else "nvcc"
    names = [name.removeprefix("dphe_") for name in KERNEL_NAMES]
    print(
        f"Registers per thread ({compiled_by}, {arguments.arch}; stack bytes and spill stores / loads where non-zero)"
    )
    print()
    print("| limbs x threads | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---" for _ in names) + " |")
    with tempfile.TemporaryDirectory() as folder:
        for config in CONFIGS:
            if arguments.nvrtc:
                report = nvrtc_compile(config, arguments.nvrtc, arguments.arch)
            else:
                report = nvcc_compile(config, Path(folder) / "kernels.cubin", arguments.arch)
            cells = {}
            for row in report:
                extra = f" ({row.stack_bytes} B stack)" if row.stack_bytes else ""
                if row.spill_store_bytes or row.spill_load_bytes:
                    extra += f" spills {row.spill_store_bytes} / {row.spill_load_bytes}"
                cells[row.kernel.removeprefix("dphe_")] = f"{row.registers}{extra}"
            print(
                f"| {config.limbs} x {config.threads_per_number} | " + " | ".join(cells[name] for name in names) + " |"
            )


if __name__ == "__main__":
    main()
