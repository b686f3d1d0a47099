import math

import numpy as np
import pytest

from autovla_agent.planners.bicycle import (
    arc_displacement,
    curvature_from_steer,
    rollout,
    steer_from_curvature,
    step,
)
from autovla_agent.planners.vehicle import VehicleParams

VEH = VehicleParams()


def test_rollout_20mps_for_2s_moves_40m_straight():
    states = rollout(np.array([0.0, 0.0, 0.0, 20.0]), np.zeros((20, 2)), 0.1, VEH)
    assert states.shape == (21, 4)
    np.testing.assert_allclose(states[-1], [40.0, 0.0, 0.0, 20.0], atol=1e-9)


def test_step_heading_north_moves_along_plus_y():
    state = step(np.array([1.0, 2.0, math.pi / 2, 10.0]), 0.0, 0.0, 0.5, VEH)
    np.testing.assert_allclose(state[:2], [1.0, 7.0], atol=1e-9)


def test_step_positive_steer_turns_left_plus_y_and_plus_yaw():
    state = rollout(np.array([0.0, 0.0, 0.0, 5.0]), np.tile([0.0, 0.2], (10, 1)), 0.1, VEH)[-1]
    assert state[1] > 0.1 and state[2] > 0.1


def test_step_negative_steer_turns_right_minus_y_and_minus_yaw():
    state = rollout(np.array([0.0, 0.0, 0.0, 5.0]), np.tile([0.0, -0.2], (10, 1)), 0.1, VEH)[-1]
    assert state[1] < -0.1 and state[2] < -0.1


def test_step_constant_steer_stays_on_circle_of_bicycle_radius():
    steer = 0.3
    radius = 1.0 / curvature_from_steer(steer, VEH.wheelbase_m)
    states = rollout(np.array([0.0, 0.0, 0.0, 7.0]), np.tile([0.0, steer], (80, 1)), 0.05, VEH)
    # Left turn about the centre (0, R): every rear-axle position lies on the circle, heading = arc / R.
    np.testing.assert_allclose(np.hypot(states[:, 0], states[:, 1] - radius), radius, atol=1e-9)
    np.testing.assert_allclose(np.unwrap(states[:, 2])[-1], 7.0 * 80 * 0.05 / radius, atol=1e-9)


def test_step_braking_stops_at_standstill_without_reversing():
    states = rollout(np.array([0.0, 0.0, 0.0, 4.0]), np.tile([-8.0, 0.0], (20, 1)), 0.1, VEH)
    np.testing.assert_allclose(states[-1, 0], 4.0**2 / (2 * 8.0), atol=1e-9)  # exactly v^2 / 2a
    assert np.all(states[:, 3] >= 0.0) and states[-1, 3] == 0.0
    assert np.all(np.diff(states[:, 0]) >= -1e-12)


def test_step_allow_reverse_backs_up_to_reverse_speed_limit():
    states = rollout(np.zeros(4), np.tile([-2.0, 0.0], (30, 1)), 0.1, VEH, allow_reverse=True)
    assert states[-1, 3] == pytest.approx(-VEH.max_reverse_speed_mps)
    assert states[-1, 0] < -3.0


def test_step_clips_accel_steer_and_speed_to_vehicle_limits():
    fast = step(np.array([0.0, 0.0, 0.0, 24.9]), 100.0, 0.0, 1.0, VEH)
    assert fast[3] == VEH.max_speed_mps
    # Speed saturates after 0.1 s at max_accel 3.5: distance = 24.9*t + 1.75 t^2 + 25 (1 - t), t = 0.1/3.5.
    t_sat = 0.1 / VEH.max_accel_mps2
    assert fast[0] == pytest.approx(24.9 * t_sat + 0.5 * VEH.max_accel_mps2 * t_sat**2 + 25.0 * (1 - t_sat))
    wide = step(np.array([0.0, 0.0, 0.0, 5.0]), 0.0, 1.4, 0.1, VEH)
    limited = step(np.array([0.0, 0.0, 0.0, 5.0]), 0.0, VEH.max_steer_rad, 0.1, VEH)
    np.testing.assert_allclose(wide, limited)


def test_step_vectorised_batch_matches_one_by_one():
    rng = np.random.default_rng(0)
    states0 = np.column_stack([rng.normal(size=(6, 2)), rng.uniform(-3, 3, 6), rng.uniform(0, 20, 6)])
    controls = np.column_stack([rng.uniform(-8, 3.5, 6), rng.uniform(-0.6, 0.6, 6)])
    batch = step(states0, controls[:, 0], controls[:, 1], 0.1, VEH)
    for i in range(6):
        np.testing.assert_allclose(batch[i], step(states0[i], controls[i, 0], controls[i, 1], 0.1, VEH))


def test_rollout_broadcasts_one_state_over_many_control_sequences():
    controls = np.zeros((3, 5, 2))
    controls[:, :, 1] = np.array([-0.1, 0.0, 0.1])[:, None]
    states = rollout(np.array([0.0, 0.0, 0.0, 10.0]), controls, 0.1, VEH)
    assert states.shape == (3, 6, 4)
    assert states[0, -1, 1] < 0.0 < states[2, -1, 1] and states[1, -1, 1] == 0.0


def test_arc_displacement_zero_curvature_is_straight_line():
    np.testing.assert_allclose(arc_displacement(3.0, 0.0), [3.0, 0.0, 0.0])


def test_curvature_and_steer_conversions_round_trip():
    steer = np.linspace(-0.6, 0.6, 13)
    np.testing.assert_allclose(steer_from_curvature(curvature_from_steer(steer, 2.875), 2.875), steer)
    assert VEH.max_curvature_1pm == pytest.approx(math.tan(0.6) / 2.875)


def test_step_rejects_bad_shapes_and_step_sizes():
    with pytest.raises(ValueError, match="shape"):
        step(np.zeros(3), 0.0, 0.0, 0.1, VEH)
    with pytest.raises(ValueError, match="dt_s"):
        step(np.zeros(4), 0.0, 0.0, 0.0, VEH)


@pytest.mark.parametrize(
    ("field", "value"),
    [("wheelbase_m", 0.0), ("max_steer_rad", 1.6), ("rear_axle_offset_m", 3.0), ("max_speed_mps", float("nan"))],
)
def test_vehicle_params_invalid_value_raises_naming_field(field, value):
    with pytest.raises(ValueError, match=field):
        VehicleParams(**{field: value})
