"""Tests for dphe_bench.learning.config: defaults, TOML files, ``section.key=value`` overrides and validation."""

import dataclasses

import pytest

from dphe_bench.errors import ConfigError, DpheError
from dphe_bench.learning.config import Config, config_from_dict, load_config


def test_defaults_without_file():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.data.dataset == "digits"
    assert cfg.data.test_fraction == 0.25
    assert cfg.federation.users == 5
    assert cfg.federation.rounds == 3
    assert cfg.federation.split == "iid"
    assert cfg.federation.dirichlet_alpha == 0.5
    assert cfg.federation.dropout == 0.0
    assert cfg.model.loss == "hinge"
    assert cfg.model.alpha == 0.01
    assert cfg.model.l1_ratio == 0.9
    assert cfg.model.local_epochs == 2
    assert cfg.crypto.scheme == "dphe"
    assert cfg.crypto.backend is None
    assert cfg.crypto.key_bits == 2048
    assert cfg.crypto.precision_bits == 32
    assert (cfg.crypto.quantization_bits, cfg.crypto.quantization_range) == (16, 8.0)
    assert cfg.run.seed == 0
    assert cfg.run.output_dir == "reports/runs"
    assert cfg.run.compare_plain is True
    assert load_config(None, []) == cfg
    assert config_from_dict({}) == cfg


def test_to_dict_is_nested_plain_dict():
    d = load_config().to_dict()
    assert set(d) == {"data", "federation", "model", "crypto", "run"}
    assert d["federation"]["users"] == 5
    assert d["crypto"]["backend"] is None


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.federation.users = 7  # type: ignore[misc]


