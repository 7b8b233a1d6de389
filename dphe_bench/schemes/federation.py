"""Run the three parties of a scheme in one process, passing only serialised messages between them."""

import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from dphe_bench.backends import Backend, get_backend
from dphe_bench.crypto.paillier import DEFAULT_KEY_BITS
from dphe_bench.errors import ProtocolError, plain_list
from dphe_bench.schemes import get_scheme
from dphe_bench.schemes.base import DEFAULT_MIN_CONTRIBUTORS

PHASES = ("setup", "tables", "precompute", "encrypt", "aggregate", "decrypt")


@dataclass
class RoundResult:
    """What one round produced.

    Attributes
    ----------
    mean : numpy.ndarray
        float64 (D,): the published average of the contributors' weights.
    timings : dict[str, float]
        Seconds per phase: ``setup`` (key generation and setup messages; only in the first round),
        ``tables`` (``djn`` obfuscation: the fixed-base table of each user's public key, built once at set-up;
        only in the first round), ``precompute`` (the offline phase of ``pool`` obfuscation: the obfuscators
        this round needs), ``encrypt`` (all users' encoding and encryption, summed), ``aggregate``, ``decrypt``.
    bytes_sent : dict[str, int]
        Bytes sent this round by ``key_generator`` (setup messages), ``users`` (all updates) and
        ``aggregator`` (the aggregate message).
    ciphertexts : dict[int, int]
        Ciphertexts sent per contributing user id.
    contributors : list[int]
        Ids of the users whose update was aggregated.
    """

    mean: np.ndarray
    timings: dict[str, float]
    bytes_sent: dict[str, int]
    ciphertexts: dict[int, int]
    contributors: list[int] = field(default_factory=list)


class Federation:
    """The parties of one scheme, set up once and reused round after round.

    Parameters
    ----------
    scheme : str
        A registered scheme: ``plain``, ``dense``, ``dphe``, ``packed`` or ``ckks``.
    dimension : int
        D, the length of the weight vectors.
    n_users : int
        Users get ids 0..n_users-1.
    backend : Backend or str
        Crypto backend instance or registered name (used by every party).
    key_bits : int
        Paillier key size (Paillier schemes only; ``ckks`` has fixed parameters and does not use it).
    min_contributors : int
        The key generator publishes no round with fewer contributors (default 2). A one-user federation
        needs 1, set explicitly: its published average is that user's weights.
    **options
        The scheme's own options (``Scheme.options``): ``precision_bits`` for dense and dphe,
        ``quantization_bits`` and ``quantization_range`` for packed. Unknown options are an error.

    With ``djn`` obfuscation the backend's fixed-base table for every user's public key is built here, once
    (``backend.djn_table``), and reported as the first round's ``tables`` time, apart from ``encrypt``.

    Raises ProtocolError when ``min_contributors`` is not in [1, n_users].
    """

    def __init__(
        self,
        scheme: str,
        dimension: int,
        n_users: int,
        backend: Backend | str = "gmpy2",
        key_bits: int = DEFAULT_KEY_BITS,
        min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
        **options: object,
    ):
        self.scheme = get_scheme(scheme)
        unknown = sorted(set(options) - set(self.scheme.options))
        if unknown:
            raise ValueError(
                f"scheme {scheme!r} takes no option(s) {plain_list(unknown)}; its options: "
                f"{plain_list(self.scheme.options) or 'none'}"
            )
        self.backend = get_backend(backend) if isinstance(backend, str) else backend
        self.dimension = dimension
        self.user_ids = list(range(n_users))
        self.round_index = 0
        if isinstance(min_contributors, bool) or not isinstance(min_contributors, int):
            raise ProtocolError(f"min_contributors must be an integer, got {min_contributors!r}")
        if not 1 <= min_contributors <= n_users:
            raise ProtocolError(
                f"min_contributors={min_contributors} must be in [1, {n_users}] for {n_users} user(s); a one-user "
                "federation needs min_contributors=1, set explicitly"
            )
        with _timed() as elapsed:
            if self.scheme.encrypted:
                options = {"key_bits": key_bits, **options}
            self.key_generator = self.scheme.key_generator(dimension, self.user_ids, self.backend, **options)
            self.key_generator.set_min_contributors(min_contributors)
            setup = self.key_generator.setup()
            self.aggregator = self.scheme.aggregator(setup.to_aggregator, self.backend)
            self.users = {uid: self.scheme.user(setup.to_users[uid], self.backend) for uid in self.user_ids}
        self._pending_setup = {"seconds": elapsed(), "tables": 0.0, "bytes": setup.nbytes}
        if self.backend.obfuscation == "djn" and self.scheme.encrypted and self.scheme.paillier:
            # A one-time cost, paid now so that no round's encrypt time holds it (the backend keeps one per key).
            with _timed() as elapsed:
                for user in self.users.values():
                    self.backend.djn_table(user.public_key)
            self._pending_setup["tables"] = elapsed()

    def run_round(
        self, weights: Mapping[int, np.ndarray], arrival_order: Sequence[int] | None = None, progress: bool = False
    ) -> RoundResult:
        """One round over the users in ``weights`` (user id -> float64 (D,)); absent users have dropped out.

        ``arrival_order`` is the order in which updates reach the aggregator (default: by user id).
        """
        unknown = sorted(set(weights) - set(self.user_ids))
        if unknown:
            raise ProtocolError(
                f"unknown user id(s) {plain_list(unknown)}; the federation has users 0..{len(self.user_ids) - 1}"
            )
        if len(weights) < self.key_generator.min_contributors:
            raise ProtocolError(
                f"round {self.round_index} has {len(weights)} contributor(s); the key generator publishes no round "
                f"of fewer than {self.key_generator.min_contributors} (min_contributors)"
            )
        order = sorted(weights) if arrival_order is None else list(arrival_order)
        if sorted(order) != sorted(weights):
            raise ProtocolError("arrival_order must list exactly the submitting users")
        timings = dict.fromkeys(PHASES, 0.0)
        setup_bytes = 0
        if self._pending_setup is not None:
            timings["setup"] = self._pending_setup["seconds"]
            timings["tables"] = self._pending_setup["tables"]
            setup_bytes = self._pending_setup["bytes"]
            self._pending_setup = None
        if self.backend.obfuscation == "pool" and self.scheme.encrypted and self.scheme.paillier:
            with _timed() as elapsed:
                for uid in order:
                    user = self.users[uid]
                    self.backend.precompute(user.public_key, user.ciphertexts_needed(weights[uid]))
            timings["precompute"] = elapsed()
        updates, ciphertexts = {}, {}
        for uid in tqdm(
            order,
            desc=f"round {self.round_index} {self.scheme.name}: users",
            unit="user",
            leave=False,
            disable=None if progress else True,
        ):
            user = self.users[uid]
            with _timed() as elapsed:
                updates[uid] = user.submit(weights[uid], self.round_index)
            timings["encrypt"] += elapsed()
            ciphertexts[uid] = user.last_ciphertext_count
        with _timed() as elapsed:
            for uid in order:
                self.aggregator.receive(updates[uid])
            aggregate = self.aggregator.finish()
        timings["aggregate"] = elapsed()
        with _timed() as elapsed:
            mean = self.key_generator.publish(aggregate)
        timings["decrypt"] = elapsed()
        self.round_index += 1
        return RoundResult(
            mean=mean,
            timings=timings,
            bytes_sent={
                "key_generator": setup_bytes,
                "users": sum(len(u) for u in updates.values()),
                "aggregator": len(aggregate),
            },
            ciphertexts=ciphertexts,
            contributors=order,
        )


