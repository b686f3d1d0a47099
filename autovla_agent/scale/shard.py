"""One shard of a multi-server leaderboard run: its CARLA server and ``leaderboard_evaluator.py``, rerun on crashes.

``run_shard`` runs in a Ray task (``autovla_agent.scale.multiserver``). It starts the shard's server when it has a
launch command (else waits for the given ``host:port``), runs the evaluator over the shard's route file and reads
the shard checkpoint it leaves. When the evaluator stopped before the end (the leaderboard stops on "Simulation
crashed"; a dead server or evaluator writes nothing more), the server is restarted and the evaluator rerun with
``--resume``, which reruns the route it stopped on (the leaderboard repeats the last route of a "Crashed"
checkpoint). A route that stops it ``max_retries + 1`` times is recorded "Failed - Simulation crashed" and the
checkpoint moved past it. Child processes run in sessions of their own and get SIGTERM when their parent dies, so
a cancelled or killed task leaves no server behind.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autovla_agent.sim.scoring.results import FAILURE_MESSAGES, ResultsFile, make_route_record

logger = logging.getLogger(__name__)

__all__ = ["ServerSpec", "ShardJob", "ShardReport", "run_shard", "wait_for_port"]

STOP_GRACE_S = 15.0
POLL_CHILD_S = 0.2


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerSpec:
    """One CARLA server: where it listens and, when this runner starts it, the command."""

    host: str
    port: int
    tm_port: int
    gpu: int | None = None
    launch: tuple[str, ...] = ()  # () = a server that runs already (not started, not restarted here)
    external: bool = False  # the evaluator starts and stops this server itself (Bench2Drive): nothing to do here


@dataclass(frozen=True, kw_only=True, slots=True)
class ShardJob:
    """Everything a shard task needs (pickled to its Ray worker)."""

    shard: int
    routes_xml: str
    checkpoint: str
    route_ids: tuple[str, ...]  # the shard's record ids, in its order
    server: ServerSpec
    command: tuple[str, ...]  # the evaluator's command line, without --resume
    env: dict[str, str] = field(default_factory=dict)
    evaluator_log: str = ""
    server_log: str = ""
    max_retries: int = 1
    resume: bool = False
    server_start_timeout_s: float = 180.0
    server_settle_s: float = 5.0


@dataclass
class ShardReport:
    """How a shard ended."""

    shard: int
    finished: int = 0  # routes with a record
    launches: int = 0  # evaluator runs
    server_starts: int = 0
    skipped: list[str] = field(default_factory=list)  # routes recorded crashed after their retries
    rejected: bool = False
    error: str = ""


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux), so no server outlives a killed worker."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(cmd: Sequence[str], log: Any, env: dict[str, str]) -> subprocess.Popen:
    # A session of its own: the whole tree (CarlaUE4.sh starts the real binary as a child) is stopped together.
    return subprocess.Popen(
        list(cmd),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )


def _stop(proc: subprocess.Popen | None) -> None:
    """Stop a process group started by ``_spawn``: SIGTERM, then SIGKILL after a grace period."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait(proc: subprocess.Popen) -> int:
    """Wait for a child in short sleeps, so a cancelled task (KeyboardInterrupt) gets control back promptly."""
    while proc.poll() is None:
        time.sleep(POLL_CHILD_S)
    return int(proc.returncode)


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    """Return once ``host:port`` accepts a TCP connection; ``TimeoutError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no CARLA server answers on {host}:{port} after {timeout_s:.0f} s") from None
            time.sleep(0.5)


class _Server:
    """The shard's server: started and restarted here when it has a launch command, else only waited for."""

    def __init__(self, spec: ServerSpec, log_path: str, env: dict[str, str]) -> None:
        self.spec = spec
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def ensure_up(self, timeout_s: float, settle_s: float) -> None:
        if self.spec.external:
            return
        if not self.spec.launch:
            wait_for_port(self.spec.host, self.spec.port, timeout_s)
            return
        if self.proc is not None and self.proc.poll() is None:
            return
        logger.info("starting CARLA server on port %d: %s", self.spec.port, " ".join(self.spec.launch))
        with open(self.log_path or os.devnull, "a", encoding="utf-8") as log:
            self.proc = _spawn(self.spec.launch, log, self.env)
        self.starts += 1
        wait_for_port(self.spec.host, self.spec.port, timeout_s)
        time.sleep(settle_s)

    def restart(self) -> None:
        """Stop a started server (``ensure_up`` starts it again); a given server is left to its owner."""
        if self.spec.launch:
            _stop(self.proc)
            self.proc = None

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


