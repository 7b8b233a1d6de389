"""``plain``: federated averaging in the clear (the baseline).

Leakage: the aggregator sees every user's weight vector w_i in full, and so does anyone on the
wire. Each user sends D float64 values; nothing is encrypted.
"""

import numpy as np

from dphe_bench.errors import EncodingOverflowError, ProtocolError
from dphe_bench.schemes.base import Aggregator, KeyGenerator, User
from dphe_bench.schemes.messages import Message

LEAKAGE = "everything: the aggregator sees every user's weights w_i"


def _checked_values(message: Message, dimension: int, sender: str) -> np.ndarray:
    values = message["values"]
    if values.shape != (dimension,):
        raise ProtocolError(f"{sender} sent {values.size} values, expected {dimension}")
    if not np.all(np.isfinite(values)):
        raise ProtocolError(f"{sender} sent values that are not finite")
    return values


class PlainKeyGenerator(KeyGenerator):
    """Holds no key: publishes the sum it is given divided by the number of contributors."""

    scheme = "plain"
    aggregate_fields = ("values",)

    def _sum_from_aggregate(self, message: Message) -> np.ndarray:
        return np.array(_checked_values(message, self.dimension, "the aggregator"), dtype=np.float64)


class PlainUser(User):
    """Sends w_i as float64."""

    scheme = "plain"

    def _update_fields(self, weights: np.ndarray) -> dict:
        return {"values": weights}


class PlainAggregator(Aggregator):
    """Sums the float64 vectors."""

    scheme = "plain"
    update_fields = ("values",)

    def _start_round(self) -> None:
        # Allocated from the first update, never from the setup's claimed dimension alone.
        self._sum: np.ndarray | None = None

    def _ingest(self, user_id: int, message: Message) -> None:
        values = _checked_values(message, self.dimension, f"user {user_id}")
        if self._sum is None:
            self._sum = np.array(values, dtype=np.float64)
            return
        with np.errstate(over="ignore"):
            total = self._sum + values
        if not np.all(np.isfinite(total)):
            bad = int(np.flatnonzero(~np.isfinite(total))[0])
            raise EncodingOverflowError(
                f"the users' sum overflowed float64 at index {bad} (user {user_id}'s weight {values[bad]:.6g} added "
                f"to {self._sum[bad]:.6g}): plain averaging cannot hold weights this large"
            )
        self._sum = total

    def _aggregate_fields(self) -> dict:
        return {"values": self._sum}
