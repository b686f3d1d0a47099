"""Route replays: a step log written while a route runs, and a video rendered from it (camera | bird's-eye view).

Log folder of one route (``<record dir>/<route name>/``), written during the run:
- ``meta.json``: route id, town, dense route (world frame), camera id, step, agent file, seed and, once the
  route ended, its results record;
- ``steps.jsonl``: one JSON line per recorded tick (every ``frame_stride`` ticks and every tick with an event):
  ``frame``, ``time_s``, ``ego`` [x_m, y_m, yaw_rad, speed_mps] (box centre, world frame), ``control``
  [steer (CARLA sign), throttle, brake], ``vehicles`` [[id, x_m, y_m, yaw_rad, speed_mps, length_m, width_m,
  parked]], ``walkers`` [[id, x_m, y_m, yaw_rad, speed_mps]], ``lights`` (one state digit per light head of the
  town: 0 green, 1 yellow, 2 red), ``events`` [{type, message, time_s, xy}], ``completion_pct``, ``camera``
  (frame index or -1), ``colors`` {id: rgb} the first time an actor appears, and ``plan`` / ``agent`` when the
  agent exposes them (below);
- ``camera_NNNNN.npz``: camera frames (K, H, W, 3) uint8 RGB, compressed, ``index`` (K,).

The video (``<record dir>/<route name>.mp4``, GIF where no ffmpeg encoder is available; drawn by
``autovla_agent.sim.replay.video``) shows the agent's first camera beside the bird's-eye view of E1's renderer
(lanes, route, vehicles, pedestrians, light states at the stop lines, the planned trajectory) and a panel with
speed, steer/throttle/brake, route completion, the thinking mode, plan status and reasoning text of the latest
replan; infractions are flagged (red frame and banner) when they happen and marked where they happened.

Agent hooks (optional attributes read after every tick; document for agent authors):
- ``agent.last_plan_record``: dict of the latest replan, a NEW dict object (or a new ``time_s``) per replan:
  ``time_s`` (simulation time of the replan), ``poses_world`` [[x_m, y_m, yaw_rad], ...] in the internal WORLD
  frame (x east, y north = -y_carla, yaw CCW rad), ``thinking_mode`` ("fast" | "slow"), ``reasoning`` (str),
  ``status`` ("ok" | "repaired" | "fallback") and optionally ``status_reason``, ``command`` (str).
- ``agent.last_step_record``: any JSON-serialisable dict of what the agent used this tick (the expert's
  privileged state); stored as ``agent`` in the step line.

Re-render: ``autovla-replay LOGDIR`` (``autovla_agent.sim.replay.cli``; a route log folder or a record folder of
them).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from autovla_agent.optional_deps import require_cv2
from autovla_agent.sim.config_checks import require_at_least

cv2 = require_cv2()

logger = logging.getLogger(__name__)

__all__ = ["FrameStore", "ReplayConfig", "RouteRecorder", "load_log"]

_PLAN_KEYS = ("time_s", "poses_world", "thinking_mode", "reasoning", "status", "status_reason", "command")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayConfig:
    """What the step log keeps and how the video looks."""

    frame_stride: int = 2  # record every 2nd tick: 10 video frames per simulated second at 20 Hz
    camera_height_px: int = 360  # recorded camera frames are resized to this height (aspect kept)
    bev_size_px: int = 360
    bev_meters_per_px: float = 0.15  # 54 m across at 360 px
    panel_height_px: int = 120
    chunk_frames: int = 100  # camera frames per npz file
    fps: float = 10.0
    video_format: Literal["mp4", "gif"] = "mp4"
    event_banner_s: float = 2.0  # how long an infraction stays flagged in the video

    def __post_init__(self) -> None:
        """Reject sizes and rates that cannot make a video."""
        require_at_least(
            self, ("frame_stride", "camera_height_px", "bev_size_px", "panel_height_px", "chunk_frames"), 1
        )
        require_at_least(self, ("fps", "bev_meters_per_px"), 0.0, strict=True)


def _r(values: Any, digits: int = 3) -> Any:
    """Round numbers (nested lists too) for compact JSON."""
    if isinstance(values, (list, tuple, np.ndarray)):
        return [_r(v, digits) for v in values]
    if isinstance(values, (bool, np.bool_)):
        return bool(values)
    if isinstance(values, (int, np.integer)):
        return int(values)
    return round(float(values), digits)


def _jsonable(value: Any) -> Any:
    """Plain JSON data of an agent record (numpy arrays and scalars, enums, tuples)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _r(value.tolist(), 4)
    if isinstance(value, (np.floating, float)):
        return round(float(value), 4) if math.isfinite(float(value)) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if hasattr(value, "value") and isinstance(value.value, (str, int)):
        return value.value
    return value if isinstance(value, (str, int, bool)) or value is None else str(value)


