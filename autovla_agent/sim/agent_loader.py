"""Load and drive a leaderboard agent file exactly as ``leaderboard_evaluator.py`` does, without a CARLA server.

Loading: module name = the file's basename without ``.py``, ``sys.path.insert(0, dirname)``,
``importlib.import_module``; the class is ``getattr(module, module.get_entry_point())``. Per route a NEW
instance is built with ``cls(host, port, debug)``, then (the evaluator's order) ``set_global_plan(gps, world)``,
the optional privileged hook ``set_privileged_world(world)`` (only agents that define it, e.g. the expert),
``setup(agent_config)``, ``sensors()``, and the sensor validation (first route only, as the evaluator).

Ticking: an agent whose ``__call__`` takes ``(input_data, timestamp)`` (``adapters.carla.agent_base.AgentBase``)
is called as ``agent(input_data, timestamp)``; one with the leaderboard's argument-less ``__call__`` (it reads a
CARLA sensor interface and ``GameTime``) gets ``run_step(input_data, timestamp)`` and the base class's
``manual_gear_shift = False``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "AgentLoadError",
    "SensorConfigurationInvalid",
    "call_agent",
    "check_control",
    "create_agent",
    "load_agent_class",
    "load_agent_module",
    "track_name",
    "validate_agent_sensors",
]

TRACKS = ("SENSORS", "MAP", "SENSORS_QUALIFIER", "MAP_QUALIFIER")


class AgentLoadError(RuntimeError):
    """The agent file cannot be imported or names no valid entry point."""


class SensorConfigurationInvalid(RuntimeError):  # noqa: N818 -- the leaderboard's exception name
    """The agent's sensors or track break the leaderboard's rules (the evaluation is rejected)."""


def load_agent_module(agent_path: str | Path) -> ModuleType:
    """Import an agent file as a top-level module, as the evaluator does; raise ``AgentLoadError`` on failure."""
    path = Path(agent_path)
    if not path.is_file():
        raise AgentLoadError(f"agent file {str(path)!r} does not exist; pass the path of a leaderboard agent .py")
    module_name = os.path.basename(str(path)).split(".")[0]
    directory = os.path.dirname(os.path.abspath(str(path)))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    cached = sys.modules.get(module_name)
    if cached is not None and os.path.abspath(getattr(cached, "__file__", "") or "") != os.path.abspath(str(path)):
        # Another file with the same basename was loaded before: import this one instead of reusing it.
        del sys.modules[module_name]
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise AgentLoadError(f"cannot import agent file {str(path)!r}: {type(exc).__name__}: {exc}") from exc


def load_agent_class(module: ModuleType) -> type:
    """The agent class named by the module's ``get_entry_point()``."""
    entry = getattr(module, "get_entry_point", None)
    if entry is None:
        raise AgentLoadError(f"agent module {module.__name__!r} has no module-level get_entry_point()")
    name = entry()
    cls = getattr(module, str(name), None)
    if not isinstance(cls, type):
        raise AgentLoadError(f"get_entry_point() of {module.__name__!r} returned {name!r}, not a class in the module")
    return cls


def create_agent(
    cls: type,
    gps_plan: Sequence[Any],
    world_plan: Sequence[Any],
    agent_config: str,
    privileged_world: Any = None,
    host: str = "localhost",
    port: int = 2000,
    debug: bool = False,
) -> Any:
    """Build and set up one agent for one route in the evaluator's order; exceptions propagate.

    ``privileged_world`` (the embedded ``World``) is handed to ``set_privileged_world`` when the agent defines
    it, after ``set_global_plan`` and before ``setup``.
    """
    agent = cls(host, port, debug)
    agent.set_global_plan(gps_plan, world_plan)
    hook = getattr(agent, "set_privileged_world", None)
    if privileged_world is not None and callable(hook):
        hook(privileged_world)
    agent.setup(agent_config)
    return agent


def track_name(track: Any) -> str:
    """The name of a track given as the leaderboard's ``Track`` enum, ours, or a string."""
    return str(getattr(track, "value", getattr(track, "name", track)))


def validate_agent_sensors(sensor_specs: Sequence[Mapping[str, Any]], agent_track: Any, selected_track: str) -> None:
    """The evaluator's ``validate_sensor_configuration``: track match, then the rig rules of ``sensors.rig``.

    Raises ``SensorConfigurationInvalid`` (the evaluation is then rejected). ``selected_track`` must be one of
    the upper-case track names, as ``Track(args.track)`` requires.
    """
    from autovla_agent.sensors.rig import SensorRigError, validate_sensors

    if selected_track not in TRACKS:
        raise ValueError(f"--track {selected_track!r} is not a track; use one of {list(TRACKS)} (upper case)")
    if track_name(agent_track) != selected_track:
        raise SensorConfigurationInvalid(
            f"You are submitting to the wrong track [Track.{selected_track}]! "
            f"The agent's track is {track_name(agent_track)}"
        )
    try:
        validate_sensors(list(sensor_specs), selected_track)
    except SensorRigError as exc:
        raise SensorConfigurationInvalid(str(exc)) from exc


def _takes_input(agent: Any) -> bool:
    """Whether ``agent.__call__`` accepts ``(input_data, timestamp)`` (our base) or nothing (the leaderboard's)."""
    if not callable(agent):
        return False
    try:
        params = list(inspect.signature(agent).parameters.values())  # bound: self is already dropped
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def call_agent(agent: Any, input_data: Mapping[str, tuple[int, Any]], timestamp_s: float) -> Any:
    """One agent tick: ``agent(input_data, timestamp)`` or ``run_step`` (see the module docstring)."""
    if _takes_input(agent):
        return agent(input_data, timestamp_s)
    control = agent.run_step(input_data, timestamp_s)
    if hasattr(control, "manual_gear_shift"):
        control.manual_gear_shift = False
    return control


def check_control(control: Any) -> str:
    """Raise ``TypeError`` unless ``control`` looks like a ``carla.VehicleControl`` with finite values.

    CARLA accepts NaN silently and would reject a wrong type only in ``apply_control``; here both are agent
    errors, reported as "Agent crashed". Values outside their range (CARLA does not clamp them either) are
    returned as a warning text ("" when all is in range); the embedded ego clips them.
    """
    warning = ""
    for name in ("steer", "throttle", "brake"):
        if not hasattr(control, name):
            raise TypeError(f"run_step returned {type(control).__name__}, not a carla.VehicleControl (no .{name})")
        value = getattr(control, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise TypeError(f"VehicleControl.{name}={value!r} is not a finite float")
        low = -1.0 if name == "steer" else 0.0
        if not low - 1e-6 <= float(value) <= 1.0 + 1e-6:
            warning = f"VehicleControl.{name}={value!r} is outside [{low}, 1] (clipped)"
    return warning
