"""Relative model paths in --agent-config: command line from the working directory, YAML from its own folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import load_agent_class

from autovla_agent.config_io import ConfigError
from autovla_agent.loop.agent_config import load_agent_config, packaged_configs_dir
from autovla_agent.paths import DEFAULT_MODEL_DIR, PACKAGE_DIR

MODEL_PATH_LINE = re.compile(r"^(    path: )\S+", re.M)  # vla.model.path in the packaged YAML


def _package_files() -> set[Path]:
    return {p for p in PACKAGE_DIR.resolve().rglob("*") if "__pycache__" not in p.parts} | {
        p for p in packaged_configs_dir().resolve().rglob("*") if "__pycache__" not in p.parts
    }


def _yaml_with_model_path(folder: Path, model_path: str) -> Path:
    text, count = MODEL_PATH_LINE.subn(
        rf"\g<1>{model_path}", (packaged_configs_dir() / "autovla_tiny.yaml").read_text()
    )
    assert count == 1
    path = folder / "mine.yaml"
    path.write_text(text)
    return path


def test_command_line_relative_model_path_is_taken_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, spec = load_agent_config("autovla_tiny.yaml vla.model.path=outputs/models/tiny_random")
    assert spec.path.parent == packaged_configs_dir()
    assert config.vla.model.path == str((tmp_path / "outputs" / "models" / "tiny_random").resolve())


def test_command_line_relative_model_path_with_dot_prefix_and_other_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, _ = load_agent_config("autovla_tiny.yaml replan_hz=1.0 vla.model.path=./models/m vla.model.device=cpu")
    assert config.vla.model.path == str((tmp_path / "models" / "m").resolve())
    assert config.replan_hz == 1.0


def test_command_line_path_overrides_a_yaml_relative_path_and_is_taken_from_the_working_directory(
    tmp_path, monkeypatch
):
    yaml_dir, run_dir = tmp_path / "configs", tmp_path / "run"
    yaml_dir.mkdir()
    run_dir.mkdir()
    yaml_path = _yaml_with_model_path(yaml_dir, "models/from_yaml")
    monkeypatch.chdir(run_dir)
    config, _ = load_agent_config(f"{yaml_path} vla.model.path=models/from_cli")
    assert config.vla.model.path == str((run_dir / "models" / "from_cli").resolve())


def test_yaml_relative_model_path_stays_relative_to_the_yaml_even_with_other_overrides(tmp_path, monkeypatch):
    yaml_dir, run_dir = tmp_path / "configs", tmp_path / "run"
    yaml_dir.mkdir()
    run_dir.mkdir()
    yaml_path = _yaml_with_model_path(yaml_dir, "models/from_yaml")
    monkeypatch.chdir(run_dir)
    config, _ = load_agent_config(f"{yaml_path} replan_hz=1.0")
    assert config.vla.model.path == str((yaml_dir / "models" / "from_yaml").resolve())


def test_relative_yaml_path_given_from_the_working_directory_keeps_model_path_next_to_the_yaml(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    _yaml_with_model_path(tmp_path / "configs", "models/m")
    monkeypatch.chdir(tmp_path)
    config, spec = load_agent_config("configs/mine.yaml")
    assert spec.path == (tmp_path / "configs" / "mine.yaml").resolve()
    assert config.vla.model.path == str((tmp_path / "configs" / "models" / "m").resolve())


def test_command_line_model_mapping_override_is_taken_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, _ = load_agent_config("autovla_tiny.yaml 'vla.model={path: models/m, device: cpu}'")
    assert config.vla.model.path == str((tmp_path / "models" / "m").resolve())


def test_command_line_home_and_absolute_model_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config, _ = load_agent_config("autovla_tiny.yaml vla.model.path=~/models/m")
    assert config.vla.model.path == str(tmp_path / "models" / "m")
    config, _ = load_agent_config(f"autovla_tiny.yaml vla.model.path={tmp_path / 'abs'}")
    assert config.vla.model.path == str(tmp_path / "abs")


def test_empty_model_path_stays_empty():
    config, _ = load_agent_config("autovla_3b.yaml")
    assert config.vla.model.path == ""


def test_tiny_model_is_never_built_inside_the_package():
    target = packaged_configs_dir() / "models" / "tiny_random"
    with pytest.raises(ConfigError, match="inside the installed autovla_agent package"):
        load_agent_config(f"autovla_tiny.yaml vla.model.path={target}")
    assert not target.exists()


def test_existing_model_inside_the_package_may_be_read():
    config, _ = load_agent_config(f"autovla_tiny.yaml vla.model.path={DEFAULT_MODEL_DIR}")
    assert config.vla.model.path == str(DEFAULT_MODEL_DIR)


def test_agent_setup_builds_the_tiny_model_in_the_working_directory_not_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _package_files()
    agent = load_agent_class()("localhost", 2000, 0)
    agent.setup("autovla_tiny.yaml vla.model.path=outputs/models/tiny_random")
    assert (tmp_path / "outputs" / "models" / "tiny_random" / "config.json").is_file()
    assert agent.config.vla.model.path == str((tmp_path / "outputs" / "models" / "tiny_random").resolve())
    assert _package_files() == before
