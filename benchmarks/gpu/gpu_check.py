"""GPU check of the ``cupy`` backend: build, correctness against the CPU reference, timings. Run through
``benchmarks/gpu_check.sh`` on a machine with an NVIDIA GPU and CuPy; it finishes in under 5 minutes.

1. Build: compiles every kernel configuration the key sizes need (NVRTC through CuPy) and records each
   configuration's compile time (or load time, from CuPy's kernel cache) and each kernel's registers per
   thread, local memory and largest block, as the driver reports them for the code CuPy compiled.
2. Correctness, per key size, on fresh random inputs and edge values: every kernel against Python ints,
   and Paillier round trips (``standard`` and ``djn``) decrypted by the CPU reference backend, with
   aggregation decrypting to the sums.
3. Timings, per key size and batch size: kernels only. Inputs, exponent digits and tables are on the GPU
   before the timed window, CuPy's memory pool is kept (so outputs reuse its blocks), and every cell has one
   untimed warm-up run; CUDA events bracket the launches; the median of up to 5 repetitions. encrypt =
   obfuscator kernel + the product with (1 + m n); aggregate = the column product of 5 batches (rate in
   ciphertexts combined); decrypt = the two CRT exponentiations and the recombination kernel.
   ``backend.decrypt`` end to end (transfers and the conversion to Python ints included) is timed
   separately (2,000 values by default). A cell whose projected time (warm-up and one run, at the rate of
   the size below) exceeds half of what is left of its key size's budget is skipped and marked so.

Writes ``gpu_check.json`` and ``gpu_check.csv`` to --out and prints a short table last. Exits 1 if any
correctness check failed.
"""

import argparse
import csv
import json
import secrets
import statistics
import sys
import time
from pathlib import Path

import cupy
import numpy as np

from dphe_bench import generate_keypair, get_backend
from dphe_bench.backends.base import djn_exponent_bits
from dphe_bench.backends.cuda_layout import KERNEL_NAMES, config_for, random_below, random_limbs
from dphe_bench.crypto.limbs import ints_to_limbs, limb_width, limbs_to_ints

AGGREGATED_BATCHES = 5
MAX_REPEATS = 5


def log(message: str) -> None:
    print(message, flush=True)


def device_description() -> dict:
    properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = properties["name"]
    return {
        "name": name.decode() if isinstance(name, bytes) else name,
        "compute_capability": f"{properties['major']}.{properties['minor']}",
        "multiprocessors": properties["multiProcessorCount"],
        "memory_gib": round(properties["totalGlobalMem"] / 2**30, 1),
        "cupy": cupy.__version__,
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
    }


def build(backend, moduli: list[int]) -> list[dict]:
    """Compile each needed configuration once; returns one row per configuration: its compile (or cache load)
    time and, per kernel, registers, local bytes and the largest block the driver allows."""
    rows = []
    for config in sorted({config_for(modulus) for modulus in moduli}, key=lambda c: c.limbs):
        started = time.perf_counter()
        module = backend._device.module(config)
        kernels = {name: module.get_function(name) for name in KERNEL_NAMES}
        seconds = time.perf_counter() - started
        rows.append(
            {
                "limbs": config.limbs,
                "threads_per_number": config.threads_per_number,
                "compile_s": round(seconds, 2),
                "kernels": {
                    name.removeprefix("dphe_"): {
                        "registers": kernel.num_regs,
                        "local_bytes": kernel.local_size_bytes,
                        "max_block": kernel.max_threads_per_block,
                    }
                    for name, kernel in kernels.items()
                },
            }
        )
        log(f"  compiled {config.limbs} limbs x {config.threads_per_number} threads in {seconds:.1f} s")
    return rows


def check(name: str, got: list[int], expected: list[int], failures: list[str]) -> None:
    """Records a failure when ``got`` differs from ``expected``; a missing or extra value counts as wrong."""
    bad = sum(g != e for g, e in zip(got, expected, strict=False)) + abs(len(got) - len(expected))
    if bad:
        failures.append(f"{name}: {bad} of {len(expected)} wrong (got {len(got)} values)")
    log(f"  {'ok  ' if not bad else 'FAIL'} {name} ({len(expected)} values)")


