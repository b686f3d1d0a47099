"""NAVSIM <-> core conversions that never import navsim: AgentInput -> Observation, Plan -> trajectory poses.

The functions read navsim's dataclasses by attribute only (duck typing), so they run and are tested
without navsim installed. NAVSIM facts they rely on (v1.1 and v2.x alike):

- ``AgentInput.ego_statuses`` / ``.cameras`` hold one entry per history frame, oldest first, at 2 Hz;
  the last entry is the current frame (t = 0).
- ``EgoStatus.ego_pose`` is (x_m, y_m, heading_rad) already in the current rear-axle frame (x forward,
  y left, heading counter-clockwise), which is our internal EGO frame: no conversion needed.
- ``EgoStatus.ego_velocity`` / ``.ego_acceleration`` are 2-vectors in that frame's own body axes; the signed
  longitudinal value is the x component (negative when reversing or braking).
- ``EgoStatus.driving_command`` is a 4-element one-hot: 0 left, 1 straight, 2 right, 3 unknown.
- ``Camera.image`` is ``np.array(PIL.Image.open(jpg))``: uint8 (H, W, 3) RGB (1080 x 1920), ``None`` when
  the camera was not requested for that frame.
- ``Trajectory.poses`` is (num_poses, 3) x_m, y_m, heading_rad in the current rear-axle frame, the first pose
  one interval after now.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from autovla_agent.config_io import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from autovla_agent.contract import CameraFrame, EgoState, NavCommand, Observation, Plan, PlanStatus
from autovla_agent.paths import NAVSIM_CONFIG_DIR
from autovla_agent.policy.configuration import VLAConfig

logger = logging.getLogger(__name__)

NAVSIM_CAMERAS = ("cam_f0", "cam_l0", "cam_l1", "cam_l2", "cam_r0", "cam_r1", "cam_r2", "cam_b0")
NAVSIM_HISTORY_INTERVAL_S = 0.5  # navsim's NAVSIM_INTERVAL_LENGTH: history frames are 2 Hz
NAVSIM_NUM_HISTORY_FRAMES = 4  # default num_history_frames of every navsim split (t = -1.5 ... 0 s)
# One-hot index -> command; order 0 left, 1 straight, 2 right, 3 unknown (navsim docs and AutoVLA's mapping).
COMMAND_BY_INDEX = (NavCommand.TURN_LEFT, NavCommand.KEEP_FORWARD, NavCommand.TURN_RIGHT, NavCommand.UNKNOWN)
# AutoVLA's released NAVSIM checkpoint called cam_l1/cam_r1 (the side cameras) "front-left/front-right";
# navsim's true front-left/front-right cameras are cam_l0/cam_r0. The default follows the checkpoint.
AUTOVLA_CAMERAS = {"front": "cam_f0", "front_left": "cam_l1", "front_right": "cam_r1"}
# The VLA config used when agent.config_path is null: AutoVLA-3B's NAVSIM inputs (3 views x 4 frames at 2 Hz).
PACKAGED_VLA_CONFIG = NAVSIM_CONFIG_DIR / "autovla_navsim.yaml"


@dataclass(frozen=True, kw_only=True, slots=True)
class NavsimAgentConfig:
    """The navsim agent's own settings: the Hydra keys of ``agent/autovla.yaml`` other than the sampling."""

    checkpoint_path: str | None = None  # model folder; replaces the model path of the VLA config
    config_path: str | None = None  # VLA config YAML; None = the packaged defaults
    thinking_mode: Literal["fast", "slow", "adaptive"] | None = None  # None = as in the VLA config
    overrides: tuple[str, ...] = ()  # dotted overrides of the VLA config ("section.key=value")
    cameras: Mapping[str, str] = field(default_factory=lambda: dict(AUTOVLA_CAMERAS))  # view -> navsim camera
    log_every_n_scenes: int = 50  # running summary period (scenes); also logged once at process exit

    def __post_init__(self) -> None:
        """Reject unknown navsim cameras, a bad thinking mode, malformed overrides and a non-positive period."""
        validate_camera_map(self.cameras, ())
        if self.thinking_mode not in (None, "fast", "slow", "adaptive"):
            raise ValueError(f"thinking_mode {self.thinking_mode!r} must be null, fast, slow or adaptive")
        bad = [item for item in self.overrides if "=" not in item]
        if bad:
            raise ValueError(f"overrides {bad} must look like 'section.key=value'")
        if self.log_every_n_scenes < 1:
            raise ValueError(f"log_every_n_scenes must be >= 1; got {self.log_every_n_scenes}")


