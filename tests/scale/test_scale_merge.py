"""Merging shard checkpoints reproduces the leaderboard's results of one run over all routes."""

import json

import leaderboard_reference as lb
import pytest
from fake_leaderboard_evaluator import SENSORS, fake_record

from autovla_agent.scale.checkpoint import OrderedResults
from autovla_agent.scale.merge import MergeError, main, merge_checkpoints, run_route_ids
from autovla_agent.sim.scoring.results import compute_global

IDS = [str(i) for i in range(8)]
REPS = 2


def serial_records():
    plan = [(rid, rep) for rid in IDS for rep in range(REPS)]
    return [fake_record(rid, rep, i) for i, (rid, rep) in enumerate(plan)]


def write_shards(tmp_path, shards=3, drop=None):
    """Shard files as the leaderboard writes them, round-robin over the route ids (local indices)."""
    paths = []
    for k in range(shards):
        ids = IDS[k::shards]
        plan = [(rid, rep) for rid in ids for rep in range(REPS)]
        records = [fake_record(rid, rep, i) for i, (rid, rep) in enumerate(plan)]
        if drop is not None and k == drop:
            records = records[:1]
            data = lb.results_json(records, len(plan), SENSORS, final=False, entry_status="Crashed")
        else:
            data = lb.results_json(records, len(plan), SENSORS)
        path = tmp_path / f"shard-{k}.json"
        path.write_text(json.dumps(data, indent=4))
        paths.append(path)
    return paths


def roundtrip(data):
    return json.loads(json.dumps(data))


def test_merge_of_three_shards_equals_the_leaderboards_single_run(tmp_path):
    expected = roundtrip(lb.results_json(serial_records(), len(IDS) * REPS, SENSORS))
    assert expected["values"] and expected["_checkpoint"]["global_record"]["meta"]["exceptions"]
    names = run_route_ids(IDS, REPS)
    merged = merge_checkpoints(write_shards(tmp_path), names, tmp_path / "merged.json")
    assert json.loads((tmp_path / "merged.json").read_text()) == roundtrip(merged)
    merged = roundtrip(merged)
    assert merged["_checkpoint"]["records"] == expected["_checkpoint"]["records"]
    assert merged["_checkpoint"]["global_record"] == expected["_checkpoint"]["global_record"]
    for key in ("values", "labels", "entry_status", "eligible", "sensors"):
        assert merged[key] == expected[key], key
    assert merged["_checkpoint"]["progress"] == [16, 16]
    # The infractions per km use the route lengths: a non-trivial figure, equal to the leaderboard's.
    assert float(merged["values"][4]) > 0.0 and merged["values"][8] != "0.0"


def test_global_record_code_is_the_serial_runners(tmp_path):
    records = roundtrip(serial_records())
    ours, values, entry = compute_global(records, len(records))
    ref, ref_values, _, ref_entry = lb.global_statistics(records, len(records))
    assert roundtrip(ours) == roundtrip(ref) and values == ref_values and entry == ref_entry


def test_partial_merge_has_no_global_record_and_keeps_the_crash(tmp_path):
    names = run_route_ids(IDS, REPS)
    merged = merge_checkpoints(write_shards(tmp_path, drop=1), names, tmp_path / "merged.json")
    records = merged["_checkpoint"]["records"]
    assert not merged["values"] and not merged["_checkpoint"]["global_record"]
    assert merged["entry_status"] == "Crashed" and merged["eligible"] is False
    # Shard 1 (routes 1, 4, 7) stopped after its first record: routes 1 rep1, 4, 7 are missing.
    missing = [r["route_id"] for r in records if r["status"] == "Started"]
    assert missing == ["RouteScenario_1_rep1", "RouteScenario_4_rep0", "RouteScenario_4_rep1"]
    assert len(records) == 14 and merged["_checkpoint"]["progress"] == [3, 16]
    # Resuming the merged file skips every finished route, not only the first ones.
    results = OrderedResults(tmp_path / "merged.json", names)
    assert results.resume() == 11
    assert results.pending() == [3, 8, 9, 14, 15]


def test_merge_rejects_shards_of_different_sensors_or_a_route_twice(tmp_path):
    names = run_route_ids(IDS, REPS)
    paths = write_shards(tmp_path)
    data = json.loads(paths[0].read_text())
    data["sensors"] = ["carla_camera"]
    paths[0].write_text(json.dumps(data))
    with pytest.raises(MergeError, match="sensors"):
        merge_checkpoints(paths, names, tmp_path / "merged.json")
    paths = write_shards(tmp_path)
    with pytest.raises(MergeError, match="more than one record"):
        merge_checkpoints([*paths, paths[0]], names, tmp_path / "merged.json")
    with pytest.raises(MergeError, match="unique"):
        run_route_ids(["1", "1"])


def test_merge_command_line(tmp_path):
    routes = tmp_path / "routes.xml"
    body = "".join(
        f'<route id="{i}" town="Town01"><waypoints><position x="0" y="0" z="0"/><position x="1" y="0" z="0"/>'
        "</waypoints></route>"
        for i in IDS
    )
    routes.write_text(f"<routes>{body}</routes>")
    paths = [str(p) for p in write_shards(tmp_path)]
    out = tmp_path / "merged.json"
    assert main([*paths, "--routes", str(routes), "--repetitions", str(REPS), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["entry_status"] == "Finished"
    assert main([paths[0], "--routes", str(routes), "--repetitions", str(REPS), "--out", str(out)]) == 1