def correctness(key_bits: int, public_key, private_key, check_count: int, failures: list[str]) -> None:
    """Every kernel against Python ints, and Paillier round trips against the CPU reference."""
    n, nsquare = public_key.n, public_key.nsquare
    gpu = get_backend("cupy")
    reference = get_backend("python")
    width = limb_width(nsquare)
    bases = [1, 2, n - 1, nsquare - 1, *limbs_to_ints(random_below(check_count, nsquare))]
    powers = limbs_to_ints(gpu.powmod(ints_to_limbs(bases, width), n, nsquare))
    check(f"{key_bits}: powmod r^n mod n^2", powers, [pow(b, n, nsquare) for b in bases], failures)
    other = limbs_to_ints(random_below(len(bases), nsquare))
    products = limbs_to_ints(gpu.mulmod(ints_to_limbs(bases, width), ints_to_limbs(other, width), nsquare))
    check(f"{key_bits}: mulmod", products, [a * b % nsquare for a, b in zip(bases, other, strict=True)], failures)
    djn = get_backend("cupy", obfuscation="djn")
    table = djn.djn_table(public_key)
    exponents = [0, 1, (1 << djn_exponent_bits(public_key)) - 1, *limbs_to_ints(random_limbs(check_count, 64))]
    exponents += [secrets.randbits(djn_exponent_bits(public_key)) for _ in range(check_count)]
    hs = limbs_to_ints(table.entries[0, 1:2])[0]
    walked = limbs_to_ints(djn.fixed_base_powmod(table, exponents))
    check(f"{key_bits}: fixed-base walk", walked, [pow(hs, a, nsquare) for a in exponents], failures)
    for obfuscation, backend in (("standard", gpu), ("djn", djn)):
        plaintexts = [0, 1, n - 1, *(secrets.randbelow(n) for _ in range(check_count))]
        batches = [backend.encrypt(public_key, plaintexts) for _ in range(AGGREGATED_BATCHES)]
        check(
            f"{key_bits}: {obfuscation} encrypt, CPU decrypt",
            reference.decrypt(private_key, batches[0]),
            plaintexts,
            failures,
        )
        check(
            f"{key_bits}: {obfuscation} encrypt, GPU decrypt",
            backend.decrypt(private_key, batches[0]),
            plaintexts,
            failures,
        )
        total = backend.aggregate(public_key, batches)
        check(
            f"{key_bits}: {obfuscation} aggregate of {AGGREGATED_BATCHES}",
            reference.decrypt(private_key, total),
            [AGGREGATED_BATCHES * m % n for m in plaintexts],
            failures,
        )


def measure_kernels(run, repeats: int) -> float:
    """Median milliseconds of ``run()`` between CUDA events, after one untimed run (first launch of a size,
    the memory pool's first blocks of that size)."""
    run()
    times = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


def below(count: int, bound: int):
    """``count`` random values below ``bound`` on the GPU (one bit short of it: cheap, for timing only)."""
    limbs = np.zeros((count, limb_width(bound)), dtype=np.uint32)
    random = random_limbs(count, bound.bit_length() - 1)
    limbs[:, : random.shape[1]] = random
    return cupy.asarray(limbs)


def operations(public_key, private_key, standard, djn, count: int) -> dict:
    """The timed operations at one batch size: name -> (zero-argument launcher, items per launch). Inputs are
    made here, outside the timed window; the table, R powers and exponent digits are uploaded by the
    backends on the first (warm-up) call and cached."""
    n, nsquare = public_key.n, public_key.nsquare
    width = limb_width(nsquare)
    table = djn.djn_table(public_key)
    r = below(count, n)
    plain = below(count, nsquare)
    exponents = cupy.asarray(random_limbs(count, djn_exponent_bits(public_key)))
    ciphertexts = below(count, nsquare)
    batches = cupy.ascontiguousarray(cupy.stack([ciphertexts] * AGGREGATED_BATCHES))

    def encrypt_standard():
        obfuscators = standard.powmod_on_device(r, r.shape[1], count, n, nsquare)
        standard.mulmod_on_device(plain, width, obfuscators, width, count, nsquare)

    def encrypt_djn():
        obfuscators = djn.walk_on_device(table, exponents, exponents.shape[1], count)
        djn.mulmod_on_device(plain, width, obfuscators, width, count, nsquare)

    def aggregate():
        standard.product_on_device(batches, AGGREGATED_BATCHES, count, width, nsquare)

    def decrypt():
        standard.decrypt_on_device(private_key, ciphertexts, width, count)

    return {
        "encrypt standard": (encrypt_standard, count),
        "encrypt djn": (encrypt_djn, count),
        f"aggregate {AGGREGATED_BATCHES} batches": (aggregate, AGGREGATED_BATCHES * count),
        "decrypt": (decrypt, count),
    }


