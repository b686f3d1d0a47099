"""Route criteria and driving-score arithmetic on hand-made scenes (straight lanes, boxes placed by hand)."""

import math

import numpy as np
import pytest

from autovla_agent.sim.scoring.config import ScoringConfig
from autovla_agent.sim.scoring.infractions import EventType, TrafficEvent, compute_scores
from autovla_agent.sim.scoring.route_scorer import RouteScorer
from autovla_agent.sim.world.lane_query import LaneGeometry, PolylineLanes, boxes_overlap, oriented_box_corners
from autovla_agent.sim.world.simulation import ActorArrays, WorldSnapshot

DT_S = 0.05


def actors(rows, start_id=1):
    """ActorArrays from rows (x, y, yaw, speed[, parked]) with a 4.9 x 2.1 m box."""
    rows = [tuple(r) + (False,) * (5 - len(r)) for r in rows]
    arr = np.array([r[:4] for r in rows], float).reshape(-1, 4)
    n = len(rows)
    return ActorArrays(
        ids=np.arange(start_id, start_id + n, dtype=np.int64),
        x_m=arr[:, 0],
        y_m=arr[:, 1],
        yaw_rad=arr[:, 2],
        speed_mps=arr[:, 3],
        length_m=np.full(n, 4.9),
        width_m=np.full(n, 2.1),
        parked=np.array([bool(r[4]) for r in rows], bool),
    )


def scene(frame, ego, others=()):
    """A WorldSnapshot at ``frame`` with the ego (x, y, yaw, speed) and other vehicles."""
    return WorldSnapshot(
        frame=frame,
        time_s=frame * DT_S,
        ego=actors([ego], start_id=0),
        vehicles=actors(others),
        ego_accel_mps2=0.0,
        ego_yaw_rate_radps=0.0,
        ego_steer_rad=0.0,
        control=(0.0, 0.0, 0.0),
        ego_rear_axle_xy_m=(ego[0], ego[1]),
    )


def straight_route(length_m=100.0):
    xs = np.arange(0.0, length_m + 0.5, 1.0)
    return np.stack([xs, np.zeros_like(xs)], axis=1)


def two_way_road(length_m=200.0):
    """Lane 1 along +x centred at y=0 and lane -1 along -x centred at y=4, both 4 m wide."""
    xs = np.array([-20.0, length_m])
    forward = LaneGeometry(np.stack([xs, [0.0, 0.0]], 1), 4.0, road_id=1, lane_id=1)
    backward = LaneGeometry(np.stack([xs[::-1], [4.0, 4.0]], 1), 4.0, road_id=1, lane_id=-1)
    return PolylineLanes([forward, backward])


def drive(scorer, path_xy, speed_mps=10.0, others_fn=lambda frame: (), start_frame=1):
    """Feed the scorer one tick per path point; returns the last frame number."""
    frame = start_frame
    for x, y in path_xy:
        scorer.update(scene(frame, (x, y, 0.0, speed_mps), others_fn(frame)))
        frame += 1
        if scorer.done:
            break
    return frame


def test_boxes_overlap_rotated_and_separated_boxes_expected():
    a = oriented_box_corners(0.0, 0.0, 0.0, 4.0, 2.0)
    b = oriented_box_corners([3.9, 4.1, 0.0, 2.0], [0.0, 0.0, 1.9, 2.6], [0.0, 0.0, 0.0, math.pi / 4], 4.0, 2.0)
    # 3.9 m apart along x overlaps (half lengths 2+2), 4.1 does not; 1.9 lateral overlaps; the 45 deg box
    # centred 2.6 m aside reaches down to 2.6 - (2 + 1) / sqrt(2) = 0.48 m < 1 m: overlaps.
    assert boxes_overlap(a, b).tolist() == [True, False, True, True]
    assert boxes_overlap(a, oriented_box_corners(0.0, 3.2, math.pi / 4, 4.0, 2.0)[None]).tolist() == [False]


def test_route_completion_full_drive_reaches_100_and_half_drive_50():
    route = straight_route(100.0)
    full = RouteScorer(route)
    drive(full, [(x, 0.0) for x in np.arange(0.0, 101.0, 0.5)])
    assert full.target_reached and full.completion_pct == 100.0 and full.done
    half = RouteScorer(route)
    drive(half, [(x, 0.0) for x in np.arange(0.0, 50.6, 0.5)])
    assert not half.done
    assert half.completion_pct == pytest.approx(50.0, abs=1.0)


