"""Benchmark of the embedded world: ticks per second without rendering, and the camera frame time.

Run ``python -m autovla_agent.sim.bench`` (options: ``--vehicles 30 --walkers 30 --ticks 3000 --frames 100``).
It drives the ego along the first shipped default route with a simple pure-pursuit controller (not timed) among
the IDM traffic, pedestrians and traffic lights, times ``World.tick()`` alone, then times ``World.sensor_data``
for one 640x360 front camera.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import time

import numpy as np

from autovla_agent.sim.world.route_files import load_routes
from autovla_agent.sim.world.simulation import World, WorldConfig
from autovla_agent.sim.world.traffic_model import TrafficConfig
from autovla_agent.sim.world.walkers import WalkerConfig

logger = logging.getLogger(__name__)

FRONT_CAMERA = {
    "type": "sensor.camera.rgb",
    "id": "rgb_front",
    "x": 1.3,
    "y": 0.0,
    "z": 1.6,
    "roll": 0.0,
    "pitch": 0.0,
    "yaw": 0.0,
    "width": 640,
    "height": 360,
    "fov": 90.0,
}


class _Control:
    """A minimal VehicleControl stand-in (the world reads these attributes)."""

    def __init__(self, steer: float, throttle: float, brake: float) -> None:
        self.steer, self.throttle, self.brake = steer, throttle, brake
        self.hand_brake = self.reverse = False


def _follow(world: World, target_speed_mps: float = 6.0) -> _Control:
    """Pure pursuit on the dense route (CARLA steer sign) and a P speed controller; loops to the start at the end."""
    snap = world.snapshot()
    x, y, yaw = float(snap.ego.x_m[0]), float(snap.ego.y_m[0]), float(snap.ego.yaw_rad[0])
    route = world.route.xy_world_m
    i = int(np.argmin(np.hypot(route[:, 0] - x, route[:, 1] - y)))
    j = min(i + 6, len(route) - 1)
    dx, dy = route[j, 0] - x, route[j, 1] - y
    alpha = math.atan2(dy, dx) - yaw
    alpha = (alpha + math.pi) % (2 * math.pi) - math.pi
    steer_rad = math.atan2(2.0 * 2.875 * math.sin(alpha), max(math.hypot(dx, dy), 1.0))
    steer_carla = -max(-1.0, min(1.0, steer_rad / world.ego.params.max_steer_rad))
    err = target_speed_mps - float(snap.ego.speed_mps[0])
    return _Control(steer_carla, max(0.0, min(0.75, 0.3 * err)), max(0.0, min(1.0, -0.5 * err)))


def _world(num_vehicles: int, num_walkers: int, seed: int) -> World:
    """The first default route with ``num_vehicles`` IDM vehicles and ``num_walkers`` pedestrians (lights on)."""
    spec = load_routes("routes_default")[0]
    config = WorldConfig(
        traffic=TrafficConfig(num_vehicles=num_vehicles), walkers=WalkerConfig(num_walkers=num_walkers)
    )
    return World(spec.town, spec, config, seed=seed)


def bench_ticks(num_vehicles: int, ticks: int, seed: int = 0, num_walkers: int = 30) -> float:
    """World ticks per second (no rendering) with ``num_vehicles`` IDM vehicles and ``num_walkers`` walkers."""
    world = _world(num_vehicles, num_walkers, seed)
    spent = 0.0
    for k in range(ticks):
        if k % 10 == 0:
            world.apply_control(_follow(world))
        if (
            world.ego.speed_mps > 0
            and np.hypot(*(world.route.xy_world_m[-1] - world.snapshot().ego_rear_axle_xy_m)) < 5
        ):
            world.ego.set_center_pose((*world.route.xy_world_m[0], float(world.route.yaw_world_rad[0])))
        t0 = time.perf_counter()
        world.tick()
        spent += time.perf_counter() - t0
    return ticks / spent


def bench_camera(num_vehicles: int, frames: int, seed: int = 0, num_walkers: int = 30) -> float:
    """Median milliseconds of one 640x360 camera frame (``World.sensor_data`` for one camera) in traffic."""
    world = _world(num_vehicles, num_walkers, seed)
    world.sensor_data([FRONT_CAMERA])  # builds the town raster once (not timed)
    times = []
    for _ in range(frames):
        world.apply_control(_follow(world))
        for _ in range(2):
            world.tick()
        t0 = time.perf_counter()
        world.sensor_data([FRONT_CAMERA])
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    """Print world ticks/s with N vehicles and the median camera frame time."""
    parser = argparse.ArgumentParser(prog="autovla-sim-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=30)
    parser.add_argument("--walkers", type=int, default=30)
    parser.add_argument("--ticks", type=int, default=3000)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n, w = args.vehicles, args.walkers
    tps = bench_ticks(n, args.ticks, args.seed, w)
    logger.info("world step (no rendering), %d vehicles, %d walkers: %.0f ticks/s (target >= 1000)", n, w, tps)
    ms = bench_camera(n, args.frames, args.seed, w)
    logger.info("camera frame 640x360 (BGRA, %d vehicles, %d walkers): %.2f ms median (target <= 10)", n, w, ms)


if __name__ == "__main__":
    main()
