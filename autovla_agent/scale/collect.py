"""``autovla-collect --workers N``: each (route, seed) run of the expert collector is a task on Ray workers.

Each worker holds one ``training.collect.Collector`` (agent config, town geometry caches) and drives the
(route, seed) runs it is handed with the serial code (``Collector.run_route``). Camera frames go straight into
the dataset folder (``images/<episode>/``: one folder per run, so workers never write the same file); a run's
samples go to a part file ``.parts/<episode>/samples.jsonl``. When every run has finished, the parts are joined into
``samples.jsonl`` in the serial order (route by route, seed by seed), so the dataset is byte for byte the serial
one. A run whose worker dies is run again on a fresh worker, once; if that dies too, the run is reported with
outcome ``worker died`` and no samples (its frames are removed). Ctrl-C stops the workers, joins the finished
runs and raises ``KeyboardInterrupt`` as a serial run would.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from autovla_agent.scale.farm import Outcome, RunProgress, WorkerSpec, run_farm
from autovla_agent.training.collect_samples import RunStats, episode_name
from autovla_agent.training.dataset_io import SampleWriter, write_manifest
from autovla_agent.training.frames_io import FrameStore
from autovla_agent.training.schema import SAMPLES_NAME

logger = logging.getLogger(__name__)

__all__ = ["CollectWorker", "collect_parallel", "make_collect_worker"]

PARTS_DIR = ".parts"


class CollectWorker:
    """A collector in a worker process: one (route, seed) run per call, its samples into a part file."""

    def __init__(self, config: Any, collector: str) -> None:
        module, _, name = collector.partition(":")
        self.collector = getattr(importlib.import_module(module), name)(config)
        self.root = Path(config.out)
        self.store = FrameStore(self.root, config.image_format)

    def run(self, task: tuple[Any, int]) -> tuple[RunStats, int]:
        """Drive route ``spec`` with ``seed``; the run's statistics and the number of frames it wrote."""
        spec, seed = task
        part = self.root / PARTS_DIR / episode_name(spec, seed)
        if part.exists():
            shutil.rmtree(part)  # what a worker that died on this run left
        frames_before = self.store.num_written
        with SampleWriter(part, self.collector.manifest) as writer:
            stats = self.collector.run_route(spec, seed, writer, self.store)
        return stats, self.store.num_written - frames_before


def make_collect_worker(config: Any, collector: str) -> CollectWorker:
    """The worker factory (``WorkerSpec.factory``): a ``collector`` (``"module:Class"``) built from ``config``."""
    return CollectWorker(config, collector)


class _StatsSink:
    def __init__(self, root: Path, plan: list[tuple[Any, int]]) -> None:
        self.root, self.plan = root, plan
        self.stats: dict[int, RunStats] = {}
        self.frames = 0

    def on_result(self, index: int, result: tuple[RunStats, int]) -> Outcome:
        stats, frames = result
        self.stats[index] = stats
        self.frames += frames
        logger.info(
            "route %s seed %d: %s, %d samples, %d ticks, %.1f s",
            stats.route,
            stats.seed,
            stats.outcome,
            stats.samples,
            stats.ticks,
            stats.wall_s,
        )
        return Outcome(failed=stats.samples == 0)

    def on_worker_lost(self, index: int, reason: str, will_retry: bool) -> Outcome:
        spec, seed = self.plan[index]
        if not will_retry:
            episode = episode_name(spec, seed)
            for path in (self.root / PARTS_DIR / episode, self.root / "images" / episode):
                shutil.rmtree(path, ignore_errors=True)
            self.stats[index] = RunStats(route=f"{spec.town}/{spec.route_id}", seed=seed, outcome="worker died")
            logger.error("route %s seed %d: %s; no samples", spec.route_id, seed, reason)
        return Outcome(failed=not will_retry)


def _join_parts(root: Path, manifest: Any, plan: list[tuple[Any, int]], finished: dict[int, RunStats]) -> int:
    """Write the manifest and ``samples.jsonl`` from the finished runs' parts, in plan order; the sample count."""
    write_manifest(root, manifest)
    count = 0
    with (root / SAMPLES_NAME).open("w", encoding="utf-8") as out:
        for index, (spec, seed) in enumerate(plan):
            part = root / PARTS_DIR / episode_name(spec, seed) / SAMPLES_NAME
            if index in finished and part.is_file():
                with part.open(encoding="utf-8") as fh:
                    for line in fh:
                        out.write(line)
                        count += 1
    shutil.rmtree(root / PARTS_DIR, ignore_errors=True)
    return count


def collect_parallel(collector: Any, collector_class: str) -> list[RunStats]:
    """Run ``collector``'s (route, seed) runs on ``config.scale.workers`` Ray workers; the per-run statistics.

    ``collector`` is a ``training.collect.Collector``; each worker builds its own from ``collector_class``
    (``"module:Class"``) and the same config.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from autovla_agent.sim.world.route_files import load_routes

    config = collector.config
    specs = [s for r in config.routes for s in load_routes(r, config.routes_subset)]
    plan = [(spec, seed) for spec in specs for seed in config.seeds]
    root = Path(config.out)
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / PARTS_DIR, ignore_errors=True)
    log_dir = root.parent / f"{root.name}_logs"
    kwargs = {"config": config, "collector": collector_class}
    spec = WorkerSpec(factory=f"{__name__}:make_collect_worker", kwargs=kwargs, log_dir=str(log_dir))
    logger.info("collecting %d runs on %d workers; worker logs in %s", len(plan), config.scale.workers, log_dir)
    sink = _StatsSink(root, plan)
    progress = RunProgress(total=len(plan), desc="runs")
    t0 = time.perf_counter()
    try:
        with logging_redirect_tqdm():
            report = run_farm(list(enumerate(plan)), spec, config.scale, sink, progress)
    finally:
        progress.close()
    total = _join_parts(root, collector.manifest, plan, sink.stats)
    logger.info("dataset %s: %d samples, %d frames, %.1f s", root, total, sink.frames, time.perf_counter() - t0)
    if report.interrupted:
        raise KeyboardInterrupt
    return [sink.stats[i] for i in sorted(sink.stats)]
