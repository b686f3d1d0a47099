"""The root configuration of the CARLA agent (``AgentConfig``) and how ``--agent-config`` strings find their YAML.

One YAML file per agent configuration lives in ``leaderboard_configs/`` (installed as
``autovla_agent.leaderboard_configs``). The leaderboard hands ``setup()`` the ``--agent-config`` string, which
here is ``<yaml path or packaged name> [dotted.key=value ...]``; Bench2Drive appends ``+<save_name>``, which is
split off first. A relative name is looked up in the working directory, then among the packaged configs.

Relative paths: ``vla.model.path`` given on the command line (a dotted override) is taken relative to the working
directory, as any command-line path is; written inside a YAML file it is taken relative to that file. ``~`` is
expanded in both. The tiny model is never built inside the installed package (a packaged config's folder):
``build_tiny_model_if_missing`` with a model path there is an error. Output folders (``record_dir``,
``metric_info_dir``) are relative to the working directory wherever they are written.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from autovla_agent.config_io import ConfigError, load_yaml
from autovla_agent.loop.localizer import LocalizerConfig
from autovla_agent.paths import AGENT_CONFIGS_DIR, PACKAGE_DIR
from autovla_agent.planners.control import ControlConfig
from autovla_agent.planners.route import RouteConfig
from autovla_agent.planners.vehicle import VehicleParams
from autovla_agent.policy.configuration import VLAConfig
from autovla_agent.sensors.frame_buffer import FrameBufferConfig
from autovla_agent.sensors.rig import RigConfig

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentConfig:
    """Everything the leaderboard agent needs: rig, frame buffer, VLA, control, route, vehicle, loop rates."""

    schema_version: int = SCHEMA_VERSION
    planner: Literal["vla", "constant_velocity"] = "vla"  # constant_velocity: no model (baseline, benchmarks)
    rig: RigConfig = field(default_factory=RigConfig)
    frame_buffer: FrameBufferConfig = field(default_factory=FrameBufferConfig)
    vla: VLAConfig = field(default_factory=VLAConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    route: RouteConfig = field(default_factory=RouteConfig)
    vehicle: VehicleParams = field(default_factory=VehicleParams)
    localization: LocalizerConfig = field(default_factory=LocalizerConfig)
    baseline_min_speed_mps: float = 0.0  # constant_velocity planner: plan at least this speed (else it never starts)
    replan_hz: float = 2.0  # model queries per simulated second (AutoVLA: 2 Hz); control runs every tick
    warmup_s: float = 1.5  # brake at least this long after the route starts (plus until the frame buffer is full)
    build_tiny_model_if_missing: bool = False  # build the tiny random model at vla.model.path when absent
    record_dir: str = ""  # folder for per-step replay logs ("" = off); one sub-folder per route
    metric_info_dir: str = ""  # Bench2Drive: write metric_info.json per route here ("" = off)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def __post_init__(self) -> None:
        """Reject settings that contradict each other, naming both keys."""
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} is not supported; this package reads version {SCHEMA_VERSION}"
            )
        if not 0.0 < self.replan_hz <= self.frame_buffer.sim_rate_hz:
            raise ValueError(
                f"replan_hz={self.replan_hz} must be in (0, frame_buffer.sim_rate_hz={self.frame_buffer.sim_rate_hz}]"
            )
        if self.baseline_min_speed_mps < 0.0:
            raise ValueError(f"baseline_min_speed_mps={self.baseline_min_speed_mps} must be >= 0 m/s")
        if self.warmup_s < 0.0:
            raise ValueError(f"warmup_s={self.warmup_s} must be >= 0 seconds")
        if self.vla.vehicle != self.vehicle:
            raise ValueError("vla.vehicle and vehicle differ; the decoder and the controllers must use the same car")
        if abs(self.rig.rear_axle_offset_m - self.vehicle.rear_axle_offset_m) > 1e-9:
            raise ValueError(
                f"rig.rear_axle_offset_m={self.rig.rear_axle_offset_m} differs from "
                f"vehicle.rear_axle_offset_m={self.vehicle.rear_axle_offset_m}; set both to the same value"
            )
        gnss_x_m = self.rig.gnss.x_m if self.rig.gnss is not None else 0.0
        expected_offset_m = self.rig.rear_axle_offset_m + gnss_x_m
        if abs(self.localization.pose_filter.gnss_offset_m - expected_offset_m) > 1e-6:
            raise ValueError(
                f"localization.pose_filter.gnss_offset_m={self.localization.pose_filter.gnss_offset_m} must be "
                f"rig.rear_axle_offset_m + rig.gnss.x_m = {expected_offset_m} (the antenna ahead of the rear axle)"
            )
        if self.planner == "vla":
            prompt = self.vla.prompt
            if self.frame_buffer.num_frames != prompt.num_frames:
                raise ValueError(
                    f"frame_buffer.num_frames={self.frame_buffer.num_frames} differs from "
                    f"vla.prompt.num_frames={prompt.num_frames}; the model must get the frames it was trained on"
                )
            if abs(self.frame_buffer.model_rate_hz - prompt.frame_rate_hz) > 1e-9:
                raise ValueError(
                    f"frame_buffer.model_rate_hz={self.frame_buffer.model_rate_hz} differs from "
                    f"vla.prompt.frame_rate_hz={prompt.frame_rate_hz}"
                )
            missing = [view for view in prompt.views if view not in self.rig.views.values()]
            if missing:
                raise ValueError(
                    f"vla.prompt.views {missing} have no camera in rig.cameras "
                    f"(views {sorted(self.rig.views.values())})"
                )

    @property
    def sim_dt_s(self) -> float:
        """The simulator step in seconds (leaderboard: 0.05)."""
        return 1.0 / self.frame_buffer.sim_rate_hz


@dataclass(frozen=True, slots=True)
class AgentConfigSpec:
    """A parsed ``--agent-config`` string: the YAML path, dotted overrides and Bench2Drive's save name."""

    path: Path
    overrides: tuple[str, ...]
    save_name: str


