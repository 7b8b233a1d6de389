"""``dphe``: Doubly-Permuted Homomorphic Encryption (Yonetani et al., ICCV 2017).

Each user encrypts only the non-zero entries of its fixed-point weights and sends them with their
indices doubly permuted, P_i(P(K_i)). The key generator draws P (shared by the users, never shown
to the aggregator) and one P_i per user (shown to that user and the aggregator). The aggregator
removes P_i, multiplies the ciphertexts that meet at each P-space position, and sends the key
generator the union support with one ciphertext per position; the key generator decrypts, undoes P
and divides by the number of contributors.

Leakage: the aggregator learns each user's number of non-zeros nnz_i and how the users' supports
overlap, up to the unknown permutation P; the key generator learns the sum (the model). A user
colluding with the aggregator knows P and every P_i, so together they read every other user's
support (which weights are non-zero); and an aggregator that reports a subset of users (which no
single-aggregator scheme can stop) makes the published average reveal the values of that subset:
``min_contributors`` (default 2) refuses aggregates that claim fewer contributors, which stops only an
aggregator that reports its count honestly: the key generator cannot check the claim (A can claim 2 for
one user's update, or add an all-zero "user" it encrypted itself). Cost: nnz_i encryptions per user.
"""

import numpy as np

from dphe_bench.crypto.batch import CiphertextBatch
from dphe_bench.crypto.limbs import limb_width
from dphe_bench.crypto.permutations import check_permutation, invert_permutation, random_permutation
from dphe_bench.errors import ProtocolError
from dphe_bench.schemes.base import (
    FIXED_POINT_SETUP_FIELDS,
    Aggregator,
    FixedPointKeyGenerator,
    User,
    ciphertexts_from_update,
    codec_from_setup,
    public_key_from_setup,
)
from dphe_bench.schemes.messages import Message

LEAKAGE = (
    "each user's nnz_i and the overlaps of supports up to the secret P; "
    "a user colluding with the aggregator reveals every user's support"
)


def check_indices(indices: np.ndarray, count: int, dimension: int, sender: str) -> np.ndarray:
    """Indices must be ``count`` distinct values in [0, dimension); returned as intp."""
    if indices.shape != (count,):
        raise ProtocolError(f"{sender} sent {indices.size} indices for {count} ciphertexts")
    if count and int(indices.max()) >= dimension:
        raise ProtocolError(f"{sender} sent an index outside [0, {dimension})")
    if np.unique(indices).size != count:
        raise ProtocolError(f"{sender} sent duplicate indices")
    return indices.astype(np.intp)


class DpheKeyGenerator(FixedPointKeyGenerator):
    """Draws P and the P_i, decrypts the union support and undoes P."""

    scheme = "dphe"
    aggregate_fields = (*FixedPointKeyGenerator.aggregate_fields, "indices")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._shared_permutation = random_permutation(self.dimension)
        self._user_permutations = {uid: random_permutation(self.dimension) for uid in self.user_ids}
        self._inverse_shared = invert_permutation(self._shared_permutation)

    def _user_setup_fields(self, user_id: int) -> dict:
        return {
            **self._key_fields(),
            "shared_permutation": self._shared_permutation,
            "user_permutation": self._user_permutations[user_id],
        }

    def _aggregator_setup_fields(self) -> dict:
        stacked = np.concatenate([self._user_permutations[uid] for uid in self.user_ids])
        return {**self._key_fields(), "user_permutations": stacked}

    def _sum_from_aggregate(self, message: Message) -> np.ndarray:
        batch = self._ciphertexts(message)
        p_space = check_indices(message["indices"], len(batch), self.dimension, "the aggregator")
        sums = self._decode_sums(batch, message["contributors"])
        total = np.zeros(self.dimension, dtype=np.float64)
        total[self._inverse_shared[p_space]] = sums
        return total


class DpheUser(User):
    """Encrypts its non-zeros and sends them under P_i(P(.)), sorted by permuted index."""

    scheme = "dphe"
    setup_fields = (*FIXED_POINT_SETUP_FIELDS, "shared_permutation", "user_permutation")

    def _configure(self, message: Message) -> None:
        self.public_key = public_key_from_setup(message)
        self.codec = codec_from_setup(message, self.public_key)
        shared = check_permutation(message["shared_permutation"], self.dimension, "shared permutation P")
        own = check_permutation(message["user_permutation"], self.dimension, "user permutation P_i")
        self._double_permutation = own[shared]

    def ciphertexts_needed(self, weights: np.ndarray) -> int:
        return int(np.count_nonzero(self.codec.quantize(weights)))

    def _update_fields(self, weights: np.ndarray) -> dict:
        quantized = self.codec.quantize(weights)
        support = np.flatnonzero(quantized)
        permuted = self._double_permutation[support]
        # Sending in permuted order, not in the order of the original indices, hides that order.
        order = np.argsort(permuted, kind="stable")
        batch = self.backend.encrypt(self.public_key, self.codec.encode_quantized(quantized[support[order]]))
        self.last_ciphertext_count = len(batch)
        return {"key_id": self.public_key.key_id, "indices": permuted[order], "ciphertexts": batch.to_bytes()}


class DpheAggregator(Aggregator):
    """Removes each P_i and multiplies ciphertexts per P-space position; never sees P or a key."""

    scheme = "dphe"
    setup_fields = (*FIXED_POINT_SETUP_FIELDS, "user_permutations")
    update_fields = ("key_id", "indices", "ciphertexts")

    def _configure(self, message: Message) -> None:
        self.public_key = public_key_from_setup(message)
        stacked = message["user_permutations"]
        if stacked.size != self.dimension * self.max_users:
            raise ProtocolError(
                f"aggregator setup holds {stacked.size} permutation entries, expected "
                f"{self.max_users} x {self.dimension}"
            )
        self._inverse_user_permutations = {
            uid: invert_permutation(check_permutation(perm, self.dimension, f"permutation P_{uid}"))
            for uid, perm in zip(self.user_ids, stacked.reshape(self.max_users, self.dimension), strict=True)
        }

    def _start_round(self) -> None:
        self._updates: list[tuple[np.ndarray, CiphertextBatch]] = []

    def _ingest(self, user_id: int, message: Message) -> None:
        batch = ciphertexts_from_update(message, self.public_key)
        indices = check_indices(message["indices"], len(batch), self.dimension, f"user {user_id}")
        self._updates.append((self._inverse_user_permutations[user_id][indices], batch))

    def _aggregate_fields(self) -> dict:
        union = np.unique(np.concatenate([positions for positions, _ in self._updates]))
        product = np.empty((union.size, limb_width(self.public_key.nsquare)), dtype=np.uint32)
        filled = np.zeros(union.size, dtype=bool)
        for positions, batch in self._updates:
            slots = np.searchsorted(union, positions)
            first = ~filled[slots]
            product[slots[first]] = batch.limbs[first]
            repeat = slots[~first]
            if repeat.size:
                current = CiphertextBatch(self.public_key, product[repeat])
                combined = self.backend.aggregate(self.public_key, [current, batch.take(np.flatnonzero(~first))])
                product[repeat] = combined.limbs
            filled[slots] = True
        result = CiphertextBatch(self.public_key, product)
        return {"key_id": self.public_key.key_id, "indices": union.astype(np.uint32), "ciphertexts": result.to_bytes()}
