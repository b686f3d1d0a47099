"""Stand-in for leaderboard_evaluator.py in the multi-server tests: the same flags, resume and crash behaviour.

It connects to the server at --host/--port (exit 1 without writing when nobody answers, as the real one fails
while connecting), then "runs" the routes of --routes (x --repetitions) in the leaderboard's order, writing after
each one a leaderboard-format checkpoint whose records depend only on the route id and repetition (built by
leaderboard_reference, the leaderboard's own statistics). --resume follows RouteIndexer.validate_and_resume (a
"Crashed" checkpoint repeats its last route). Faults, counted per route across runs in --fake-state:
--fake-crash NAME[:TIMES] records "Simulation crashed", crashes the server and exits -1 (as the leaderboard);
--fake-die NAME[:TIMES] exits mid-route without writing (a killed evaluator).
"""

import argparse
import json
import os
import socket
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import leaderboard_reference as lb  # noqa: E402

SENSORS = ["carla_camera", "carla_gnss", "carla_imu", "carla_speedometer"]


def fake_record(route_id, rep, index):
    """A deterministic leaderboard record of route ``route_id`` repetition ``rep``."""
    k = int(route_id)
    name = f"RouteScenario_{route_id}_rep{rep}"
    completion = 100.0 if k % 3 != 1 else 40.0 + 5.5 * k + rep
    events = []
    if k % 2 == 1:
        events.append(
            (
                "COLLISION_VEHICLE",
                f"Agent collided against object with type=vehicle.tesla.model3 and "
                f"id={100 + k} at (x=1.0, y=2.0, z=0.0)",
                None,
            )
        )
    if k % 4 == 2:
        events.append(
            (
                "OUTSIDE_ROUTE_LANES_INFRACTION",
                f"Agent went outside its route lanes for about "
                f"{12.5 * k + rep:.3f} meters ({5.0 + k:.2f}% of the completed route)",
                5.0 + k,
            )
        )
    if k % 5 == 3:
        events.append(("TRAFFIC_LIGHT_INFRACTION", "Agent ran a red light 271 at (x=3.0, y=4.0, z=0.0)", None))
    if k % 6 == 4:
        events.append(("MIN_SPEED_INFRACTION", "Average speed is 61.5% of the surrounding traffic's one", 61.5))
    return lb.route_record(
        name,
        index,
        completion,
        events,
        length_m=150.0 + 37.25 * k + 3 * rep,
        game_s=60.0 + k + rep * 0.5,
        system_s=20.0 + k * 0.25,
        timeout=k % 7 == 5,
    )


def counted(kind, fault, name, state):
    """True while route ``name`` has had fewer than TIMES of this fault (counted in files under ``state``)."""
    for item in fault:
        route, _, times = item.partition(":")
        if route != name:
            continue
        marker = Path(state) / f"{name}.{kind}.count"
        count = int(marker.read_text()) if marker.is_file() else 0
        if count < int(times or 1):
            marker.write_text(str(count + 1))
            return True
    return False


def save(path, data):
    with open(path, "w") as fd:
        json.dump(data, fd, indent=4)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=2000)
    p.add_argument("--traffic-manager-port", type=int, default=8000)
    p.add_argument("--routes", required=True)
    p.add_argument("--routes-subset", default="")
    p.add_argument("--repetitions", type=int, default=1)
    p.add_argument("--agent", required=True)
    p.add_argument("--agent-config", default="")
    p.add_argument("--track", default="SENSORS")
    p.add_argument("--resume", type=bool, default=False)
    p.add_argument("--checkpoint", default="./simulation_results.json")
    p.add_argument("--debug-checkpoint", default="./live_results.txt")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--fake-state", default=".")
    p.add_argument("--fake-crash", action="append", default=[])
    p.add_argument("--fake-die", action="append", default=[])
    args, _ = p.parse_known_args()
    try:
        socket.create_connection((args.host, args.port), timeout=2.0).close()
    except OSError as exc:
        print(f"cannot connect to the server: {exc}", flush=True)
        sys.exit(1)
    ids = [el.get("id") for el in ET.parse(args.routes).getroot().iter("route")]
    plan = [(rid, rep) for rid in ids for rep in range(args.repetitions)]
    total = len(plan)
    records, index = [], 0
    data = {}
    if args.resume and os.path.exists(args.checkpoint):
        data = json.loads(Path(args.checkpoint).read_text())
        progress = data["_checkpoint"]["progress"]
        if data.get("entry_status") not in (None, "Invalid") and progress[1] == total:
            records = data["_checkpoint"]["records"]
            index = max(0, progress[0] - 1) if data["entry_status"] == "Crashed" else progress[0]
    sensors = []
    save(args.checkpoint, lb.results_json(records, total, sensors, [index, total], final=False))
    for i in range(index, total):
        rid, rep = plan[i]
        name = f"RouteScenario_{rid}_rep{rep}"
        print(f"========= Preparing {name}", flush=True)
        if counted("die", args.fake_die, name, args.fake_state):
            os._exit(9)
        crash = counted("crash", args.fake_crash, name, args.fake_state)
        record = lb.crashed_record(name, i) if crash else fake_record(rid, rep, i)
        sensors = SENSORS
        if i < len(records):
            records[i] = record
        else:
            records.append(record)
        entry = "Crashed" if crash else "Started"
        save(args.checkpoint, lb.results_json(records, total, sensors, [i + 1, total], final=False, entry_status=entry))
        if crash:
            with socket.create_connection((args.host, args.port), timeout=2.0) as conn:
                conn.sendall(b"crash")
            sys.exit(-1)
    save(args.checkpoint, lb.results_json(records, total, sensors, [total, total]))
    sys.exit(0)


if __name__ == "__main__":
    main()