def packaged_configs_dir() -> Path:
    """The folder of the YAML configs shipped with the package (``leaderboard_configs/``)."""
    return AGENT_CONFIGS_DIR


def list_packaged_configs() -> list[str]:
    """Names of the packaged YAML configs."""
    return sorted(p.name for p in packaged_configs_dir().glob("*.yaml"))


def resolve_config_path(name: str) -> Path:
    """A YAML path as given (absolute or relative to the working directory), else a packaged config name.

    The ``.yaml`` suffix may be left out for packaged names. Raises FileNotFoundError listing the packaged
    configs when nothing matches.
    """
    candidate = Path(name).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    packaged = packaged_configs_dir()
    for option in (packaged / name, packaged / f"{name}.yaml"):
        if option.is_file():
            return option
    raise FileNotFoundError(
        f"agent config {name!r} is neither a file nor a packaged config; packaged configs: {list_packaged_configs()}"
    )


def parse_agent_config_arg(arg: str) -> AgentConfigSpec:
    """Split ``'<yaml> [key=value ...][+save_name]'`` (the evaluator's ``--agent-config``) into its parts."""
    text = (arg or "").strip()
    # Bench2Drive appends '+' + save_name to its --agent-config for every route (so route 2 sees
    # 'cfg+name1+name2'); config paths therefore never contain '+' and the save name is the last part.
    text, _, suffix = text.partition("+")
    save_name = suffix.rsplit("+", 1)[-1]
    if not text.strip():
        raise ConfigError(
            "no agent config given: pass --agent-config <yaml> to leaderboard_evaluator.py, e.g. "
            f"--agent-config autovla_tiny.yaml (packaged configs: {list_packaged_configs()})"
        )
    tokens = shlex.split(text)
    path, overrides = tokens[0], tuple(tokens[1:])
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise ConfigError(f"--agent-config: {bad} are not dotted overrides (section.key=value) after the YAML path")
    return AgentConfigSpec(path=resolve_config_path(path), overrides=overrides, save_name=save_name.strip())


def _command_line_model_path(overrides: Sequence[str]) -> bool:
    """Whether the command-line overrides set ``vla.model.path``.

    Directly (``vla.model.path=...``) or through a mapping given to ``vla.model=`` or ``vla=`` that holds a path.
    """
    from_command_line = False
    for item in overrides:
        key, _, raw = item.partition("=")
        key = key.strip()
        if key == "vla.model.path":
            from_command_line = True
        elif key in ("vla.model", "vla"):
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                continue  # apply_overrides reports the malformed value
            if key == "vla" and isinstance(value, dict):
                value = value.get("model")
            if isinstance(value, dict) and "path" in value:
                from_command_line = True
    return from_command_line


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def resolve_model_path(model_path: str, spec: AgentConfigSpec) -> str:
    """``vla.model.path`` as an absolute path; ``""`` (no model given) stays ``""``.

    ``~`` is expanded; a relative path is taken from the working directory when the command line set it, else
    from the folder of the YAML file that wrote it.
    """
    if not model_path:
        return model_path
    resolved = Path(model_path).expanduser()
    if resolved.is_absolute():
        return str(resolved)
    base = Path.cwd() if _command_line_model_path(spec.overrides) else spec.path.parent
    return str((base / resolved).resolve())


def load_agent_config(arg: str) -> tuple[AgentConfig, AgentConfigSpec]:
    """Load the ``AgentConfig`` an ``--agent-config`` string names; return it with the parsed string.

    ``vla.model.path`` comes back absolute (see ``resolve_model_path``). Raises ConfigError when
    ``build_tiny_model_if_missing`` would build the tiny model inside the installed package.
    """
    spec = parse_agent_config_arg(arg)
    config = load_yaml(AgentConfig, spec.path, spec.overrides)
    model_path = resolve_model_path(config.vla.model.path, spec)
    if model_path != config.vla.model.path:
        model = dataclasses.replace(config.vla.model, path=model_path)
        config = dataclasses.replace(config, vla=dataclasses.replace(config.vla, model=model))
    if config.build_tiny_model_if_missing and model_path:
        target = Path(model_path)
        package = [
            PACKAGE_DIR,
            PACKAGE_DIR.resolve(),
            packaged_configs_dir().resolve(),
        ]  # configs: a link in a checkout
        inside = any(_is_within(t, d) for t in (target, target.resolve()) for d in package)
        if inside and not (target / "config.json").is_file():
            raise ConfigError(
                f"vla.model.path={model_path} lies inside the installed autovla_agent package, where the tiny "
                "model is never built (build_tiny_model_if_missing); give an absolute path or one relative to the "
                "working directory on the command line, e.g. vla.model.path=outputs/models/tiny_random"
            )
    return config, spec
