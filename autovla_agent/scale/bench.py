"""Benchmark of the scale-out: routes/hour of ``autovla-evaluate`` with 1 worker (serial) and N Ray workers.

``python -m autovla_agent.scale.bench [--routes routes_default] [--repetitions 3] [--workers 2] [--agent expert]``

Runs the same evaluation twice in one process: serially (``--workers 1``, in this process, as without Ray) and on
N Ray workers, each on a fresh results file, and logs routes/hour of both, their ratio and whether every route
scored the same (records equal but for ``duration_system``). The clock of a run starts when the command starts
and ends when its results file is final, so worker start-up (imports, towns, agents) counts; the local Ray
cluster is started once before the parallel run and its start-up is given separately (a cluster serves many
runs; joined with ``--ray-address`` it costs nothing). The machine's busy CPU share during each run is logged
too: on a quiet 2-core machine the serial run keeps about 50 % of it busy; much more means other processes
competed with the benchmark. ``--agent expert`` (default) drives the privileged
expert (``autovla_agent/sim/expert.py``); ``--agent model`` the AutoVLA agent with the default model, as
``autovla-demo`` does; any other value is an agent file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autovla_agent.paths import PACKAGE_DIR
from autovla_agent.scale.engine import ScaleConfig, import_ray, ray_session

logger = logging.getLogger(__name__)

__all__ = ["main", "same_routes"]


def same_routes(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two results files have the same records and global record, ignoring wall-clock durations."""

    def strip(data: dict[str, Any]) -> dict[str, Any]:
        data = json.loads(json.dumps(data))
        for record in data["_checkpoint"]["records"]:
            record["meta"].pop("duration_system", None)
        data["_checkpoint"].get("global_record", {}).get("meta", {}).pop("duration_system", None)
        return data

    return strip(a) == strip(b)


def _agent_args(agent: str, out: Path) -> tuple[list[str], str]:
    """Runner arguments for ``--agent`` and a description of the agent."""
    if agent == "expert":
        return ["--agent", str(PACKAGE_DIR / "sim" / "expert.py")], "privileged expert (autovla_agent/sim/expert.py)"
    if agent == "model":
        from autovla_agent.demo import resolve_model

        model = resolve_model("", out)
        config = model / "agent_config.yaml"
        agent_config = f"{config if config.is_file() else 'autovla_tiny.yaml'} vla.model.path={model}"
        return ["--agent", str(PACKAGE_DIR / "carla_agent.py"), "--agent-config", agent_config], f"AutoVLA ({model})"
    return ["--agent", agent], agent


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the machine since boot (Linux ``/proc/stat``; zeros elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _timed_run(argv: list[str]) -> tuple[float, int, float]:
    """Wall seconds, exit status, and the machine's busy CPU share during the run (other processes included)."""
    from autovla_agent.sim import runner

    busy0, total0 = _cpu_jiffies()
    t0 = time.perf_counter()
    code = runner.main(argv)
    wall = time.perf_counter() - t0
    busy1, total1 = _cpu_jiffies()
    return wall, code, (busy1 - busy0) / max(total1 - total0, 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and log its figures; 0 when both runs finished and every route scored the same."""
    p = argparse.ArgumentParser(prog="python -m autovla_agent.scale.bench", description=__doc__.splitlines()[0])
    p.add_argument("--routes", default="routes_default", help="route file or shipped name")
    p.add_argument("--repetitions", type=int, default=3, help="runs per route (more routes: a steadier figure)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--agent", default="expert", help="expert, model, or an agent file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="folder for the two results files (default: a temporary one)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    import_ray()
    out = Path(args.out or tempfile.mkdtemp(prefix="autovla_scale_bench_"))
    out.mkdir(parents=True, exist_ok=True)
    agent_args, agent_name = _agent_args(args.agent, out)
    common = ["--routes", args.routes, "--repetitions", str(args.repetitions), "--seed", str(args.seed)]
    common += [*agent_args, "--no-progress"]
    serial_s, serial_code, serial_busy = _timed_run([*common, "--checkpoint", str(out / "serial.json")])
    t0 = time.perf_counter()
    with ray_session(ScaleConfig(workers=args.workers)):
        ray_start_s = time.perf_counter() - t0
        parallel_s, parallel_code, parallel_busy = _timed_run(
            [*common, "--checkpoint", str(out / "parallel.json"), "--workers", str(args.workers)]
        )
    serial = json.loads((out / "serial.json").read_text())
    parallel = json.loads((out / "parallel.json").read_text())
    n = int(serial["_checkpoint"]["progress"][1])
    equal = same_routes(serial, parallel)
    serial_rate, parallel_rate = n / serial_s * 3600.0, n / parallel_s * 3600.0
    logger.info("agent: %s; routes: %s x %d repetitions = %d routes", agent_name, args.routes, args.repetitions, n)
    cores = os.cpu_count() or 1
    logger.info("1 worker (serial):  %6.1f s  %7.1f routes/hour  (machine CPU busy %3.0f%%)", serial_s, serial_rate,
                100 * serial_busy)  # fmt: skip
    logger.info("%d workers (Ray):    %6.1f s  %7.1f routes/hour  (machine CPU busy %3.0f%%)", args.workers,
                parallel_s, parallel_rate, 100 * parallel_busy)  # fmt: skip
    if serial_busy > 1.5 / cores:
        logger.warning("other processes used the CPU during the serial run: the ratio understates the speed-up")
    logger.info("ratio: %.2f  (local Ray start-up, not counted: %.1f s; with it: %.2f)", parallel_rate / serial_rate,
                ray_start_s, serial_s / (parallel_s + ray_start_s))  # fmt: skip
    logger.info("per-route results equal: %s; results in %s", "yes" if equal else "NO", out)
    return 0 if serial_code == parallel_code == 0 and equal else 1


if __name__ == "__main__":
    sys.exit(main())
