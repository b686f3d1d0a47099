"""The ego history of an Observation: one builder, identical in the driving loop and the data collector."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from autovla_agent.contract import NavCommand, Observation, Plan
from autovla_agent.loop.driving_loop import DrivingLoop
from autovla_agent.loop.ego_history import EgoHistory, EgoSample
from autovla_agent.loop.localizer import EgoEstimate
from autovla_agent.training.collect import CollectConfig, Collector, ego_sample


class _RecordingPlanner:
    """Keeps every observation; plans a short straight line."""

    def __init__(self) -> None:
        self.observations: list[Observation] = []

    def plan(self, obs: Observation) -> Plan:
        self.observations.append(obs)
        return Plan(times_s=np.array([0.5, 1.0]), poses_ego=np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]))


def _pose(t_s: float) -> np.ndarray:
    """A curving drive in the world frame (rear axle)."""
    return np.array([10.0 + 6.0 * t_s, -3.0 + 0.2 * t_s**2, 0.4 * math.sin(0.3 * t_s)])


def test_loop_and_collector_build_identical_ego_histories(tmp_path):
    collector = Collector(CollectConfig(out=str(tmp_path / "data")))
    config = collector.agent_config
    planner = _RecordingPlanner()
    route = np.array([[0.0, 0.0], [60.0, 0.0], [120.0, 10.0]])
    loop = DrivingLoop(config, planner, route, [NavCommand.KEEP_FORWARD] * len(route))
    dt = config.sim_dt_s
    history = collector.ego_history(dt)
    images = {cid: np.zeros((48, 96, 4), dtype=np.uint8) for cid in config.rig.camera_ids}
    compared = 0
    for tick in range(int(6.0 / dt)):
        t = tick * dt
        pose, speed, accel = _pose(t), 6.0 + 0.1 * tick, 0.5 * math.cos(t)
        snap = SimpleNamespace(
            ego_rear_axle_xy_m=pose[:2],
            ego=SimpleNamespace(yaw_rad=np.array([pose[2]]), speed_mps=np.array([speed])),
            ego_accel_mps2=accel,
        )
        history.push(ego_sample(snap, t))
        seen = len(planner.observations)
        loop.step(EgoEstimate(t, pose.copy(), pose.copy(), speed, accel, "compass", True), images)
        if len(planner.observations) > seen:
            assert planner.observations[-1].ego_history == history.states()
            compared += 1
    assert compared >= 5
    assert len(planner.observations[-1].ego_history) == config.vla.prompt.num_history_states


def test_history_is_nearest_sample_per_period_in_current_ego_frame():
    history = EgoHistory(num_states=3, period_s=0.5, sim_dt_s=0.1)
    for tick in range(11):
        t = 0.1 * tick + (0.003 if tick % 2 else -0.002)  # float jitter
        history.push(EgoSample(t, np.array([2.0 * t, 5.0, math.pi / 2]), 2.0, 0.1 * tick))
    states = history.states()
    assert [round(s.timestamp_s, 1) for s in states] == [0.0, 0.5, 1.0]
    last = states[-1]
    assert (last.x_m, last.y_m, last.yaw_rad) == (0.0, 0.0, 0.0)
    # Driving along world +x with yaw +90 deg: the past lies to the ego's left (+y), not behind it.
    assert states[0].x_m == pytest.approx(0.0, abs=1e-9) and states[0].y_m == pytest.approx(2.0, abs=0.02)
    assert states[0].accel_mps2 == pytest.approx(0.0) and last.accel_mps2 == pytest.approx(1.0)


def test_history_is_shorter_at_the_route_start_and_needs_a_sample():
    history = EgoHistory(num_states=4, period_s=0.5, sim_dt_s=0.05)
    with pytest.raises(RuntimeError):
        history.states()
    for tick in range(11):  # 0 .. 0.5 s
        history.push(EgoSample(0.05 * tick, np.zeros(3), 0.0, 0.0))
    assert len(history.states()) == 2