def test_toml_file_is_read(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text(
        "[data]\n"
        "test_fraction = 0.3\n"
        "[federation]\n"
        "users = 7\n"
        "split = 'dirichlet'\n"
        "dirichlet_alpha = 2\n"  # an int is accepted for a float option
        "[crypto]\n"
        "scheme = 'dense'\n"
        "backend = 'python'\n"
        "key_bits = 1024\n"
        "[run]\n"
        "compare_plain = false\n"
        "output_dir = 'somewhere/else'\n"
    )
    cfg = load_config(path)
    assert cfg.data.test_fraction == 0.3
    assert cfg.federation.users == 7
    assert cfg.federation.split == "dirichlet"
    assert cfg.federation.dirichlet_alpha == 2.0
    assert isinstance(cfg.federation.dirichlet_alpha, float)
    assert cfg.crypto.scheme == "dense"
    assert cfg.crypto.backend == "python"
    assert cfg.crypto.key_bits == 1024
    assert cfg.run.compare_plain is False
    assert cfg.run.output_dir == "somewhere/else"
    # untouched options keep their defaults
    assert cfg.federation.rounds == 3
    assert cfg.model.loss == "hinge"
    # a str path works as well as a Path
    assert load_config(str(path)) == cfg


def test_overrides_toml_literals():
    cfg = load_config(
        None,
        [
            "federation.users=3",
            "data.test_fraction=0.5",
            "run.compare_plain=false",
            "model.loss='log_loss'",
            'crypto.backend="python"',
            "federation.dropout = 0.25",
        ],
    )
    assert cfg.federation.users == 3
    assert cfg.data.test_fraction == 0.5
    assert cfg.run.compare_plain is False
    assert cfg.model.loss == "log_loss"
    assert cfg.crypto.backend == "python"
    assert cfg.federation.dropout == 0.25


def test_overrides_bare_strings():
    overrides = ["crypto.scheme=dense", "federation.split=dirichlet", "run.output_dir=/tmp/x/y-z"]
    cfg = load_config(None, overrides)
    assert cfg.crypto.scheme == "dense"
    assert cfg.federation.split == "dirichlet"
    assert cfg.run.output_dir == "/tmp/x/y-z"


def test_override_value_may_contain_equals_sign():
    cfg = load_config(None, ["run.output_dir=a=b"])
    assert cfg.run.output_dir == "a=b"


def test_overrides_win_over_file_and_later_override_wins(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("[federation]\nusers = 7\nrounds = 4\n")
    cfg = load_config(path, ["federation.users=2", "federation.users=9"])
    assert cfg.federation.users == 9
    assert cfg.federation.rounds == 4


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        load_config(None, ["federation.users=0"])
    with pytest.raises(DpheError):
        load_config(None, ["federation.users=0"])


@pytest.mark.parametrize(
    ("override", "named"),
    [
        # unknown section / key
        ("nosuch.users=3", "nosuch"),
        ("federation.nosuch=3", "federation.nosuch"),
        ("crypto.key_size=1024", "crypto.key_size"),
        # wrong types
        ('federation.users="five"', "federation.users"),
        ("federation.users=five", "federation.users"),
        ("federation.users=true", "federation.users"),
        ("federation.users=2.5", "federation.users"),
        ("data.test_fraction=true", "data.test_fraction"),
        ("data.test_fraction=abc", "data.test_fraction"),
        ("run.compare_plain=1", "run.compare_plain"),
        ("run.compare_plain=yes", "run.compare_plain"),
        ("crypto.scheme=3", "crypto.scheme"),
        ("crypto.backend=7", "crypto.backend"),
        ("run.output_dir=[1, 2]", "run.output_dir"),
        # out of range
        ("federation.users=0", "federation.users"),
        ("federation.users=-1", "federation.users"),
        ("federation.users=10001", "federation.users"),
        ("federation.rounds=0", "federation.rounds"),
        ("federation.dirichlet_alpha=0", "federation.dirichlet_alpha"),
        ("federation.dropout=1", "federation.dropout"),
        ("federation.dropout=-0.1", "federation.dropout"),
        ("federation.split=nope", "federation.split"),
        ("data.test_fraction=1.5", "data.test_fraction"),
        ("data.test_fraction=0", "data.test_fraction"),
        ("data.test_fraction=1", "data.test_fraction"),
        ("data.test_fraction=nan", "data.test_fraction"),
        ("data.dataset=mnist", "data.dataset"),
        ("model.loss=nope", "model.loss"),
        ("model.alpha=0", "model.alpha"),
        ("model.l1_ratio=1.5", "model.l1_ratio"),
        ("model.local_epochs=0", "model.local_epochs"),
        ("crypto.key_bits=1000", "crypto.key_bits"),
        ("crypto.key_bits=512", "crypto.key_bits"),
        ("crypto.scheme=nope", "crypto.scheme"),
        ("crypto.backend=nope", "crypto.backend"),
        ("crypto.precision_bits=0", "crypto.precision_bits"),
        ("crypto.precision_bits=53", "crypto.precision_bits"),
        ("crypto.quantization_bits=1", "crypto.quantization_bits"),
        ("crypto.quantization_bits=33", "crypto.quantization_bits"),
        ("crypto.quantization_range=0", "crypto.quantization_range"),
        ("crypto.quantization_range=-1.5", "crypto.quantization_range"),
        ("crypto.quantization_range=inf", "crypto.quantization_range"),
        ("run.seed=-1", "run.seed"),
        ("run.seed=4294967296", "run.seed"),
        ('run.output_dir=""', "run.output_dir"),
        # malformed overrides
        ("federation.users", "federation.users"),
        ("users=3", "users=3"),
        (".users=3", ".users=3"),
        ("federation.=3", "federation.=3"),
        ("=3", "=3"),
    ],
)
def test_bad_override_raises_config_error_naming_option(override, named):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[nosuch]\nx = 1\n", "nosuch"),
        ("[federation]\nnosuch = 1\n", "federation.nosuch"),
        ('[federation]\nusers = "five"\n', "federation.users"),
        ("[federation]\nusers = true\n", "federation.users"),
        ("[federation]\nusers = 0\n", "federation.users"),
        ("[data]\ntest_fraction = 1.5\n", "data.test_fraction"),
        ("[crypto]\nkey_bits = 1000\n", "crypto.key_bits"),
        ('[crypto]\nscheme = "nope"\n', "crypto.scheme"),
        ('[crypto]\nbackend = "nope"\n', "crypto.backend"),
        ("data = 5\n", "data"),
        ("users = 5\n", "users"),
    ],
)
def test_bad_file_raises_config_error_naming_option(tmp_path, text, named):
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert named in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_invalid_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[federation\nusers = = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "TOML" in str(info.value)


def test_override_into_non_table_section_in_file(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("federation = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["federation.users=2"])
    assert "federation" in str(info.value)


def test_directory_as_config_file(tmp_path):
    """A directory given as the config file is bad input: it must be a ConfigError naming the path."""
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_config_file_not_utf8(tmp_path):
    """A file that is not UTF-8 text is bad input: it must be a ConfigError naming the path."""
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe[data]\x00\x81")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_error_in_file_is_reported_even_when_override_is_fine(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("[federation]\nusers = 0\n")
    with pytest.raises(ConfigError, match=r"federation\.users"):
        load_config(path, ["federation.rounds=2"])
    # and an override can repair it
    assert load_config(path, ["federation.users=2"]).federation.users == 2