def load_navsim_vla_config(config: NavsimAgentConfig) -> VLAConfig:
    """The VLA config of the agent: ``config_path`` (or the packaged one), overrides, checkpoint and thinking mode.

    Raises ValueError when no model folder is set or when the model's frame rate is not navsim's 2 Hz.
    """
    path = Path(config.config_path).expanduser() if config.config_path else PACKAGED_VLA_CONFIG
    vla = load_yaml(VLAConfig, path)
    if config.overrides:  # applied to the full config, so a key the YAML leaves at its default can be overridden
        try:
            vla = from_dict(VLAConfig, apply_overrides(to_dict(vla), config.overrides))
        except ConfigError as exc:
            raise ConfigError(f"agent.overrides on {path}: {exc}") from None
    # dataclasses.replace, not a dotted override: a path must never be re-parsed as YAML ("null", "1e3", ...).
    if config.checkpoint_path:
        model = dataclasses.replace(vla.model, path=str(Path(config.checkpoint_path).expanduser()))
        vla = dataclasses.replace(vla, model=model)
    if config.thinking_mode:
        vla = dataclasses.replace(vla, thinking=dataclasses.replace(vla.thinking, policy=config.thinking_mode))
    if not vla.model.path:
        raise ValueError(
            f"no model folder: set agent.checkpoint_path=<model folder> (or model.path in {path}); "
            "a folder from autovla-convert-checkpoint or python -m autovla_agent.policy.tiny_model --out DIR"
        )
    if abs(vla.prompt.frame_rate_hz - 1.0 / NAVSIM_HISTORY_INTERVAL_S) > 1e-6:
        raise ValueError(
            f"prompt.frame_rate_hz is {vla.prompt.frame_rate_hz} but navsim's history frames are 2 Hz; "
            "use a model config with frame_rate_hz: 2.0"
        )
    return vla


def model_views(vla: VLAConfig) -> tuple[tuple[str, ...], int]:
    """The camera views the model reads (prompt order) and the frames per view."""
    return tuple(vla.prompt.views), int(vla.prompt.num_frames)


def validate_camera_map(camera_map: Mapping[str, str], views: Sequence[str]) -> None:
    """Raise ValueError unless every model view maps to a navsim camera name (``cam_f0`` ... ``cam_b0``)."""
    unknown = {view: cam for view, cam in camera_map.items() if cam not in NAVSIM_CAMERAS}
    if unknown:
        raise ValueError(f"navsim camera name(s) {unknown} are not navsim cameras; use one of {list(NAVSIM_CAMERAS)}")
    missing = [view for view in views if view not in camera_map]
    if missing:
        raise ValueError(
            f"the model uses view(s) {missing} that agent.cameras does not map to a navsim camera; "
            f"add e.g. agent.cameras.{missing[0]}=cam_f0 (mapped now: {dict(camera_map)})"
        )


def history_indices(num_frames: int, num_history_frames: int = NAVSIM_NUM_HISTORY_FRAMES) -> list[int]:
    """Indices of the last ``num_frames`` history frames (navsim index ``num_history_frames - 1`` is now)."""
    if not 1 <= num_frames <= num_history_frames:
        raise ValueError(
            f"the model wants {num_frames} camera frames but navsim provides {num_history_frames} history frames "
            f"at 2 Hz; use 1..{num_history_frames} frames"
        )
    return list(range(num_history_frames - num_frames, num_history_frames))


