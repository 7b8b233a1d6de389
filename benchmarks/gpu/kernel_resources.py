"""Registers, stack and spills of every CUDA kernel configuration, as ptxas reports them for sm_90.

Needs nvcc (no GPU): ``python benchmarks/gpu/kernel_resources.py [--arch sm_90]``. Prints a Markdown table.
"""

import argparse
import tempfile
from pathlib import Path

from dphe_bench.backends.cuda_layout import CONFIGS, nvcc_compile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="sm_90")
    arch = parser.parse_args().arch
    print(f"| limbs x threads | modulus bits | kernel | registers | stack bytes | spill stores / loads ({arch}) |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for config in CONFIGS:
            for row in nvcc_compile(config, Path(folder) / "kernels.cubin", arch):
                print(f"| {config.limbs} x {config.threads_per_number} | {config.max_modulus_bits} | {row.kernel} | "
                      f"{row.registers} | {row.stack_bytes} | {row.spill_store_bytes} / {row.spill_load_bytes} |")


if __name__ == "__main__":
    main()
