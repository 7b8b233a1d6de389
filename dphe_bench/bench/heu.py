"""SecretFlow HEU (PyPI ``sf-heu``) as a baseline: the strongest CPU Paillier a Python user can install.

HEU's Paillier variants are measured next to ours and python-paillier: ``ZPaillier`` (DJN short-exponent
obfuscation with fixed-base tables, on HEU's own big integers), ``FPaillier`` (on GMP), ``IPCL`` (Intel's Paillier
library; its AVX-512 IFMA code paths are Intel's) and, for reference only, ``OU`` (Okamoto-Uchiyama: not Paillier,
a different cryptosystem with smaller ciphertexts). HEU makes its own keys (its ciphertexts are not ours), so the
baseline encrypts the same kind of plaintexts (64-bit fixed-point integers) at the same key size, through HEU's
numpy API (``heu.numpy.setup(schema, key_bits)``, ``kit.array(values, IntegerEncoderParams())``, whole-array
``encrypt``, ``decrypt`` and ``add``).

Every configuration is checked before it is timed: edge and random int64 values, including -2**63 and 2**63 - 1,
must decrypt to themselves and their pairwise sums to the sums; otherwise ``HeuError``.

Threads: HEU parallelises array operations on yacl's intra-op thread pool, whose size is read once per process
from the environment variable ``YACL_NUM_THREADS`` (the calling thread plus a pool of N - 1; unset: one per
hardware thread). So each thread count is measured in a fresh process (``python -m dphe_bench.bench.heu``) with
``YACL_NUM_THREADS`` set; ``measure`` does that and parses the process's JSON line.

sf-heu is imported lazily: without it ``unavailable_reason()`` says how to install it (``pip install
'dphe-bench[heu]'``; wheels exist for CPython 3.11 on x86-64).
"""

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from dphe_bench.crypto.encoding import DEFAULT_PRECISION_BITS, FixedPointCodec
from dphe_bench.crypto.packing import PackingLayout
from dphe_bench.errors import BackendUnavailableError, DpheError
from dphe_bench.schemes.packed import DEFAULT_QUANTIZATION_BITS, DEFAULT_QUANTIZATION_RANGE

INSTALL_HINT = "pip install 'dphe-bench[heu]'"
# HEU schema name -> whether it is Paillier (OU is measured for reference only).
VARIANTS: dict[str, bool] = {"ZPaillier": True, "FPaillier": True, "IPCL": True, "OU": False}
PAILLIER_VARIANTS = tuple(name for name, paillier in VARIANTS.items() if paillier)
THREADS_VARIABLE = "YACL_NUM_THREADS"
CHECK_VALUES = 64
MAX_BATCH = 100_000


class HeuError(DpheError, RuntimeError):
    """HEU could not be measured: a wrong decryption, or its measuring process failed."""


@dataclass
class HeuMeasurement:
    """One HEU configuration: rates are medians, per second; ``ciphertext_bytes`` is per value as HEU serialises."""

    variant: str
    key_bits: int
    threads: int
    setup_s: float
    encrypt_per_s: float
    decrypt_per_s: float
    aggregate_per_s: float
    ciphertext_bytes: float
    checked_values: int


def unavailable_reason() -> str | None:
    """None when sf-heu imports here, else why not and how to install it."""
    try:
        import heu  # noqa: F401
    except ImportError as exc:
        return f"sf-heu is not installed ({exc}): {INSTALL_HINT}"
    return None


