"""The learning pipeline end to end on the default data (digits), small and fast."""

import numpy as np
import pytest

from dphe_bench.errors import ConfigError
from dphe_bench.learning.config import load_config
from dphe_bench.learning.pipeline import run_pipeline

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")
FAST = ["crypto.key_bits=1024", "federation.users=3", "federation.rounds=2"]


@pytest.mark.slow
def test_dphe_gives_the_plain_model_up_to_fixed_point_rounding():
    config = load_config(None, [*FAST, "crypto.scheme=dphe"])
    result = run_pipeline(config, backend="gmpy2", progress=False)
    dphe, plain = result.outcomes["dphe"], result.outcomes["plain"]
    # Rounding to 2**-32 per round can move SGD by a hair, never by more than a tiny tolerance.
    assert np.max(np.abs(dphe.weights - plain.weights)) < 1e-6
    assert result.max_abs_diff_vs_plain == pytest.approx(np.max(np.abs(dphe.weights - plain.weights)))
    assert dphe.accuracy == pytest.approx(plain.accuracy, abs=1 / 450)
    assert dphe.accuracy > 0.85 and result.centralised_accuracy > 0.85
    assert dphe.weights.shape == (result.dimension,) == (10 * 65,)


@pytest.mark.slow
def test_dphe_encrypts_only_the_nonzeros_it_reports():
    config = load_config(None, [*FAST, "crypto.scheme=dphe"])
    result = run_pipeline(config, backend="gmpy2", progress=False)
    dphe = result.outcomes["dphe"]
    assert all(0 < s < 1 for s in dphe.user_sparsity)
    last_round = dphe.rounds[-1]
    expected = sum(round((1 - s) * result.dimension) for s in dphe.user_sparsity)
    assert sum(last_round["ciphertexts"].values()) == expected
    assert dphe.ciphertexts_per_round[-1] < 3 * result.dimension
    assert set(dphe.timings) == {"train", "setup", "tables", "precompute", "encrypt", "aggregate", "decrypt"}
    assert dphe.timings["encrypt"] > 0 and dphe.bytes_sent["users"] > dphe.bytes_sent["aggregator"] > 0


def test_plain_only_run_with_dirichlet_split_and_dropouts_is_reproducible():
    overrides = [
        *FAST,
        "crypto.scheme=plain",
        "federation.split=dirichlet",
        "federation.dropout=0.4",
        "federation.rounds=4",
    ]
    first = run_pipeline(load_config(None, overrides), backend="python", progress=False)
    second = run_pipeline(load_config(None, overrides), backend="python", progress=False)
    assert list(first.outcomes) == ["plain"]
    assert first.max_abs_diff_vs_plain is None
    assert np.array_equal(first.outcomes["plain"].weights, second.outcomes["plain"].weights)
    contributors = [r["contributors"] for r in first.outcomes["plain"].rounds]
    assert any(len(c) < 3 for c in contributors) and all(len(c) >= 1 for c in contributors)
    assert contributors == [r["contributors"] for r in second.outcomes["plain"].rounds]


def test_a_different_seed_gives_a_different_model():
    base = [*FAST, "crypto.scheme=plain"]
    first = run_pipeline(load_config(None, [*base, "run.seed=1"]), backend="python", progress=False)
    second = run_pipeline(load_config(None, [*base, "run.seed=2"]), backend="python", progress=False)
    assert not np.array_equal(first.outcomes["plain"].weights, second.outcomes["plain"].weights)


def test_pool_obfuscation_on_multiprocessing_gives_the_plain_model_and_times_the_offline_phase():
    overrides = [
        *FAST,
        "federation.rounds=1",
        "crypto.backend=multiprocessing",
        "crypto.workers=2",
        "crypto.obfuscation=pool",
    ]
    result = run_pipeline(load_config(None, overrides), progress=False)
    dphe = result.outcomes["dphe"]
    assert result.backend_description == "multiprocessing (pool obfuscation) on 2 workers of gmpy2"
    assert dphe.timings["precompute"] > 0
    assert result.max_abs_diff_vs_plain < 1e-6


def test_backend_options_that_do_not_apply_are_refused():
    config = load_config(None, [*FAST, "crypto.workers=2"])
    with pytest.raises(ConfigError, match=r"crypto\.workers does not apply to backend 'gmpy2'"):
        run_pipeline(config, backend="gmpy2", progress=False)
