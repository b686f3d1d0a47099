from dataclasses import dataclass, field
from typing import Literal

import pytest

from autovla_agent.config_io import ConfigError, apply_overrides, dump_yaml, from_dict, load_yaml, to_dict
from autovla_agent.contract import NavCommand


@dataclass(frozen=True, kw_only=True, slots=True)
class Inner:
    gain: float = 1.0
    window_s: tuple[float, float] = (0.5, 1.0)
    mode: Literal["fast", "slow"] = "fast"


@dataclass(frozen=True, kw_only=True, slots=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    views: tuple[str, ...] = ("front",)
    command: NavCommand = NavCommand.UNKNOWN
    limit: int | None = None


def test_from_dict_unknown_key_names_dotted_path():
    with pytest.raises(ConfigError, match=r"inner\.gian"):
        from_dict(Outer, {"name": "a", "inner": {"gian": 2.0}})


def test_from_dict_missing_required_key_is_named():
    with pytest.raises(ConfigError, match="missing required key 'name'"):
        from_dict(Outer, {})


def test_from_dict_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"inner\.gain: expected a number"):
        from_dict(Outer, {"name": "a", "inner": {"gain": "high"}})
    with pytest.raises(ConfigError, match=r"inner\.mode"):
        from_dict(Outer, {"name": "a", "inner": {"mode": "medium"}})


def test_from_dict_fixed_tuple_and_enum_convert():
    cfg = from_dict(Outer, {"name": "a", "inner": {"window_s": [0.25, 2]}, "command": "turn left", "limit": 3})
    assert cfg.inner.window_s == (0.25, 2.0)
    assert isinstance(cfg.inner.window_s[1], float)
    assert cfg.command is NavCommand.TURN_LEFT
    with pytest.raises(ConfigError, match="expected 2 items"):
        from_dict(Outer, {"name": "a", "inner": {"window_s": [1.0]}})


def test_yaml_round_trip_is_identity(tmp_path):
    cfg = Outer(name="x", inner=Inner(gain=2.5, window_s=(0.1, 0.2), mode="slow"), views=("front", "left"))
    path = tmp_path / "c.yaml"
    dump_yaml(cfg, path)
    assert load_yaml(Outer, path) == cfg
    assert to_dict(load_yaml(Outer, path)) == to_dict(cfg)


def test_overrides_replace_existing_keys_and_reject_typos(tmp_path):
    data = {"name": "a", "inner": {"gain": 1.0}}
    assert apply_overrides(data, ["inner.gain=3.5"])["inner"]["gain"] == 3.5
    assert data["inner"]["gain"] == 1.0  # the input is not mutated
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(data, ["inner.gian=3.5"])
    with pytest.raises(ConfigError, match="must look like"):
        apply_overrides(data, ["inner.gain"])
    path = tmp_path / "c.yaml"
    dump_yaml(Outer(name="a"), path)
    assert load_yaml(Outer, path, ["inner.mode=slow"]).inner.mode == "slow"


def test_load_yaml_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_yaml(Outer, tmp_path / "nope.yaml")
