"""The reference planner and the one constant-velocity pose writer shared by the fallbacks."""

import math

import numpy as np
import pytest

from autovla_agent.constant_velocity import ConstantVelocityPlanner, constant_velocity_poses
from autovla_agent.contract import EgoState, Observation, Planner, PlanStatus, ThinkingMode

TIMES_S = (0.5, 1.0, 1.5, 2.0)


def _obs(speed_mps: float) -> Observation:
    return Observation(timestamp_s=3.0, cameras={}, ego_history=(EgoState(3.0, speed_mps=speed_mps),))


def test_constant_velocity_poses_signed_speed_and_floor():
    np.testing.assert_allclose(constant_velocity_poses(2.0, TIMES_S), [[1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0]])
    np.testing.assert_allclose(constant_velocity_poses(-2.0, TIMES_S)[:, 0], [-1, -2, -3, -4])  # reverses
    np.testing.assert_allclose(constant_velocity_poses(-2.0, TIMES_S, min_speed_mps=0.0)[:, 0], 0.0)
    np.testing.assert_allclose(constant_velocity_poses(1.0, TIMES_S, min_speed_mps=3.0)[:, 0], [1.5, 3, 4.5, 6])
    for bad in (math.nan, math.inf):
        assert not constant_velocity_poses(bad, TIMES_S).any()
    assert constant_velocity_poses(2.0, np.array(TIMES_S)).dtype == np.float64


def test_constant_velocity_planner_keeps_speed_with_a_floor():
    planner = ConstantVelocityPlanner(TIMES_S, min_speed_mps=4.0)
    assert Planner in type(planner).__mro__  # implements the contract's protocol explicitly
    plan = planner.plan(_obs(6.0))
    np.testing.assert_allclose(plan.times_s, TIMES_S)
    np.testing.assert_allclose(plan.poses_ego[:, 0], [3, 6, 9, 12])
    assert not plan.poses_ego[:, 1:].any() and plan.status is PlanStatus.OK and plan.thinking_mode is ThinkingMode.FAST
    np.testing.assert_allclose(planner.plan(_obs(0.0)).poses_ego[:, 0], [2, 4, 6, 8])  # the floor starts a car
    np.testing.assert_allclose(ConstantVelocityPlanner(TIMES_S).plan(_obs(-1.0)).poses_ego, 0.0)  # never reverses


def test_constant_velocity_planner_rejects_a_non_finite_speed():
    # The driving loop answers a raising planner with a braking fallback plan.
    with pytest.raises(ValueError, match="not finite"):
        ConstantVelocityPlanner(TIMES_S).plan(_obs(math.nan))
