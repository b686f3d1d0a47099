import numpy as np
import pytest

from autovla_agent.sim.world.signal_state import GREEN, RED, YELLOW, SignalConfig, TrafficLightController
from autovla_agent.sim.world.signals import town_signals
from autovla_agent.sim.world.town import Town, available_towns


def test_all_six_towns_ship_with_their_signals():
    assert {"Town01", "Town02", "Town04", "Town06", "Town07", "Town10HD"} <= set(available_towns())
    # the OpenDRIVE landmarks (signals + their references) as counted by carla.Map.get_all_landmarks()
    for name, lights, stops in (("Town01", 72, 0), ("Town07", 42, 42), ("Town10HD", 58, 6)):
        town = Town.load(name)
        kinds = [lm.type for lm in town.map.get_all_landmarks()]
        assert kinds.count("1000001") == lights
        assert kinds.count("206") == stops
    s01 = town_signals(Town.load("Town01"))
    assert len(s01.heads) == 36 and len(s01.heads.num_phases) == 12  # 3 heads per junction, 12 junctions
    assert len(s01.lines) == 36 and len(s01.stops) == 0
    s07 = town_signals(Town.load("Town07"))
    assert len(s07.stops) > 0 and len(s07.lines) > 0


def test_stop_lines_sit_at_the_junction_entry_of_their_incoming_lane():
    town = Town.load("Town01")
    sig = town_signals(town)
    for k in range(len(sig.lines)):
        lane = town.lanes[int(sig.lines.lane[k])]
        assert not lane.is_junction
        assert any(town.lanes[j].is_junction for j in lane.successors)
        np.testing.assert_allclose(sig.lines.xy_m[k], lane.xy_m[-1])
        # the trigger volume lies 3 m before the line, the stop line is lane-wide
        assert np.hypot(*(sig.lines.trigger_xy_m[k] - sig.lines.xy_m[k])) == pytest.approx(3.0, abs=0.2)
        assert sig.lane_light[lane.index] == k


def test_one_head_group_of_a_junction_is_green_at_a_time_with_carla_stage_times():
    sig = town_signals(Town.load("Town01"))
    ctrl = TrafficLightController(sig.heads, SignalConfig(random_phase=False))
    group = sig.heads.group == 0
    n = int(sig.heads.num_phases[0])
    history = []
    for k in range(int(n * 15.0 / 0.05)):
        ctrl.update(k * 0.05)
        st = ctrl.state[group]
        assert (st != RED).sum() <= 1  # never two controllers of a junction green/yellow together
        history.append(st.copy())
    history = np.array(history)
    first = history[:, sig.heads.phase[group] == 0][:, 0]
    assert (first == GREEN).sum() * 0.05 == pytest.approx(10.0, abs=0.06)
    assert (first == YELLOW).sum() * 0.05 == pytest.approx(3.0, abs=0.06)
    assert (history == RED).all(axis=1).sum() * 0.05 == pytest.approx(2.0 * n, abs=0.2)  # all-red clearances
    ctrl.update(0.0)
    assert ctrl.time_to_red_s[np.flatnonzero(group)[sig.heads.phase[group] == 0][0]] == pytest.approx(13.0)


def test_lights_off_keeps_every_head_green():
    sig = town_signals(Town.load("Town02"))
    ctrl = TrafficLightController(sig.heads, SignalConfig(lights=False))
    for t in (0.0, 7.0, 33.0):
        ctrl.update(t)
        assert (ctrl.state == GREEN).all()


def test_speed_limits_follow_the_last_sign_passed():
    town = Town.load("Town01")
    limits = town_signals(town).speed_limits
    # Town01 road 8 carries a 90 and a 60 km/h sign: the limit changes at them along the lane
    lane = next(ln for ln in town.lanes if ln.road_id == 8 and ln.lane_id == -1)
    s = np.linspace(0.0, lane.length_m, 200)
    values = np.round(limits.at(np.full(len(s), lane.index), s) * 3.6)
    assert {30.0, 90.0} <= set(values.tolist())
    assert np.round(limits.start_mps * 3.6).min() == 30.0
