"""Ray as the optional scale-out engine: the settings, the import gate with its install hint, and the session."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["RAY_INSTALL_HINT", "RayUnavailableError", "ScaleConfig", "import_ray", "ray_session", "require_engine"]

RAY_INSTALL_HINT = "pip install 'autovla-agent[ray]'  (or: pip install 'ray>=2.9')"
# Environment variables of the driver that workers need to see (e.g. the training evaluator's plan-stats file);
# a worker of a joined cluster does not inherit the driver's environment, so they are passed explicitly.
FORWARDED_ENV_PREFIXES = ("AUTOVLA_",)


class RayUnavailableError(RuntimeError):
    """More than one worker (or a cluster address) was asked for, and Ray is not installed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ScaleConfig:
    """How many workers run tasks in parallel and where: a local Ray started by the command, or a joined cluster.

    ``workers == 1`` with no ``ray_address`` is the serial, in-process run (Ray is not imported). A worker is a Ray
    actor: one process that loads the agent / model once and runs many tasks. A task whose worker dies is
    retried ``max_retries`` times on a fresh worker.
    """

    workers: int = 1
    ray_address: str = ""  # "": start a local Ray for the run; "auto" or "host:port": join that cluster
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_retries: int = 1

    def __post_init__(self) -> None:
        """Reject counts that cannot work."""
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ValueError("cpus_per_worker must be > 0 and gpus_per_worker >= 0")

    @property
    def uses_ray(self) -> bool:
        """True when tasks run on Ray workers (more than one worker, or a cluster to join)."""
        return self.workers > 1 or bool(self.ray_address)


def import_ray() -> ModuleType:
    """The ``ray`` module, or ``RayUnavailableError`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            f"running with more than one worker (or --ray-address) needs Ray, which is not installed: "
            f"{RAY_INSTALL_HINT}; or run with --workers 1"
        ) from exc
    return ray


def require_engine(config: ScaleConfig) -> None:
    """Fail early (before any task runs) when ``config`` needs Ray and Ray is missing."""
    if config.uses_ray:
        import_ray()


def forwarded_env() -> dict[str, str]:
    """The driver's environment variables that workers must see (``AUTOVLA_*``)."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


@contextlib.contextmanager
def ray_session(config: ScaleConfig) -> Iterator[Any]:
    """Yield ``ray`` with a session: the caller's if one is running, else a local one or the cluster at the address.

    A session started here is shut down on exit; one that was already running (a notebook, a test module) is
    left running.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    # The dashboard is not needed for a batch run and costs start-up time; worker output goes to per-worker log
    # files, so it is not echoed to the console (it would break the progress bar).
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if config.ray_address:
        logger.info("joining the Ray cluster at %s", config.ray_address)
        ray.init(address=config.ray_address, **kwargs)
    else:
        num_cpus = max(1, math.ceil(config.workers * config.cpus_per_worker))
        logger.info("starting a local Ray with %d CPU slot(s) for %d worker(s)", num_cpus, config.workers)
        ray.init(num_cpus=num_cpus, **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()