def simulate_round(
    weights: Sequence[np.ndarray],
    scheme: str = "dphe",
    backend: Backend | str = "gmpy2",
    key_bits: int = DEFAULT_KEY_BITS,
    seed: int | None = None,
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
    **options: object,
) -> RoundResult:
    """Set up a fresh federation for ``len(weights)`` users and run one round of ``scheme``.

    Parameters
    ----------
    weights : sequence of numpy.ndarray
        N float vectors of equal length D, one per user (user i gets id i).
    seed : int, optional
        Shuffles the order in which the updates reach the aggregator (None: in user order). Keys,
        obfuscators and permutations never depend on it, and the result does not either.
    min_contributors : int
        As for ``Federation`` (default 2): one user's weights need ``min_contributors=1``, set explicitly.
    **options
        The scheme's options, as for ``Federation``.

    Returns
    -------
    RoundResult
        ``.mean`` (float64 (D,)), ``.timings``, ``.bytes_sent``, ``.ciphertexts``.
    """
    vectors = [np.asarray(w, dtype=np.float64) for w in weights]
    if not vectors:
        raise ProtocolError("simulate_round needs at least one user's weights")
    shapes = {v.shape for v in vectors}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ProtocolError(
            f"every user's weights must be a 1-D vector of the same length, got shapes {plain_list(sorted(shapes))}"
        )
    federation = Federation(scheme, vectors[0].size, len(vectors), backend, key_bits, min_contributors, **options)
    order = list(range(len(vectors)))
    if seed is not None:
        order = [int(i) for i in np.random.default_rng(seed).permutation(len(vectors))]
    return federation.run_round(dict(enumerate(vectors)), arrival_order=order)


@contextmanager
def _timed():
    """Context manager yielding a function that returns the seconds spent inside the block."""
    start = time.perf_counter()
    end = None

    def elapsed() -> float:
        return (end if end is not None else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end = time.perf_counter()
