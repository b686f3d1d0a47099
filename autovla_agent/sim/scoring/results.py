"""Per-route records and global averages in the CARLA Leaderboard's results JSON layout, written atomically.

The file has the layout of the leaderboard's ``statistics_manager`` (master / 2.0), so tools that read
leaderboard results read ours::

    {"_checkpoint": {"global_record": {...}, "progress": [done, total], "records": [route records]},
     "entry_status": "Started" | "Finished" | "Rejected" | "Crashed" | "Invalid", "eligible": bool,
     "sensors": ["carla_camera", ...], "values": [15 strings], "labels": [15 strings]}

A route record: ``index``, ``route_id`` (``RouteScenario_<id>_rep<r>``), ``status`` (``Perfect``, ``Completed``,
``Failed``, ``Failed - <reason>``), ``num_infractions``, ``infractions`` (lists of messages per key),
``scores`` (``score_route``, ``score_penalty``, ``score_composed``) and ``meta`` (``route_length``,
``duration_game``, ``duration_system``). The global record averages the scores over ALL routes of the run
(missing ones count 0), gives infractions per km driven and lists failed routes under ``meta.exceptions``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autovla_agent.sim.scoring.infractions import (
    INFRACTION_KEYS,
    ROUTE_TIMEOUT_KEY,
    EventType,
    TrafficEvent,
    compute_scores,
)
from autovla_agent.sim.scoring.resume import resumable_checkpoint

logger = logging.getLogger(__name__)

__all__ = [
    "AGENT_SETUP_CRASH",
    "FAILURE_MESSAGES",
    "RouteOutcome",
    "ResultsFile",
    "compute_global",
    "make_route_record",
    "route_name",
    "sensor_icons",
]

ENTRY_STATUS_VALUES = ("Started", "Finished", "Rejected", "Crashed", "Invalid")
ELIGIBLE = {"Started": False, "Finished": True, "Rejected": False, "Crashed": False, "Invalid": False}
# Failure kind -> (entry status, route status reason), as the leaderboard's FAILURE_MESSAGES.
FAILURE_MESSAGES = {
    "Simulation": ("Crashed", "Simulation crashed"),
    "Sensors": ("Rejected", "Agent's sensors were invalid"),
    "Agent_init": ("Started", "Agent couldn't be set up"),
    "Agent_runtime": ("Started", "Agent crashed"),
}
# An agent that cannot be set up before any agent of the run was (a broken agent file or --agent-config) can drive
# no route: the run stops there, as Bench2Drive's evaluator stops on a failed setup, and the entry is marked
# crashed (not eligible) rather than finishing with every route at 0. Later setup failures use "Agent_init".
AGENT_SETUP_CRASH = ("Crashed", FAILURE_MESSAGES["Agent_init"][1])
SENSOR_ICONS = {
    "sensor.camera.rgb": "carla_camera",
    "sensor.lidar.ray_cast": "carla_lidar",
    "sensor.other.radar": "carla_radar",
    "sensor.other.gnss": "carla_gnss",
    "sensor.other.imu": "carla_imu",
    "sensor.opendrive_map": "carla_opendrive_map",
    "sensor.speedometer": "carla_speedometer",
}
INFRACTION_NAMES = (*INFRACTION_KEYS.values(), ROUTE_TIMEOUT_KEY)
LABELS = (
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
)
_VALUE_KEYS = (
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
)
ROUND_DIGITS = 3
ROUND_DIGITS_SCORE = 6


def route_name(route_id: str | int, repetition: int = 0) -> str:
    """The leaderboard's record id of a route: ``RouteScenario_<id>_rep<repetition>``."""
    return f"RouteScenario_{route_id}_rep{repetition}"


def sensor_icons(sensor_specs: Sequence[dict[str, Any]]) -> list[str]:
    """The ``sensors`` entry of the results: one icon name per declared sensor."""
    return [SENSOR_ICONS.get(str(s.get("type")), str(s.get("type"))) for s in sensor_specs]


@dataclass(frozen=True, slots=True)
class RouteOutcome:
    """What a route run produced for its record (None of it when the route never started)."""

    completion_pct: float
    events: tuple[TrafficEvent, ...]
    timed_out: bool
    route_length_m: float
    duration_game_s: float
    duration_system_s: float


def _empty_infractions() -> dict[str, list[str]]:
    return {name: [] for name in INFRACTION_NAMES}


