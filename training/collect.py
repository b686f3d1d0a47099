"""Collect a training dataset by driving the privileged expert in the embedded world over routes and seeds.

``python -m autovla_agent.training.collect --out DATASET [--routes lb1_training_town01] [--seeds 0 1]
[--agent-config autovla_tiny.yaml] [--reasoning-share 0.3]``

The expert (``autovla_agent.sim.expert``) drives; the observations are built the way the AutoVLA agent
builds them at evaluation time, from the agent config given: its camera rig rendered by the world, the same
``FrameBuffer`` (model-rate grid, crop, resize), the leaderboard-downsampled global plan through the same
``RouteFollower`` and RoadOption -> command mapping, and the ego state (ground truth; the agent uses its GNSS
filter). One sample per model-rate tick after warm-up: 4 frames per view, ego speed/acceleration with their
history, command, target point, the driven future (0.5 s x 10 and 0.1 s dense, rear axle, ego frame), the
scene state for the driving-score reward (nearby lanes, route centreline, vehicles with their logged
futures), and for ``reasoning_share`` of the samples a chain of thought built from the privileged state with
AutoVLA's meta-action rules. A run that collides or stalls keeps only samples whose future ended before.
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

from autovla_agent.adapters.carla.agent import ROAD_OPTION_TO_COMMAND
from autovla_agent.adapters.carla.agent_base import AgentBase, road_option_name
from autovla_agent.contract import EgoState, NavCommand, Observation
from autovla_agent.loop.agent_config import AgentConfig, load_agent_config
from autovla_agent.planners.route import RouteFollower
from autovla_agent.sensors import frames
from autovla_agent.sensors.frame_buffer import FrameBuffer
from autovla_agent.training.frames_io import FrameStore
from autovla_agent.training.reasoning import build_reasoning, meta_action
from autovla_agent.training.scene_extract import (
    TownGeometry,
    agent_futures,
    agents_near,
    route_index_near,
    scene_facts,
    scene_state,
)
from autovla_agent.training.schema import (
    DatasetManifest,
    EgoRecord,
    FutureTrajectory,
    MetaAction,
    Sample,
    SampleSource,
    SampleWriter,
)

logger = logging.getLogger(__name__)

FUTURE_STEPS = 10
FUTURE_DT_S = 0.5
DENSE_DT_S = 0.1


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

    def __post_init__(self) -> None:
        """Reject shares and counts that cannot work."""
        if not 0.0 <= self.reasoning_share <= 1.0:
            raise ValueError("reasoning_share must be in [0, 1]")
        if self.sample_every < 1 or not self.seeds:
            raise ValueError("sample_every must be >= 1 and seeds non-empty")


def _command_map() -> dict[str, NavCommand]:
    """The agent's own RoadOption -> command mapping, so data and evaluation agree."""
    return dict(ROAD_OPTION_TO_COMMAND)


def episode_name(spec: Any, seed: int) -> str:
    """Unique name of one (route, seed) run: town, route file, route id, seed."""
    source = Path(spec.source).stem if getattr(spec, "source", "") else "routes"
    return f"{spec.town}_{source}_r{spec.route_id}_s{seed}"


@dataclass
class _Pending:
    """A sample waiting for its future."""

    tick: int
    t_s: float
    pose_world: np.ndarray  # rear axle
    obs: Observation
    camera_paths: dict[str, tuple[str, ...]]
    agents: list
    agent_ids: np.ndarray
    route_index: int
    expert_reason: str
    slow: bool


