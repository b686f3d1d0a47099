"""The CARLA Leaderboard 2.0 statistics, re-typed from its statistics_manager.py on plain dicts (test reference).

Independent of autovla_agent on purpose: the stand-in evaluator writes shard checkpoints with it, and the merge
tests check our global record against it. Route records are built as ``compute_route_statistics`` builds them
from (event type, message, percentage) triples; the global record, values, labels and entry status as
``compute_global_statistics`` computes them.
"""

import math

PENALTY_VALUE = {
    "COLLISION_PEDESTRIAN": 0.5,
    "COLLISION_VEHICLE": 0.6,
    "COLLISION_STATIC": 0.65,
    "TRAFFIC_LIGHT_INFRACTION": 0.7,
    "STOP_INFRACTION": 0.8,
    "SCENARIO_TIMEOUT": 0.7,
    "YIELD_TO_EMERGENCY_VEHICLE": 0.7,
}
PENALTY_PERC = {"OUTSIDE_ROUTE_LANES_INFRACTION": (0, "increases"), "MIN_SPEED_INFRACTION": (0.7, "decreases")}
PENALTY_NAME = {
    "COLLISION_STATIC": "collisions_layout",
    "COLLISION_PEDESTRIAN": "collisions_pedestrian",
    "COLLISION_VEHICLE": "collisions_vehicle",
    "TRAFFIC_LIGHT_INFRACTION": "red_light",
    "STOP_INFRACTION": "stop_infraction",
    "OUTSIDE_ROUTE_LANES_INFRACTION": "outside_route_lanes",
    "MIN_SPEED_INFRACTION": "min_speed_infractions",
    "YIELD_TO_EMERGENCY_VEHICLE": "yield_emergency_vehicle_infractions",
    "SCENARIO_TIMEOUT": "scenario_timeouts",
    "ROUTE_DEVIATION": "route_dev",
    "VEHICLE_BLOCKED": "vehicle_blocked",
}
LABELS = [
    "Avg. driving score",
    "Avg. route completion",
    "Avg. infraction penalty",
    "Collisions with pedestrians",
    "Collisions with vehicles",
    "Collisions with layout",
    "Red lights infractions",
    "Stop sign infractions",
    "Off-road infractions",
    "Route deviations",
    "Route timeouts",
    "Agent blocked",
    "Yield emergency vehicles infractions",
    "Scenario timeouts",
    "Min speed infractions",
]
VALUE_KEYS = [
    "collisions_pedestrian",
    "collisions_vehicle",
    "collisions_layout",
    "red_light",
    "stop_infraction",
    "outside_route_lanes",
    "route_dev",
    "route_timeout",
    "vehicle_blocked",
    "yield_emergency_vehicle_infractions",
    "scenario_timeouts",
    "min_speed_infractions",
]


def empty_infractions():
    infractions = {name: [] for name in PENALTY_NAME.values()}
    infractions["route_timeout"] = []
    return infractions


def route_record(
    route_id, index, completion, events=(), length_m=0.0, game_s=0.0, system_s=0.0, timeout=False, failure_message=""
):
    """A record as compute_route_statistics writes it; ``events``: (type, message, percentage or None)."""
    infractions = empty_infractions()
    penalty = 1.0
    if timeout:
        infractions["route_timeout"].append("Route timeout.")
        failure_message = "Agent timed out"
    for kind, message, percentage in events:
        if kind in PENALTY_VALUE:
            penalty *= PENALTY_VALUE[kind]
        elif kind in PENALTY_PERC:
            value, how = PENALTY_PERC[kind]
            if how == "decreases":
                penalty *= 1 - (1 - value) * (1 - percentage / 100)
            else:
                penalty *= 1 - (1 - value) * percentage / 100
        elif kind == "ROUTE_DEVIATION":
            failure_message = "Agent deviated from the route"
        elif kind == "VEHICLE_BLOCKED":
            failure_message = "Agent got blocked"
        infractions[PENALTY_NAME[kind]].append(message)
    num = sum(len(v) for v in infractions.values())
    if completion >= 100:
        status = "Completed" if num > 0 else "Perfect"
    else:
        status = "Failed" + (" - " + failure_message if failure_message else "")
    return {
        "index": index,
        "route_id": route_id,
        "status": status,
        "num_infractions": num,
        "infractions": infractions,
        "scores": {
            "score_route": round(completion, 6),
            "score_penalty": round(penalty, 6),
            "score_composed": round(max(completion * penalty, 0.0), 6),
        },
        "meta": {
            "route_length": round(length_m, 3),
            "duration_game": round(game_s, 3),
            "duration_system": round(system_s, 3),
        },
    }