def make_route_record(
    route_id: str, index: int, outcome: RouteOutcome | None, failure_message: str = "", route_length_m: float = 0.0
) -> dict[str, Any]:
    """One finished route's record, as ``StatisticsManager.compute_route_statistics`` builds it.

    ``failure_message`` is the reason from outside the criteria ("Agent crashed", ...); a timeout, a route
    deviation or a blocked agent replace it, in that order, as the leaderboard does.
    """
    infractions = _empty_infractions()
    completion, events, meta_len, game_s, system_s = 0.0, (), route_length_m, 0.0, 0.0
    if outcome is not None:
        completion, events = outcome.completion_pct, outcome.events
        meta_len, game_s, system_s = outcome.route_length_m, outcome.duration_game_s, outcome.duration_system_s
        if outcome.timed_out:
            infractions[ROUTE_TIMEOUT_KEY].append("Route timeout.")
            failure_message = "Agent timed out"
        for event in events:
            infractions[INFRACTION_KEYS[event.event_type]].append(event.message)
            if event.event_type == EventType.ROUTE_DEVIATION:
                failure_message = "Agent deviated from the route"
            elif event.event_type == EventType.VEHICLE_BLOCKED:
                failure_message = "Agent got blocked"
    scores = compute_scores(completion, events)
    num_infractions = sum(len(v) for v in infractions.values())
    if completion >= 100.0:
        status = "Completed" if num_infractions > 0 else "Perfect"
    else:
        status = "Failed" + (f" - {failure_message}" if failure_message else "")
    return {
        "index": int(index),
        "route_id": route_id,
        "status": status,
        "num_infractions": num_infractions,
        "infractions": infractions,
        "scores": {
            "score_route": scores.score_route,
            "score_penalty": scores.score_penalty,
            "score_composed": scores.score_composed,
        },
        "meta": {
            "route_length": round(float(meta_len), ROUND_DIGITS),
            "duration_game": round(float(game_s), ROUND_DIGITS),
            "duration_system": round(float(system_s), ROUND_DIGITS),
        },
    }


def _infraction_value(record: dict[str, Any], key: str) -> float:
    """Count of a record's infractions; for outside lanes the km driven outside (parsed from the message)."""
    items = record["infractions"].get(key, [])
    if key == "outside_route_lanes":
        return float(items[0].split(" ")[8]) / 1000.0 if items else 0.0
    return float(len(items))


def compute_global(records: Sequence[dict[str, Any]], total_routes: int) -> tuple[dict[str, Any], list[str], str]:
    """The global record, the ``values`` strings and the entry status of a run of ``total_routes`` routes."""
    total = max(int(total_routes), 1)
    score_keys = ("score_composed", "score_route", "score_penalty")
    mean = dict.fromkeys(score_keys, 0.0)
    meta: dict[str, Any] = {"total_length": 0.0, "duration_game": 0.0, "duration_system": 0.0, "exceptions": []}
    status = "Perfect"
    for r in records:
        for k in score_keys:
            mean[k] += r["scores"][k] / total
        meta["total_length"] += r["meta"]["route_length"]
        meta["duration_game"] += r["meta"]["duration_game"]
        meta["duration_system"] += r["meta"]["duration_system"]
        route_result = "Failed" if "Failed" in r["status"] else r["status"]
        if route_result == "Failed":
            meta["exceptions"].append([r["route_id"], r["index"], r["status"]])
            status = "Failed"
        elif status == "Perfect" and route_result != "Perfect":
            status = route_result
    mean = {k: round(v, ROUND_DIGITS_SCORE) for k, v in mean.items()}
    std = dict.fromkeys(score_keys, 0.0)
    if total > 1:
        for r in records:
            for k in score_keys:
                std[k] += (r["scores"][k] - mean[k]) ** 2
        std = {k: round(math.sqrt(v / (total - 1)), ROUND_DIGITS) for k, v in std.items()}
    km_driven = sum(r["meta"]["route_length"] / 1000.0 * r["scores"]["score_route"] / 100.0 for r in records)
    km_driven = max(km_driven, 0.001)
    infractions = dict.fromkeys(INFRACTION_NAMES, 0.0)
    for r in records:
        for k in infractions:
            infractions[k] += _infraction_value(r, k)
    for k in infractions:
        value = infractions[k] if k == "outside_route_lanes" else infractions[k] / km_driven
        infractions[k] = round(value, ROUND_DIGITS)
    global_record = {
        "index": -1,
        "route_id": -1,
        "status": status,
        "infractions": infractions,
        "scores_mean": mean,
        "scores_std_dev": std,
        "meta": meta,
    }
    values = [str(mean["score_composed"]), str(mean["score_route"]), str(mean["score_penalty"])]
    values += [str(infractions[k]) for k in _VALUE_KEYS]
    entry_status = "Finished"
    for r in records:
        if "Simulation crashed" in r["status"]:
            entry_status = "Crashed"
        elif "Agent's sensors were invalid" in r["status"]:
            entry_status = "Rejected"
    return global_record, values, entry_status


