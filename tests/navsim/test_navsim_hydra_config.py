"""The ``agent=autovla`` Hydra config: composed through Hydra as navsim composes it, without navsim installed."""

import ast
import dataclasses
import importlib.resources
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.global_hydra import GlobalHydra
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

import autovla_agent
from autovla_agent.adapters.navsim.convert import AUTOVLA_CAMERAS, NAVSIM_CAMERAS, NavsimAgentConfig
from hydra_plugins.autovla_searchpath import AutoVLASearchPathPlugin

HYDRA_KEYS = {"_target_", "_convert_"}


@pytest.fixture(autouse=True)
def _fresh_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def _compose_agent():
    with initialize_config_module(config_module="autovla_agent.adapters.navsim.config", version_base=None):
        cfg = compose(config_name=None, overrides=["+agent=autovla"])
    return OmegaConf.to_container(cfg.agent)


def test_agent_yaml_compose_has_navsim_keys():
    agent = _compose_agent()
    assert agent["_target_"] == "autovla_agent.adapters.navsim.agent.AutoVLANavsimAgent"
    assert agent["_convert_"] == "all"
    assert agent["checkpoint_path"] is None
    sampling = agent["trajectory_sampling"]
    assert sampling["_target_"] == "nuplan.planning.simulation.trajectory.trajectory_sampling.TrajectorySampling"
    assert sampling["time_horizon"] == 4 and sampling["interval_length"] == 0.5
    assert agent["config_path"] is None and agent["thinking_mode"] is None
    assert agent["cameras"] == AUTOVLA_CAMERAS
    assert set(agent["cameras"].values()) <= set(NAVSIM_CAMERAS)


def test_agent_yaml_compose_overrides_like_navsim_cli():
    with initialize_config_module(config_module="autovla_agent.adapters.navsim.config", version_base=None):
        cfg = compose(
            config_name=None,
            overrides=[
                "+agent=autovla",
                "agent.checkpoint_path=/models/autovla",
                "agent.thinking_mode=slow",
                "agent.cameras.front_left=cam_l0",
            ],
        )
    assert cfg.agent.checkpoint_path == "/models/autovla"
    assert cfg.agent.thinking_mode == "slow"
    assert cfg.agent.cameras.front_left == "cam_l0"


def test_agent_yaml_keys_match_config_dataclass():
    agent = _compose_agent()
    own = {k: v for k, v in agent.items() if k not in HYDRA_KEYS | {"trajectory_sampling"}}
    assert set(own) == {f.name for f in dataclasses.fields(NavsimAgentConfig)}
    config = NavsimAgentConfig(**{**own, "overrides": tuple(own["overrides"])})  # the shipped defaults validate
    assert config.cameras == AUTOVLA_CAMERAS


def test_agent_yaml_keys_match_agent_constructor():
    # adapters/navsim/agent.py imports navsim, so its constructor is read from the source instead of imported.
    source = Path(autovla_agent.__file__).parent.joinpath("adapters", "navsim", "agent.py").read_text(encoding="utf-8")
    cls = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == "AutoVLANavsimAgent")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    params = {a.arg for a in init.args.args} - {"self"}
    assert params == set(_compose_agent()) - HYDRA_KEYS


def test_searchpath_plugin_resolves_agent_override_like_navsim(tmp_path):
    # A navsim-like primary config selecting another agent; agent=autovla must come from the plugin's path.
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "constant_velocity_agent.yaml").write_text("_target_: some.Agent\n")
    (tmp_path / "run.yaml").write_text("defaults:\n  - agent: constant_velocity_agent\n  - _self_\n")
    assert issubclass(AutoVLASearchPathPlugin, SearchPathPlugin)

    class _Recorder(ConfigSearchPath):
        def __init__(self):
            self.entries = []

        def get_path(self):
            return []

        def append(self, provider, path, anchor=None):
            self.entries.append(path)

        def prepend(self, provider, path, anchor=None):
            raise AssertionError("the plugin must append, so navsim's own configs win name clashes")

    recorder = _Recorder()
    AutoVLASearchPathPlugin().manipulate_search_path(recorder)
    assert recorder.entries == ["pkg://autovla_agent.adapters.navsim.config"]
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        cfg = compose(config_name="run", overrides=[f"hydra.searchpath=[{recorder.entries[0]}]", "agent=autovla"])
    assert cfg.agent._target_ == "autovla_agent.adapters.navsim.agent.AutoVLANavsimAgent"


def test_agent_yaml_is_package_data():
    files = importlib.resources.files("autovla_agent.adapters.navsim.config") / "agent" / "autovla.yaml"
    assert files.is_file()
