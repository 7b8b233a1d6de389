"""A Paillier round trip checked against python-paillier (shared by the numba kernel families' tests)."""

import phe


def check_round_trip(backend, public_key, private_key, rows: list[list[int]]) -> None:
    """Encrypt each row, decrypt the first, aggregate all; our decryption and python-paillier's (built from the same
    p, q) must both give the plaintexts and their column sums mod n."""
    n = public_key.n
    batches = [backend.encrypt(public_key, row) for row in rows]
    assert backend.decrypt(private_key, batches[0]) == rows[0]
    total = backend.aggregate(public_key, batches)
    sums = [sum(column) % n for column in zip(*rows, strict=True)]
    assert backend.decrypt(private_key, total) == sums
    phe_private = phe.PaillierPrivateKey(phe.PaillierPublicKey(n), private_key.p, private_key.q)
    assert [phe_private.raw_decrypt(c) for c in batches[0].to_ints()] == rows[0]
    assert [phe_private.raw_decrypt(c) for c in total.to_ints()] == sums
