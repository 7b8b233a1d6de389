import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dphe_bench import CiphertextBatch, get_backend
from dphe_bench.crypto.limbs import limb_width
from dphe_bench.errors import CiphertextError


def test_bytes_round_trip_is_fixed_width_little_endian(small_keypair):
    public_key, _ = small_keypair
    batch = get_backend("python").encrypt(public_key, [0, 1, 2])
    data = batch.to_bytes()
    width_bytes = 4 * limb_width(public_key.nsquare)
    assert len(data) == 3 * width_bytes == batch.nbytes
    assert [int.from_bytes(data[i : i + width_bytes], "little") for i in range(0, len(data), width_bytes)] == (
        batch.to_ints()
    )
    again = CiphertextBatch.from_bytes(public_key, data)
    assert again.to_ints() == batch.to_ints()
    assert again.public_key == public_key


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_from_ints_accepts_every_invertible_value_in_range(small_keypair, data):
    public_key, private_key = small_keypair
    n2 = public_key.nsquare
    candidate = st.one_of(st.integers(1, n2 - 1), st.sampled_from([1, n2 - 1, public_key.n + 1, n2 - 2]))
    values = data.draw(st.lists(candidate.filter(lambda v: v % private_key.p and v % private_key.q), max_size=6))
    assert CiphertextBatch.from_ints(public_key, values).to_ints() == values


@pytest.mark.parametrize("bad", ["zero", "n2", "above", "negative"])
def test_ciphertexts_outside_1_n2_are_refused(small_keypair, bad):
    public_key, _ = small_keypair
    value = {"zero": 0, "n2": public_key.nsquare, "above": public_key.nsquare + 1, "negative": -3}[bad]
    with pytest.raises(CiphertextError, match="ciphertext 1 is outside"):
        CiphertextBatch.from_ints(public_key, [1, value])


def test_non_invertible_ciphertexts_are_refused_and_located(small_keypair):
    public_key, private_key = small_keypair
    with pytest.raises(CiphertextError, match="ciphertext 2 is not invertible"):
        CiphertextBatch.from_ints(public_key, [1, 2, private_key.p * 3, 5])


@pytest.mark.parametrize(
    ("value", "type_name"), [(1.5, "float"), (2.0, "float"), (True, "bool"), ("3", "str"), (None, "NoneType")]
)
def test_non_integers_are_refused_naming_index_and_type(small_keypair, value, type_name):
    with pytest.raises(TypeError, match=rf"ciphertext 1 is a {type_name}\b"):
        CiphertextBatch.from_ints(small_keypair[0], [1, value])


def test_truncated_bytes_are_refused(small_keypair):
    public_key, _ = small_keypair
    data = get_backend("python").encrypt(public_key, [1, 2]).to_bytes()
    with pytest.raises(CiphertextError, match="whole number"):
        CiphertextBatch.from_bytes(public_key, data[:-1])


def test_bytes_for_another_key_size_are_refused(small_keypair, keypair_1024):
    data = get_backend("python").encrypt(small_keypair[0], [1, 2, 3]).to_bytes()
    with pytest.raises(CiphertextError):
        CiphertextBatch.from_bytes(keypair_1024[0], data)


def test_out_of_range_value_in_bytes_is_refused(small_keypair):
    public_key, _ = small_keypair
    width = limb_width(public_key.nsquare)
    data = (public_key.nsquare + 1).to_bytes(4 * width, "little")
    with pytest.raises(CiphertextError, match="outside"):
        CiphertextBatch.from_bytes(public_key, data)


def test_limbs_are_read_only_and_checked(small_keypair):
    public_key, _ = small_keypair
    batch = get_backend("python").encrypt(public_key, [1])
    with pytest.raises(ValueError):
        batch.limbs[0, 0] = 1
    with pytest.raises(CiphertextError, match="shape"):
        CiphertextBatch(public_key, np.zeros((1, 3), dtype=np.uint32))
    with pytest.raises(CiphertextError, match="uint32"):
        CiphertextBatch(public_key, np.zeros((1, batch.width), dtype=np.int64))


def test_take_selects_rows_in_order(small_keypair):
    public_key, _ = small_keypair
    batch = get_backend("python").encrypt(public_key, [1, 2, 3])
    assert batch.take(np.array([2, 0])).to_ints() == [batch.to_ints()[2], batch.to_ints()[0]]