class HeuKit:
    """One HEU key pair of ``variant`` at ``key_bits``, encrypting, adding and decrypting int64 numpy arrays.

    Raises BackendUnavailableError without sf-heu, ValueError for an unknown variant.
    """

    def __init__(self, variant: str, key_bits: int):
        if variant not in VARIANTS:
            raise ValueError(f"unknown HEU variant {variant!r}; valid: {', '.join(VARIANTS)}")
        if reason := unavailable_reason():
            raise BackendUnavailableError(reason)
        from heu import numpy as hnp
        from heu import phe

        self.variant = variant
        self.key_bits = key_bits
        self._params = phe.IntegerEncoderParams()
        self._kit = hnp.setup(getattr(phe.SchemaType, variant), key_bits)
        self._encoder = self._kit.integer_encoder()
        self._encryptor = self._kit.encryptor()
        self._decryptor = self._kit.decryptor()
        self._evaluator = self._kit.evaluator()

    def encrypt(self, values: np.ndarray):
        """HEU ciphertexts of an int64 array of shape (k,)."""
        return self._encryptor.encrypt(self._kit.array(np.ascontiguousarray(values, dtype=np.int64), self._params))

    def integer_params(self):
        """HEU's encoder parameters for int64 plaintexts."""
        return self._params

    def bigint_params(self):
        """HEU's encoder parameters for Python-int plaintexts (below the key's n)."""
        from heu import phe

        return phe.BigintEncoderParams()

    def encrypt_encoded(self, plaintexts, params):
        """HEU ciphertexts of int64 values or Python ints, encoded with ``params``."""
        return self._encryptor.encrypt(self._kit.array(plaintexts, params))

    def decrypt_encoded(self, ciphertexts, params) -> np.ndarray:
        """The plaintexts of ``ciphertexts`` as HEU's encoder ``params`` decodes them (int64 or object array)."""
        encoder = params.instance(self._kit.get_schema())
        return np.asarray(self._decryptor.decrypt(ciphertexts).to_numpy(encoder)).reshape(-1)

    def add(self, a, b):
        """The element-wise homomorphic sum of two ciphertext arrays of equal shape."""
        return self._evaluator.add(a, b)

    def decrypt(self, ciphertexts) -> np.ndarray:
        """int64 array of the plaintexts."""
        return np.asarray(self._decryptor.decrypt(ciphertexts).to_numpy(self._encoder), dtype=np.int64).reshape(-1)

    def serialized_size(self, ciphertexts) -> int:
        """Bytes of HEU's own serialisation of a ciphertext array."""
        return len(ciphertexts.serialize())

    def check(self, count: int = CHECK_VALUES) -> int:
        """Decrypt-and-compare on int64 edge values and ``count`` random ones, and their pairwise sums (halved so
        they fit). Returns the number of values checked; raises HeuError on any difference."""
        edges = [0, 1, -1, 2**62, -(2**62), 2**63 - 1, -(2**63)]
        randoms = [secrets.randbelow(2**64) - 2**63 for _ in range(count)]
        values = np.array(edges + randoms, dtype=np.int64)
        decrypted = self.decrypt(self.encrypt(values))
        if not np.array_equal(decrypted, values):
            bad = int(np.flatnonzero(decrypted != values)[0])
            raise HeuError(f"HEU {self.variant}: {values[bad]} decrypted to {decrypted[bad]}")
        halves = values // 2
        sums = self.decrypt(self.add(self.encrypt(halves), self.encrypt(halves[::-1])))
        if not np.array_equal(sums, halves + halves[::-1]):
            raise HeuError(f"HEU {self.variant}: homomorphic sums do not decrypt to the sums")
        return len(values)


@dataclass
class HeuRound:
    """One round of a scheme's crypto on HEU: the published mean (float64 (D,)), seconds and bytes.

    ``encrypt_s`` is all users' encryption summed; ``bytes_per_user`` is HEU's serialisation of one user's
    ciphertexts (its own format, not ours).
    """

    mean: np.ndarray
    setup_s: float
    encrypt_s: float
    aggregate_s: float
    decrypt_s: float
    ciphertexts_per_user: float
    bytes_per_user: float


# Schemes whose crypto runs on HEU arrays: position-by-position sums. DPHE's aggregation adds ciphertexts by
# (permuted) index, which HEU's numpy API cannot scatter; its cost per ciphertext is dense's.
ROUND_SCHEMES = ("dense", "packed")


def run_round(
    vectors: Sequence[np.ndarray],
    scheme: str,
    variant: str = "ZPaillier",
    key_bits: int = 2048,
    precision_bits: int = DEFAULT_PRECISION_BITS,
    quantization_bits: int = DEFAULT_QUANTIZATION_BITS,
    quantization_range: float = DEFAULT_QUANTIZATION_RANGE,
) -> HeuRound:
    """One round of ``dense`` or ``packed`` with HEU ``variant`` doing the crypto, on the same plaintexts ours encrypt.

    ``dense``: each user's D weights as fixed-point int64 (round(w * 2**precision_bits), as our codec quantises);
    ``packed``: our ``PackingLayout``'s packed plaintexts for ``key_bits``-bit keys (big integers, HEU's bigint
    encoder). Users' ciphertexts are added position by position, the sums decrypted and decoded, and the mean
    returned (float64 (D,)). Raises ValueError for another scheme.
    """
    if scheme not in ROUND_SCHEMES:
        raise ValueError(f"scheme {scheme!r} does not run on HEU arrays; these do: {', '.join(ROUND_SCHEMES)}")
    users, dimension = len(vectors), len(vectors[0])
    start = time.perf_counter()
    kit = HeuKit(variant, key_bits)
    if scheme == "dense":
        codec = FixedPointCodec(1 << key_bits, precision_bits, max_summands=users)
        encode, params = codec.quantize, kit.integer_params()
    else:
        layout = PackingLayout(quantization_bits, quantization_range, users, key_bits)
        encode, params = (lambda w: layout.pack(layout.quantize(w))), kit.bigint_params()
    setup_s = time.perf_counter() - start
    encrypt_s, ciphertexts = 0.0, []
    for weights in vectors:
        begin = time.perf_counter()
        ciphertexts.append(kit.encrypt_encoded(encode(weights), params))
        encrypt_s += time.perf_counter() - begin
    begin = time.perf_counter()
    total = ciphertexts[0]
    for other in ciphertexts[1:]:
        total = kit.add(total, other)
    aggregate_s = time.perf_counter() - begin
    begin = time.perf_counter()
    sums = kit.decrypt_encoded(total, params)
    if scheme == "dense":
        mean = np.asarray(sums, dtype=np.float64) * 2.0**-precision_bits / users
    else:
        mean = layout.unpack_sums([int(v) for v in sums], dimension, users) / users
    decrypt_s = time.perf_counter() - begin
    return HeuRound(
        mean=mean,
        setup_s=setup_s,
        encrypt_s=encrypt_s,
        aggregate_s=aggregate_s,
        decrypt_s=decrypt_s,
        ciphertexts_per_user=float(ciphertexts[0].size),
        bytes_per_user=float(kit.serialized_size(ciphertexts[0])),
    )


