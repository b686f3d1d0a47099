"""Run the unchanged leaderboard (or Bench2Drive) evaluator over K CARLA servers: route-file shards as Ray tasks.

``python -m autovla_agent.scale.multiserver --routes ROUTES.xml --out results/run
(--servers localhost:2000,localhost:2010 | --carla-root $CARLA_ROOT --num-servers 4 --gpus 0,1)
[--evaluator $LEADERBOARD_ROOT/leaderboard/leaderboard_evaluator.py] [--agent-config CFG] [--resume]``

The route file is split round-robin into K shard files (``<out>/shards/shard-<k>.xml``; each ``<route>`` element
is copied as is, with its scenarios and weathers). Each shard is one Ray task that runs ``leaderboard_evaluator.py``
with our agent file (``autovla_agent/carla_agent.py`` by default) against its own server: a given ``host:port``, or
one started from ``CARLA_ROOT`` with its own RPC port, traffic-manager port and GPU (``-graphicsadapter``; the
evaluator, hence the agent's model, sees the same GPU through ``CUDA_VISIBLE_DEVICES``). The shard's results go
to ``<out>/shards/shard-<k>.json``; the evaluator's and the server's output to ``<out>/logs/``.

When the evaluator stops before the end of its shard, the server is restarted and the shard resumed; a route
that keeps stopping it is recorded "Failed - Simulation crashed" after ``max_retries`` reruns
(``autovla_agent.scale.shard``). An agent whose sensors are rejected stops every shard, as the leaderboard stops.

While the shards run, their checkpoints are merged every few seconds into the results JSON (``--checkpoint``,
default ``<out>/results.json``) by ``autovla_agent.scale.merge``: records in route order and, once every route has
a record, the global record as ``autovla-evaluate`` and the leaderboard compute it. One progress bar counts the
routes of all shards. Ctrl-C stops every evaluator and server and keeps the merged results.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from autovla_agent.paths import PACKAGE_DIR
from autovla_agent.scale.engine import RayUnavailableError, ScaleConfig, import_ray, ray_session
from autovla_agent.scale.merge import MergeError, merge_checkpoints
from autovla_agent.scale.shard import STOP_GRACE_S, ShardReport, run_shard
from autovla_agent.scale.sharding import DEFAULT_SERVER_COMMAND, MultiServerConfig, prepare
from autovla_agent.sim.scoring.results import ResultsFile

logger = logging.getLogger(__name__)

__all__ = ["build_parser", "config_from_args", "main", "run_multiserver"]


def _count(paths: Sequence[str]) -> tuple[int, int]:
    """Routes with a record and failed routes over the shard files."""
    done = failed = 0
    for path in paths:
        for record in (ResultsFile.read(path).get("_checkpoint") or {}).get("records") or []:
            status = str(record.get("status", "Started")) if isinstance(record, dict) else "Started"
            if status != "Started":
                done += 1
                failed += status.startswith("Failed")
    return done, failed


def run_multiserver(config: MultiServerConfig) -> int:
    """Run the shards and merge them; 0 when every route has a record, 1 otherwise, 130 on Ctrl-C."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    ray = import_ray()
    names, jobs = prepare(config)
    paths = [job.checkpoint for job in jobs]
    results = config.results_path
    logger.info(
        "%d routes over %d servers; shards and logs in %s", len(names), len(jobs), Path(config.out_dir).resolve()
    )
    reports: dict[int, ShardReport] = {}
    interrupted = rejected = False
    bar = tqdm(total=len(names), desc="routes", unit="route", disable=True if not config.progress else None)
    shown = 0

    def refresh() -> None:
        nonlocal shown
        done, failed = _count(paths)
        bar.update(done - shown)
        shown = done
        bar.set_postfix_str(f"failed={failed} shards={len(jobs) - len(reports)} running")
        merge_checkpoints(paths, names, results)

    with logging_redirect_tqdm(), ray_session(ScaleConfig(workers=len(jobs), ray_address=config.ray_address)):
        task = ray.remote(run_shard).options(num_cpus=config.cpus_per_shard, max_retries=0)
        pending = {task.remote(job): job for job in jobs}
        lost: collections.Counter[int] = collections.Counter()
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=config.poll_s)
                for ref in ready:
                    job = pending.pop(ref)
                    try:
                        report = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        lost[job.shard] += 1
                        if lost[job.shard] <= config.max_retries:
                            logger.warning("shard %d: its task died (%s); resuming it", job.shard, type(exc).__name__)
                            job = replace(job, resume=True)
                            pending[task.remote(job)] = job
                            continue
                        report = ShardReport(shard=job.shard, error=f"its task died twice: {exc}")
                    reports[job.shard] = report
                    if report.error:
                        logger.error("shard %d stopped: %s (log: %s)", job.shard, report.error, job.evaluator_log)
                    if report.rejected:
                        logger.error("shard %d: the agent's sensors were rejected; stopping every shard", job.shard)
                        rejected = True
                refresh()
                if rejected:
                    break
        except KeyboardInterrupt:
            interrupted = True
            logger.warning("interrupted: stopping every evaluator and server; the finished routes are kept")
        finally:
            _cancel(ray, list(pending))
            bar.close()
    merged = merge_checkpoints(paths, names, results)
    complete = bool(merged["values"])
    _log_summary(merged, results)
    if interrupted:
        return 130
    return 0 if complete and not rejected else 1


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Cancel shard tasks: KeyboardInterrupt first (their evaluators and servers are stopped), then by force."""
    if not refs:
        return
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref)
    with contextlib.suppress(Exception):
        ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_S + 5.0)
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)


def _log_summary(merged: dict[str, Any], path: Path) -> None:
    records = merged["_checkpoint"]["records"]
    finished = [r for r in records if r["status"] != "Started"]
    total = merged["_checkpoint"]["progress"][1]
    logger.info(
        "merged results %s: %d of %d routes, entry status %s",
        path.resolve(),
        len(finished),
        total,
        merged["entry_status"],
    )
    if merged["values"]:
        for label, value in zip(merged["labels"], merged["values"], strict=True):
            logger.info("  %-38s %s", label, value)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m autovla_agent.scale.multiserver",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--routes", required=True, help="route XML file (leaderboard 2.0 or Bench2Drive)")
    p.add_argument("--routes-subset", default="", help="route ids, e.g. '0-3,7'")
    p.add_argument("--repetitions", type=int, default=1)
    p.add_argument("--out", required=True, help="output folder: shards/, logs/, results.json")
    p.add_argument("--checkpoint", default="", help="merged results JSON (default <out>/results.json)")
    p.add_argument("-a", "--agent", default=str(PACKAGE_DIR / "carla_agent.py"), help="agent file")
    p.add_argument("--agent-config", default="", help="passed to the evaluator's --agent-config")
    p.add_argument("--evaluator", default="", help="leaderboard_evaluator.py (default: under $LEADERBOARD_ROOT)")
    p.add_argument("--python", default="", help="interpreter of the evaluator (default: this one)")
    p.add_argument("--track", default="SENSORS")
    p.add_argument("--timeout", type=float, default=300.0, help="the evaluator's --timeout, seconds")
    p.add_argument("--servers", default="", help="running servers, host:port,host:port,... (one shard each)")
    p.add_argument("--carla-root", default=os.environ.get("CARLA_ROOT", ""), help="start servers from here")
    p.add_argument("--num-servers", type=int, default=0, help="servers to start from --carla-root")
    p.add_argument("--gpus", default="", help="GPU indices, e.g. 0,1 (server k uses gpus[k %% len])")
    p.add_argument("--base-port", type=int, default=2000)
    p.add_argument("--base-tm-port", type=int, default=8000)
    p.add_argument("--port-stride", type=int, default=10)
    p.add_argument(
        "--server-command", default="", help=f"template of a started server (default {DEFAULT_SERVER_COMMAND!r})"
    )
    p.add_argument(
        "--evaluator-starts-server",
        action="store_true",
        help="the evaluator starts its own server (Bench2Drive); with --num-servers, --evaluator-arg=--gpu-rank={gpu}",
    )
    p.add_argument("--server-start-timeout", type=float, default=180.0)
    p.add_argument("--server-settle", type=float, default=5.0, help="seconds to wait after a server's port opens")
    p.add_argument(
        "--evaluator-arg",
        action="append",
        default=[],
        help="extra evaluator argument, {port} {tm_port} {gpu} {shard} {host} filled in (e.g. --gpu-rank={gpu})",
    )
    p.add_argument("--max-retries", type=int, default=1, help="reruns of a route that stopped the evaluator")
    p.add_argument("--resume", action="store_true", help="resume every shard from its checkpoint")
    p.add_argument("--ray-address", default="", help="join this Ray cluster ('auto', host:port) instead of a local Ray")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> MultiServerConfig:
    """The run's config from the parsed command line."""
    servers = _csv(args.servers)
    return MultiServerConfig(
        routes=args.routes,
        out_dir=args.out,
        checkpoint=args.checkpoint,
        agent=args.agent,
        agent_config=args.agent_config,
        evaluator=args.evaluator,
        python=args.python,
        routes_subset=args.routes_subset,
        repetitions=args.repetitions,
        track=args.track,
        timeout_s=args.timeout,
        servers=servers,
        carla_root="" if servers or args.evaluator_starts_server else args.carla_root,
        num_servers=0 if servers else args.num_servers,
        gpus=tuple(int(g) for g in _csv(args.gpus)),
        base_port=args.base_port,
        base_tm_port=args.base_tm_port,
        port_stride=args.port_stride,
        server_command=args.server_command,
        evaluator_starts_server=args.evaluator_starts_server,
        server_start_timeout_s=args.server_start_timeout,
        server_settle_s=args.server_settle,
        evaluator_args=tuple(args.evaluator_arg),
        max_retries=args.max_retries,
        resume=args.resume,
        ray_address=args.ray_address,
        progress=not args.no_progress,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; 2 on bad input (before any shard runs)."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
        )
    try:
        config = config_from_args(args)
        if not (config.evaluator or os.environ.get("LEADERBOARD_ROOT")):
            raise ValueError("set LEADERBOARD_ROOT or pass --evaluator path/to/leaderboard_evaluator.py")
        import_ray()
    except (RayUnavailableError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    try:
        return run_multiserver(config)
    except (ValueError, MergeError, OSError) as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
