"""Convert NAVSIM scenes (OpenScene logs + sensor blobs) into the training schema (needs navsim and its data).

``python -m autovla_agent.training.navsim_reader --navsim-log-path $OPENSCENE_DATA_ROOT/navsim_logs/trainval
--sensor-blobs-path $OPENSCENE_DATA_ROOT/sensor_blobs/trainval --out DATASET [--max-scenes N]``

Cameras, ego status and command come through navsim's ``SceneLoader.get_agent_input_from_token`` and the
agent's own conversion (``navsim_convert.observation_from_agent_input``), so training sees what the NAVSIM
agent sees. The future (10 x 0.5 s, rear axle) is computed from the log frames' global poses, which needs no
map. Rows carry ``source.scene_token`` for navsim's PDM reward on a metric cache; they carry no ``scene``
(the built-in PDM-style reward needs the embedded world's scene state). Without navsim installed the command
stops with a message saying how to install it.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autovla_agent.adapters.navsim.convert import AUTOVLA_CAMERAS, observation_from_agent_input
from autovla_agent.training.dataset_io import SampleWriter
from autovla_agent.training.frames_io import FrameStore
from autovla_agent.training.schema import (
    DatasetManifest,
    EgoRecord,
    FutureTrajectory,
    Sample,
    SampleSource,
)

logger = logging.getLogger(__name__)

NUM_HISTORY_FRAMES = 4
NUM_FUTURE_FRAMES = 10
INTERVAL_S = 0.5


class NavsimUnavailableError(RuntimeError):
    """navsim is not installed (or its data is missing)."""


def _import_navsim():
    try:
        from navsim.common.dataclasses import SceneFilter, SensorConfig
        from navsim.common.dataloader import SceneLoader
    except ImportError as exc:
        raise NavsimUnavailableError(
            f"reading NAVSIM scenes needs navsim 1.1 and nuplan-devkit ({exc}); install them as the README's NAVSIM "
            "section describes, then set OPENSCENE_DATA_ROOT to the downloaded logs and sensor blobs"
        ) from None
    return SceneFilter, SensorConfig, SceneLoader


def yaw_from_quaternion(q: Sequence[float]) -> float:
    """Heading (rad) of a (w, x, y, z) quaternion about the z axis."""
    w, x, y, z = (float(v) for v in q)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def future_from_frames(frames: Sequence[dict], current: int, num_future: int) -> np.ndarray:
    """Future rear-axle poses (num_future, 3) in the current frame's ego frame from log frame dicts."""

    def pose(f: dict) -> np.ndarray:
        t = f["ego2global_translation"]
        return np.array([t[0], t[1], yaw_from_quaternion(f["ego2global_rotation"])])

    p0 = pose(frames[current])
    c, s = math.cos(p0[2]), math.sin(p0[2])
    out = []
    for f in frames[current + 1 : current + 1 + num_future]:
        p = pose(f)
        dx, dy = p[0] - p0[0], p[1] - p0[1]
        yaw = (p[2] - p0[2] + math.pi) % (2 * math.pi) - math.pi
        out.append((c * dx + s * dy, -s * dx + c * dy, yaw))
    return np.asarray(out)


def convert(
    navsim_log_path: str | Path,
    sensor_blobs_path: str | Path,
    out: str | Path,
    *,
    camera_map: dict[str, str] | None = None,
    max_scenes: int = 0,
    log_names: Sequence[str] = (),
) -> int:
    """Write a dataset of NAVSIM scenes; return the number of samples written."""
    scene_filter_cls, sensor_config_cls, scene_loader_cls = _import_navsim()
    camera_map = dict(camera_map or AUTOVLA_CAMERAS)
    views = tuple(camera_map)
    sensor_kwargs = {name: False for name in sensor_config_cls.__dataclass_fields__}
    for cam in camera_map.values():
        sensor_kwargs[cam] = True
    loader = scene_loader_cls(
        data_path=Path(navsim_log_path),
        sensor_blobs_path=Path(sensor_blobs_path),
        scene_filter=scene_filter_cls(
            num_history_frames=NUM_HISTORY_FRAMES,
            num_future_frames=NUM_FUTURE_FRAMES,
            log_names=list(log_names) or None,
            max_scenes=max_scenes or None,
        ),
        sensor_config=sensor_config_cls(**sensor_kwargs),
    )
    manifest = DatasetManifest(
        name="navsim",
        views=views,
        num_history_frames=NUM_HISTORY_FRAMES,
        frame_interval_s=INTERVAL_S,
        future_dt_s=INTERVAL_S,
        future_steps=NUM_FUTURE_FRAMES,
        created_by="autovla_agent.training.navsim_reader",
        notes=str(navsim_log_path),
    )
    store = FrameStore(out, "jpg")
    count = 0
    with SampleWriter(out, manifest) as writer:
        for token in loader.tokens:
            frames_list = loader.scene_frames_dicts[token]
            agent_input = loader.get_agent_input_from_token(token)
            obs = observation_from_agent_input(agent_input, camera_map, views, NUM_HISTORY_FRAMES)
            future = future_from_frames(frames_list, NUM_HISTORY_FRAMES - 1, NUM_FUTURE_FRAMES)
            if future.shape != (NUM_FUTURE_FRAMES, 3):
                logger.warning("scene %s has %d future frames; skipped", token, len(future))
                continue
            current = frames_list[NUM_HISTORY_FRAMES - 1]
            ego = obs.ego
            writer.write(
                Sample(
                    id=token,
                    cameras=store.camera_paths(token, obs, views),
                    ego=EgoRecord(
                        speed_mps=ego.speed_mps,
                        accel_mps2=ego.accel_mps2,
                        history=tuple(
                            (s.timestamp_s, s.x_m, s.y_m, s.yaw_rad, s.speed_mps, s.accel_mps2) for s in obs.ego_history
                        ),
                    ),
                    command=obs.command,
                    future=FutureTrajectory(dt_s=INTERVAL_S, poses_ego=tuple(map(tuple, future.tolist()))),
                    source=SampleSource(
                        kind="navsim",
                        town=str(current.get("map_location", "")),
                        route=str(current.get("log_name", "")),
                        scene_token=token,
                        timestamp_s=float(current.get("timestamp", 0)) * 1e-6,
                    ),
                )
            )
            count += 1
    logger.info("wrote %d NAVSIM samples to %s", count, out)
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (see the module docstring); exit status 2 when navsim is missing."""
    parser = argparse.ArgumentParser(
        prog="python -m autovla_agent.training.navsim_reader",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--navsim-log-path", required=True)
    parser.add_argument("--sensor-blobs-path", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-scenes", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        convert(args.navsim_log_path, args.sensor_blobs_path, args.out, max_scenes=args.max_scenes)
    except NavsimUnavailableError as exc:
        logger.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
