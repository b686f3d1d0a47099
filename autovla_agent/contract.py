"""The agent contract: the simulator-neutral types and the ``Planner`` protocol shared by the core and the adapters.

Every pose, speed and acceleration here is in the internal ego frame defined in
``autovla_agent.sensors.frames`` (right-handed, x forward, y left, yaw counter-clockwise in radians,
origin at the rear-axle centre at the observation's timestamp). Adapters convert on arrival and on
departure; nothing in the core ever sees CARLA or NAVSIM conventions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class NavCommand(str, enum.Enum):
    """The one navigation-command vocabulary; the value is the text that goes into the prompt."""

    TURN_LEFT = "turn left"
    TURN_RIGHT = "turn right"
    GO_STRAIGHT = "go straight"
    KEEP_FORWARD = "keep forward"
    CHANGE_LANE_LEFT = "change lane to the left"
    CHANGE_LANE_RIGHT = "change lane to the right"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: str | NavCommand) -> NavCommand:
        """Return the command for an enum member, its name or its prompt text; raise naming the vocabulary."""
        if isinstance(value, NavCommand):
            return value
        for member in cls:
            if value in (member.value, member.name, member.name.lower()):
                return member
        raise ValueError(f"unknown navigation command {value!r}; use one of {[m.name.lower() for m in cls]}")


class ThinkingMode(str, enum.Enum):
    """The thinking mode a plan was made with: actions only, or reasoning then actions."""

    FAST = "fast"
    SLOW = "slow"


class PlanStatus(str, enum.Enum):
    """How a plan came about: decoded as is, decoded after repair, or a fallback because decoding failed."""

    OK = "ok"
    REPAIRED = "repaired"
    FALLBACK = "fallback"


@dataclass(frozen=True, slots=True)
class CameraFrame:
    """One RGB camera image and the simulation time it was taken at."""

    image_rgb: np.ndarray  # (H, W, 3) uint8, RGB order
    timestamp_s: float


@dataclass(frozen=True, slots=True)
class EgoState:
    """One sample of the ego state, pose expressed in the ego frame of the observation."""

    timestamp_s: float
    x_m: float = 0.0
    y_m: float = 0.0
    yaw_rad: float = 0.0
    speed_mps: float = 0.0  # signed: negative when reversing
    accel_mps2: float = 0.0  # signed longitudinal acceleration: negative when braking


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the planner sees at one planning step.

    ``cameras`` maps a view name (``"front"``, ``"front_left"``...) to its frames, oldest first, the
    current frame last. ``ego_history`` is oldest first; its last entry is the current state, at the origin.
    """

    timestamp_s: float
    cameras: Mapping[str, tuple[CameraFrame, ...]]
    ego_history: tuple[EgoState, ...]
    command: NavCommand = NavCommand.UNKNOWN
    target_point_ego_m: tuple[float, float] | None = None

    @property
    def ego(self) -> EgoState:
        """The current ego state (the last history entry)."""
        return self.ego_history[-1]


@dataclass(frozen=True, slots=True)
class Plan:
    """A planned trajectory in the ego frame of the observation it was planned from.

    ``poses_ego`` is (N, 3) of x_m, y_m, yaw_rad; ``times_s`` is (N,) seconds after the observation,
    strictly increasing, the first at one sampling interval (the current pose is not included).
    """

    times_s: np.ndarray
    poses_ego: np.ndarray
    action_tokens: tuple[int, ...] = ()
    thinking_mode: ThinkingMode = ThinkingMode.FAST
    reasoning: str = ""
    timings_s: Mapping[str, float] = field(default_factory=dict)
    status: PlanStatus = PlanStatus.OK
    status_reason: str = ""

    def __post_init__(self) -> None:
        """Check shapes so that a malformed plan fails where it is made, not in a controller."""
        if self.poses_ego.ndim != 2 or self.poses_ego.shape[1] != 3:
            raise ValueError(f"Plan.poses_ego must be (N, 3) x_m, y_m, yaw_rad; got {self.poses_ego.shape}")
        if self.times_s.shape != (self.poses_ego.shape[0],):
            raise ValueError(f"Plan.times_s must be ({self.poses_ego.shape[0]},); got {self.times_s.shape}")

    def resample(self, times_s: np.ndarray) -> np.ndarray:
        """Poses (len(times_s), 3) at the given times, linearly interpolated from the origin at t = 0.

        Times past the horizon hold the last pose, as navsim's scorer does.
        """
        t = np.concatenate([[0.0], self.times_s])
        poses = np.vstack([np.zeros((1, 3)), self.poses_ego])
        yaw = np.unwrap(poses[:, 2])
        return np.stack(
            [np.interp(times_s, t, poses[:, 0]), np.interp(times_s, t, poses[:, 1]), np.interp(times_s, t, yaw)],
            axis=-1,
        )


class Planner(Protocol):
    """Anything that plans from an Observation (``VLAPlanner``, ``ConstantVelocityPlanner``)."""

    def plan(self, obs: Observation) -> Plan:
        """A plan in the ego frame of ``obs``."""
        ...