def _event_line(event: Any) -> dict[str, Any]:
    """A traffic event as logged: type, message, time and, when known, where it happened (world frame)."""
    out = {"type": event.event_type.value, "message": event.message, "time_s": round(float(event.time_s), 3)}
    if getattr(event, "xy_world_m", None) is not None:
        out["xy"] = _r(list(event.xy_world_m))
    return out


class RouteRecorder:
    """Writes the step log of one route (see the module docstring) while the route runs."""

    def __init__(self, log_dir: str | Path, meta: Mapping[str, Any], config: ReplayConfig | None = None) -> None:
        self.config = config or ReplayConfig()
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for old in [*self.log_dir.glob("camera_*.npz"), self.log_dir / "steps.jsonl"]:
            old.unlink(missing_ok=True)  # a re-run of the route replaces its log
        self.meta = dict(_jsonable(meta))
        self._write_meta()
        self._steps = (self.log_dir / "steps.jsonl").open("w", encoding="utf-8")
        self._frames: list[np.ndarray] = []
        self._frame_ids: list[int] = []
        self._num_frames = 0
        self._chunk = 0
        self._last_plan: tuple[int, Any] | None = None
        self._pending_events: list[dict[str, Any]] = []
        self._tick = 0
        self._colored: set[int] = set()

    def _write_meta(self) -> None:
        (self.log_dir / "meta.json").write_text(json.dumps(self.meta, indent=1), encoding="utf-8")

    def _camera_rgb(self, input_data: Mapping[str, Any], camera_id: str | None) -> np.ndarray | None:
        if not camera_id or camera_id not in input_data:
            return None
        bgra = np.asarray(input_data[camera_id][1])
        if bgra.ndim != 3 or bgra.shape[2] < 3:
            return None
        rgb = np.ascontiguousarray(bgra[..., 2::-1])
        h = self.config.camera_height_px
        if rgb.shape[0] != h:
            w = max(1, round(rgb.shape[1] * h / rgb.shape[0]))
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        return rgb

    def step(
        self,
        snapshot: Any,
        input_data: Mapping[str, Any],
        camera_id: str | None = None,
        plan_record: Mapping[str, Any] | None = None,
        agent_record: Mapping[str, Any] | None = None,
        events: Sequence[Any] = (),
        completion_pct: float = 0.0,
    ) -> None:
        """Log one tick: ``snapshot`` (a ``WorldSnapshot``) after the control of this tick, its sensor data."""
        self._tick += 1
        self._pending_events += [_event_line(e) for e in events]
        new_plan = None
        if plan_record is not None:
            key = (id(plan_record), plan_record.get("time_s"))
            if key != self._last_plan:
                self._last_plan = key
                new_plan = _jsonable({k: plan_record[k] for k in _PLAN_KEYS if k in plan_record})
        is_video = (self._tick - 1) % self.config.frame_stride == 0
        if not (is_video or self._pending_events or new_plan):
            return
        e, v = snapshot.ego, snapshot.vehicles
        line: dict[str, Any] = {
            "frame": int(snapshot.frame),
            "time_s": round(float(snapshot.time_s), 3),
            "video": is_video,
            "ego": _r([e.x_m[0], e.y_m[0], e.yaw_rad[0], e.speed_mps[0]]),
            "accel_mps2": _r(getattr(snapshot, "ego_accel_mps2", 0.0)),
            "control": _r(list(snapshot.control)),
            "vehicles": [
                _r([v.ids[k], v.x_m[k], v.y_m[k], v.yaw_rad[k], v.speed_mps[k], v.length_m[k], v.width_m[k]])
                + [bool(v.parked[k])]
                for k in range(len(v))
            ],
            "events": self._pending_events,
            "completion_pct": round(float(completion_pct), 2),
            "camera": -1,
        }
        self._pending_events = []
        walkers = getattr(snapshot, "walkers", None)
        if walkers is not None and len(walkers):
            line["walkers"] = [
                _r([walkers.ids[k], walkers.x_m[k], walkers.y_m[k], walkers.yaw_rad[k], walkers.speed_mps[k]])
                for k in range(len(walkers))
            ]
        light_state = getattr(snapshot, "light_state", None)
        if light_state is not None and len(light_state):
            line["lights"] = "".join(str(int(c)) for c in light_state)
        new = {}
        for actors in (v, walkers):
            colors = getattr(actors, "color_rgb", None)
            if actors is not None and colors is not None:
                fresh = [k for k in range(len(actors)) if int(actors.ids[k]) not in self._colored]
                new.update({int(actors.ids[k]): [int(c) for c in colors[k]] for k in fresh})
        if new:
            line["colors"] = new
            self._colored.update(new)
        if new_plan is not None:
            line["plan"] = new_plan
        if agent_record is not None:
            line["agent"] = _jsonable(agent_record)
        if is_video:
            rgb = self._camera_rgb(input_data, camera_id)
            if rgb is not None:
                line["camera"] = self._num_frames
                self._frames.append(rgb)
                self._frame_ids.append(self._num_frames)
                self._num_frames += 1
                if len(self._frames) >= self.config.chunk_frames:
                    self._flush_frames()
        self._steps.write(json.dumps(line, separators=(",", ":")) + "\n")

    def _flush_frames(self) -> None:
        if not self._frames:
            return
        path = self.log_dir / f"camera_{self._chunk:05d}.npz"
        np.savez_compressed(path, frames=np.stack(self._frames), index=np.asarray(self._frame_ids, np.int64))
        self._chunk += 1
        self._frames, self._frame_ids = [], []

    def close(self, record: Mapping[str, Any] | None = None) -> None:
        """Flush the frames and the log; store the route's results record in ``meta.json``."""
        self._flush_frames()
        if self._pending_events:
            self._steps.write(json.dumps({"events": self._pending_events, "video": False}) + "\n")
            self._pending_events = []
        self._steps.close()
        if record is not None:
            self.meta["record"] = _jsonable(record)
            self._write_meta()