def test_collision_vehicle_counted_once_per_contact_until_separation():
    scorer = RouteScorer(straight_route(200.0), config=ScoringConfig(collision_id_time_s=1.0))

    def other(frame):  # a car at x=20 for frames < 100, then at x=60
        return [(20.0 if frame < 100 else 60.0, 0.0, 0.0, 0.0)]

    # The ego creeps through the first car (many ticks of overlap), then meets the second position later.
    path = [(x, 0.0) for x in np.arange(10.0, 80.0, 0.25)]
    drive(scorer, path, speed_mps=5.0, others_fn=other)
    collisions = [e for e in scorer.events if e.event_type == EventType.COLLISION_VEHICLE]
    assert len(collisions) == 2
    assert collisions[0].other_id == 1 and "type=vehicle" in collisions[0].message
    assert "y=-0.0" in collisions[0].message or "y=0.0" in collisions[0].message


def test_collision_standing_ego_not_counted_parked_is_static():
    standing = RouteScorer(straight_route())
    for frame in range(1, 20):
        standing.update(scene(frame, (10.0, 0.0, 0.0, 0.0), [(12.0, 0.0, 0.0, 3.0)]))
    assert not standing.events
    parked = RouteScorer(straight_route())
    drive(parked, [(x, 0.0) for x in np.arange(10.0, 30.0, 0.5)], others_fn=lambda f: [(25.0, 0.5, 0.0, 0.0, True)])
    assert [e.event_type for e in parked.events] == [EventType.COLLISION_STATIC]


def test_layout_collision_box_corner_beyond_margin_one_event():
    lanes = PolylineLanes([LaneGeometry(np.array([[-10.0, 0.0], [200.0, 0.0]]), 4.0)])
    scorer = RouteScorer(straight_route(), lanes=lanes, config=ScoringConfig(layout_margin_m=1.0))
    # The box's left edge is at y + 1.05; the lane edge at 2.0: y = 2.5 puts the corners 1.55 m out.
    path = [(x, 0.0 if x < 20 or x > 40 else 2.5) for x in np.arange(0.0, 60.0, 0.5)]
    drive(scorer, path)
    layout = [e for e in scorer.events if e.event_type == EventType.COLLISION_STATIC]
    assert len(layout) == 1 and "type=static.layout and id=0" in layout[0].message
    inside = RouteScorer(straight_route(), lanes=lanes)
    drive(inside, [(x, 0.5) for x in np.arange(0.0, 60.0, 0.5)])  # 1.55 m edge, 0.45 m inside the lane
    assert not inside.events


def test_outside_route_lanes_share_of_route_and_penalty():
    lanes = PolylineLanes([LaneGeometry(np.array([[-10.0, 0.0], [200.0, 0.0]]), 4.0)])
    scorer = RouteScorer(straight_route(100.0), lanes=lanes, config=ScoringConfig(layout_margin_m=50.0))
    # 3 m off the centre of a 4 m lane is beyond 2 + 0.5 m: outside between x = 40 and x = 65.
    path = [(x, 3.0 if 40.0 <= x < 65.0 else 0.0) for x in np.arange(0.0, 101.0, 0.5)]
    drive(scorer, path)
    outside = [e for e in scorer.events if e.event_type == EventType.OUTSIDE_ROUTE_LANES_INFRACTION]
    assert len(outside) == 1
    assert outside[0].percentage == pytest.approx(25.0, abs=2.0)
    assert outside[0].message.split(" ")[8] == str(round(outside[0].distance_m, 3))
    assert scorer.scores().score_penalty == pytest.approx(1.0 - outside[0].percentage / 100.0, abs=1e-6)


def test_outside_route_lanes_opposite_lane_counts_as_wrong_direction():
    scorer = RouteScorer(straight_route(100.0), lanes=two_way_road(), config=ScoringConfig(layout_margin_m=50.0))
    # Overtake in the opposite lane (y = 4) between x = 30 and x = 50: 20 of 100 m.
    path = [(x, 4.0 if 30.0 <= x < 50.0 else 0.0) for x in np.arange(0.0, 101.0, 0.5)]
    drive(scorer, path)
    outside = [e for e in scorer.events if e.event_type == EventType.OUTSIDE_ROUTE_LANES_INFRACTION]
    assert len(outside) == 1 and outside[0].percentage == pytest.approx(20.0, abs=2.0)


def test_route_deviation_beyond_30m_ends_route_with_reason():
    scorer = RouteScorer(straight_route(100.0))
    drive(scorer, [(x, 0.0 if x < 10 else 35.0) for x in np.arange(0.0, 20.0, 0.5)])
    assert scorer.route_deviated and scorer.done
    assert scorer.failure_message == "Agent deviated from the route"
    assert scorer.events[-1].event_type == EventType.ROUTE_DEVIATION


