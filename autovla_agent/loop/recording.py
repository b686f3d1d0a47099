"""Per-step logs of the CARLA agent: route replays in the embedded simulator's format, Bench2Drive metric info.

Replays reuse ``autovla_agent.sim.replay.log.RouteRecorder`` (``meta.json``, ``steps.jsonl``, ``camera_*.npz``), so
``autovla-replay <record_dir>/<route>`` renders a video of a real CARLA run too: the agent
knows only its own localised pose, so the bird's-eye view shows the ego, its route and its plans, no traffic.
Bench2Drive's comfort and efficiency tools read ``metric_info.json`` (one entry per step from the Bench2Drive
base class's ``get_metric_info()``), written here every ``flush_every`` steps and when the route ends.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autovla_agent.loop.agent_config import AgentConfig

logger = logging.getLogger(__name__)


def _ego_arrays(pose_world: np.ndarray | None, speed_mps: float, length_m: float, width_m: float) -> Any:
    """One-row ``ActorArrays`` of the ego (an empty one when ``pose_world`` is None)."""
    from autovla_agent.sim.world.simulation import ActorArrays

    rows = 0 if pose_world is None else 1
    values = np.zeros((3, rows)) if pose_world is None else np.asarray(pose_world, dtype=np.float64).reshape(3, 1)
    return ActorArrays(
        ids=np.zeros(rows, np.int64),
        x_m=values[0],
        y_m=values[1],
        yaw_rad=values[2],
        speed_mps=np.full(rows, speed_mps),
        length_m=np.full(rows, length_m),
        width_m=np.full(rows, width_m),
        parked=np.zeros(rows, bool),
    )


class AgentReplayRecorder:
    """Writes one route's replay log from the agent's own view (pose, camera, plan, reasoning, control)."""

    def __init__(
        self,
        record_dir: str | Path,
        route_name: str,
        meta: Mapping[str, Any],
        camera_id: str,
        length_m: float,
        width_m: float,
    ) -> None:
        from autovla_agent.sim.replay.log import RouteRecorder

        self.log_dir = Path(record_dir).expanduser() / route_name
        self._recorder = RouteRecorder(self.log_dir, meta)
        self._camera_id = camera_id
        self._size = (float(length_m), float(width_m))
        self._frame = 0
        logger.info("recording the route to %s", self.log_dir)

    @classmethod
    def for_route(
        cls, config: AgentConfig, route_xy_world_m: np.ndarray, config_path: str, save_name: str
    ) -> AgentReplayRecorder:
        """The recorder of one route under ``config.record_dir`` (folder: the save name, else a timestamp)."""
        camera_id = config.rig.camera_ids[0]
        meta = {
            "route_xy_world_m": np.asarray(route_xy_world_m).tolist(),
            "agent": "AutoVLAAgent",
            "config": config_path,
            "camera_id": camera_id,
            "ego_length_m": config.vehicle.length_m,
            "ego_width_m": config.vehicle.width_m,
        }
        return cls(
            config.record_dir,
            default_route_name(save_name),
            meta,
            camera_id,
            config.vehicle.length_m,
            config.vehicle.width_m,
        )

    def step(
        self,
        timestamp_s: float,
        input_data: Mapping[str, Any],
        origin_pose_world: np.ndarray,
        speed_mps: float,
        accel_mps2: float,
        control: tuple[float, float, float],
        plan_record: Mapping[str, Any] | None,
        step_record: Mapping[str, Any] | None,
    ) -> None:
        """Log one tick; ``control`` is (steer with CARLA's sign, throttle, brake)."""
        from autovla_agent.sim.world.simulation import WorldSnapshot

        self._frame += 1
        snapshot = WorldSnapshot(
            frame=self._frame,
            time_s=float(timestamp_s),
            ego=_ego_arrays(origin_pose_world, speed_mps, *self._size),
            vehicles=_ego_arrays(None, 0.0, *self._size),
            ego_accel_mps2=float(accel_mps2),
            ego_yaw_rate_radps=0.0,
            ego_steer_rad=0.0,
            control=(float(control[0]), float(control[1]), float(control[2])),
            ego_rear_axle_xy_m=(float(origin_pose_world[0]), float(origin_pose_world[1])),
        )
        self._recorder.step(
            snapshot, input_data, camera_id=self._camera_id, plan_record=plan_record, agent_record=step_record
        )

    def close(self) -> None:
        """Flush frames and the step log."""
        self._recorder.close()


class MetricInfoWriter:
    """Collects Bench2Drive's per-step ``get_metric_info()`` and writes ``<dir>/metric_info.json``."""

    def __init__(self, out_dir: str | Path, get_metric_info: Callable[[], Any], flush_every: int = 20) -> None:
        self.path = Path(out_dir).expanduser() / "metric_info.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._get = get_metric_info
        self._flush_every = max(1, int(flush_every))
        self.metric_info: dict[int, Any] = {}

    @classmethod
    def for_route(
        cls, config: AgentConfig, save_name: str, get_metric_info: Callable[[], Any] | None
    ) -> MetricInfoWriter | None:
        """The writer under ``config.metric_info_dir``; None (with a warning) without Bench2Drive's base class."""
        if not callable(get_metric_info):
            logger.warning("metric_info_dir is set but the base class has no get_metric_info (not Bench2Drive)")
            return None
        return cls(Path(config.metric_info_dir) / default_route_name(save_name), get_metric_info)

    def step(self, step: int) -> None:
        """Record the metric info of ``step``; rewrite the file every ``flush_every`` steps."""
        self.metric_info[step] = self._get()
        if step % self._flush_every == 0:
            self.flush()

    def flush(self) -> None:
        """Write the file (a JSON object keyed by step)."""
        self.path.write_text(json.dumps(self.metric_info, indent=1), encoding="utf-8")


def default_route_name(save_name: str) -> str:
    """The log folder name of a route: Bench2Drive's save name, else a timestamp."""
    return save_name or datetime.datetime.now().strftime("route_%Y%m%d_%H%M%S_%f")
