"""A pool of Ray actors running numbered tasks: a work queue, one retry when a worker dies, Ctrl-C, one progress bar.

Each worker is a Ray actor (one process) that builds its task runner once (``WorkerSpec.factory``, e.g. an agent
and its model) and then runs many tasks. The driver hands the next task in order to whichever worker is idle and
reports every finished task to a ``Sink`` at once, in the driver process, so the sink can write its results
file as each task finishes. A task whose worker dies (killed, out of memory, a crash in native code) is reported
to the sink and queued again, first in line, on a fresh worker, ``ScaleConfig.max_retries`` times. Ctrl-C kills
every worker and returns what finished. Each worker logs to ``<log_dir>/<name>-<k>.log``.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from autovla_agent.scale.engine import ScaleConfig, forwarded_env, import_ray, ray_session

logger = logging.getLogger(__name__)

__all__ = ["FarmReport", "Outcome", "RunProgress", "Sink", "WorkerSetupError", "WorkerSpec", "run_farm"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CLOSE_TIMEOUT_S = 20.0


class WorkerSetupError(RuntimeError):
    """A worker could not be started (its runner factory raised): nothing would run, so the run stops."""


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """How each worker builds its task runner: ``factory`` (``"package.module:function"``) called once with ``kwargs``.

    The runner it returns has ``run(task) -> result`` and optionally ``close()``. Everything here is pickled to
    the workers, so keep it to plain data.
    """

    factory: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    log_dir: str = ""  # per-worker log files; "" leaves worker output in Ray's session logs
    name: str = "worker"
    env: Mapping[str, str] = field(default_factory=dict)


class Outcome(NamedTuple):
    """What the sink says about a task it was told of: counted as a failure, and whether the run must stop."""

    failed: bool = False
    stop: bool = False


class Sink(Protocol):
    """Receives task results in the driver process, as they finish (any order)."""

    def on_result(self, index: int, result: Any) -> Outcome:
        """Store a finished task's result."""

    def on_worker_lost(self, index: int, reason: str, will_retry: bool) -> Outcome:
        """The worker running task ``index`` died; ``will_retry`` when it is queued again."""


@dataclass
class FarmReport:
    """How a run went."""

    completed: int = 0  # tasks with a result
    lost: int = 0  # tasks whose last attempt died with its worker
    retried: int = 0  # attempts queued again after a worker died
    stopped: bool = False  # a result asked to stop the run
    interrupted: bool = False  # Ctrl-C
    wall_s: float = 0.0  # from the first worker's start to the last result
    worker_logs: list[str] = field(default_factory=list)


class RunProgress:
    """One tqdm bar for the whole run: tasks done / total, with failures and retries."""

    def __init__(self, total: int, done: int = 0, desc: str = "routes", enabled: bool = True) -> None:
        from tqdm import tqdm

        self.failed = 0
        self.retried = 0
        self._bar = tqdm(
            total=total,
            initial=done,
            desc=desc,
            unit="route",
            disable=True if not enabled else None,
            dynamic_ncols=True,
        )
        self._bar.set_postfix_str(self._postfix(), refresh=False)

    def _postfix(self) -> str:
        return f"failed={self.failed} retried={self.retried}"

    def task_done(self, failed: bool) -> None:
        """Advance by one finished task."""
        self.failed += int(failed)
        self._bar.update(1)
        self._bar.set_postfix_str(self._postfix())

    def retry(self) -> None:
        """Count a task queued again."""
        self.retried += 1
        self._bar.set_postfix_str(self._postfix())

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()


def _setup_worker_logging(log_dir: str, name: str, worker_id: int) -> str:
    """Send this process's logging, stdout and stderr to ``<log_dir>/<name>-<worker_id>.log``."""
    if not log_dir:
        return ""
    path = Path(log_dir) / f"{name}-{worker_id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Redirect the file descriptors, not only the Python streams: warnings of native libraries and tqdm bars of
    # the runner land in the same file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return str(path)


