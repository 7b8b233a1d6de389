"""``plain``: federated averaging in the clear (the baseline).

Leakage: the aggregator sees every user's weight vector w_i in full, and so does anyone on the
wire. Each user sends D float64 values; nothing is encrypted.
"""

import numpy as np

from dphe_bench.errors import ProtocolError
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
        self._sum = np.zeros(self.dimension, dtype=np.float64)

    def _ingest(self, user_id: int, message: Message) -> None:
        self._sum = self._sum + _checked_values(message, self.dimension, f"user {user_id}")

    def _aggregate_fields(self) -> dict:
        return {"values": self._sum}
