"""Collect a training dataset by driving the privileged expert in the embedded world over routes and seeds.

``python -m autovla_agent.training.collect --out DATASET [--routes lb1_training_town01] [--seeds 0 1]
[--agent-config autovla_tiny.yaml] [--reasoning-share 0.3]``

The expert (``autovla_agent.sim.expert``) drives; the observations are built the way the AutoVLA agent
builds them at evaluation time, from the agent config given: its camera rig rendered by the world, the same
``FrameBuffer`` (model-rate grid, crop, resize), the leaderboard-downsampled global plan through the same
``RouteFollower`` and RoadOption -> command mapping, and the ego state (ground truth; the agent uses its GNSS
filter) with its history from the same ``loop.ego_history.EgoHistory`` as the driving loop's. One sample per
model-rate tick after warm-up: 4 frames per view, ego speed/acceleration with their history, command, target
point, the driven future (0.5 s x 10 and 0.1 s dense, rear axle, ego frame), the scene state for the
driving-score reward (nearby lanes, route centreline, vehicles with their logged futures), and for
``reasoning_share`` of the samples a chain of thought built from the privileged state with AutoVLA's
meta-action rules (``training.collect_samples``). A run that collides or stalls keeps only samples whose
future ended before. ``--workers N`` drives the runs on N Ray workers into the same dataset
(``autovla_agent.scale.collect``).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely

from autovla_agent.adapters.carla.agent_base import AgentBase, road_option_name
from autovla_agent.adapters.carla.global_plan import ROAD_OPTION_TO_COMMAND
from autovla_agent.contract import NavCommand, Observation
from autovla_agent.loop.agent_config import AgentConfig, load_agent_config
from autovla_agent.loop.ego_history import EgoHistory, EgoSample
from autovla_agent.planners.route import RouteFollower
from autovla_agent.scale.engine import RayUnavailableError, ScaleConfig, require_engine
from autovla_agent.sensors import frames
from autovla_agent.sensors.frame_buffer import FrameBuffer
from autovla_agent.training.collect_samples import (
    FUTURE_DT_S,
    FUTURE_STEPS,
    PendingSample,
    RunStats,
    episode_name,
    finish_sample,
)
from autovla_agent.training.dataset_io import SampleWriter
from autovla_agent.training.frames_io import FrameStore
from autovla_agent.training.scene_extract import TownGeometry, agents_near, route_index_near
from autovla_agent.training.schema import DatasetManifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class CollectConfig:
    """What to drive and what to write."""

    out: str
    routes: tuple[str, ...] = ("lb1_training_town01",)  # route files or shipped names
    routes_subset: str = ""
    seeds: tuple[int, ...] = (0,)
    agent_config: str = "autovla_tiny.yaml"  # the AgentConfig whose rig / frame buffer / route follower to imitate
    agent_overrides: tuple[str, ...] = ()
    num_traffic: int | None = None  # None: the world's default
    reasoning_share: float = 0.3  # share of (eligible) samples with a chain of thought
    # random: any sample may get reasoning (AutoVLA); complex: only samples where the expert turns, changes lane,
    # brakes hard or stops (the thinking mode then depends on the scene: slow at junctions, fast on straights)
    reasoning_selection: Literal["random", "complex"] = "random"
    sample_every: int = 1  # keep every n-th model-rate tick
    scene_radius_m: float = 45.0
    image_format: Literal["png", "jpg"] = "png"
    max_route_s: float = 400.0
    stall_s: float = 60.0  # stop a run whose ego has not moved for this long
    name: str = "embedded-expert"
    scale: ScaleConfig = field(default_factory=ScaleConfig)  # workers > 1: (route, seed) runs on Ray workers

    def __post_init__(self) -> None:
        """Reject shares and counts that cannot work."""
        if not 0.0 <= self.reasoning_share <= 1.0:
            raise ValueError("reasoning_share must be in [0, 1]")
        if self.sample_every < 1 or not self.seeds:
            raise ValueError("sample_every must be >= 1 and seeds non-empty")


def _command_map() -> dict[str, NavCommand]:
    """The agent's own RoadOption -> command mapping, so data and evaluation agree."""
    return dict(ROAD_OPTION_TO_COMMAND)