def sensor_config_fields(
    camera_map: Mapping[str, str],
    views: Sequence[str],
    num_frames: int,
    num_history_frames: int = NAVSIM_NUM_HISTORY_FRAMES,
) -> dict[str, bool | list[int]]:
    """Keyword arguments of navsim's ``SensorConfig``: the model's cameras at its history frames, nothing else.

    Every other camera and the lidar are ``False`` so navsim never reads those files from disk.
    """
    validate_camera_map(camera_map, views)
    indices = history_indices(num_frames, num_history_frames)
    fields: dict[str, bool | list[int]] = {cam: False for cam in NAVSIM_CAMERAS}
    fields["lidar_pc"] = False
    for view in views:
        fields[camera_map[view]] = list(indices)
    return fields


def command_from_one_hot(driving_command: Any) -> NavCommand:
    """Map navsim's one-hot driving command (0 left, 1 straight, 2 right, 3 unknown) to a NavCommand.

    An all-zero or malformed vector gives UNKNOWN (logged), never an exception: the prompt still works.
    """
    vector = np.asarray(driving_command, dtype=np.float64).reshape(-1)
    if vector.shape != (len(COMMAND_BY_INDEX),) or not np.all(np.isfinite(vector)) or vector.max() <= 0:
        logger.warning("driving_command %r is not a 4-element one-hot; using UNKNOWN", driving_command)
        return NavCommand.UNKNOWN
    return COMMAND_BY_INDEX[int(np.argmax(vector))]


def ego_state_from_status(ego_status: Any, timestamp_s: float) -> EgoState:
    """EgoState in the current rear-axle frame from a navsim ``EgoStatus`` (signed longitudinal speed/accel)."""
    pose = np.asarray(ego_status.ego_pose, dtype=np.float64).reshape(-1)
    velocity = np.asarray(ego_status.ego_velocity, dtype=np.float64).reshape(-1)
    accel = np.asarray(ego_status.ego_acceleration, dtype=np.float64).reshape(-1)
    if pose.shape != (3,) or velocity.shape[0] < 1 or accel.shape[0] < 1:
        raise ValueError(
            f"EgoStatus must have ego_pose (3,) and 2-vectors of velocity and acceleration; got pose {pose.shape}, "
            f"velocity {velocity.shape}, acceleration {accel.shape}"
        )
    if getattr(ego_status, "in_global_frame", False):
        raise ValueError("EgoStatus.in_global_frame is True; the agent expects AgentInput poses in the ego frame")
    # Velocity and acceleration are in the frame's own body axes, so x is the signed longitudinal component.
    return EgoState(
        timestamp_s=float(timestamp_s),
        x_m=float(pose[0]),
        y_m=float(pose[1]),
        yaw_rad=float(pose[2]),
        speed_mps=float(velocity[0]),
        accel_mps2=float(accel[0]),
    )


def _camera_image(cameras: Any, navsim_camera: str, frame_index: int) -> np.ndarray:
    """The uint8 (H, W, 3) RGB image of one navsim camera at one history frame; clear errors otherwise."""
    camera = getattr(cameras, navsim_camera, None)
    image = None if camera is None else getattr(camera, "image", None)
    if image is None:
        raise ValueError(
            f"{navsim_camera} has no image at history frame {frame_index}; navsim loads only the cameras that "
            "get_sensor_config() requests, so the agent's camera map and the model config disagree"
        )
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"{navsim_camera} frame {frame_index}: expected a uint8 (H, W, 3) RGB image, got {image.dtype} "
            f"{image.shape}; navsim's JPEG loader gives uint8 RGB"
        )
    return image


