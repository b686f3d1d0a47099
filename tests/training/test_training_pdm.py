import math

import numpy as np
import pytest

from autovla_agent.training.pdm import PDMConfig, SceneGeometry, pdm_score
from autovla_agent.training.schema import AgentBox, SceneState

ROAD = (((-30.0, -3.5), (200.0, -3.5), (200.0, 3.5), (-30.0, 3.5)),)
CENTERLINE = ((-30.0, 0.0), (200.0, 0.0))
T = np.arange(1, 11) * 0.5


def straight(speed_mps):
    return np.stack([speed_mps * T, 0 * T, 0 * T], -1)


def geometry(*agents):
    return SceneGeometry(SceneState(drivable_area_ego_m=ROAD, centerline_ego_m=CENTERLINE, agents=agents), PDMConfig())


def test_pdm_clean_straight_plan_scores_one():
    r = pdm_score(geometry(), T, straight(8.0), 8.0, straight(8.0), T)
    assert (r.nc, r.dac, r.ttc, r.comfort, r.ep) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert r.score == pytest.approx(1.0)
    assert r.progress_m == pytest.approx(32.0)


def test_pdm_collision_with_stopped_car_scores_zero():
    r = pdm_score(geometry(AgentBox(id="car", x_m=20.0, y_m=0.0, yaw_rad=0.0)), T, straight(8.0), 8.0)
    assert r.nc == 0.0 and r.score == 0.0 and r.collision_step is not None


def test_pdm_leaving_road_scores_zero():
    veer = np.stack([8 * T, 0.5 * T**2, np.arctan(T)], -1)
    r = pdm_score(geometry(), T, veer, 8.0)
    assert r.dac == 0.0 and r.score == 0.0


def test_pdm_rear_end_by_other_not_at_fault():
    # a faster car from behind runs into the stopped ego: not the ego's fault (nuPlan's rear collision)
    behind = AgentBox(id="fast", x_m=-8.0, y_m=0.0, yaw_rad=0.0, speed_mps=6.0)
    r = pdm_score(geometry(behind), T, np.zeros((10, 3)), 0.0)
    assert r.nc == 1.0


def test_pdm_static_object_collision_half():
    cone = AgentBox(id="cone", kind="static", x_m=15.0, y_m=0.0, yaw_rad=0.0, length_m=0.5, width_m=0.5)
    r = pdm_score(geometry(cone), T, straight(8.0), 8.0)
    assert r.nc == 0.5


def test_pdm_close_follow_fails_ttc_but_not_collision():
    # 1.5 m gap to a slower lead; the ego brakes from 7 to 5 m/s in 1 s: no contact, but time to collision < 1 s
    lead = AgentBox(id="lead", x_m=7.8, y_m=0.0, yaw_rad=0.0, speed_mps=5.0)
    t = np.arange(1, 41) * 0.1
    x = np.where(t < 1.0, 7 * t - t**2, 6.0 + 5.0 * (t - 1.0))
    r = pdm_score(geometry(lead), t, np.stack([x, 0 * t, 0 * t], -1), 7.0)
    assert r.nc == 1.0 and r.ttc == 0.0 and r.score < 0.7


def test_pdm_slower_than_reference_lower_progress():
    r = pdm_score(geometry(), T, straight(4.0), 4.0, straight(8.0), T)
    assert r.ep == pytest.approx(0.5)
    assert r.score == pytest.approx((5 * 0.5 + 5 + 2) / 12)


def test_pdm_harsh_braking_uncomfortable():
    # 10 m/s to standstill in 1 s: -10 m/s^2, beyond nuPlan's -4.05 m/s^2 bound
    t = np.arange(1, 41) * 0.1
    x = np.where(t < 1.0, 10 * t - 5 * t**2, 5.0)
    r = pdm_score(geometry(), t, np.stack([x, 0 * t, 0 * t], -1), 10.0)
    assert r.comfort == 0.0 and r.nc == 1.0


def test_pdm_oncoming_car_in_own_lane_collides():
    oncoming = AgentBox(id="on", x_m=40.0, y_m=0.0, yaw_rad=math.pi, speed_mps=8.0)
    r = pdm_score(geometry(oncoming), T, straight(8.0), 8.0)
    assert r.nc == 0.0