@dataclass
class _RouteRun:
    """What one (route, seed) run holds while it drives."""

    spec: Any
    seed: int
    episode: str
    world: Any
    geometry: TownGeometry
    expert: Any
    follower: RouteFollower
    buffer: FrameBuffer
    history: EgoHistory
    log: collections.deque  # (tick, ego rear-axle pose, vehicle ids, vehicle poses), the last horizon of ticks
    horizon_ticks: int
    stats: RunStats
    pending: list[PendingSample] = field(default_factory=list)
    route_index: int = 0


def ego_sample(snap: Any, t_s: float) -> EgoSample:
    """The ego sample of a world snapshot: ground-truth rear-axle pose, speed and acceleration."""
    rear = np.array([*snap.ego_rear_axle_xy_m, float(snap.ego.yaw_rad[0])])
    return EgoSample(t_s, rear, float(snap.ego.speed_mps[0]), float(snap.ego_accel_mps2))


class Collector:
    """Drives routes with the expert and writes samples (see the module docstring)."""

    def __init__(self, config: CollectConfig) -> None:
        self.config = config
        self.agent_config: AgentConfig = load_agent_config(" ".join([config.agent_config, *config.agent_overrides]))[0]
        rig = self.agent_config.rig
        self.views = tuple(self.agent_config.vla.prompt.views)
        self.camera_specs = [s for s in rig.to_leaderboard() if s["type"] == "sensor.camera.rgb"]
        fb = self.agent_config.frame_buffer
        self.manifest = DatasetManifest(
            name=config.name,
            views=self.views,
            num_history_frames=fb.num_frames,
            frame_interval_s=fb.period_s,
            future_dt_s=FUTURE_DT_S,
            future_steps=FUTURE_STEPS,
            image_width_px=fb.width_px,
            image_height_px=fb.height_px,
            created_by="autovla_agent.training.collect",
            notes=f"routes {config.routes} seeds {list(config.seeds)} agent config {config.agent_config}",
        )
        self.commands = _command_map()
        self._geometry: dict[str, TownGeometry] = {}

    def _is_slow(self, sample_id: str) -> bool:
        digest = hashlib.sha256(f"cot:{sample_id}".encode()).hexdigest()
        return int(digest[:8], 16) / 0xFFFFFFFF < self.config.reasoning_share

    def _route_follower(self, gps_plan: list, world_plan: list) -> RouteFollower:
        """The agent's route input: the leaderboard-downsampled plan, world frame, commands."""
        holder = AgentBase()
        holder.set_global_plan(gps_plan, world_plan)
        plan = holder._global_plan_world_coord  # noqa: SLF001 - the attribute the leaderboard agent reads
        xy_carla = np.array([[t.location.x, t.location.y] for t, _ in plan], dtype=np.float64)
        commands = [self.commands.get(road_option_name(o), NavCommand.KEEP_FORWARD) for _, o in plan]
        return RouteFollower(frames.carla_to_world_xy(xy_carla), commands, self.agent_config.route)

    def run(self) -> list[RunStats]:
        """Drive every (route, seed) and write the dataset; return per-run statistics."""
        from autovla_agent.sim.world.route_files import load_routes

        if self.config.scale.uses_ray:
            from autovla_agent.scale.collect import collect_parallel

            # The worker class is named, not imported, by the scale-out module: it stays free of this one.
            return collect_parallel(self, f"{type(self).__module__}:{type(self).__qualname__}")

        specs = [s for r in self.config.routes for s in load_routes(r, self.config.routes_subset)]
        out = Path(self.config.out)
        store = FrameStore(out, self.config.image_format)
        stats: list[RunStats] = []
        with SampleWriter(out, self.manifest) as writer:
            for spec in specs:
                for seed in self.config.seeds:
                    run = self.run_route(spec, seed, writer, store)
                    stats.append(run)
                    logger.info(
                        "route %s seed %d: %s, %d samples, %d ticks, %.1f s",
                        run.route,
                        seed,
                        run.outcome,
                        run.samples,
                        run.ticks,
                        run.wall_s,
                    )
        total = sum(s.samples for s in stats)
        logger.info("dataset %s: %d samples, %d frames", out, total, store.num_written)
        return stats

    def ego_history(self, sim_dt_s: float) -> EgoHistory:
        """The ego-history builder of the agent being imitated, at the world's tick."""
        return EgoHistory.for_agent(self.agent_config, sim_dt_s)

    def _start_route(self, spec: Any, seed: int) -> _RouteRun:
        """Build the world and the expert of one (route, seed) run, and the agent's inputs on it."""
        from autovla_agent.sim.expert import ExpertAgent
        from autovla_agent.sim.world.simulation import World, WorldConfig

        cfg = self.config
        world_config = WorldConfig()
        if cfg.num_traffic is not None:
            world_config = replace(world_config, traffic=replace(world_config.traffic, num_vehicles=cfg.num_traffic))
        world = World(spec.town, spec, world_config, seed=seed)
        geometry = self._geometry.setdefault(spec.town, TownGeometry(world.town))
        gps_plan, world_plan = world.global_plan()
        expert = ExpertAgent()
        expert.set_global_plan(gps_plan, world_plan)
        expert.set_privileged_world(world)
        expert.setup("")
        world.validate_sensors(self.camera_specs)
        dt = world.config.dt_s
        horizon_ticks = round(FUTURE_STEPS * FUTURE_DT_S / dt)
        return _RouteRun(
            spec=spec,
            seed=seed,
            episode=episode_name(spec, seed),
            world=world,
            geometry=geometry,
            expert=expert,
            follower=self._route_follower(gps_plan, world_plan),
            buffer=FrameBuffer(self.agent_config.frame_buffer, self.agent_config.rig.camera_ids),
            history=self.ego_history(dt),
            log=collections.deque(maxlen=horizon_ticks + 2),
            horizon_ticks=horizon_ticks,
            stats=RunStats(route=f"{spec.town}/{spec.route_id}", seed=seed),
        )

    def run_route(self, spec: Any, seed: int, writer: SampleWriter, store: FrameStore) -> RunStats:
        """Drive one route with one seed; write its finished samples."""
        start = time.perf_counter()
        run = self._start_route(spec, seed)
        world, buffer, stats = run.world, run.buffer, run.stats
        last_move_t, last_move_xy = 0.0, None
        warmup_s = self.agent_config.warmup_s
        num_model_ticks = 0
        while True:
            t = world.time_s
            sample_tick = buffer.is_sample_tick(t)
            images = {}
            if sample_tick:
                data = world.sensor_data(self.camera_specs)
                images = {cid: value[1] for cid, value in data.items()}
            buffer.push(t, images)
            snap = world.snapshot()
            ego = ego_sample(snap, t)
            rear = ego.rear_axle_pose_world
            run.history.push(ego)
            veh = snap.vehicles
            run.log.append((world.frame, rear, veh.ids.copy(), np.stack([veh.x_m, veh.y_m, veh.yaw_rad], -1)))
            target = run.follower.step(np.array([float(snap.ego.x_m[0]), float(snap.ego.y_m[0])]))
            run.route_index = route_index_near(world.route, rear[:2], run.route_index)
            control = run.expert.run_step({}, t)
            if sample_tick and buffer.ready and t >= warmup_s - 0.5 * world.config.dt_s:
                num_model_ticks += 1
                if (num_model_ticks - 1) % self.config.sample_every == 0:
                    run.pending.append(self._observe(run, target, rear, store))
            world.apply_control(control)
            world.tick()
            stats.ticks += 1
            self._write_finished(run, writer)
            outcome = self._done(world, snap, rear, t, last_move_t)
            if last_move_xy is None or np.hypot(*(rear[:2] - last_move_xy)) > 0.5:
                last_move_t, last_move_xy = t, rear[:2].copy()
            if outcome:
                stats.outcome = outcome
                break
        store.forget_episode(run.episode)
        stats.wall_s = time.perf_counter() - start
        return stats

    def _write_finished(self, run: _RouteRun, writer: SampleWriter) -> None:
        """Write the pending samples whose future has been driven."""
        for p in [p for p in run.pending if run.world.frame - p.tick > run.horizon_ticks]:
            sample = finish_sample(
                p,
                list(run.log),
                run.world,
                run.spec,
                run.seed,
                run.geometry,
                run.horizon_ticks,
                scene_radius_m=self.config.scene_radius_m,
                complex_only=self.config.reasoning_selection == "complex",
            )
            writer.write(sample)
            run.stats.samples += 1
            run.pending.remove(p)

    def _done(self, world: Any, snap: Any, rear: np.ndarray, t: float, last_move_t: float) -> str:
        """'' while the run goes on, else why it ends."""
        route = world.route
        if np.hypot(*(rear[:2] - route.xy_world_m[-1])) < 4.0:
            return "completed"
        if t > self.config.max_route_s:
            return "timeout"
        if t - last_move_t > self.config.stall_s:
            return "stalled"
        if len(snap.vehicles):
            ego_poly = shapely.Polygon(snap.ego.corners_xy_m()[0])
            others = shapely.polygons(snap.vehicles.corners_xy_m())
            if np.any(shapely.intersects(ego_poly, others)):
                return "collision"
        return ""

    def _observe(self, run: _RouteRun, target: Any, rear: np.ndarray, store: FrameStore) -> PendingSample:
        """Snapshot what the agent would see now, plus the privileged pieces of the sample."""
        world = run.world
        t = world.time_s
        tx, ty = frames.world_to_ego(np.asarray(target.xy_world_m, dtype=np.float64), rear)
        command = target.command if isinstance(target.command, NavCommand) else NavCommand.UNKNOWN
        obs = Observation(
            timestamp_s=t,
            cameras=run.buffer.frames(self.agent_config.rig.views),
            ego_history=run.history.states(),  # in the ego frame of `rear`, the newest sample pushed
            command=command,
            target_point_ego_m=(float(tx), float(ty)),
        )
        agents, ids = agents_near(world.snapshot().vehicles, rear, self.config.scene_radius_m)
        plan_record = run.expert.last_plan_record or {}
        sample_id = f"{run.episode}_t{world.frame:06d}"
        return PendingSample(
            sample_id=sample_id,
            tick=world.frame,
            t_s=t,
            pose_world=rear.copy(),
            obs=obs,
            camera_paths=store.camera_paths(run.episode, obs, self.views),
            agents=agents,
            agent_ids=ids,
            route_index=run.route_index,
            expert_reason=str(plan_record.get("reasoning", "")),
            slow=self._is_slow(sample_id),
        )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="autovla-collect",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="dataset folder to write (overwrites samples.jsonl)")
    parser.add_argument("--routes", nargs="+", default=["lb1_training_town01"], help="route files or shipped names")
    parser.add_argument("--routes-subset", default="", help="route ids, e.g. '0-3,7'")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--agent-config", default="autovla_tiny.yaml", help="agent config whose inputs to imitate")
    parser.add_argument("--agent-override", action="append", default=[], help="dotted override of the agent config")
    parser.add_argument("--traffic", type=int, default=None, help="traffic vehicles (default: the world's)")
    parser.add_argument("--reasoning-share", type=float, default=0.3)
    parser.add_argument("--reasoning-selection", choices=("random", "complex"), default="random")
    parser.add_argument("--sample-every", type=int, default=1, help="keep every n-th model-rate tick")
    parser.add_argument("--image-format", choices=("png", "jpg"), default="png")
    parser.add_argument("--max-route-s", type=float, default=400.0)
    parser.add_argument("--workers", type=int, default=1, help="(route, seed) runs on this many Ray workers")
    parser.add_argument("--ray-address", default="", help="join this Ray cluster instead of starting a local Ray")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        scale = ScaleConfig(workers=args.workers, ray_address=args.ray_address)
        require_engine(scale)  # before any run: a missing Ray says how to install it
    except (ValueError, RayUnavailableError) as exc:
        logger.error("%s", exc)
        return 2
    config = CollectConfig(
        out=args.out,
        routes=tuple(args.routes),
        routes_subset=args.routes_subset,
        seeds=tuple(args.seeds),
        agent_config=args.agent_config,
        agent_overrides=tuple(args.agent_override),
        num_traffic=args.traffic,
        reasoning_share=args.reasoning_share,
        reasoning_selection=args.reasoning_selection,
        sample_every=args.sample_every,
        image_format=args.image_format,
        max_route_s=args.max_route_s,
        scale=scale,
    )
    Collector(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