def observation_from_agent_input(
    agent_input: Any,
    camera_map: Mapping[str, str],
    views: Sequence[str],
    num_frames: int,
    timestamp_s: float = 0.0,
    interval_s: float = NAVSIM_HISTORY_INTERVAL_S,
) -> Observation:
    """Build the core Observation from a navsim ``AgentInput`` (or any object with the same attributes).

    ``timestamp_s`` is the time given to the current frame; history frames are ``interval_s`` apart before it.
    Cameras hold the last ``num_frames`` frames of each view, oldest first; the ego history holds every
    history frame, oldest first, with the current state at the origin.
    """
    statuses = list(agent_input.ego_statuses)
    camera_frames = list(agent_input.cameras)
    num_history = len(statuses)
    if num_history == 0 or len(camera_frames) != num_history:
        raise ValueError(
            f"AgentInput must hold one EgoStatus and one Cameras per history frame; got {num_history} ego "
            f"statuses and {len(camera_frames)} camera sets"
        )
    validate_camera_map(camera_map, views)
    times_s = [timestamp_s - (num_history - 1 - i) * interval_s for i in range(num_history)]
    cameras = {
        view: tuple(
            CameraFrame(image_rgb=_camera_image(camera_frames[i], camera_map[view], i), timestamp_s=times_s[i])
            for i in history_indices(num_frames, num_history)
        )
        for view in views
    }
    history = tuple(ego_state_from_status(status, t) for status, t in zip(statuses, times_s, strict=True))
    return Observation(
        timestamp_s=float(timestamp_s),
        cameras=cameras,
        ego_history=history,
        command=command_from_one_hot(statuses[-1].driving_command),
    )


def trajectory_times_s(num_poses: int, interval_s: float) -> np.ndarray:
    """Times (num_poses,) of navsim trajectory poses after now: interval, 2 * interval, ..."""
    if num_poses < 1 or not interval_s > 0:
        raise ValueError(f"need num_poses >= 1 and interval_s > 0; got {num_poses}, {interval_s}")
    return interval_s * np.arange(1, num_poses + 1, dtype=np.float64)


def plan_to_poses(plan: Plan, num_poses: int, interval_s: float) -> np.ndarray:
    """Resample a Plan to navsim's sampling: float32 (num_poses, 3) x_m, y_m, heading_rad in the ego frame.

    Heading is wrapped to (-pi, pi]; times past the plan's horizon hold its last pose (as navsim's scorer does).
    """
    times_s = trajectory_times_s(num_poses, interval_s)
    if plan.times_s.size and times_s[-1] > plan.times_s[-1] + 1e-6:
        logger.warning(
            "plan horizon %.2f s is shorter than navsim's %.2f s; the last pose is held", plan.times_s[-1], times_s[-1]
        )
    poses = plan.resample(times_s)
    poses[:, 2] = np.arctan2(np.sin(poses[:, 2]), np.cos(poses[:, 2]))
    if not np.all(np.isfinite(poses)):
        raise ValueError("the resampled plan holds NaN or infinite poses")
    return poses.astype(np.float32)


@dataclass(slots=True)
class NavsimRunStats:
    """Running counts of one agent's scenes: plan statuses, planner exceptions and planning time."""

    scenes: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in PlanStatus})
    plan_time_s: float = 0.0
    started_s: float = field(default_factory=time.monotonic)
    planner_stats: Any = None  # the VLA planner's PlannerStats once built: a few counters, no model or caches

    def record(self, status: PlanStatus | None, plan_time_s: float) -> None:
        """Count one scene; ``status`` None means the planner raised and a constant-velocity plan was used."""
        self.scenes += 1
        self.plan_time_s += plan_time_s
        if status is None:
            self.errors += 1
            self.statuses[PlanStatus.FALLBACK.value] += 1
        else:
            self.statuses[status.value] += 1

    @property
    def fallbacks(self) -> int:
        """Scenes whose trajectory came from a fallback (planner fallback plans and planner exceptions)."""
        return self.statuses[PlanStatus.FALLBACK.value]

    def summary(self) -> str:
        """One log line: scenes, statuses, exceptions and mean planning time."""
        mean_s = self.plan_time_s / self.scenes if self.scenes else 0.0
        counts = ", ".join(f"{name} {count}" for name, count in self.statuses.items())
        return (
            f"{self.scenes} scenes: {counts} (of which planner exceptions {self.errors}); "
            f"mean plan time {mean_s:.3f} s; wall {time.monotonic() - self.started_s:.1f} s"
        )
