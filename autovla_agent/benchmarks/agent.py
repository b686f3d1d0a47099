"""Per-tick cost of the CARLA agent itself, model excluded: ``python -m autovla_agent.benchmarks.agent``.

The agent runs with the ``constant_velocity`` planner (no model; it keeps a cruise speed, so the tracker,
route follower and localiser work as while driving) on a straight synthetic route, fed leaderboard-format
data every 0.05 s tick: a BGRA image per rig camera, noisy GNSS, IMU and ``{'speed': v}``. The figure is the
wall time of ``run_step`` per tick (localisation, frame buffer incl. the 2 Hz BGRA->RGB resize, route
following, replanning bookkeeping, tracking, control conversion); the planner's own time is measured and
subtracted too (microseconds for the constant-velocity planner). Target: median < 2 ms with the default rig.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autovla_agent.adapters.carla.agent import AutoVLAAgent
from autovla_agent.sensors import frames

logger = logging.getLogger(__name__)

LAT_REF_DEG, LON_REF_DEG = 42.0, 2.0  # the leaderboard's default georeference


@dataclass
class _Location:
    x: float
    y: float
    z: float = 0.0


@dataclass
class _Rotation:
    yaw: float = 0.0


@dataclass
class _Transform:
    """Duck-typed ``carla.Transform`` (the agent reads only location and yaw)."""

    location: _Location
    rotation: _Rotation


def straight_route(length_m: float = 3000.0) -> tuple[list, list]:
    """A straight eastbound route at 1 m spacing as the leaderboard hands it: (gps_plan, world_plan)."""
    gps, world = [], []
    for x in np.arange(0.0, length_m, 1.0):
        lat, lon = frames.location_to_gnss(float(x), 0.0, LAT_REF_DEG, LON_REF_DEG)
        gps.append(({"lat": lat, "lon": lon, "z": 0.0}, "LANEFOLLOW"))
        world.append((_Transform(_Location(float(x), 0.0), _Rotation(0.0)), "LANEFOLLOW"))
    return gps, world


def run_benchmark(config_arg: str, num_ticks: int, seed: int = 0) -> dict[str, float]:
    """Drive ``num_ticks`` ticks; return per-tick statistics in milliseconds (agent minus planner)."""
    gps, world = straight_route()
    agent = AutoVLAAgent("localhost", 2000, False)
    agent.set_global_plan(gps, world)
    agent.setup(config_arg)
    rng = np.random.default_rng(seed)
    sensors = agent.sensors()
    images = {
        s["id"]: rng.integers(0, 255, (s["height"], s["width"], 4), dtype=np.uint8)
        for s in sensors
        if s["type"] == "sensor.camera.rgb"
    }
    x_m, y_m, yaw_rad, speed_mps, dt_s = 0.0, 0.0, 0.0, 0.0, 0.05
    per_tick_ms: list[float] = []
    planner_ms: list[float] = []
    for frame in range(num_ticks):
        lat, lon = frames.location_to_gnss(x_m, y_m, LAT_REF_DEG, LON_REF_DEG)
        noise = rng.normal(0.0, 5e-6, 2)
        compass = (yaw_rad + math.pi / 2.0) % (2.0 * math.pi)
        input_data = {cid: (frame, image) for cid, image in images.items()}
        input_data["gnss"] = (frame, np.array([lat + noise[0], lon + noise[1], 0.0]))
        input_data["imu"] = (frame, np.array([0.0, 0.0, 9.81, 0.0, 0.0, 0.0, compass]))
        input_data["speed"] = (frame, {"speed": speed_mps})
        start = time.perf_counter()
        control = agent.run_step(input_data, frame * dt_s)
        elapsed = time.perf_counter() - start
        planner_s = agent.last_tick.planner_time_s if agent.last_tick is not None else 0.0
        per_tick_ms.append(1e3 * (elapsed - planner_s))
        planner_ms.append(1e3 * planner_s)
        # CARLA-frame kinematics (steer > 0 turns right = clockwise = +yaw in CARLA).
        speed_mps = max(0.0, speed_mps + (3.5 * control.throttle - 8.0 * control.brake) * dt_s)
        yaw_rad += speed_mps * math.tan(0.6 * control.steer) / 2.875 * dt_s
        x_m += speed_mps * math.cos(yaw_rad) * dt_s
        y_m += speed_mps * math.sin(yaw_rad) * dt_s
    errors = agent.num_step_errors
    agent.destroy()
    if errors:
        raise RuntimeError(f"{errors} run_step errors during the benchmark; see the log")
    timed = per_tick_ms[10:]  # the first ticks allocate buffers
    ordered = sorted(timed)
    return {
        "ticks": float(len(timed)),
        "median_ms": statistics.median(timed),
        "mean_ms": statistics.fmean(timed),
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))],
        "max_ms": ordered[-1],
        "planner_total_ms": sum(planner_ms),
        "distance_m": x_m,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: run the per-tick benchmark and log its figure."""
    parser = argparse.ArgumentParser(prog="autovla-benchmark-agent", description=__doc__)
    parser.add_argument("--config", default="autovla_tiny.yaml", help="agent config (its rig is measured)")
    parser.add_argument("--ticks", type=int, default=2000, help="ticks to run (20 Hz: 2000 = 100 s)")
    parser.add_argument("--cruise-mps", type=float, default=8.0, help="speed the constant-velocity planner keeps")
    parser.add_argument("--max-median-ms", type=float, default=None, help="exit 1 when the median exceeds this")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("autovla_agent").setLevel(logging.WARNING)
    logger.setLevel(logging.INFO)
    config_arg = f"{args.config} planner=constant_velocity baseline_min_speed_mps={args.cruise_mps} log_level=WARNING"
    stats = run_benchmark(config_arg, args.ticks)
    logger.info(
        "agent per-tick cost, model excluded (constant-velocity planner, its time subtracted), %d ticks, "
        "%.0f m driven: median %.3f ms, mean %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms",
        stats["ticks"], stats["distance_m"], stats["median_ms"], stats["mean_ms"], stats["p90_ms"],
        stats["p99_ms"], stats["max_ms"],
    )  # fmt: skip
    if args.max_median_ms is not None and stats["median_ms"] > args.max_median_ms:
        logger.error("median %.3f ms exceeds --max-median-ms %.3f", stats["median_ms"], args.max_median_ms)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