def decrypt_end_to_end(public_key, private_key, count: int) -> float:
    """Seconds per value of ``backend.decrypt`` (transfers, the kernels, conversion to Python ints), from
    ``count`` values, after one untimed decryption of the same batch."""
    backend = get_backend("cupy", obfuscation="djn")
    batch = backend.encrypt(public_key, [secrets.randbelow(public_key.n) for _ in range(count)])
    backend.decrypt(private_key, batch)
    started = time.perf_counter()
    backend.decrypt(private_key, batch)
    return (time.perf_counter() - started) / len(batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check_results"))
    parser.add_argument("--key-bits", type=int, nargs="+", default=[2048, 3072])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--budget-s", type=float, default=120.0, help="time allowed for the timing cells")
    parser.add_argument("--check-count", type=int, default=24, help="random values per correctness check")
    parser.add_argument("--end-to-end-values", type=int, default=2_000, help="values for backend.decrypt's timing")
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    failures: list[str] = []
    device = device_description()
    log(f"device: {device}")

    keys = {}
    for bits in arguments.key_bits:
        key_started = time.perf_counter()
        public_key, private_key = generate_keypair(bits)
        keys[bits] = (public_key, private_key)
        log(f"{bits}-bit key generated on the CPU in {time.perf_counter() - key_started:.1f} s")

    log("build:")
    moduli = [m for public_key, private_key in keys.values() for m in (public_key.nsquare, private_key.psquare)]
    resources = build(get_backend("cupy"), moduli)

    log("correctness against Python ints and the CPU reference backend:")
    for bits, (public_key, private_key) in keys.items():
        correctness(bits, public_key, private_key, arguments.check_count, failures)

    log("timings (kernels only, CUDA events, median):")
    timings = []
    decrypt_us: dict[int, float] = {}
    budget_end = time.perf_counter() + arguments.budget_s
    for done, (bits, (public_key, private_key)) in enumerate(keys.items()):
        # Each key size gets an equal share of what is left; a cell runs if it fits in half of its share.
        deadline = time.perf_counter() + (budget_end - time.perf_counter()) / (len(keys) - done)
        rates: dict[str, float] = {}
        standard, djn = get_backend("cupy"), get_backend("cupy", obfuscation="djn")
        for size in sorted(arguments.sizes):
            for name, (run, items) in operations(public_key, private_key, standard, djn, size).items():
                left = deadline - time.perf_counter()
                # The warm-up and one timed run, at the rate of the size below.
                projected = 2 * items / rates[name] if name in rates else 0.0
                if projected > left / 2:
                    log(f"  {bits} {name} x{size}: skipped (projected {projected:.1f} s, {left:.0f} s of budget left)")
                    timings.append({"key_bits": bits, "operation": name, "batch": size, "skipped": True})
                    continue
                repeats = max(1, min(MAX_REPEATS, int(1.0 / projected) if projected else MAX_REPEATS))
                milliseconds = measure_kernels(run, repeats)
                rates[name] = items / (milliseconds / 1000)
                timings.append(
                    {
                        "key_bits": bits,
                        "operation": name,
                        "batch": size,
                        "skipped": False,
                        "repeats": repeats,
                        "median_ms": round(milliseconds, 3),
                        "items_per_s": round(rates[name]),
                    }
                )
                log(f"  {bits} {name} x{size}: {milliseconds:.2f} ms, {rates[name]:,.0f}/s ({repeats} repeats)")
        finish = decrypt_end_to_end(public_key, private_key, arguments.end_to_end_values)
        decrypt_us[bits] = round(finish * 1e6, 1)
        log(f"  {bits}: backend.decrypt end to end {finish * 1e6:.1f} us per value")

    result = {
        "device": device,
        "resources": resources,
        "timings": timings,
        "failures": failures,
        "decrypt_end_to_end_us": decrypt_us,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    (arguments.out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    with open(arguments.out / "gpu_check.csv", "w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["key_bits", "operation", "batch", "skipped", "repeats", "median_ms", "items_per_s"]
        )
        writer.writeheader()
        writer.writerows(timings)

    print()
    print(f"GPU check on {device['name']} (compute {device['compute_capability']}), {result['wall_s']} s")
    print("compile s, registers per thread / local bytes / largest block, per configuration:")
    for row in resources:
        print(
            f"  {row['limbs']}x{row['threads_per_number']} {row['compile_s']} s: "
            + ", ".join(
                f"{name} {k['registers']}/{k['local_bytes']}/{k['max_block']}" for name, k in row["kernels"].items()
            )
        )
    print(f"{'key':>5} {'operation':<32} {'batch':>9} {'median ms':>11} {'per second':>13}")
    for row in timings:
        if row["skipped"]:
            print(f"{row['key_bits']:>5} {row['operation']:<32} {row['batch']:>9} {'skipped':>11}")
        else:
            print(
                f"{row['key_bits']:>5} {row['operation']:<32} {row['batch']:>9} {row['median_ms']:>11.2f} "
                f"{row['items_per_s']:>13,}"
            )
    print(
        "backend.decrypt end to end (transfers, kernels, Python ints) per value: "
        + ", ".join(f"{bits} bits {us} us" for bits, us in decrypt_us.items())
    )
    print("correctness: " + ("all checks passed" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
