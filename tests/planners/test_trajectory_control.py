import math

import numpy as np
import pytest

from autovla_agent.config_io import from_dict, to_dict
from autovla_agent.planners.bicycle import step
from autovla_agent.planners.control import ControlCommand, ControlConfig, TrajectoryTracker, aim_point_on_path
from autovla_agent.planners.decoder import DecoderConfig
from autovla_agent.planners.pid import PID, LateralController, LongitudinalConfig, LongitudinalController, PIDConfig
from autovla_agent.planners.route import RouteConfig
from autovla_agent.planners.vehicle import VehicleParams

VEH = VehicleParams()


def _plant_step(state: np.ndarray, cmd: ControlCommand, dt_s: float) -> np.ndarray:
    """A simple car: throttle up to 4 m/s^2, brake up to 8 m/s^2, aerodynamic drag; instant steering."""
    accel = 4.0 * cmd.throttle_norm - 8.0 * cmd.brake_norm - 0.003 * state[3] ** 2
    return step(state, accel, cmd.steer_rad(VEH), dt_s, VEH)


def _drive(plan_fn, state0, dt_s, duration_s=20.0, replan_s=0.5, tracker=None):
    """Closed loop: replan at 2 Hz from the current state, control at 1 / dt_s Hz. Returns (times, states)."""
    tracker = tracker or TrajectoryTracker(ControlConfig(), VEH)
    state, t, next_plan = np.asarray(state0, float), 0.0, 0.0
    times, states = [], []
    for _ in range(int(round(duration_s / dt_s))):
        if t >= next_plan - 1e-9:
            times_s, poses, start = plan_fn(state)
            tracker.set_plan(t, times_s, poses, start_pose_world=start)
            next_plan += replan_s
        state = _plant_step(state, tracker.step(t, state[:3], state[3], dt_s), dt_s)
        t += dt_s
        times.append(t)
        states.append(state)
    return np.array(times), np.array(states)


def _straight_plan(target_speed_mps):
    def plan(state):
        times_s = np.arange(1, 51) * 0.1
        x = state[0] + target_speed_mps * times_s
        return times_s, np.stack([x, 0 * x, 0 * x], axis=-1), np.array([state[0], 0.0, 0.0])

    return plan


