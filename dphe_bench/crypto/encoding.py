"""Fixed-point encoding of real weights as Paillier plaintexts, with one precision for the whole protocol.

m = round(w * 2**precision_bits) mod n; negatives are n - |m|. No per-value exponent is sent (it would
leak magnitudes). Every encoded value is bounded (|m| <= max_encoded) so that the sum of ``max_summands`` of
them can never wrap around n, and decoding raises instead of returning garbage when a value lies outside what
the declared number of summands can produce.
"""

from collections.abc import Sequence

import numpy as np

from dphe_bench.crypto.limbs import exact_ints
from dphe_bench.errors import EncodingOverflowError

DEFAULT_PRECISION_BITS = 32
_INT64_SAFE = 2**62


class FixedPointCodec:
    """Encode float64 vectors to ints mod n and decode (sums of) them back.

    Parameters
    ----------
    n : int
        The plaintext modulus (the public key's n).
    precision_bits : int
        f: values are scaled by 2**f and rounded.
    max_summands : int
        How many encoded values may be added before decoding (the number of users).
    """

    def __init__(self, n: int, precision_bits: int = DEFAULT_PRECISION_BITS, max_summands: int = 1):
        for name, value in (("precision_bits", precision_bits), ("max_summands", max_summands)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if not 0 <= precision_bits <= 52:
            raise ValueError(f"precision_bits must be in [0, 52], got {precision_bits}")
        if max_summands < 1:
            raise ValueError(f"max_summands must be >= 1, got {max_summands}")
        self.n = n
        self.precision_bits = precision_bits
        self.max_summands = max_summands
        self.max_int = n // 3 - 1
        self.max_encoded = min(self.max_int // max_summands, _INT64_SAFE)
        if self.max_encoded < 1:
            raise ValueError(f"modulus of {n.bit_length()} bits is too small for {max_summands} summands")

    @property
    def resolution(self) -> float:
        """Distance between two neighbouring representable values (2**-precision_bits)."""
        return 2.0**-self.precision_bits

    @property
    def max_value(self) -> float:
        """Largest |w| that encodes."""
        return self.max_encoded * self.resolution

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """round(values * 2**f) as int64, shape preserved; raises EncodingOverflowError if out of range."""
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values.ravel()))[0])
            raise EncodingOverflowError(f"value at index {bad} is not finite ({values.ravel()[bad]})")
        scaled = np.rint(np.ldexp(values, self.precision_bits))
        too_big = np.abs(scaled) > self.max_encoded
        if np.any(too_big):
            bad = int(np.flatnonzero(too_big.ravel())[0])
            raise EncodingOverflowError(
                f"value {values.ravel()[bad]} at index {bad} exceeds the encodable range +-{self.max_value:.3g} "
                f"(precision {self.precision_bits} bits, {self.max_summands} summands)"
            )
        return scaled.astype(np.int64)

    def encode(self, values: np.ndarray) -> list[int]:
        """Float64 array of shape (k,) -> k ints in [0, n)."""
        return self.encode_quantized(self.quantize(values))

    def encode_quantized(self, quantized: np.ndarray) -> list[int]:
        """Int64 array from ``quantize`` -> ints in [0, n) (negatives as n - |m|)."""
        n = self.n
        return [int(m) % n for m in quantized.tolist()]

    def decode(self, encoded: Sequence[int], summands: int | None = None) -> np.ndarray:
        """Ints in [0, n), each the sum of ``summands`` encodings (default ``max_summands``) -> float64 (k,).

        A sum of s encodings lies in [-s * max_encoded, s * max_encoded]; anything else cannot come from s
        honest encoders, and raises EncodingOverflowError naming the index (never a wrapped or huge value).
        """
        summands = self.max_summands if summands is None else summands
        if isinstance(summands, bool) or not isinstance(summands, int):
            raise TypeError(f"summands must be an integer, got {summands!r}")
        if not 1 <= summands <= self.max_summands:
            raise EncodingOverflowError(f"summands must be in [1, {self.max_summands}] (max_summands), got {summands}")
        n, bound = self.n, summands * self.max_encoded
        signed = []
        for i, m in enumerate(exact_ints(encoded, "encoded value")):
            if not 0 <= m < n:
                raise EncodingOverflowError(f"encoded value at index {i} is outside [0, n)")
            value = m if m <= n // 2 else m - n
            if not -bound <= value <= bound:
                raise EncodingOverflowError(
                    f"decoded value at index {i} is outside the range {summands} summand(s) can produce "
                    f"(+-{summands} x {self.max_value:.6g})"
                )
            signed.append(value)
        # |value| <= max_summands * 2**62 < 2**94: exact enough for float64, never an overflow.
        return np.ldexp(np.array(signed, dtype=np.float64), -self.precision_bits)
