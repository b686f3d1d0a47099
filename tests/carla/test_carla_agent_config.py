"""Agent configuration: --agent-config strings, packaged YAMLs, overrides and cross-checks."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import load_agent_class

from autovla_agent.config_io import ConfigError
from autovla_agent.loop.agent_config import (
    AgentConfig,
    list_packaged_configs,
    load_agent_config,
    packaged_configs_dir,
    parse_agent_config_arg,
)
from autovla_agent.planners.vehicle import VehicleParams


def _leaf_paths(cls, prefix: str = "") -> set[str]:
    paths = set()
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            paths |= _leaf_paths(type(default), path + ".")
        else:
            paths.add(path)
    return paths


def _yaml_paths(data: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in data.items():
        if isinstance(value, dict):
            paths |= _yaml_paths(value, f"{prefix}{key}.")
        else:
            paths.add(f"{prefix}{key}")
    return paths


def test_packaged_configs_three_present_and_load():
    names = list_packaged_configs()
    assert {"autovla_3b.yaml", "autovla_tiny.yaml", "bench2drive_autovla.yaml"} <= set(names)
    for name in names:
        config, spec = load_agent_config(f"{name} vla.model.path=/ckpt/model")
        assert isinstance(config, AgentConfig) and spec.path.parent == packaged_configs_dir()
        assert config.vla.model.path == "/ckpt/model"


@pytest.mark.parametrize("name", ["autovla_3b.yaml", "autovla_tiny.yaml", "bench2drive_autovla.yaml"])
def test_packaged_config_lists_every_field_so_any_can_be_overridden(name):
    data = yaml.safe_load((packaged_configs_dir() / name).read_text())
    expected = {p for p in _leaf_paths(AgentConfig) if not p.startswith("rig.cameras")}
    found = {p for p in _yaml_paths(data) if not p.startswith("rig.cameras")}
    assert expected - found == set(), f"{name} misses keys"
    assert found - expected == set()


def test_agent_config_arg_bench2drive_save_name_split_off():
    spec = parse_agent_config_arg("autovla_tiny.yaml replan_hz=1.0+RouteScenario_1711_rep0_Town12")
    assert spec.save_name == "RouteScenario_1711_rep0_Town12"
    assert spec.overrides == ("replan_hz=1.0",)
    assert spec.path.name == "autovla_tiny.yaml"


def test_agent_config_arg_bench2drive_accumulated_suffixes_last_one_wins():
    # Bench2Drive's evaluator appends '+save_name' to the same string for every route.
    spec = parse_agent_config_arg("autovla_tiny.yaml+RouteScenario_1_rep0_a+RouteScenario_2_rep0_b")
    assert spec.save_name == "RouteScenario_2_rep0_b" and spec.overrides == ()


def test_agent_config_arg_packaged_name_without_suffix_resolves():
    assert parse_agent_config_arg("bench2drive_autovla").path.name == "bench2drive_autovla.yaml"


@pytest.mark.parametrize("arg", ["", "   ", "+save_name_only"])
def test_agent_setup_empty_config_raises_naming_agent_config_flag(arg):
    agent = load_agent_class()("localhost", 2000, 0)
    with pytest.raises(ConfigError, match="--agent-config"):
        agent.setup(arg)


def test_agent_config_unknown_override_key_raises_naming_it():
    with pytest.raises(ConfigError, match="replan_hzz"):
        load_agent_config("autovla_tiny.yaml replan_hzz=1.0")


def test_agent_config_missing_file_lists_packaged_configs():
    with pytest.raises(FileNotFoundError, match="autovla_tiny.yaml"):
        load_agent_config("no_such_config.yaml")


def test_agent_setup_real_config_without_model_path_explains_override():
    agent = load_agent_class()("localhost", 2000, 0)
    with pytest.raises(ConfigError, match=r"vla\.model\.path=/abs/path"):
        agent.setup("autovla_3b.yaml")


def test_agent_config_relative_model_path_resolves_against_yaml(tmp_path):
    text = (packaged_configs_dir() / "autovla_tiny.yaml").read_text()
    (tmp_path / "mine.yaml").write_text(text.replace("~/.cache/autovla_agent/tiny_model", "models/tiny"))
    config, _ = load_agent_config(str(tmp_path / "mine.yaml"))
    assert config.vla.model.path == str(tmp_path / "models" / "tiny")


def test_agent_config_vehicle_mismatch_raises_naming_both_sections():
    with pytest.raises(ValueError, match=r"vla\.vehicle and vehicle"):
        AgentConfig(vehicle=VehicleParams(wheelbase_m=3.0))


def test_agent_config_frame_count_mismatch_raises():
    from autovla_agent.sensors.frame_buffer import FrameBufferConfig

    with pytest.raises(ValueError, match="num_frames"):
        AgentConfig(frame_buffer=FrameBufferConfig(num_frames=2))


def test_agent_config_track_sets_agent_track():
    agent = load_agent_class()("localhost", 2000, 0)
    agent.setup("autovla_tiny.yaml planner=constant_velocity")
    assert agent.track.value == "SENSORS"