# --------------------------------------------------------------------------------------------------- reading
def load_log(log_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``meta.json`` and the step lines of a route log (a truncated last line, as after a crash, is skipped)."""
    meta_path, steps_path = log_dir / "meta.json", log_dir / "steps.jsonl"
    if not meta_path.is_file() or not steps_path.is_file():
        raise FileNotFoundError(f"{log_dir} is not a route log (needs meta.json and steps.jsonl)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    steps = []
    with steps_path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    steps.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning("%s: skipping a truncated step line", steps_path)
    return meta, steps


class FrameStore:
    """Random access to the camera frames of a log, one npz chunk in memory at a time."""

    def __init__(self, log_dir: Path) -> None:
        self._chunks = []
        for path in sorted(log_dir.glob("camera_*.npz")):
            with np.load(path) as data:
                index = data["index"]
            if len(index):
                self._chunks.append((int(index[0]), int(index[-1]), path))
        self._cached: tuple[Path, np.ndarray, np.ndarray] | None = None

    def get(self, k: int) -> np.ndarray | None:
        """Camera frame ``k`` (H, W, 3) RGB uint8, or None when the log does not hold it."""
        for lo, hi, path in self._chunks:
            if lo <= k <= hi:
                if self._cached is None or self._cached[0] != path:
                    with np.load(path) as data:
                        self._cached = (path, data["frames"], data["index"])
                pos = np.flatnonzero(self._cached[2] == k)
                return self._cached[1][pos[0]] if len(pos) else None
        return None
