"""Results JSON in the leaderboard's layout: route records, global averages, atomic writes and resume."""

import json

import pytest

from autovla_agent.sim.scoring.infractions import EventType, TrafficEvent
from autovla_agent.sim.scoring.results import ResultsFile, RouteOutcome, compute_global, make_route_record, route_name

INFRACTION_KEYS = {
    "collisions_layout",
    "collisions_pedestrian",
    "collisions_vehicle",
    "red_light",
    "stop_infraction",
    "outside_route_lanes",
    "min_speed_infractions",
    "yield_emergency_vehicle_infractions",
    "scenario_timeouts",
    "route_dev",
    "vehicle_blocked",
    "route_timeout",
}


def outcome(completion, events=(), timed_out=False, length_m=1000.0):
    return RouteOutcome(completion, tuple(events), timed_out, length_m, 60.0, 12.0)


def event(kind, message="m", pct=None):
    return TrafficEvent(kind, 1, 0.05, message, percentage=pct)


def test_route_record_layout_and_statuses_match_leaderboard():
    perfect = make_route_record(route_name(3), 0, outcome(100.0))
    assert list(perfect) == ["index", "route_id", "status", "num_infractions", "infractions", "scores", "meta"]
    assert perfect["route_id"] == "RouteScenario_3_rep0" and perfect["status"] == "Perfect"
    assert set(perfect["infractions"]) == INFRACTION_KEYS
    assert perfect["scores"] == {"score_route": 100.0, "score_penalty": 1.0, "score_composed": 100.0}
    assert perfect["meta"] == {"route_length": 1000.0, "duration_game": 60.0, "duration_system": 12.0}

    hit = make_route_record("r", 1, outcome(100.0, [event(EventType.COLLISION_VEHICLE, "Agent collided ...")]))
    assert hit["status"] == "Completed" and hit["infractions"]["collisions_vehicle"] == ["Agent collided ..."]
    assert hit["num_infractions"] == 1 and hit["scores"]["score_composed"] == pytest.approx(60.0)

    crashed = make_route_record("r", 2, outcome(40.0), failure_message="Agent crashed")
    assert crashed["status"] == "Failed - Agent crashed" and crashed["scores"]["score_route"] == 40.0
    blocked = make_route_record("r", 3, outcome(40.0, [event(EventType.VEHICLE_BLOCKED)], timed_out=True))
    assert blocked["status"] == "Failed - Agent got blocked"  # blocked overrides the timeout, as the leaderboard
    assert blocked["infractions"]["route_timeout"] == ["Route timeout."]
    never = make_route_record("r", 4, None, failure_message="Agent couldn't be set up", route_length_m=321.0)
    assert never["status"] == "Failed - Agent couldn't be set up" and never["scores"]["score_composed"] == 0.0


def test_global_record_means_over_all_routes_and_per_km():
    outside = "Agent went outside its route lanes for about 50.0 meters (5.0% of the completed route)"
    records = [
        make_route_record("RouteScenario_0_rep0", 0, outcome(100.0, [event(EventType.COLLISION_VEHICLE)])),
        make_route_record(
            "RouteScenario_1_rep0",
            1,
            outcome(50.0, [event(EventType.OUTSIDE_ROUTE_LANES_INFRACTION, outside, 5.0)]),
            failure_message="Agent crashed",
        ),
    ]
    glob, values, entry_status = compute_global(records, total_routes=4)  # two routes never ran
    assert glob["scores_mean"]["score_route"] == pytest.approx((100 + 50) / 4)
    assert glob["scores_mean"]["score_composed"] == pytest.approx((60 + 47.5) / 4)
    # 1.5 km driven (1 km + half of 1 km): 1 vehicle collision -> 0.667 per km; outside lanes stays in km.
    assert glob["infractions"]["collisions_vehicle"] == pytest.approx(0.667)
    assert glob["infractions"]["outside_route_lanes"] == pytest.approx(0.05)
    assert glob["status"] == "Failed"
    assert glob["meta"]["exceptions"] == [["RouteScenario_1_rep0", 1, records[1]["status"]]]
    assert len(values) == 15 and values[0] == str(glob["scores_mean"]["score_composed"])
    assert entry_status == "Finished"


def test_results_file_written_atomically_with_full_layout(tmp_path):
    path = tmp_path / "out" / "results.json"
    results = ResultsFile(path)
    results.start(total_routes=1)
    results.set_sensors([{"type": "sensor.camera.rgb", "id": "rgb_front"}, {"type": "sensor.speedometer", "id": "s"}])
    results.add_record(make_route_record(route_name(0), 0, outcome(100.0)))
    results.finalize(sensors_initialized=True, crashed=False)
    results.save()
    data = json.loads(path.read_text())
    assert set(data) == {"_checkpoint", "entry_status", "eligible", "sensors", "values", "labels"}
    assert set(data["_checkpoint"]) == {"global_record", "progress", "records"}
    assert data["_checkpoint"]["progress"] == [1, 1]
    assert data["entry_status"] == "Finished" and data["eligible"] is True
    assert data["sensors"] == ["carla_camera", "carla_speedometer"]
    assert data["labels"][0] == "Avg. driving score" and data["values"][0] == "100.0"
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary file left behind


def test_results_resume_skips_finished_routes_and_rejects_other_route_sets(tmp_path):
    path = tmp_path / "results.json"
    first = ResultsFile(path)
    first.start(total_routes=3)
    for i in range(2):
        first.add_record(make_route_record(route_name(i), i, outcome(100.0)))
        first.save()  # after each route, as the runner does
    ids = [route_name(i) for i in range(3)]
    resumed = ResultsFile(path)
    assert resumed.resume_from(ids) == 2
    assert [r["route_id"] for r in resumed.records] == ids[:2]
    resumed.add_record(make_route_record(ids[2], 2, outcome(10.0)))
    resumed.finalize(sensors_initialized=False, crashed=False)
    resumed.save()
    data = json.loads(path.read_text())
    assert [r["route_id"] for r in data["_checkpoint"]["records"]] == ids
    assert data["_checkpoint"]["progress"] == [3, 3]
    assert ResultsFile(path).resume_from([route_name(i) for i in (5, 6, 7)]) == 0  # other routes: start over
    assert ResultsFile(path).resume_from(ids[:2]) == 0  # other number of routes
    (tmp_path / "bad.json").write_text("{not json")
    assert ResultsFile(tmp_path / "bad.json").resume_from(ids) == 0
