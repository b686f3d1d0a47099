import math

import numpy as np
import pytest

from autovla_agent.sensors import frames
from autovla_agent.sensors.readings import HeadingEstimator, SpeedometerReader, parse_imu


def test_speedometer_reader_speed_none_keeps_last_valid():
    reader = SpeedometerReader()
    assert reader.update({"speed": 4.5}) == 4.5
    assert reader.update({"speed": None}) == 4.5
    assert reader.update({"speed": float("nan")}) == 4.5
    assert reader.update({}) == 4.5
    assert reader.num_invalid == 3
    assert not reader.is_last_valid
    assert reader.update({"speed": -1.25}) == -1.25  # reversing stays signed
    assert reader.is_last_valid


def test_speedometer_reader_invalid_before_first_reading_gives_initial_speed():
    reader = SpeedometerReader(initial_speed_mps=0.0)
    value = reader.update({"speed": None})
    assert value == 0.0 and type(value) is float


def test_speedometer_reader_accepts_numpy_and_bare_numbers():
    reader = SpeedometerReader()
    assert reader.update({"speed": np.float32(3.0)}) == 3.0
    assert reader.update(2.0) == 2.0
    assert reader.update({"speed": "fast"}) == 2.0


def test_parse_imu_converts_axes_and_keeps_nan_compass():
    sample = parse_imu(np.array([1.0, 2.0, 9.8, 0.0, 0.0, -0.3, float("nan")]))
    np.testing.assert_allclose(sample.accel_ego_mps2, [1.0, -2.0, 9.8])
    assert sample.yaw_rate_radps == pytest.approx(0.3)
    assert math.isnan(sample.compass_rad)


def test_parse_imu_nan_rates_become_zero_and_wrong_length_raises():
    sample = parse_imu([float("nan")] * 6 + [1.0])
    assert np.all(sample.gyro_ego_radps == 0.0) and np.all(sample.accel_ego_mps2 == 0.0)
    with pytest.raises(ValueError, match="7 numbers"):
        parse_imu([0.0] * 6)


def test_heading_estimator_uses_compass_when_finite():
    estimator = HeadingEstimator()
    estimate = estimator.update(math.pi / 2)
    assert estimate.source == "compass"
    assert estimate.yaw_rad == pytest.approx(0.0)


def test_heading_estimator_nan_compass_keeps_last_and_propagates_with_gyro():
    estimator = HeadingEstimator(route_yaw_rad=1.0)
    estimator.update(frames.world_yaw_rad_to_compass(0.2))
    held = estimator.update(float("nan"))
    assert (held.source, held.yaw_rad) == ("last_compass", pytest.approx(0.2))
    turned = estimator.update(float("nan"), yaw_rate_radps=0.5, dt_s=0.1)
    assert turned.yaw_rad == pytest.approx(0.25)
    assert estimator.num_invalid == 2


def test_heading_estimator_nan_from_start_uses_route_then_motion():
    estimator = HeadingEstimator(route_yaw_rad=-math.pi / 2, min_motion_m=2.0)
    first = estimator.update(float("nan"), xy_world_m=(0.0, 0.0))
    assert (first.source, first.yaw_rad) == ("route", pytest.approx(-math.pi / 2))
    estimator.update(float("nan"), xy_world_m=(1.0, 0.0))  # not yet 2 m: still the route heading
    moved = estimator.update(float("nan"), xy_world_m=(0.0, 3.0))
    assert (moved.source, moved.yaw_rad) == ("motion", pytest.approx(math.pi / 2))


def test_heading_estimator_nothing_known_gives_none_source():
    assert HeadingEstimator().update(None).source == "none"