def test_pid_matches_the_20hz_lineage_form_with_converted_gains():
    kp, ki, kd, n, dt = 1.75, 1.0, 2.0, 20, 0.05
    pid = PID(PIDConfig(kp=kp, ki=ki / (n * dt), kd=kd * dt, integral_window_s=n * dt, output_min=-1e9, output_max=1e9))
    errors = np.random.default_rng(0).normal(0.0, 1.0, 200)
    for k, e in enumerate(errors):
        ours = pid.step(float(e), dt)
        if k >= n:  # after the window is full: Kp e + Ki mean(last n) + Kd (e_t - e_{t-1})
            lineage = kp * e + ki * errors[k - n + 1 : k + 1].mean() + kd * (e - errors[k - 1])
            assert ours == pytest.approx(lineage, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("dt_s", [0.05, 0.1, 0.025])
def test_pid_integral_and_derivative_are_per_second_at_any_rate(dt_s):
    pid = PID(PIDConfig(kp=0.0, ki=2.0, kd=0.0, integral_window_s=1.0, output_min=-10, output_max=10))
    for _ in range(int(round(3.0 / dt_s))):
        out = pid.step(0.5, dt_s)
    assert out == pytest.approx(2.0 * 0.5 * 1.0)  # ki x error x window, whatever the rate
    ramp = PID(PIDConfig(kp=0.0, kd=0.3, output_min=-10, output_max=10))
    for k in range(5):
        out = ramp.step(2.0 * k * dt_s, dt_s)  # error rising at 2 per second
    assert out == pytest.approx(0.3 * 2.0)


def test_pid_anti_windup_stops_integrating_while_saturated():
    config = PIDConfig(kp=1.0, ki=1.0, kd=0.0, integral_window_s=None, output_min=-1.0, output_max=1.0)
    pid = PID(config)
    for _ in range(100):  # 10 s of a large positive error: the output saturates at once
        assert pid.step(5.0, 0.1) == 1.0
    assert pid.integral == pytest.approx(0.0)
    assert pid.step(-0.5, 0.1) < 0.0  # reverses at once; a wound-up integral (50) would keep it at +1
    limited = PID(PIDConfig(kp=0.0, ki=1.0, integral_limit=0.2, output_min=-5, output_max=5))
    for _ in range(50):
        out = limited.step(1.0, 0.1)
    assert out == pytest.approx(0.2)


def test_pid_rejects_non_positive_dt_and_bad_config():
    with pytest.raises(ValueError, match="dt_s"):
        PID(PIDConfig()).step(1.0, 0.0)
    with pytest.raises(ValueError, match="output_min"):
        PIDConfig(output_min=1.0, output_max=0.0)


def test_lateral_controller_steers_left_for_aim_point_on_the_left_and_not_at_standstill():
    lateral = LateralController()
    assert lateral.step(np.array([5.0, 1.0]), speed_mps=5.0, dt_s=0.05) > 0.0
    assert LateralController().step(np.array([5.0, -1.0]), speed_mps=5.0, dt_s=0.05) < 0.0
    assert lateral.step(np.array([5.0, 1.0]), speed_mps=0.0, dt_s=0.05) == 0.0
    assert lateral.lookahead_m(0.0) == pytest.approx(2.4) and lateral.lookahead_m(40.0) == pytest.approx(10.5)
    assert lateral.lookahead_m(10.0) == pytest.approx(0.351 * 10 + 0.19)


def test_longitudinal_controller_brake_rule_and_throttle_cap():
    ctrl = LongitudinalController()
    assert ctrl.step(0.3, 5.0, 0.05) == (0.0, 1.0)  # target below 0.4 m/s: stop
    assert ctrl.step(5.0, 5.6, 0.05) == (0.0, 1.0)  # more than 1.1 x target
    throttle, brake = LongitudinalController().step(10.0, 0.0, 0.05)
    assert brake == 0.0 and throttle == pytest.approx(0.75)  # capped
    throttle, brake = LongitudinalController().step(5.0, 5.2, 0.05)
    assert throttle == 0.0 and brake == 0.0  # slightly fast: coast


def test_aim_point_on_path_projects_then_looks_ahead_and_extends_past_the_end():
    path = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    np.testing.assert_allclose(aim_point_on_path(path, np.array([2.0, 1.0]), 3.0), [5.0, 0.0])
    np.testing.assert_allclose(aim_point_on_path(path, np.array([9.0, 0.0]), 4.0), [10.0, 3.0])
    np.testing.assert_allclose(aim_point_on_path(path, np.array([10.0, 9.0]), 4.0), [10.0, 13.0])
    assert aim_point_on_path(np.zeros((3, 2)), np.zeros(2), 4.0) is None


def test_tracker_without_plan_brakes_fully():
    tracker = TrajectoryTracker()
    assert not tracker.has_plan
    assert tracker.step(0.0, np.zeros(3), 3.0, 0.05) == ControlCommand(0.0, 0.0, 1.0)


def test_tracker_interpolates_the_last_plan_in_time_between_replans():
    tracker = TrajectoryTracker(ControlConfig(target_speed_window_start_s=0.0, target_speed_window_end_s=0.5))
    times = np.array([0.5, 1.0, 1.5, 2.0])
    poses = np.array([[5.0, 0.0, 0.0], [10.0, 0.0, 0.0], [12.0, 0.0, 0.2], [12.0, 0.0, 0.2]])
    tracker.set_plan(100.0, times, poses, start_pose_world=np.array([0.0, 0.0, 0.0]))
    np.testing.assert_allclose(tracker.reference_pose(100.25), [2.5, 0.0, 0.0])
    np.testing.assert_allclose(tracker.reference_pose(101.25), [11.0, 0.0, 0.1])
    assert tracker.target_speed_mps(100.2) == pytest.approx(10.0)  # 0.2..0.7 s: 10 m/s throughout
    assert tracker.target_speed_mps(100.75) == pytest.approx((11.0 - 7.5) / 0.5)  # path 7.5 m -> 11 m
    assert tracker.target_speed_mps(102.5) == 0.0  # past the horizon: stop
    with pytest.raises(ValueError, match="increasing"):
        tracker.set_plan(0.0, np.array([1.0, 1.0]), np.zeros((2, 3)))


@pytest.mark.parametrize("dt_s", [0.1, 0.05])
def test_tracker_converges_on_offset_line_and_speed_step_with_same_gains_at_10_and_20_hz(dt_s):
    times, states = _drive(_straight_plan(10.0), [0.0, 1.0, 0.0, 5.0], dt_s)
    late = times > 8.0
    assert np.abs(states[late, 1]).max() < 0.02  # 1 m offset removed
    assert np.abs(states[late, 2]).max() < 0.005
    assert np.abs(states[late, 3] - 10.0).max() < 0.3  # 5 -> 10 m/s step reached
    assert np.abs(states[:, 1]).max() <= 1.0 + 1e-9 and states[:, 1].min() > -0.2  # no big overshoot
    assert states[np.argmin(np.abs(times - 3.0)), 3] > 9.0  # within 3 s


def test_tracker_responses_at_10_and_20_hz_nearly_coincide():
    t10, s10 = _drive(_straight_plan(10.0), [0.0, 1.0, 0.0, 5.0], 0.1, duration_s=6.0)
    t20, s20 = _drive(_straight_plan(10.0), [0.0, 1.0, 0.0, 5.0], 0.05, duration_s=6.0)
    s20_at_10 = s20[1::2]
    np.testing.assert_allclose(t20[1::2], t10)
    assert np.abs(s20_at_10[:, 1] - s10[:, 1]).max() < 0.1
    assert np.abs(s20_at_10[:, 3] - s10[:, 3]).max() < 0.5


@pytest.mark.parametrize("dt_s", [0.1, 0.05])
def test_tracker_follows_a_30m_radius_curve_within_10cm(dt_s):
    radius, speed = 30.0, 8.0

    def plan(state):
        start = math.atan2(state[0], radius - state[1])
        angles = start + speed * np.arange(0, 51) * 0.1 / radius
        poses = np.stack([radius * np.sin(angles), radius - radius * np.cos(angles), angles], axis=-1)
        return np.arange(1, 51) * 0.1, poses[1:], poses[0]

    times, states = _drive(plan, [0.0, 0.0, 0.0, speed], dt_s, duration_s=20.0)
    radial = np.hypot(states[:, 0], states[:, 1] - radius) - radius
    assert np.abs(radial[times > 5.0]).max() < 0.1


def test_tracker_creeps_after_being_stuck_unless_an_obstacle_is_ahead():
    config = ControlConfig(stuck_time_s=2.0, creep_duration_s=0.5)
    stop_plan = (np.array([0.5, 1.0]), np.zeros((2, 3)))
    tracker = TrajectoryTracker(config)
    commands = []
    for k in range(60):  # 3 s at 20 Hz, standing still with a plan that says stop
        tracker.set_plan(k * 0.05, *stop_plan)
        commands.append(tracker.step(k * 0.05, np.zeros(3), 0.0, 0.05))
    creeping = [c.throttle_norm >= 0.4 and c.brake_norm == 0.0 for c in commands]
    assert not any(creeping[:39]) and all(creeping[39:49]) and not any(creeping[49:])  # after 40 ticks = 2 s
    assert tracker.num_creeps == 1
    blocked = TrajectoryTracker(config)
    for k in range(60):
        blocked.set_plan(k * 0.05, *stop_plan)
        cmd = blocked.step(k * 0.05, np.zeros(3), 0.0, 0.05, obstacle_ahead=True)
        assert cmd.brake_norm == 1.0 and cmd.throttle_norm == 0.0


def test_control_command_rejects_out_of_range_values():
    with pytest.raises(ValueError, match="out of range"):
        ControlCommand(1.5, 0.0, 0.0)
    assert ControlCommand(0.5, 0.2, 0.0).steer_rad(VEH) == pytest.approx(0.3)


@pytest.mark.parametrize("config", [ControlConfig(), DecoderConfig(), RouteConfig(), VehicleParams()])
def test_planner_configs_round_trip_through_the_strict_loader(config):
    assert from_dict(type(config), to_dict(config)) == config


def test_longitudinal_config_rejects_brake_ratio_below_one():
    with pytest.raises(ValueError, match="brake_ratio"):
        LongitudinalConfig(brake_ratio=0.9)