def _atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it over ``path`` (never a half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=4)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class ResultsFile:
    """The results JSON of one evaluation run: records in memory, the file rewritten atomically on ``save``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        self.progress: list[int] = []
        self.global_record: dict[str, Any] = {}
        self.entry_status = "Started"
        self.sensors: list[str] = []
        self.values: list[str] = []
        self.labels: list[str] = []

    @staticmethod
    def read(path: str | Path) -> dict[str, Any]:
        """The parsed file, or {} when it is missing, empty or not JSON (as the leaderboard's fetch_dict)."""
        path = Path(path)
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("results file %s is unreadable (%s); starting from scratch", path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def resume_from(self, route_ids: Sequence[str]) -> int:
        """Load the finished records of a previous run of the same routes; return how many routes to skip.

        The file must list the same routes in the same order (``progress[1]`` = number of routes, record ids
        equal); otherwise nothing is resumed and the run starts over, with a warning saying why.
        """
        data = self.read(self.path)
        checkpoint = resumable_checkpoint(self.path, data, len(route_ids))
        if checkpoint is None:
            return 0
        progress = checkpoint["progress"]
        records = [r for r in checkpoint.get("records") or [] if isinstance(r, dict)]
        done = 0
        while done < min(int(progress[0]), len(records), len(route_ids)):
            record = records[done]
            if record.get("route_id") != route_ids[done] or record.get("status", "Started") == "Started":
                break
            done += 1
        if done and self._stopped_on_agent_setup(data, records[done - 1]):
            done -= 1
            logger.info("the last run stopped because the agent could not be set up: running %s again", route_ids[done])
        self.records = [dict(r) for r in records[:done]]
        self.sensors = list(data.get("sensors") or [])
        self.progress = [done, len(route_ids)]
        return done

    @staticmethod
    def _stopped_on_agent_setup(data: dict[str, Any], last_record: dict[str, Any]) -> bool:
        """Whether a file was left by a run that stopped at ``last_record`` because no agent could be set up.

        Such a run has no global values (it never finished) and the crashed entry status; its last route was never
        driven, so a resumed run drives it instead of keeping its 0.
        """
        entry, reason = AGENT_SETUP_CRASH
        stopped = data.get("entry_status") == entry and not data.get("values")
        return stopped and last_record.get("status") == f"Failed - {reason}"

    def start(self, total_routes: int) -> None:
        """Begin a fresh run: no records, progress ``[0, total]``; the file is overwritten on save."""
        self.records = []
        self.progress = [0, int(total_routes)]
        self.global_record, self.values, self.labels = {}, [], []
        self.entry_status = "Started"

    def set_sensors(self, sensor_specs: Sequence[dict[str, Any]]) -> None:
        """Store the agent's sensors as the leaderboard's icon names."""
        self.sensors = sensor_icons(sensor_specs)

    def add_record(self, record: dict[str, Any], entry_status: str = "Started") -> None:
        """Add (or replace, by index) a finished route's record and advance the progress."""
        if entry_status not in ENTRY_STATUS_VALUES:
            raise ValueError(f"entry_status {entry_status!r} is not one of {ENTRY_STATUS_VALUES}")
        index = int(record["index"])
        if index < len(self.records):
            self.records[index] = record
        elif index == len(self.records):
            self.records.append(record)
        else:
            raise ValueError(f"route record index {index} leaves a gap after {len(self.records)} records")
        self.entry_status = entry_status
        total = self.progress[1] if self.progress else index + 1
        self.progress = [max(self.progress[0] if self.progress else 0, index + 1), total]

    def finalize(self, sensors_initialized: bool, crashed: bool) -> None:
        """Compute the global record and validate the results as ``validate_and_write_statistics`` does."""
        total = self.progress[1] if self.progress else len(self.records)
        self.global_record, self.values, self.entry_status = compute_global(self.records, total)
        self.labels = list(LABELS)
        error = ""
        if sensors_initialized and not self.sensors:
            error = "Missing 'sensors' data"
        elif not crashed and (self.progress[0] != self.progress[1] or self.progress[0] != len(self.records)):
            error = "'progress' data doesn't match its expected value"
        if error:
            logger.error("the statistics are badly formed (%s); setting their status to 'Invalid'", error)
            self.entry_status = "Invalid"

    def to_json(self) -> dict[str, Any]:
        """The leaderboard's results dictionary."""
        return {
            "_checkpoint": {
                "global_record": self.global_record,
                "progress": list(self.progress),
                "records": self.records,
            },
            "entry_status": self.entry_status,
            "eligible": ELIGIBLE[self.entry_status],
            "sensors": self.sensors,
            "values": self.values,
            "labels": self.labels,
        }

    def save(self) -> None:
        """Write the file atomically (temporary file + rename)."""
        _atomic_write_json(self.path, self.to_json())