def measure_here(variant: str, key_bits: int, seconds: float = 1.0, repeats: int = 3) -> HeuMeasurement:
    """Check, then time ``variant`` in this process (its thread count is whatever this process's pool has).

    The batch is sized so that one encryption takes about ``seconds``; rates are medians of ``repeats``.
    """
    start = time.perf_counter()
    kit = HeuKit(variant, key_bits)
    checked = kit.check()
    setup_s = time.perf_counter() - start
    probe = np.arange(16, dtype=np.int64)
    begin = time.perf_counter()
    kit.encrypt(probe)
    count = max(16, min(MAX_BATCH, int(seconds * len(probe) / (time.perf_counter() - begin))))
    values = np.array([secrets.randbelow(2**63) - 2**62 for _ in range(count)], dtype=np.int64)
    encrypt_times, ciphertexts = [], None
    for _ in range(repeats):
        begin = time.perf_counter()
        ciphertexts = kit.encrypt(values)
        encrypt_times.append(time.perf_counter() - begin)
    decrypt_times, add_times = [], []
    for _ in range(repeats):
        begin = time.perf_counter()
        decrypted = kit.decrypt(ciphertexts)
        decrypt_times.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        kit.add(ciphertexts, ciphertexts)
        add_times.append(time.perf_counter() - begin)
    if not np.array_equal(decrypted, values):
        raise HeuError(f"HEU {variant}: the timed batch does not decrypt to its plaintexts")
    return HeuMeasurement(
        variant=variant,
        key_bits=key_bits,
        threads=int(os.environ.get(THREADS_VARIABLE, "0")) or (os.cpu_count() or 1),
        setup_s=setup_s,
        encrypt_per_s=count / statistics.median(encrypt_times),
        decrypt_per_s=count / statistics.median(decrypt_times),
        aggregate_per_s=count / statistics.median(add_times),
        ciphertext_bytes=kit.serialized_size(ciphertexts) / count,
        checked_values=checked,
    )


def measure(
    variant: str, key_bits: int, threads: int, seconds: float = 1.0, repeats: int = 3, timeout: float = 900.0
) -> HeuMeasurement:
    """``measure_here`` in a fresh Python process with ``YACL_NUM_THREADS=threads`` (HEU reads it once per process).

    Raises BackendUnavailableError without sf-heu, HeuError when the process fails (its last error line quoted).
    """
    if reason := unavailable_reason():
        raise BackendUnavailableError(reason)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    command = [sys.executable, "-m", "dphe_bench.bench.heu", variant, str(key_bits), str(seconds), str(repeats)]
    result = subprocess.run(
        command,
        env={**os.environ, THREADS_VARIABLE: str(threads)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise HeuError(f"measuring HEU {variant} at {key_bits} bits on {threads} thread(s) failed: {detail}")
    return HeuMeasurement(**json.loads(lines[-1]))


def main(argv: list[str] | None = None) -> int:
    """The measuring process: ``python -m dphe_bench.bench.heu VARIANT KEY_BITS SECONDS REPEATS``, one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m dphe_bench.bench.heu", description=main.__doc__)
    parser.add_argument("variant", choices=list(VARIANTS))
    parser.add_argument("key_bits", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("repeats", type=int)
    args = parser.parse_args(argv)
    print(json.dumps(asdict(measure_here(args.variant, args.key_bits, args.seconds, args.repeats))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