def test_blocked_standing_longer_than_threshold_ends_route():
    scorer = RouteScorer(straight_route(), config=ScoringConfig(blocked_max_time_s=2.0))
    for frame in range(1, 30):  # 1.45 s standing
        scorer.update(scene(frame, (0.0, 0.0, 0.0, 0.05)))
    assert not scorer.blocked
    for frame in range(30, 60):
        scorer.update(scene(frame, (0.0, 0.0, 0.0, 0.05)))
    assert scorer.blocked and scorer.failure_message == "Agent got blocked"


def test_route_timeout_budget_grows_with_progress():
    cfg = ScoringConfig(timeout_min_s=1.0, default_speed_limit_mps=10.0)
    scorer = RouteScorer(straight_route(100.0), config=cfg)
    # 10 m of progress adds 10 / (0.1 * 10) = 10 s to the 1 s budget.
    drive(scorer, [(x, 0.0) for x in np.linspace(0.0, 10.2, 10)])
    assert scorer.timeout_budget_s == pytest.approx(11.0, abs=0.2)
    frame = 20
    while not scorer.done and frame < 1000:
        scorer.update(scene(frame, (10.2, 0.0, 0.0, 1.0)))
        frame += 1
    assert scorer.timed_out and scorer.failure_message == "Agent timed out"
    assert frame * DT_S == pytest.approx(scorer.timeout_budget_s, abs=0.2)


def test_compute_scores_leaderboard_multiplicative_penalties():
    def ev(kind, pct=None):
        return TrafficEvent(kind, 0, 0.0, "", percentage=pct)

    events = [
        ev(EventType.COLLISION_VEHICLE),
        ev(EventType.COLLISION_STATIC),
        ev(EventType.COLLISION_PEDESTRIAN),
        ev(EventType.OUTSIDE_ROUTE_LANES_INFRACTION, 10.0),
        ev(EventType.ROUTE_DEVIATION),  # ends the route, costs no penalty itself
    ]
    scores = compute_scores(80.0, events)
    assert scores.score_penalty == pytest.approx(0.6 * 0.65 * 0.5 * 0.9)
    assert scores.score_composed == pytest.approx(80.0 * 0.6 * 0.65 * 0.5 * 0.9, abs=1e-6)
    assert compute_scores(100.0, [ev(EventType.MIN_SPEED_INFRACTION, 50.0)]).score_penalty == pytest.approx(0.85)
    assert compute_scores(100.0, []).score_composed == 100.0


def test_carla_map_lanes_town01_inside_lane_zero_beyond_kerb_positive():
    from autovla_agent.sim.world.lane_query import CarlaMapLanes
    from autovla_agent.sim.world.town import Town

    town = Town.load("Town01")
    lanes = CarlaMapLanes(town.map)
    lane = next(ln for ln in town.lanes if not ln.is_junction and ln.length_m > 30.0)
    k = len(lane.xy_m) // 2
    centre, yaw = lane.xy_m[k], float(lane.yaw_rad[k])
    right = np.array([math.sin(yaw), -math.cos(yaw)])
    sample = lanes.nearest_driving_lane(*centre)
    assert sample.distance_m < 0.05 and abs((sample.yaw_rad - yaw + math.pi) % (2 * math.pi) - math.pi) < 0.05
    # A box centred in the lane has all corners on the road; 3 m beyond the lane edge is off the drivable surface.
    corners = oriented_box_corners(centre[0], centre[1], yaw, 4.9, 2.1)
    assert lanes.outside_drivable_m(corners).max() == 0.0
    edge_m = float(lane.width_m[k]) / 2.0
    beyond = lanes.outside_drivable_m((centre + (edge_m + 3.0) * right)[None])
    assert 1.0 < beyond[0] <= 3.0  # a shoulder may take the first few decimetres


def test_min_speed_checkpoints_penalise_slow_ego_when_enabled():
    cfg = ScoringConfig(use_min_speed=True, min_speed_checkpoints=2)
    scorer = RouteScorer(straight_route(100.0), config=cfg)
    # The ego at 5 m/s among traffic at 10 m/s: 50 % at each checkpoint.
    drive(
        scorer,
        [(x, 0.0) for x in np.arange(0.0, 101.0, 0.25)],
        speed_mps=5.0,
        others_fn=lambda f: [(500.0, 50.0, 0.0, 10.0)],
    )
    scorer.finish()
    slow = [e for e in scorer.events if e.event_type == EventType.MIN_SPEED_INFRACTION]
    assert [e.percentage for e in slow] == [50.0, 50.0]
    assert scorer.scores().score_penalty == pytest.approx(0.85**2)
    off = RouteScorer(straight_route(100.0))
    drive(
        off,
        [(x, 0.0) for x in np.arange(0.0, 101.0, 0.25)],
        speed_mps=5.0,
        others_fn=lambda f: [(500.0, 50.0, 0.0, 10.0)],
    )
    assert not off.events