@dataclass
class _ShardState:
    """What a shard checkpoint says (an empty state when there is none)."""

    progress: int
    entry_status: str
    records: list[dict[str, Any]]
    sensors: list[str]
    has_global: bool  # the evaluator reached the end and computed its global record

    @classmethod
    def read(cls, path: str, total: int) -> _ShardState:
        data = ResultsFile.read(path)
        checkpoint = data.get("_checkpoint") or {}
        progress = checkpoint.get("progress") or [0, total]
        return cls(
            progress=int(progress[0]),
            entry_status=str(data.get("entry_status", "Started")),
            records=[r for r in checkpoint.get("records") or [] if isinstance(r, dict)],
            sensors=list(data.get("sensors") or []),
            has_global=bool(data.get("values")),
        )


def _skip_route(job: ShardJob, index: int) -> None:
    """Record route ``index`` as crashed and move the shard's progress past it (the leaderboard resumes after it)."""
    state = _ShardState.read(job.checkpoint, len(job.route_ids))
    records = state.records
    name = job.route_ids[index]
    kept = records[:index]
    if len(records) > index and records[index].get("route_id") == name and records[index].get("status") != "Started":
        kept.append(records[index])  # the leaderboard's own crash record
    else:
        _, reason = FAILURE_MESSAGES["Simulation"]
        kept.append(make_route_record(name, index, None, reason))
    results = ResultsFile(job.checkpoint)
    results.records = kept
    results.progress = [index + 1, len(job.route_ids)]
    results.sensors = state.sensors
    # "Started", not "Crashed": a "Crashed" checkpoint makes the leaderboard rerun its last route.
    results.entry_status = "Started"
    results.save()


def run_shard(job: ShardJob) -> ShardReport:
    """Run the evaluator over one shard until every route has a record (see the module docstring)."""
    report = ShardReport(shard=job.shard)
    total = len(job.route_ids)
    server = _Server(job.server, job.server_log, job.env)
    retries: collections.Counter[int] = collections.Counter()
    resume = job.resume and Path(job.checkpoint).is_file()
    Path(job.evaluator_log or os.devnull).parent.mkdir(parents=True, exist_ok=True)
    try:
        while True:
            try:
                server.ensure_up(job.server_start_timeout_s, job.server_settle_s)
            except TimeoutError as exc:
                report.error = str(exc)
                return report
            cmd = [*job.command, "--resume=True"] if resume else list(job.command)
            with open(job.evaluator_log or os.devnull, "a", encoding="utf-8") as log:
                log.write(f"\n===== {' '.join(shlex.quote(c) for c in cmd)}\n")
                log.flush()
                proc = _spawn(cmd, log, job.env)
                try:
                    code = _wait(proc)
                finally:
                    _stop(proc)
            report.launches += 1
            state = _ShardState.read(job.checkpoint, total)
            report.finished = sum(1 for r in state.records if r.get("status", "Started") != "Started")
            if state.entry_status == "Rejected":
                report.rejected = True
                return report
            # A finished evaluator has computed its global record; its entry status may still say "Crashed" (for a
            # route recorded crashed earlier), which is not a crash of this launch.
            if state.progress >= total and (state.has_global or state.entry_status != "Crashed"):
                return report
            # The route the leaderboard reruns on --resume: the crashed one of a "Crashed" file, else the next one.
            crashed = state.entry_status == "Crashed"
            rerun = min(max(0, state.progress - 1) if crashed else state.progress, total - 1)
            retries[rerun] += 1
            if retries[rerun] > job.max_retries:
                logger.error(
                    "shard %d: %s stopped the evaluator again; recorded as crashed", job.shard, job.route_ids[rerun]
                )
                _skip_route(job, rerun)
                report.skipped.append(job.route_ids[rerun])
                if rerun + 1 >= total:
                    report.finished = total
                    return report
            else:
                logger.warning(
                    "shard %d: the evaluator stopped at %s (exit %d); restarting the server and resuming",
                    job.shard,
                    job.route_ids[rerun],
                    code,
                )
            server.restart()
            resume = True
    finally:
        server.stop()
        report.server_starts = server.starts