class _Worker:
    """The body of a worker actor: builds the runner once, then runs tasks one at a time."""

    def __init__(self, spec: WorkerSpec, worker_id: int) -> None:
        os.environ.update(spec.env)
        self.worker_id = worker_id
        self.log_path = _setup_worker_logging(spec.log_dir, spec.name, worker_id)
        module_name, _, attr = spec.factory.partition(":")
        logger.info("worker %d (pid %d): building %s", worker_id, os.getpid(), spec.factory)
        self.runner = getattr(importlib.import_module(module_name), attr)(**dict(spec.kwargs))

    def ready(self) -> dict[str, Any]:
        """Where this worker runs and logs."""
        return {"pid": os.getpid(), "log": self.log_path}

    def run(self, task: Any) -> Any:
        """Run one task with the runner."""
        return self.runner.run(task)

    def close(self) -> None:
        """Let the runner release what it holds."""
        close = getattr(self.runner, "close", None)
        if close is not None:
            close()
        logging.shutdown()


@dataclass
class _Slot:
    handle: Any
    worker_id: int


class _Pool:
    """The live actors: creation with resources, readiness, replacement, shutdown."""

    def __init__(self, ray: Any, spec: WorkerSpec, config: ScaleConfig) -> None:
        self.ray = ray
        self.spec = WorkerSpec(spec.factory, spec.kwargs, spec.log_dir, spec.name, {**forwarded_env(), **spec.env})
        self.config = config
        self.actor_class = ray.remote(_Worker)
        self.next_id = 0
        self.slots: list[_Slot] = []
        self.logs: list[str] = []

    def spawn(self) -> _Slot:
        options: dict[str, Any] = {"num_cpus": self.config.cpus_per_worker, "max_restarts": 0, "max_task_retries": 0}
        if self.config.gpus_per_worker:
            options["num_gpus"] = self.config.gpus_per_worker
        slot = _Slot(self.actor_class.options(**options).remote(self.spec, self.next_id), self.next_id)
        self.next_id += 1
        self.slots.append(slot)
        return slot

    def start(self, count: int) -> list[_Slot]:
        """Start ``count`` workers and wait until each has built its runner."""
        slots = [self.spawn() for _ in range(count)]
        try:
            infos = self.ray.get([s.handle.ready.remote() for s in slots])
        except self.ray.exceptions.RayError as exc:
            raise WorkerSetupError(f"a worker could not start: {exc}") from exc
        self.logs += [info["log"] for info in infos if info["log"]]
        for slot, info in zip(slots, infos, strict=True):
            logger.debug("worker %d: pid %d", slot.worker_id, info["pid"])
        return slots

    def spawn_logged(self) -> _Slot:
        """Start a replacement worker (its readiness shows with its first task); note its log file."""
        slot = self.spawn()
        if self.spec.log_dir:
            self.logs.append(str(Path(self.spec.log_dir) / f"{self.spec.name}-{slot.worker_id}.log"))
        return slot

    def kill(self, slot: _Slot) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(slot.handle, no_restart=True)
        if slot in self.slots:
            self.slots.remove(slot)

    def shutdown(self, graceful: bool) -> None:
        """Close (when ``graceful``) and kill every worker."""
        if graceful and self.slots:
            refs = [s.handle.close.remote() for s in self.slots]
            with contextlib.suppress(Exception):
                self.ray.wait(refs, num_returns=len(refs), timeout=CLOSE_TIMEOUT_S)
        for slot in list(self.slots):
            self.kill(slot)


def _loss_reason(ray: Any, exc: BaseException) -> str:
    """A short text of why a task has no result."""
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return "the worker was killed for lack of memory"
    if isinstance(exc, ray.exceptions.RayTaskError):
        return f"the task raised {type(exc.cause).__name__}: {exc.cause}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"the worker died ({type(exc).__name__}{': ' + first if first else ''})"


