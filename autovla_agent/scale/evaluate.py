"""``autovla-evaluate --workers N``: the embedded evaluation with each route x repetition a task on Ray workers.

Each worker is a Ray actor holding one ``Evaluator`` (``autovla_agent.sim.evaluator``): it imports the agent file
once and runs the routes it is handed with the serial run's own code, seed ``--seed + repetition``, so a route
scores as in a serial run; an agent that caches its model per process (the AutoVLA agent) loads it once per
worker. The worker returns each route's record instead of writing it; the driver puts the records into the one
results JSON (``--checkpoint``) in route order, atomically, as each route finishes
(``autovla_agent.scale.checkpoint``), and computes the global record at the end with the serial run's code.

``--resume`` skips every finished route of the file. A route whose worker dies (killed, out of memory) is recorded
"Failed - Simulation crashed" at once (the entry "Crashed") and run again on a fresh worker, once; a retry that
finishes replaces that record. A route that stops a serial evaluation (sensors rejected, an agent that cannot be
set up) stops this one too, after the routes before it: the file is the serial run's. Ctrl-C stops all workers and
keeps the finished routes (exit status 130; ``--resume`` goes on). One progress bar counts the routes; each
worker logs to ``<checkpoint stem>_logs/worker-<k>.log`` beside the results file.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autovla_agent.scale.checkpoint import OrderedResults
from autovla_agent.scale.engine import ScaleConfig
from autovla_agent.scale.farm import FarmReport, Outcome, RunProgress, WorkerSetupError, WorkerSpec, run_farm
from autovla_agent.sim.evaluator import Evaluator, log_summary
from autovla_agent.sim.runner_config import RunnerConfig
from autovla_agent.sim.scoring.results import FAILURE_MESSAGES, make_route_record, route_name, sensor_icons

logger = logging.getLogger(__name__)

__all__ = ["RouteResult", "RouteWorker", "make_route_worker", "run_parallel", "worker_log_dir"]


@dataclass
class RouteResult:
    """What a worker sends back for one route."""

    index: int
    record: dict[str, Any]
    entry_status: str
    stop: bool  # the serial evaluation would stop at this route
    sensors: list[str] | None = None  # sensor icons, when this route validated them
    videos: list[str] = field(default_factory=list)


class RouteWorker(Evaluator):
    """An ``Evaluator`` in a worker process: runs one route per call and returns its record instead of writing it."""

    def __init__(self, args: argparse.Namespace, config: RunnerConfig, total: int) -> None:
        super().__init__(args, config)
        self.results.start(total)  # only for the "(i/total)" of its log lines; nothing is written
        self._stored: list[tuple[dict[str, Any], str]] = []
        self._sensors: list[str] | None = None

    def _store(self, record: dict[str, Any], entry_status: str) -> None:
        self._stored.append((record, entry_status))

    def _store_sensors(self, specs: list[dict[str, Any]]) -> None:
        self._sensors = sensor_icons(specs)

    def run(self, task: tuple[Any, int, int]) -> RouteResult:
        """Run route ``(spec, repetition, index)`` of the plan."""
        spec, rep, index = task
        self._stored, self._sensors = [], None
        videos_before = len(self.videos)
        if self.agent_module is None and not self._import_agent(route_name(spec.route_id, rep), index):
            stop = True
        else:
            stop = self._run_route(spec, rep, index)
        record, entry = self._stored[-1]
        videos = [str(v) for v in self.videos[videos_before:]]
        return RouteResult(index, record, entry, stop, self._sensors, videos)


def make_route_worker(args: dict[str, Any], config: RunnerConfig, total: int) -> RouteWorker:
    """The worker factory (``WorkerSpec.factory``): an evaluator without its own progress bar."""
    namespace = argparse.Namespace(**{**args, "no_progress": True})
    return RouteWorker(namespace, config, total)


def worker_log_dir(checkpoint: str | Path) -> Path:
    """Folder of the per-worker logs: ``<checkpoint stem>_logs`` beside the results file."""
    path = Path(checkpoint)
    return path.parent / f"{path.stem}_logs"


class _ResultsSink:
    """Puts route results into the ordered results file as they arrive (the farm's ``Sink``)."""

    def __init__(self, results: OrderedResults) -> None:
        self.results = results
        self.stop_at: int | None = None
        self.videos: list[str] = []

    def on_result(self, index: int, result: RouteResult) -> Outcome:
        if result.sensors is not None:
            self.results.set_sensors(result.sensors)
        self.results.add(result.record, result.entry_status)
        self.videos += result.videos
        if result.stop:
            self.stop_at = index if self.stop_at is None else min(self.stop_at, index)
        return Outcome(failed=result.record["status"].startswith("Failed"), stop=result.stop)

    def on_worker_lost(self, index: int, reason: str, will_retry: bool) -> Outcome:
        # The leaderboard's reason for a route whose simulation went away; a successful retry replaces it.
        entry, message = FAILURE_MESSAGES["Simulation"]
        self.results.add(make_route_record(self.results.route_ids[index], index, None, message), entry)
        logger.error("%s: %s%s", self.results.route_ids[index], reason, "; it runs again" if will_retry else "")
        return Outcome(failed=True)


def run_parallel(args: argparse.Namespace, config: RunnerConfig, routes: list[Any]) -> int:
    """Run the evaluation on ``args.workers`` Ray workers; 0 when all routes ran, 1 when it stopped, 130 on Ctrl-C."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    scale = ScaleConfig(workers=args.workers, ray_address=args.ray_address)
    reps = max(1, int(args.repetitions))
    plan = [(spec, rep) for spec in routes for rep in range(reps)]
    results = OrderedResults(args.checkpoint, [route_name(spec.route_id, rep) for spec, rep in plan])
    done = results.resume() if args.resume else 0
    if not args.resume:
        results.start()
    if done:
        logger.info("resuming %s: %d of %d routes already done", results.path, done, len(plan))
    results.save()
    pending = results.pending()
    log_dir = worker_log_dir(args.checkpoint)
    spec = WorkerSpec(
        factory=f"{__name__}:make_route_worker",
        kwargs={"args": vars(args), "config": config, "total": len(plan)},
        log_dir=str(log_dir),
        name="worker",
    )
    logger.info(
        "results: %s; %d routes on %d workers, worker logs in %s",
        results.path.resolve(),
        len(pending),
        args.workers,
        log_dir,
    )
    sink = _ResultsSink(results)
    progress = RunProgress(total=len(plan), done=len(plan) - len(pending), enabled=not args.no_progress)
    try:
        with logging_redirect_tqdm():
            report = run_farm([(i, (*plan[i], i)) for i in pending], spec, scale, sink, progress)
    except WorkerSetupError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        progress.close()
    return _finish(results, sink, report)


def _finish(results: OrderedResults, sink: _ResultsSink, report: FarmReport) -> int:
    """Finalize or explain the results file; the exit status."""
    code = 0
    if report.interrupted:
        logger.warning("interrupted after %d routes; rerun with --resume to go on", len(results.done))
        code = 130
    elif sink.stop_at is not None:
        results.drop_after(sink.stop_at)  # a serial run stops there; later routes that finished are not kept
        results.save()
        logger.error("the evaluation stopped at %s (see above)", results.route_ids[sink.stop_at])
        code = 1
    elif results.pending():
        logger.error("routes %s have no result; rerun with --resume", results.pending())
        code = 1
    else:
        results.finalize()
    log_summary(results.file)
    if report.retried or report.lost:
        logger.warning("%d route(s) retried after their worker died, %d lost twice", report.retried, report.lost)
    logger.info("results written to %s (%.1f s on the workers)", results.path.resolve(), report.wall_s)
    for video in sink.videos:
        logger.info("replay: %s", Path(video).resolve())
    return code
