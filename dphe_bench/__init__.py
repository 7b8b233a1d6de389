"""dphe-bench: privacy-preserving federated learning with Paillier encryption and DPHE.

Public API: ``generate_keypair``, ``PublicKey``, ``PrivateKey``, ``get_backend``, ``available_backends``,
``CiphertextBatch``, ``FixedPointCodec``, ``simulate_round``, ``Federation``.
"""

from dphe_bench.crypto.paillier import PrivateKey, PublicKey, generate_keypair  # noqa: I001  (keys before backends)
from dphe_bench.crypto.batch import CiphertextBatch
from dphe_bench.backends import available_backends, get_backend
from dphe_bench.crypto.encoding import FixedPointCodec
from dphe_bench.schemes.federation import Federation, RoundResult, simulate_round

__version__ = "0.1.0"

__all__ = [
    "CiphertextBatch",
    "Federation",
    "FixedPointCodec",
    "PrivateKey",
    "PublicKey",
    "RoundResult",
    "available_backends",
    "generate_keypair",
    "get_backend",
    "simulate_round",
]
