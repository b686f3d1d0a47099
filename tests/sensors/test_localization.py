import math

import numpy as np
import pytest

from autovla_agent.sensors import frames
from autovla_agent.sensors.localization import LocalizationConfig, PoseFilter

DT_S = 0.05
OFFSET_M = 1.4


def _circle_truth(num_ticks, speed_mps=8.0, yaw_rate_radps=0.2):
    """Rear-axle states on a left-hand circle: x, y, yaw, speed per tick."""
    t = np.arange(num_ticks) * DT_S
    yaw = yaw_rate_radps * t
    radius = speed_mps / yaw_rate_radps
    x = radius * np.sin(yaw)
    y = radius * (1.0 - np.cos(yaw))
    return np.column_stack([x, y, yaw, np.full_like(t, speed_mps)])


def _antenna(state):
    return state[:2] + OFFSET_M * np.array([math.cos(state[2]), math.sin(state[2])])


def test_pose_filter_smooths_gnss_noise_on_a_turn():
    rng = np.random.default_rng(0)
    truth = _circle_truth(400)
    flt = PoseFilter(LocalizationConfig(gnss_offset_m=OFFSET_M))
    errors_raw, errors_filtered = [], []
    for k, state in enumerate(truth):
        fix = _antenna(state) + rng.normal(0.0, 0.56, 2)
        estimate = flt.step(
            DT_S,
            xy_world_m=fix,
            yaw_rad=state[2],
            speed_mps=state[3] + rng.normal(0.0, 0.05),
            yaw_rate_radps=0.2 + rng.normal(0.0, 0.001),
        )
        if k >= 100:  # after convergence
            errors_raw.append(np.hypot(*(fix - _antenna(state))))
            errors_filtered.append(np.hypot(*(estimate[:2] - state[:2])))
    assert np.sqrt(np.mean(np.square(errors_filtered))) < 0.4 * np.sqrt(np.mean(np.square(errors_raw)))
    assert abs(frames.wrap_angle_rad(flt.pose_world[2] - truth[-1, 2])) < 0.02


def test_pose_filter_first_fix_initialises_at_rear_axle():
    flt = PoseFilter(LocalizationConfig(gnss_offset_m=OFFSET_M))
    with pytest.raises(RuntimeError, match="no state"):
        flt.step(DT_S, xy_world_m=(1.0, 2.0), yaw_rad=None, speed_mps=0.0)
    state = flt.step(DT_S, xy_world_m=(1.0, 2.0), yaw_rad=math.pi / 2, speed_mps=3.0)
    np.testing.assert_allclose(state, [1.0, 2.0 - OFFSET_M, math.pi / 2, 3.0], atol=1e-12)


def test_pose_filter_skips_nan_and_none_readings_and_keeps_predicting():
    flt = PoseFilter()
    flt.reset([0.0, 0.0, 0.0], speed_mps=10.0)
    for _ in range(20):
        state = flt.step(DT_S, xy_world_m=(float("nan"), 0.0), yaw_rad=float("nan"), speed_mps=None)
    assert flt.num_skipped == 60
    assert np.all(np.isfinite(state))
    assert state[0] == pytest.approx(10.0)  # 1 s at 10 m/s dead-reckoned along +x
    assert np.trace(flt.covariance[:2, :2]) > 0.0


def test_pose_filter_positive_yaw_rate_turns_left():
    flt = PoseFilter()
    flt.reset([0.0, 0.0, 0.0], speed_mps=5.0)
    for _ in range(20):
        flt.predict(DT_S, yaw_rate_radps=0.5)
    x, y, yaw = flt.pose_world
    assert yaw == pytest.approx(0.5) and y > 0.0 and x > 0.0


def test_localization_config_rejects_non_positive_noise():
    with pytest.raises(ValueError, match="gnss_std_m"):
        LocalizationConfig(gnss_std_m=0.0)
