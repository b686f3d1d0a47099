"""Merge leaderboard checkpoints of route-file shards into one results JSON, with the global record recomputed.

Each shard's file is a leaderboard checkpoint (``leaderboard_evaluator.py``, Bench2Drive, or ``autovla-evaluate``)
for some of the routes of one run. Its records are placed at their index in the whole run by their route id
(``RouteScenario_<id>_rep<r>``, unique in a route file), in the order of the original route file, as a serial
run numbers them. As the leaderboard's ``merge_statistics.py``: two shards with different sensors, or one route
recorded twice, are errors; the global record is computed only when every route has a record. The global record,
``values``, ``labels``, ``entry_status`` and ``eligible`` come from ``ResultsFile.finalize`` (``compute_global``),
the same code as a serial run's, so a merged file equals the file of one run over all routes.

``python -m autovla_agent.scale.merge --routes R.xml [--repetitions N] --out merged.json shard0.json shard1.json``
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autovla_agent.scale.checkpoint import OrderedResults
from autovla_agent.sim.scoring.results import ResultsFile, route_name

logger = logging.getLogger(__name__)

__all__ = ["MergeError", "merge_checkpoints", "run_route_ids"]


class MergeError(ValueError):
    """Shard checkpoints that do not make one run (different sensors, a route twice, a route of another run)."""


def run_route_ids(route_ids: Sequence[str], repetitions: int = 1) -> list[str]:
    """Record ids of a run in the leaderboard's order: each route ``repetitions`` times, route by route."""
    names = [route_name(rid, rep) for rid in route_ids for rep in range(max(1, int(repetitions)))]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MergeError(f"route ids must be unique to merge shards; repeated: {duplicates}")
    return names


def merge_checkpoints(paths: Sequence[str | Path], route_ids: Sequence[str], out: str | Path) -> dict[str, Any]:
    """Merge the shard files ``paths`` of the run whose records are ``route_ids`` into ``out``; return its JSON.

    A missing or empty shard file contributes nothing (its routes stay missing). Placeholder records (status
    ``Started``) are skipped.
    """
    results = OrderedResults(out, route_ids)
    results.start()
    position = {name: i for i, name in enumerate(route_ids)}
    sensors: list[str] | None = None
    statuses: list[str] = []
    for path in paths:
        data = ResultsFile.read(path)
        if not data:
            continue
        statuses.append(str(data.get("entry_status", "")))
        shard_sensors = list(data.get("sensors") or [])
        if shard_sensors:
            if sensors is None:
                sensors = shard_sensors
            elif shard_sensors != sensors:
                raise MergeError(f"{path}: sensors {shard_sensors} differ from another shard's {sensors}")
        for record in (data.get("_checkpoint") or {}).get("records") or []:
            if not isinstance(record, dict) or record.get("status", "Started") == "Started":
                continue
            name = record.get("route_id")
            if name not in position:
                raise MergeError(f"{path}: record {name!r} is not a route of this run")
            index = position[name]
            if index in results.done:
                raise MergeError(f"{path}: route {name} has more than one record")
            results.done[index] = {**record, "index": index}
    if sensors is not None:
        results.set_sensors(sensors)
    if results.pending():
        # A partial merge, as the leaderboard's partial checkpoints: records and progress, no global record.
        if "Rejected" in statuses:
            results.file.entry_status = "Rejected"
        elif "Crashed" in statuses:
            results.file.entry_status = "Crashed"
        results.save()
    else:
        # The leaderboard's merge validates with sensors_initialized=True: a complete run must list its sensors.
        results.sensors_validated = True
        results.finalize()
    return results.file.to_json()


def main(argv: Sequence[str] | None = None) -> int:
    """Merge shard checkpoints by hand (see the module docstring); 0 when complete, 1 when routes are missing."""
    from autovla_agent.sim.world.route_files import load_routes

    parser = argparse.ArgumentParser(prog="python -m autovla_agent.scale.merge", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="shard results JSON files")
    parser.add_argument("--routes", required=True, help="the route file the shards were cut from")
    parser.add_argument("--routes-subset", default="", help="route ids of the run, e.g. '0-3,7'")
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--out", required=True, help="merged results JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        names = run_route_ids([r.route_id for r in load_routes(args.routes, args.routes_subset)], args.repetitions)
        merged = merge_checkpoints(args.checkpoints, names, args.out)
    except (MergeError, ValueError, OSError) as exc:
        logger.error("%s", exc)
        return 2
    total = merged["_checkpoint"]["progress"][1]
    missing = total - sum(1 for r in merged["_checkpoint"]["records"] if r["status"] != "Started")
    logger.info("merged %s: %d of %d routes, entry status %s", args.out, total - missing, total, merged["entry_status"])
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
