import numpy as np
import pytest

from autovla_agent.planners.synthetic_driving import SyntheticDrivingConfig, generate_driving_states
from autovla_agent.planners.vehicle import VehicleParams


@pytest.fixture(scope="module")
def states() -> np.ndarray:
    return generate_driving_states(500, config=SyntheticDrivingConfig(heading_noise_rad=0.0), seed=4)


def test_synthetic_driving_starts_at_origin_with_realistic_speeds(states):
    assert states.shape == (500, 101, 4)
    np.testing.assert_allclose(states[:, 0, :3], 0.0)
    assert states[..., 3].min() >= 0.0 and states[..., 3].max() <= 20.0 + 1e-9


def test_synthetic_driving_accelerations_and_curvatures_are_gentle(states):
    accel = np.diff(states[..., 3], axis=1) / 0.1
    assert accel.min() >= -6.0 - 1e-9 and accel.max() <= 2.5 + 1e-9
    step_m = np.linalg.norm(np.diff(states[..., :2], axis=1), axis=-1)
    turn = np.abs(np.angle(np.exp(1j * np.diff(states[..., 2], axis=1))))
    moving = step_m > 0.05
    curvature = turn[moving] / step_m[moving]
    assert curvature.max() <= VehicleParams().max_curvature_1pm
    speed = states[:, 1:, 3][moving]
    assert np.percentile(curvature * speed**2, 99.9) <= 3.5 * 1.1  # lateral-acceleration budget


def test_synthetic_driving_mixes_stops_turns_and_lane_changes(states):
    assert np.mean(states[..., 3].min(axis=1) < 0.05) > 0.1  # some trajectories stop
    heading_change = np.abs(np.unwrap(states[..., 2], axis=1)[:, -1])
    assert np.mean(heading_change > 1.0) > 0.05  # intersection-like turns
    lateral = np.abs(states[:, -1, 1])
    assert np.mean((heading_change < 0.1) & (lateral > 2.5)) > 0.01  # S-curves: offset without net turn


def test_synthetic_driving_is_reproducible_per_seed():
    a = generate_driving_states(5, seed=1)
    np.testing.assert_array_equal(a, generate_driving_states(5, seed=1))
    assert not np.array_equal(a, generate_driving_states(5, seed=2))
    with pytest.raises(ValueError, match="num_trajectories"):
        generate_driving_states(0)
