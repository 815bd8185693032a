import pytest

from dalp_moo.config import _hashed, build_config, load_config, parse_override, read_file, to_toml
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
    ({"constraints": {"latency_budget_ms": -1}}, "constraints.latency_budget_ms"),
    ({"constraints": {"param_cap": 10}}, "constraints.param_cap"),
    ({"train": {"profile": "fp8"}}, "train.profile"),
    ({"problem": "segmentatoin"}, "did you mean 'vessel-segmentation'"),
    ({"problem": 3}, "problem"),
    ({"train": {"epochs": True}}, "expected int"),
    ({"train": "fast"}, "must be a table"),
])
def test_bad_values_rejected(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(values)


def test_int_accepted_for_float():
    assert build_config({"constraints": {"latency_budget_ms": 5}}).constraints.latency_budget_ms == 5.0


def test_format1_keys_move_to_constraints(caplog):
    cfg = build_config({"space": {"param_cap": 50_000}, "backend": {"latency_budget_ms": 3}})
    assert cfg.constraints.param_cap == 50_000 and cfg.constraints.latency_budget_ms == 3.0
    assert "space.param_cap has moved to constraints.param_cap" in caplog.text


def test_sections_are_attributes_and_replace_validates():
    cfg = load_config("smoke")
    assert cfg.problem == "vessel-segmentation" and cfg.train is cfg.sections["train"]
    again = cfg.replace("train", epochs=3).replace("constraints", param_cap=20_000)
    assert again.train.epochs == 3 and again.constraints.param_cap == 20_000 and cfg.train.epochs == 1
    with pytest.raises(ConfigError, match="train.epochs"):
        cfg.replace("train", epochs=0)
    with pytest.raises(ConfigError, match="unknown config key section 'trian'"):
        cfg.replace("trian", epochs=3)
    with pytest.raises(AttributeError, match="no section 'nothing'"):
        _ = cfg.nothing


def test_presets_come_from_the_application():
    from dalp_moo import applications

    app = applications.get("vessel-segmentation")
    assert app.presets() == ("default", "paper", "smoke")
    with pytest.raises(ConfigError, match="unknown preset 'huge' for problem 'vessel-segmentation'"):
        load_config("huge")


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


def test_evaluation_hash_declared_on_fields():
    a = load_config("smoke")
    same = [{"search": {"population": 8, "algorithm": "random", "workers": 2}}, {"train": {"threads": 3}},
            {"data": {"cache_dir": "x"}}, {"backend": {"export_ir": False}}]
    for override in same:
        assert load_config("smoke", overrides=[override]).evaluation_hash() == a.evaluation_hash(), override
    different = [{"train": {"epochs": 3}}, {"search": {"seed": 1}}, {"backend": {"name": "analytic"}},
                 {"constraints": {"param_cap": 50_000}}, {"data": {"n_tiles": 50}},
                 {"data": {"generator": {"p_cloud": 0.0}}}]
    for override in different:
        assert load_config("smoke", overrides=[override]).evaluation_hash() != a.evaluation_hash(), override


def test_field_added_later_enters_the_hash_only_when_set():
    # data.generator came after the first release: left empty, a run keeps its earlier hash
    a = load_config("smoke")
    assert "generator" not in _hashed(a.data)
    assert _hashed(load_config("smoke", overrides=[{"data": {"generator": {"p_haze": 0.1}}}]).data)[
        "generator"] == {"p_haze": 0.1}
    assert load_config("smoke", overrides=[{"data": {"generator": {}}}]).evaluation_hash() == a.evaluation_hash()


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


def test_data_config_with_a_generator_table_is_hashable():
    from dalp_moo.config import DataConfig

    a, b = DataConfig(generator={"p_cloud": 0.0}), DataConfig(generator={"p_cloud": 0.0})
    assert a == b and hash(a) == hash(b) and len({a, b, DataConfig()}) == 2


@pytest.mark.parametrize("problem", ["vessel-segmentation", "early-exit"])
def test_every_config_key_is_documented(problem):
    """Each field of every section of the application carries a ``#:`` documentation comment."""
    import dataclasses

    from dalp_moo.config import field_docs

    cfg = load_config(problem=problem)
    undocumented = [f"{name}.{f.name}" for name, section in cfg.section_items()
                    for f in dataclasses.fields(section) if not field_docs(type(section)).get(f.name)]
    assert len(cfg.section_items()) >= 5
    assert not undocumented, undocumented


def test_field_docs_joins_comment_lines_above_and_at_the_end():
    from dalp_moo.config import TrainConfig, field_docs

    docs = field_docs(TrainConfig)
    assert docs["epochs"] == "FP32 training epochs per candidate"
    assert docs["memory_format"].startswith("layout of images and convolution weights")
    assert docs["memory_format"].endswith("so it does not enter the hash")


@pytest.mark.parametrize("problem", ["vessel-segmentation", "early-exit"])
def test_commented_toml_round_trips(tmp_path, problem):
    cfg = load_config("smoke", problem=problem, overrides=[{"search": {"seed": 7}}])
    text = to_toml(cfg, comments=True)
    assert "# FP32 training epochs" in text or "# FP32 backbone training epochs" in text
    assert text.count("\n# ") > 40
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert load_config(path=path) == cfg
