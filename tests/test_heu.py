"""The SecretFlow HEU baseline: every variant decrypts correctly before it is timed, thread counts, no sf-heu."""

import dataclasses

import numpy as np
import pytest

from dphe_bench import get_backend
from dphe_bench.bench import heu
from dphe_bench.bench.sweep import Cell, Component, SweepError, SweepGrid, machine_info, run_cell, synthetic_weights
from dphe_bench.bench.throughput import measure as measure_throughput
from dphe_bench.errors import BackendUnavailableError

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")

needs_heu = pytest.mark.skipif(heu.unavailable_reason() is not None, reason=str(heu.unavailable_reason()))


@pytest.fixture(scope="module")
def kits():
    """One 1024-bit kit per HEU variant."""
    if heu.unavailable_reason():
        pytest.skip(heu.unavailable_reason())
    return {variant: heu.HeuKit(variant, 1024) for variant in heu.VARIANTS}


@needs_heu
@pytest.mark.parametrize("variant", list(heu.VARIANTS))
def test_every_variant_passes_the_check_and_round_trips_python_ints(kits, variant):
    kit = kits[variant]
    assert kit.check(count=16) == 23
    values = np.array([-(2**63), -5, 0, 7, 2**63 - 1], dtype=np.int64)
    assert kit.decrypt(kit.encrypt(values)).tolist() == [int(v) for v in values]
    a, b = np.array([3, -4, 2**40], dtype=np.int64), np.array([-3, 10, 2**40], dtype=np.int64)
    assert kit.decrypt(kit.add(kit.encrypt(a), kit.encrypt(b))).tolist() == [0, 6, 2**41]


@needs_heu
def test_a_variant_that_decrypts_wrongly_is_refused_before_it_is_timed(monkeypatch, kits):
    real = heu.HeuKit.decrypt

    def off_by_one(self, ciphertexts):
        return real(self, ciphertexts) + 1

    monkeypatch.setattr(heu.HeuKit, "decrypt", off_by_one)
    with pytest.raises(heu.HeuError, match="decrypted to"):
        kits["ZPaillier"].check(count=4)
    encryptions = []
    real_encrypt = heu.HeuKit.encrypt
    monkeypatch.setattr(
        heu.HeuKit, "encrypt", lambda self, values: encryptions.append(len(values)) or real_encrypt(self, values)
    )
    with pytest.raises(heu.HeuError, match="decrypted to"):
        heu.measure_here("FPaillier", 1024, seconds=0.01, repeats=1)
    assert encryptions == [heu.CHECK_VALUES + 7]  # the check's batch only: nothing was timed


@needs_heu
def test_a_measuring_process_sets_its_thread_count_and_reports_checked_rates():
    found = heu.measure("FPaillier", 1024, threads=1, seconds=0.05, repeats=1)
    assert found.threads == 1 and found.key_bits == 1024 and found.variant == "FPaillier"
    assert found.checked_values == heu.CHECK_VALUES + 7
    assert found.encrypt_per_s > 0 and found.decrypt_per_s > 0 and found.aggregate_per_s > 0
    assert 128 <= found.ciphertext_bytes <= 4 * 256  # a 1024-bit key's ciphertext is 2048 bits plus framing


@needs_heu
@pytest.mark.slow
def test_throughput_rows_name_heu_at_one_and_all_threads_and_mark_ou(monkeypatch):
    monkeypatch.setattr(heu, "VARIANTS", {"FPaillier": True, "OU": False})
    lines = []
    rows = measure_throughput(
        key_bits=(1024,), workers=2, seconds=0.02, repeats=1, only=("heu",), progress=lines.append
    )
    assert [(r.implementation, r.workers) for r in rows] == [
        ("python-paillier", 1),
        ("heu:FPaillier", 1),
        ("heu:FPaillier", 2),
        ("heu:OU (not Paillier, for reference)", 1),
        ("heu:OU (not Paillier, for reference)", 2),
    ]
    for row in rows[1:]:
        assert row.speedup_vs_python_paillier == pytest.approx(row.encrypt_per_s / rows[0].encrypt_per_s)


def test_without_sf_heu_the_rows_say_how_to_install(monkeypatch):
    monkeypatch.setattr(heu, "unavailable_reason", lambda: "sf-heu is not installed: pip install 'dphe-bench[heu]'")
    lines = []
    rows = measure_throughput(key_bits=(1024,), seconds=0.02, repeats=1, only=("heu",), progress=lines.append)
    assert [r.implementation for r in rows] == ["python-paillier"]
    assert "heu not measured: sf-heu is not installed: pip install 'dphe-bench[heu]'" in lines
    with pytest.raises(BackendUnavailableError, match=r"dphe-bench\[heu\]"):
        heu.HeuKit("ZPaillier", 1024)
    with pytest.raises(BackendUnavailableError, match=r"dphe-bench\[heu\]"):
        heu.measure("ZPaillier", 1024, threads=1)


def test_unknown_variants_and_thread_counts_are_refused():
    with pytest.raises(ValueError, match="unknown HEU variant 'Paillier'"):
        heu.HeuKit("Paillier", 1024)
    if heu.unavailable_reason() is None:
        with pytest.raises(ValueError, match="threads must be >= 1"):
            heu.measure("ZPaillier", 1024, threads=0)


@needs_heu
@pytest.mark.parametrize("scheme", heu.ROUND_SCHEMES)
def test_a_round_on_heu_gives_the_mean_of_our_scheme_within_its_bound(scheme):
    vectors = synthetic_weights(100, 3, 0.5, seed=1)
    cell = Cell(100, 3, 0.5, 1024, Component(scheme), Component("heu", (("variant", "FPaillier"),)), seed=1)
    row = run_cell(cell, get_backend("gmpy2"), machine_info())
    assert 0 < row["max_abs_error"] <= row["error_bound"]
    ours = run_cell(
        Cell(100, 3, 0.5, 1024, Component(scheme), Component("gmpy2"), seed=1), get_backend("gmpy2"), machine_info()
    )
    assert row["ciphertexts_per_user"] == ours["ciphertexts_per_user"]
    found = heu.run_round(vectors, scheme, "FPaillier", 1024)
    assert np.max(np.abs(found.mean - np.mean(vectors, axis=0))) == row["max_abs_error"]


def test_the_sweep_adds_heu_cells_for_dense_and_packed_only(monkeypatch):
    monkeypatch.setattr(heu, "unavailable_reason", lambda: None)
    grid = SweepGrid(
        dimension=30,
        sparsities=(0.5,),
        key_bits=(1024, 2048),
        schemes=(Component("dense"), Component("dphe"), Component("packed")),
        backends=(Component("gmpy2"),),
        heu=("ZPaillier",),
    )
    cells = [c for c in grid.cells() if c.backend.name == "heu"]
    assert sorted((c.scheme.name, c.key_bits, c.backend.label) for c in cells) == [
        (scheme, bits, "heu:variant=ZPaillier") for scheme in ("dense", "packed") for bits in (1024, 2048)
    ]
    with pytest.raises(SweepError, match="unknown HEU Paillier variant 'OU'"):
        dataclasses.replace(grid, heu=("OU",)).cells()
    monkeypatch.setattr(heu, "unavailable_reason", lambda: "sf-heu is not installed: pip install 'dphe-bench[heu]'")
    with pytest.raises(SweepError, match=r"HEU baseline cannot run: .*dphe-bench\[heu\]"):
        grid.cells()


def test_dphe_does_not_run_on_heu_arrays_and_says_which_do():
    with pytest.raises(ValueError, match="these do: dense, packed"):
        heu.run_round([np.zeros(3)], "dphe")