class _Scheduler:
    """Hands queued tasks to idle workers in order and settles each finished attempt with the sink."""

    def __init__(self, ray: Any, pool: _Pool, config: ScaleConfig, sink: Sink, progress: RunProgress | None) -> None:
        self.ray, self.pool, self.config, self.sink, self.progress = ray, pool, config, sink, progress
        self.queue: collections.deque[tuple[int, Any, int]] = collections.deque()
        self.idle: collections.deque[_Slot] = collections.deque()
        self.inflight: dict[Any, tuple[_Slot, int, Any, int]] = {}
        self.stop_at: int | None = None
        self.report = FarmReport()

    def run(self, tasks: Sequence[tuple[int, Any]]) -> None:
        self.idle.extend(self.pool.start(min(self.config.workers, len(tasks))))
        self.queue.extend((index, task, 0) for index, task in tasks)
        while self.queue or self.inflight:
            if self.queue and not self.idle and not self.inflight:
                self.idle.append(self.pool.spawn_logged())
            while self.queue and self.idle:
                slot = self.idle.popleft()
                index, task, attempt = self.queue.popleft()
                self.inflight[slot.handle.run.remote(task)] = (slot, index, task, attempt)
            (ref,), _ = self.ray.wait(list(self.inflight), num_returns=1)
            slot, index, task, attempt = self.inflight.pop(ref)
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:
                self._lost(slot, index, task, attempt, _loss_reason(self.ray, exc))
                continue
            self.report.completed += 1
            self.idle.append(slot)
            outcome = self.sink.on_result(index, result)
            if self.progress is not None:
                self.progress.task_done(failed=outcome.failed)
            if outcome.stop:
                self._stop_after(index)

    def _lost(self, slot: _Slot, index: int, task: Any, attempt: int, reason: str) -> None:
        will_retry = attempt < self.config.max_retries
        logger.warning(
            "task %d (attempt %d) lost on worker %d: %s%s",
            index,
            attempt + 1,
            slot.worker_id,
            reason,
            "; retrying it on a fresh worker" if will_retry else "",
        )
        self.pool.kill(slot)
        outcome = self.sink.on_worker_lost(index, reason, will_retry)
        if will_retry:
            self.queue.appendleft((index, task, attempt + 1))
            self.report.retried += 1
            if self.progress is not None:
                self.progress.retry()
        else:
            self.report.lost += 1
            if self.progress is not None:
                self.progress.task_done(failed=True)
        if outcome.stop:
            self._stop_after(index)
        if self.queue:
            self.idle.append(self.pool.spawn_logged())

    def _stop_after(self, index: int) -> None:
        """No task after ``index`` runs any more; those before it (queued or running) still finish.

        Tasks are handed out in order, so every task before ``index`` has started: letting them finish gives the
        result of a serial run that stops at the first stopping task.
        """
        self.stop_at = index if self.stop_at is None else min(self.stop_at, index)
        self.report.stopped = True
        self.queue = collections.deque(t for t in self.queue if t[0] < self.stop_at)
        for ref, (slot, other, _, _) in list(self.inflight.items()):
            if other > self.stop_at:
                del self.inflight[ref]
                self.pool.kill(slot)


def run_farm(
    tasks: Sequence[tuple[int, Any]],
    spec: WorkerSpec,
    config: ScaleConfig,
    sink: Sink,
    progress: RunProgress | None = None,
) -> FarmReport:
    """Run ``(index, task)`` pairs on ``config.workers`` Ray actors (see the module docstring); report to ``sink``.

    A result whose outcome says stop ends the run after the tasks before it have finished (``FarmReport.stopped``).
    """
    ray = import_ray()
    if not tasks:
        return FarmReport()
    with ray_session(config):
        pool = _Pool(ray, spec, config)
        scheduler = _Scheduler(ray, pool, config, sink, progress)
        t0 = time.perf_counter()
        graceful = False
        try:
            scheduler.run(tasks)
            graceful = not scheduler.report.stopped
        except KeyboardInterrupt:
            scheduler.report.interrupted = True
            logger.warning("interrupted: stopping all workers; the finished tasks are kept")
        finally:
            scheduler.report.wall_s = time.perf_counter() - t0
            scheduler.report.worker_logs = list(pool.logs)
            pool.shutdown(graceful)
    return scheduler.report