@dataclass
class RunStats:
    """Outcome of one (route, seed) run."""

    route: str
    seed: int
    ticks: int = 0
    samples: int = 0
    outcome: str = "completed"
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


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

    @staticmethod
    def is_complex(meta: MetaAction) -> bool:
        """A scene worth slow thinking: the expert turns or changes lane, brakes hard or stops."""
        return meta.lateral != "move forward" or meta.longitudinal in ("stop", "quickly decelerate")

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
        from autovla_agent.sim.world.routes import load_routes

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

    def run_route(self, spec: Any, seed: int, writer: SampleWriter, store: FrameStore) -> RunStats:
        """Drive one route with one seed; write its finished samples."""
        from autovla_agent.sim.expert import ExpertAgent
        from autovla_agent.sim.world.simulation import World, WorldConfig

        start = time.perf_counter()
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
        follower = self._route_follower(gps_plan, world_plan)
        buffer = FrameBuffer(self.agent_config.frame_buffer, self.agent_config.rig.camera_ids)
        views = self.agent_config.rig.views
        episode = episode_name(spec, seed)
        stats = RunStats(route=f"{spec.town}/{spec.route_id}", seed=seed)
        dt = world.config.dt_s
        horizon_ticks = round(FUTURE_STEPS * FUTURE_DT_S / dt)
        history: collections.deque = collections.deque(maxlen=round(2.0 / dt) + 2)  # (t, pose, speed, accel)
        log: collections.deque = collections.deque(maxlen=horizon_ticks + 2)  # (tick, ego pose, ids, poses)
        pending: list[_Pending] = []
        route_index = 0
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
            rear = np.array([*snap.ego_rear_axle_xy_m, float(snap.ego.yaw_rad[0])])
            origin = np.array([float(snap.ego.x_m[0]), float(snap.ego.y_m[0])])
            speed, accel = float(snap.ego.speed_mps[0]), float(snap.ego_accel_mps2)
            history.append((t, rear, speed, accel))
            veh = snap.vehicles
            log.append((world.frame, rear, veh.ids.copy(), np.stack([veh.x_m, veh.y_m, veh.yaw_rad], -1)))
            target = follower.step(origin)
            route_index = route_index_near(world.route, rear[:2], route_index)
            control = expert.run_step({}, t)
            if sample_tick and buffer.ready and t >= warmup_s - 0.5 * dt:
                num_model_ticks += 1
                if (num_model_ticks - 1) % cfg.sample_every == 0:
                    pending.append(
                        self._observe(
                            world,
                            buffer,
                            views,
                            history,
                            target,
                            rear,
                            speed,
                            accel,
                            route_index,
                            expert,
                            episode,
                            store,
                            seed,
                        )
                    )
            world.apply_control(control)
            world.tick()
            stats.ticks += 1
            for p in [p for p in pending if world.frame - p.tick > horizon_ticks]:
                writer.write(self._finish(p, list(log), world, spec, seed, geometry, horizon_ticks))
                stats.samples += 1
                pending.remove(p)
            outcome = self._done(world, snap, rear, t, last_move_t)
            if last_move_xy is None or np.hypot(*(rear[:2] - last_move_xy)) > 0.5:
                last_move_t, last_move_xy = t, rear[:2].copy()
            if outcome:
                stats.outcome = outcome
                break
        store.forget_episode(episode)
        stats.wall_s = time.perf_counter() - start
        return stats

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

    def _observe(
        self, world, buffer, views, history, target, rear, speed, accel, route_index, expert, episode, store, seed
    ) -> _Pending:
        """Snapshot what the agent would see now, plus the privileged pieces of the sample."""
        t = world.time_s
        hist = []
        period = self.agent_config.frame_buffer.period_s
        times = np.array([h[0] for h in history])
        n_hist = self.agent_config.vla.prompt.num_history_states
        for k in range(n_hist - 1, -1, -1):
            t_k = t - k * period
            if times[0] > t_k + 0.5 * world.config.dt_s:
                continue
            entry = history[int(np.argmin(np.abs(times - t_k)))]
            x, y, yaw = frames.world_to_ego(entry[1], rear)
            hist.append(
                EgoState(
                    timestamp_s=float(entry[0]),
                    x_m=float(x),
                    y_m=float(y),
                    yaw_rad=float(yaw),
                    speed_mps=entry[2],
                    accel_mps2=entry[3],
                )
            )
        tx, ty = frames.world_to_ego(np.asarray(target.xy_world_m, dtype=np.float64), rear)
        command = target.command if isinstance(target.command, NavCommand) else NavCommand.UNKNOWN
        obs = Observation(
            timestamp_s=t,
            cameras=buffer.frames(views),
            ego_history=tuple(hist),
            command=command,
            target_point_ego_m=(float(tx), float(ty)),
        )
        agents, ids = agents_near(world.snapshot().vehicles, rear, self.config.scene_radius_m)
        plan_record = expert.last_plan_record or {}
        sample_id = f"{episode}_t{world.frame:06d}"
        return _Pending(
            tick=world.frame,
            t_s=t,
            pose_world=rear.copy(),
            obs=obs,
            camera_paths=store.camera_paths(episode, obs, self.views),
            agents=agents,
            agent_ids=ids,
            route_index=route_index,
            expert_reason=str(plan_record.get("reasoning", "")),
            slow=self._is_slow(sample_id),
        )

    def _finish(
        self, p: _Pending, log: list, world: Any, spec: Any, seed: int, geometry: TownGeometry, horizon_ticks: int
    ) -> Sample:
        """Build the sample once its future (5 s) has been driven."""
        steps = [entry for entry in log if p.tick < entry[0] <= p.tick + horizon_ticks]
        stride = round(DENSE_DT_S / world.config.dt_s)
        dense_world = np.array([e[1] for e in steps[stride - 1 :: stride]])
        dense = frames.world_to_ego(dense_world, p.pose_world)
        step_05 = round(FUTURE_DT_S / DENSE_DT_S)
        poses = dense[step_05 - 1 :: step_05][:FUTURE_STEPS]
        futures = agent_futures(p.agent_ids, [(e[2], e[3]) for e in steps[stride - 1 :: stride]], p.pose_world)
        agents = [replace(a, future_poses_ego=futures.get(int(a.id), ())) for a in p.agents]
        scene = scene_state(geometry, world.route, p.route_index, p.pose_world, agents, self.config.scene_radius_m)
        sample_id = f"{episode_name(spec, seed)}_t{p.tick:06d}"
        reasoning = meta = None
        slow = p.slow
        if slow and self.config.reasoning_selection == "complex":
            slow = self.is_complex(meta_action(poses, FUTURE_DT_S, p.obs.ego.speed_mps))
        if slow:
            facts = scene_facts(
                world.town, world.route, p.route_index, p.obs.ego.speed_mps, p.obs.command, agents, p.expert_reason
            )
            reasoning, meta = build_reasoning(facts, poses, FUTURE_DT_S)
        ego = p.obs.ego
        return Sample(
            id=sample_id,
            cameras=p.camera_paths,
            ego=EgoRecord(
                speed_mps=round(ego.speed_mps, 4),
                accel_mps2=round(ego.accel_mps2, 4),
                history=tuple(
                    (
                        round(s.timestamp_s - p.t_s, 3),
                        round(s.x_m, 3),
                        round(s.y_m, 3),
                        round(s.yaw_rad, 4),
                        round(s.speed_mps, 4),
                        round(s.accel_mps2, 4),
                    )
                    for s in p.obs.ego_history
                ),
            ),
            command=p.obs.command,
            target_point_ego_m=tuple(round(v, 3) for v in p.obs.target_point_ego_m),
            future=FutureTrajectory(
                dt_s=FUTURE_DT_S,
                poses_ego=tuple(tuple(round(float(v), 4) for v in row) for row in poses),
                dense_dt_s=DENSE_DT_S,
                dense_poses_ego=tuple(tuple(round(float(v), 4) for v in row) for row in dense),
            ),
            reasoning=reasoning,
            meta_action=meta,
            scene=scene,
            source=SampleSource(
                kind="embedded_sim",
                town=spec.town,
                route=str(spec.route_id),
                seed=seed,
                tick=p.tick,
                timestamp_s=round(p.t_s, 3),
            ),
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
    )
    Collector(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
