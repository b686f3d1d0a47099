"""The collector's samples: a tick's observation waits for its driven future, then becomes a ``Sample`` row.

Futures are the expert's driven rear-axle poses in the ego frame of the sample's tick: ``FUTURE_STEPS`` poses
``FUTURE_DT_S`` apart and the dense ones ``DENSE_DT_S`` apart over the same horizon. The scene state and
the other agents' logged futures are added for the driving-score reward, and a chosen share of the samples
gets a chain of thought built from the privileged state with AutoVLA's meta-action rules. A (route, seed) run is
named by ``episode_name`` and summed up in ``RunStats``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from autovla_agent.contract import Observation
from autovla_agent.sensors import frames
from autovla_agent.training.reasoning import build_reasoning, meta_action
from autovla_agent.training.scene_extract import TownGeometry, agent_futures, scene_facts, scene_state
from autovla_agent.training.schema import EgoRecord, FutureTrajectory, MetaAction, Sample, SampleSource

FUTURE_STEPS = 10
FUTURE_DT_S = 0.5
DENSE_DT_S = 0.1


def episode_name(spec: Any, seed: int) -> str:
    """Unique name of one (route, seed) run: town, route file, route id, seed."""
    source = Path(spec.source).stem if getattr(spec, "source", "") else "routes"
    return f"{spec.town}_{source}_r{spec.route_id}_s{seed}"


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


@dataclass
class PendingSample:
    """A sample waiting for its future."""

    sample_id: str
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


def is_complex(meta: MetaAction) -> bool:
    """A scene worth slow thinking: the expert turns or changes lane, brakes hard or stops."""
    return meta.lateral != "move forward" or meta.longitudinal in ("stop", "quickly decelerate")


def ego_record(obs: Observation, t_s: float) -> EgoRecord:
    """The sample's ego row: current speed and acceleration, and the history relative to ``t_s``."""
    ego = obs.ego
    return EgoRecord(
        speed_mps=round(ego.speed_mps, 4),
        accel_mps2=round(ego.accel_mps2, 4),
        history=tuple(
            (
                round(s.timestamp_s - t_s, 3),
                round(s.x_m, 3),
                round(s.y_m, 3),
                round(s.yaw_rad, 4),
                round(s.speed_mps, 4),
                round(s.accel_mps2, 4),
            )
            for s in obs.ego_history
        ),
    )


def finish_sample(
    p: PendingSample,
    log: list,
    world: Any,
    spec: Any,
    seed: int,
    geometry: TownGeometry,
    horizon_ticks: int,
    *,
    scene_radius_m: float,
    complex_only: bool,
) -> Sample:
    """Build the sample once its future (5 s) has been driven.

    ``log`` holds ``(tick, ego rear-axle pose, vehicle ids, vehicle poses)`` per tick; with ``complex_only``
    a sample drawn for reasoning keeps it only where ``is_complex`` holds for the expert's future.
    """
    steps = [entry for entry in log if p.tick < entry[0] <= p.tick + horizon_ticks]
    stride = round(DENSE_DT_S / world.config.dt_s)
    dense_world = np.array([e[1] for e in steps[stride - 1 :: stride]])
    dense = frames.world_to_ego(dense_world, p.pose_world)
    step_05 = round(FUTURE_DT_S / DENSE_DT_S)
    poses = dense[step_05 - 1 :: step_05][:FUTURE_STEPS]
    futures = agent_futures(p.agent_ids, [(e[2], e[3]) for e in steps[stride - 1 :: stride]], p.pose_world)
    agents = [replace(a, future_poses_ego=futures.get(int(a.id), ())) for a in p.agents]
    scene = scene_state(geometry, world.route, p.route_index, p.pose_world, agents, scene_radius_m)
    reasoning = meta = None
    slow = p.slow
    if slow and complex_only:
        slow = is_complex(meta_action(poses, FUTURE_DT_S, p.obs.ego.speed_mps))
    if slow:
        facts = scene_facts(
            world.town, world.route, p.route_index, p.obs.ego.speed_mps, p.obs.command, agents, p.expert_reason
        )
        reasoning, meta = build_reasoning(facts, poses, FUTURE_DT_S)
    return Sample(
        id=p.sample_id,
        cameras=p.camera_paths,
        ego=ego_record(p.obs, p.t_s),
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
