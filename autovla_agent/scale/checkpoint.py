"""Route records that finish in any order, kept in route order in one leaderboard checkpoint file saved atomically.

Parallel workers finish routes out of order; the file still lists records by route index, as the leaderboard
writes it. A route not finished yet while a later one is holds the leaderboard's placeholder record (status
``Started``, what the leaderboard itself writes for the route it is running), and ``progress[0]`` counts the
finished routes before the first unfinished one, so that the leaderboard's own ``--resume`` (and a serial
``autovla-evaluate --resume``) restart at the right route. ``--resume`` of a parallel run skips every finished
route, wherever it is. The global record is computed by ``ResultsFile.finalize`` (``compute_global``), so a
parallel run's file equals a serial run's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autovla_agent.sim.scoring.results import INFRACTION_NAMES, ResultsFile
from autovla_agent.sim.scoring.resume import resumable_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["OrderedResults", "placeholder_record"]


def placeholder_record(route_id: str, index: int) -> dict[str, Any]:
    """The leaderboard's ``RouteRecord`` of a route that has started and not finished (status ``Started``)."""
    return {
        "index": int(index),
        "route_id": route_id,
        "status": "Started",
        "num_infractions": 0,
        "infractions": {name: [] for name in INFRACTION_NAMES},
        "scores": {"score_route": 0, "score_penalty": 0, "score_composed": 0},
        "meta": {"route_length": 0, "duration_game": 0, "duration_system": 0},
    }


class OrderedResults:
    """The results JSON of a run whose routes finish in any order (see the module docstring)."""

    def __init__(self, path: str | Path, route_ids: Sequence[str]) -> None:
        self.file = ResultsFile(path)
        self.route_ids = list(route_ids)
        self.done: dict[int, dict[str, Any]] = {}
        self.sensors_validated = False  # sensors reported by a route of this invocation (as the serial runner)

    @property
    def path(self) -> Path:
        """The results file."""
        return self.file.path

    @property
    def total(self) -> int:
        """Number of routes of the run (routes x repetitions)."""
        return len(self.route_ids)

    @property
    def prefix(self) -> int:
        """Finished routes before the first unfinished one (the leaderboard's ``progress[0]``)."""
        n = 0
        while n in self.done:
            n += 1
        return n

    def pending(self) -> list[int]:
        """Indices of the routes still to run, in route order."""
        return [i for i in range(self.total) if i not in self.done]

    def start(self) -> None:
        """Begin a fresh run: no records; the file is overwritten on save."""
        self.done = {}
        self.file.start(self.total)

    def resume(self) -> int:
        """Load every finished record of a previous run of the same routes; return how many there are.

        The file must be a leaderboard checkpoint for the same number of routes; a record counts when its index
        and route id match this run's and its status is not ``Started``. Otherwise nothing is resumed, with a
        warning saying why.
        """
        data = ResultsFile.read(self.path)
        self.start()
        checkpoint = resumable_checkpoint(self.path, data, self.total)
        if checkpoint is None:
            return 0
        for record in checkpoint.get("records") or []:
            if not isinstance(record, dict):
                continue
            index = record.get("index")
            if not isinstance(index, int) or not 0 <= index < self.total:
                continue
            if record.get("route_id") == self.route_ids[index] and record.get("status", "Started") != "Started":
                self.done[index] = dict(record)
        self.file.sensors = list(data.get("sensors") or [])
        return len(self.done)

    def set_sensors(self, icons: Sequence[str]) -> None:
        """Store the agent's sensors (icon names) once, from the first route that validated them."""
        if not self.sensors_validated:
            self.file.sensors = list(icons)
            self.sensors_validated = True

    def add(self, record: dict[str, Any], entry_status: str = "Started") -> None:
        """Add (or replace) a finished route's record and save the file."""
        index = int(record["index"])
        if not 0 <= index < self.total or record["route_id"] != self.route_ids[index]:
            raise ValueError(f"record {record['route_id']!r} (index {index}) is not a route of this run")
        self.done[index] = record
        self.file.entry_status = entry_status
        self.save()

    def drop_after(self, index: int) -> None:
        """Forget the routes after ``index`` (a serial run would not have reached them)."""
        self.done = {i: r for i, r in self.done.items() if i <= index}

    def records(self) -> list[dict[str, Any]]:
        """Records in route order up to the last finished route, placeholders in the gaps."""
        last = max(self.done, default=-1)
        return [self.done.get(i) or placeholder_record(self.route_ids[i], i) for i in range(last + 1)]

    def save(self) -> None:
        """Write the file atomically."""
        self.file.records = self.records()
        self.file.progress = [self.prefix, self.total]
        self.file.save()

    def finalize(self) -> None:
        """All routes finished: compute the global record as the serial runner does, and save."""
        if self.pending():
            raise RuntimeError(f"cannot finalize {self.path}: routes {self.pending()} have not finished")
        self.file.records = self.records()
        self.file.progress = [self.total, self.total]
        self.file.finalize(self.sensors_validated, crashed=False)
        self.file.save()
