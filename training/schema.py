"""The training-sample schema: one JSON object per line in ``samples.jsonl`` plus image files beside it.

A dataset is a folder::

    DATASET/
      dataset.json        # DatasetManifest: schema version, camera views, history length, future sampling
      samples.jsonl       # one Sample per line (UTF-8 JSON, no NaN/Infinity)
      images/...          # camera frames; rows refer to them by paths relative to DATASET/

Reading and writing such a folder is ``training.dataset_io``.

Frames and units (see ``autovla_agent.contract``): every pose is in the internal EGO frame of the sample's
current tick (x forward, y left, yaw counter-clockwise in radians, origin at the rear-axle centre);
``future.poses_ego`` is (T, 3) with the first pose at ``+dt_s`` (the current pose is not included); speeds
and accelerations are signed (negative acceleration = braking). The navigation command is a
``NavCommand`` prompt text (``"turn left"``...). ``scene`` is the privileged scene state that the
driving-score reward needs (drivable area, route centreline and other agents, all in the ego frame).

Example row (wrapped here; one line in the file)::

    {"id": "Town01_r0_s0_t000120",
     "cameras": {"front": ["images/Town01_r0_s0/front/000090.jpg", ..., "images/.../000120.jpg"]},
     "ego": {"speed_mps": 5.2, "accel_mps2": -0.4, "history": []},
     "command": "turn left", "target_point_ego_m": [18.2, 4.1],
     "future": {"dt_s": 0.5, "poses_ego": [[2.6, 0.0, 0.0], ...]},
     "action_tokens": [17, 17, 5, ...], "reasoning": null, "meta_action": null,
     "scene": {"drivable_area_ego_m": [[[x, y], ...]], "centerline_ego_m": [[x, y], ...], "agents": [...]},
     "source": {"kind": "embedded_sim", "town": "Town01", "route": "0", "seed": 0, "tick": 120,
                "timestamp_s": 6.0}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from autovla_agent.contract import NavCommand

SCHEMA_VERSION = 1
MANIFEST_NAME = "dataset.json"
SAMPLES_NAME = "samples.jsonl"

LATERAL_META_ACTIONS = (
    "move forward",
    "turn left",
    "turn right",
    "change lane to the left",
    "change lane to the right",
)
LONGITUDINAL_META_ACTIONS = (
    "stop",
    "maintain speed",
    "accelerate",
    "quickly accelerate",
    "decelerate",
    "quickly decelerate",
)
LateralMetaAction = Literal[
    "move forward", "turn left", "turn right", "change lane to the left", "change lane to the right"
]
LongitudinalMetaAction = Literal[
    "stop", "maintain speed", "accelerate", "quickly accelerate", "decelerate", "quickly decelerate"
]
AgentKind = Literal["vehicle", "pedestrian", "cyclist", "static"]
SourceKind = Literal["embedded_sim", "carla", "navsim", "other"]


def _check_rows(name: str, rows: Any, width: int) -> None:
    """Raise ValueError when a row of a (N, width) nested tuple has another length."""
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"{name}[{i}] has {len(row)} values, expected {width}")


def _check_finite(name: str, values: Any) -> None:
    """Raise ValueError naming ``name`` (and the index) when any number in a nested tuple is NaN or infinite."""
    if isinstance(values, (tuple, list)):
        if not values:
            return
        try:
            array = np.asarray(values, dtype=np.float64)
        except (ValueError, TypeError):  # ragged (e.g. polygons of different sizes): check part by part
            for i, v in enumerate(values):
                _check_finite(f"{name}[{i}]", v)
            return
        bad = np.argwhere(~np.isfinite(array))
        if bad.size:
            index = "".join(f"[{int(i)}]" for i in bad[0])
            raise ValueError(f"{name}{index} is {array[tuple(bad[0])]}; every number must be finite")
    elif isinstance(values, float) and not math.isfinite(values):
        raise ValueError(f"{name} is {values}; every number must be finite")


@dataclass(frozen=True, kw_only=True, slots=True)
class DatasetManifest:
    """What every row of a dataset shares: camera views, history length and future sampling."""

    schema_version: int = SCHEMA_VERSION
    name: str = "dataset"
    views: tuple[str, ...] = ("front",)
    num_history_frames: int = 4  # frames per view, oldest first, the current frame last
    frame_interval_s: float = 0.5  # time between history frames (2 Hz)
    future_dt_s: float = 0.5
    future_steps: int = 10
    image_width_px: int = 0  # 0 = not fixed
    image_height_px: int = 0
    created_by: str = ""
    notes: str = ""
    codebook_sha256: str = ""  # poses checksum of the codebook that wrote the rows' action_tokens ("" = none)

    def __post_init__(self) -> None:
        """Reject versions this code cannot read and impossible sizes."""
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} is not supported (this code reads {SCHEMA_VERSION}); "
                "re-collect the dataset or convert it"
            )
        if not self.views:
            raise ValueError("views must name at least one camera view, e.g. ['front']")
        if self.num_history_frames < 1 or self.future_steps < 1:
            raise ValueError("num_history_frames and future_steps must be >= 1")
        if self.future_dt_s <= 0 or self.frame_interval_s <= 0:
            raise ValueError("future_dt_s and frame_interval_s must be > 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class EgoRecord:
    """Current ego speed and acceleration (signed) and an optional history in the current ego frame.

    ``history`` rows are (t_s, x_m, y_m, yaw_rad, speed_mps, accel_mps2), oldest first, t_s <= 0 relative
    to the current tick; when given, the last row is the current state at the origin.
    """

    speed_mps: float
    accel_mps2: float = 0.0
    history: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        """Reject NaN or infinite values."""
        _check_finite("ego.speed_mps", self.speed_mps)
        _check_finite("ego.accel_mps2", self.accel_mps2)
        _check_rows("ego.history", self.history, 6)
        _check_finite("ego.history", self.history)


@dataclass(frozen=True, kw_only=True, slots=True)
class FutureTrajectory:
    """The driven future: (T, 3) poses x_m, y_m, yaw_rad in the current ego frame at dt_s, 2*dt_s, ...

    ``dense_poses_ego`` (optional) is the same future at ``dense_dt_s`` (e.g. 0.1 s, rear axle); the codebook
    command cuts its 0.5 s primitives (with 0.1 s sub-steps) from it, else from a Hermite fit of ``poses_ego``.
    """

    dt_s: float = 0.5
    poses_ego: tuple[tuple[float, ...], ...]
    dense_dt_s: float = 0.1
    dense_poses_ego: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        """Reject empty or non-finite trajectories."""
        if not self.poses_ego:
            raise ValueError("future.poses_ego is empty; it needs the T future poses")
        _check_rows("future.poses_ego", self.poses_ego, 3)
        _check_rows("future.dense_poses_ego", self.dense_poses_ego, 3)
        _check_finite("future.poses_ego", self.poses_ego)
        _check_finite("future.dense_poses_ego", self.dense_poses_ego)
        if self.dt_s <= 0 or self.dense_dt_s <= 0:
            raise ValueError(f"future.dt_s and future.dense_dt_s must be > 0, got {self.dt_s}, {self.dense_dt_s}")


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentBox:
    """Another road user: box centre pose in the ego frame, size, and speed along its heading.

    ``future_poses_ego`` (optional) gives its poses at the scene's ``dt_s`` after the current tick; without it
    the scorer extrapolates at constant velocity.
    """

    id: str
    kind: AgentKind = "vehicle"
    x_m: float
    y_m: float
    yaw_rad: float
    length_m: float = 4.9
    width_m: float = 2.1
    speed_mps: float = 0.0
    future_poses_ego: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        """Reject non-finite values and empty boxes."""
        _check_finite(f"agent {self.id}", (self.x_m, self.y_m, self.yaw_rad, self.speed_mps))
        _check_rows(f"agent {self.id}.future_poses_ego", self.future_poses_ego, 3)
        _check_finite(f"agent {self.id}.future_poses_ego", self.future_poses_ego)
        if self.length_m <= 0 or self.width_m <= 0:
            raise ValueError(f"agent {self.id}: length_m and width_m must be > 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class SceneState:
    """Privileged scene around the ego for the driving-score reward, everything in the ego frame.

    ``drivable_area_ego_m`` is a list of polygons (each a ring of (x, y)) whose union is the drivable area;
    ``centerline_ego_m`` is the route's lane centreline as a polyline (progress is measured along it).
    """

    drivable_area_ego_m: tuple[tuple[tuple[float, ...], ...], ...]
    centerline_ego_m: tuple[tuple[float, ...], ...]
    agents: tuple[AgentBox, ...] = ()
    dt_s: float = 0.1  # sampling of agents' future_poses_ego
    red_light_stop_line_ego_m: tuple[tuple[float, ...], ...] = ()  # optional stop line of a red light

    def __post_init__(self) -> None:
        """Reject degenerate geometry."""
        if not self.drivable_area_ego_m or any(len(p) < 3 for p in self.drivable_area_ego_m):
            raise ValueError("scene.drivable_area_ego_m needs at least one polygon of >= 3 points")
        if len(self.centerline_ego_m) < 2:
            raise ValueError("scene.centerline_ego_m needs at least 2 points")
        for k, polygon in enumerate(self.drivable_area_ego_m):
            _check_rows(f"scene.drivable_area_ego_m[{k}]", polygon, 2)
        _check_rows("scene.centerline_ego_m", self.centerline_ego_m, 2)
        _check_rows("scene.red_light_stop_line_ego_m", self.red_light_stop_line_ego_m, 2)
        _check_finite("scene.drivable_area_ego_m", self.drivable_area_ego_m)
        _check_finite("scene.centerline_ego_m", self.centerline_ego_m)


@dataclass(frozen=True, kw_only=True, slots=True)
class MetaAction:
    """AutoVLA's meta-action: one lateral and one longitudinal phrase."""

    lateral: LateralMetaAction
    longitudinal: LongitudinalMetaAction

    def text(self) -> str:
        """The phrase used in reasoning text, e.g. 'turn left and decelerate'."""
        return f"{self.lateral} and {self.longitudinal}"