def crashed_record(route_id, index):
    """What the leaderboard records for a route whose simulation crashed while loading."""
    return route_record(route_id, index, 0.0, failure_message="Simulation crashed")


def global_statistics(records, total_routes):
    """(global_record, values, labels, entry_status) as compute_global_statistics computes them."""
    mean = {"score_composed": 0, "score_route": 0, "score_penalty": 0}
    std = dict(mean)
    meta = {"total_length": 0, "duration_game": 0, "duration_system": 0, "exceptions": []}
    result = "Perfect"
    for r in records:
        for key in mean:
            mean[key] += r["scores"][key] / total_routes
        meta["total_length"] += r["meta"]["route_length"]
        meta["duration_game"] += r["meta"]["duration_game"]
        meta["duration_system"] += r["meta"]["duration_system"]
        route_result = "Failed" if "Failed" in r["status"] else r["status"]
        if route_result == "Failed":
            meta["exceptions"].append([r["route_id"], r["index"], r["status"]])
            result = route_result
        elif result == "Perfect" and route_result != "Perfect":
            result = route_result
    mean = {k: round(v, 6) for k, v in mean.items()}
    if total_routes == 1:
        std = dict.fromkeys(std, 0)
    else:
        for r in records:
            for key in std:
                std[key] += math.pow(r["scores"][key] - mean[key], 2)
        std = {k: round(math.sqrt(v / float(total_routes - 1)), 3) for k, v in std.items()}
    infractions = dict.fromkeys(list(PENALTY_NAME.values()) + ["route_timeout"], 0)
    km = 0
    for r in records:
        km += r["meta"]["route_length"] / 1000 * r["scores"]["score_route"] / 100
        for key in infractions:
            if key == "outside_route_lanes":
                items = r["infractions"][key]
                infractions[key] += float(items[0].split(" ")[8]) / 1000 if items else 0.0
            else:
                infractions[key] += len(r["infractions"][key])
    km = max(km, 0.001)
    for key in infractions:
        if key != "outside_route_lanes":
            infractions[key] /= km
        infractions[key] = round(infractions[key], 3)
    record = {
        "index": -1,
        "route_id": -1,
        "status": result,
        "infractions": infractions,
        "scores_mean": mean,
        "scores_std_dev": std,
        "meta": meta,
    }
    values = [str(mean["score_composed"]), str(mean["score_route"]), str(mean["score_penalty"])]
    values += [str(infractions[k]) for k in VALUE_KEYS]
    entry = "Finished"
    for r in records:
        if "Simulation crashed" in r["status"]:
            entry = "Crashed"
        elif "Agent's sensors were invalid" in r["status"]:
            entry = "Rejected"
    return record, values, list(LABELS), entry


def results_json(records, total_routes, sensors, progress=None, final=True, entry_status="Started"):
    """A results file in the leaderboard's layout; ``final`` adds the global statistics."""
    data = {
        "_checkpoint": {"global_record": {}, "progress": progress or [len(records), total_routes], "records": records},
        "entry_status": entry_status,
        "eligible": False,
        "sensors": sensors,
        "values": [],
        "labels": [],
    }
    if final:
        record, values, labels, entry = global_statistics(records, total_routes)
        data["_checkpoint"]["global_record"] = record
        data.update(values=values, labels=labels, entry_status=entry, eligible=entry == "Finished")
    return data
