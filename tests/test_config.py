import pytest

from dalp_moo.config import build_config, load_config, parse_override, read_file, to_toml
from dalp_moo.errors import ConfigError


def test_presets_load():
    for name in ("smoke", "default", "paper"):
        cfg = load_config(name)
        assert cfg.preset == name
    paper = load_config("paper")
    assert (paper.search.population, paper.search.generations, paper.train.epochs) == (50, 15, 10)


def test_unknown_key_suggests():
    with pytest.raises(ConfigError, match=r"unknown config key train\.'epoch'.*did you mean 'epochs'"):
        build_config({"train": {"epoch": 3}})


def test_unknown_section():
    with pytest.raises(ConfigError, match="unknown config key section 'trian'"):
        build_config({"trian": {"epochs": 3}})


@pytest.mark.parametrize("values, message", [
    ({"train": {"epochs": "three"}}, "expected int"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"train": {"lr": 2.0}}, "train.lr"),
    ({"train": {"regime": "int8"}}, "not one of"),
    ({"search": {"population": 1}}, "search.population"),
    ({"search": {"algorithm": "cmaes"}}, "search.algorithm"),
    ({"space": {"min_units": 5, "max_units": 3}}, "min_units"),
    ({"data": {"tile_size": 8}}, "data.tile_size"),
    ({"data": {"normalization": "zscore"}}, "data.normalization"),
    ({"backend": {"latency_budget_ms": -1}}, "latency_budget_ms"),
    ({"train": {"epochs": True}}, "expected int"),
    ({"train": "fast"}, "must be a table"),
])
def test_bad_values_rejected(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(values)


def test_int_accepted_for_float():
    assert build_config({"backend": {"latency_budget_ms": 5}}).backend.latency_budget_ms == 5.0


def test_override_parsing():
    assert parse_override("train.epochs=3") == {"train": {"epochs": 3}}
    assert parse_override("data.source=folder:/x") == {"data": {"source": "folder:/x"}}
    assert parse_override('backend.name="openvino"') == {"backend": {"name": "openvino"}}
    with pytest.raises(ConfigError):
        parse_override("epochs=3")


def test_toml_round_trip(tmp_path):
    cfg = load_config("smoke", overrides=[{"train": {"epochs": 2}}])
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    again = load_config(path=path)
    assert again == cfg


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = ")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_file(bad)
    yml = tmp_path / "c.yaml"
    yml.write_text("train:\n  epochs: 2\n")
    assert load_config("smoke", yml).train.epochs == 2


def test_evaluation_hash_ignores_search_size():
    a = load_config("smoke")
    b = load_config("smoke", overrides=[{"search": {"population": 8}}])
    c = load_config("smoke", overrides=[{"train": {"epochs": 3}}])
    assert a.evaluation_hash() == b.evaluation_hash() != c.evaluation_hash()


def test_backend_options_table(tmp_path):
    cfg = load_config("smoke", overrides=[{"backend": {"name": "openvino", "options": {"latency": "model", "runs": 5}}}])
    assert cfg.backend.options == {"latency": "model", "runs": 5}
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path=path) == cfg
    with pytest.raises(ConfigError, match="backend.options.x"):
        build_config({"backend": {"options": {"x": [1, 2]}}})


def test_unknown_backend_option_is_one_line():
    from dalp_moo import backends
    from dalp_moo.errors import BackendError

    with pytest.raises(BackendError, match="has no option 'latencyy'"):
        backends.get("openvino", latencyy="model")