@dataclass(frozen=True, kw_only=True, slots=True)
class SampleSource:
    """Where a sample came from (for de-duplication, splits and debugging)."""

    kind: SourceKind = "embedded_sim"
    town: str = ""
    route: str = ""
    seed: int = 0
    tick: int = 0
    timestamp_s: float = 0.0
    scene_token: str = ""  # NAVSIM token (metric-cache key)


@dataclass(frozen=True, kw_only=True, slots=True)
class Sample:
    """One training sample: observation (cameras, ego, command), expert future and optional reasoning.

    ``cameras`` maps a view to relative image paths, oldest first, the current frame last.
    ``action_tokens`` are codebook indices (0..K-1, not tokenizer ids) of ``future``; ``reasoning`` is the
    chain-of-thought text of a slow-thinking sample (None = fast sample).
    """

    id: str
    cameras: Mapping[str, tuple[str, ...]]
    ego: EgoRecord
    command: NavCommand
    target_point_ego_m: tuple[float, ...] | None = None
    future: FutureTrajectory
    action_tokens: tuple[int, ...] | None = None
    reasoning: str | None = None
    meta_action: MetaAction | None = None
    scene: SceneState | None = None
    source: SampleSource

    def __post_init__(self) -> None:
        """Reject empty camera lists, negative token indices and non-finite target points."""
        if not self.id:
            raise ValueError("id must be a non-empty string")
        if not self.cameras:
            raise ValueError("cameras must map at least one view to its image paths")
        for view, paths in self.cameras.items():
            if not paths:
                raise ValueError(f"cameras.{view} has no frames")
        if self.target_point_ego_m is not None:
            _check_rows("target_point_ego_m", (self.target_point_ego_m,), 2)
            _check_finite("target_point_ego_m", self.target_point_ego_m)
        if self.action_tokens is not None and any(t < 0 for t in self.action_tokens):
            raise ValueError("action_tokens are codebook indices and must be >= 0")
        if self.reasoning is not None and not self.reasoning.strip():
            raise ValueError("reasoning is an empty string; use null for a fast (action-only) sample")

    @property
    def is_slow(self) -> bool:
        """True for a chain-of-thought (slow-thinking) sample."""
        return self.reasoning is not None
