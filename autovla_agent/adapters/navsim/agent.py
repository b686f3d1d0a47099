"""NAVSIM agent (navsim v1.1 and v2.x): ``run_pdm_score.py agent=autovla`` plans through the core VLA planner.

The only module of the package that imports navsim. It stays thin: AgentInput -> Observation and
Plan -> poses live in ``autovla_agent.adapters.navsim.convert`` (navsim-free, tested without navsim).

Lifecycle inside navsim: every worker chunk instantiates the agent from ``agent/autovla.yaml`` and calls
``initialize()`` once, then ``compute_trajectory`` scene by scene. The model is loaded by ``load_vla``, which is
cached per process, so a second agent in the same process reuses it. Because navsim has no end-of-run hook
for agents, each agent's plan-status summary (fallback count included) is logged every ``log_every_n_scenes``
scenes and once more by a ``weakref.finalize`` when navsim drops the agent or at interpreter exit, whichever
comes first (``__del__`` is not reliable at interpreter shutdown, and a killed Ray worker runs neither, which
the periodic line covers).
"""

from __future__ import annotations

import inspect
import logging
import time
import weakref
from typing import Any

import numpy as np
from navsim.agents.abstract_agent import AbstractAgent
from navsim.common.dataclasses import AgentInput, SensorConfig, Trajectory
from nuplan.planning.simulation.trajectory.trajectory_sampling import TrajectorySampling

from autovla_agent.adapters.navsim.convert import (
    NavsimAgentConfig,
    NavsimRunStats,
    load_navsim_vla_config,
    model_views,
    observation_from_agent_input,
    plan_to_poses,
    sensor_config_fields,
    trajectory_times_s,
)
from autovla_agent.constant_velocity import constant_velocity_poses
from autovla_agent.policy.configuration import VLAConfig

logger = logging.getLogger(__name__)

# navsim v2.x made trajectory_sampling an AbstractAgent constructor argument; v1.1 has none. Checked once.
_BASE_TAKES_SAMPLING = "trajectory_sampling" in inspect.signature(AbstractAgent.__init__).parameters
_TRAINING_HINT = (
    "AutoVLA is not trained through navsim's run_training.py; use the package's own training commands "
    "(autovla-train-sft for supervised fine-tuning, autovla-train-grpo for GRPO reinforcement fine-tuning "
    "with the PDM score as reward)"
)
_MAX_LOGGED_TRACEBACKS = 3  # planner exceptions after these are logged in one line each


def _log_final_summary(stats: NavsimRunStats) -> None:
    """Log one agent's final plan-status summary if it planned at least one scene."""
    if stats.scenes:
        extra = stats.planner_stats.as_dict() if stats.planner_stats is not None else {}
        level = logging.WARNING if stats.fallbacks else logging.INFO
        logger.log(level, "autovla navsim agent final summary: %s; planner %s", stats.summary(), extra)


class AutoVLANavsimAgent(AbstractAgent):
    """navsim ``AbstractAgent`` that plans with the AutoVLA VLA planner from the agent's camera history."""

    requires_scene = False

    def __init__(
        self,
        trajectory_sampling: TrajectorySampling | None = None,
        checkpoint_path: str | None = None,
        config_path: str | None = None,
        thinking_mode: str | None = None,
        overrides: tuple[str, ...] | list[str] = (),
        cameras: dict[str, str] | None = None,
        log_every_n_scenes: int = 50,
    ) -> None:
        """Read and check the configs (no model loading: navsim calls ``initialize()`` for that)."""
        sampling = trajectory_sampling
        if sampling is None:  # navsim's own default: 8 poses x 0.5 s
            sampling = TrajectorySampling(time_horizon=4, interval_length=0.5)
        if _BASE_TAKES_SAMPLING:
            super().__init__(trajectory_sampling=sampling, requires_scene=False)
        else:
            super().__init__(requires_scene=False)
            self._trajectory_sampling = sampling
        extra = {} if cameras is None else {"cameras": dict(cameras)}
        self._agent_config = NavsimAgentConfig(
            checkpoint_path=checkpoint_path,
            config_path=config_path,
            thinking_mode=thinking_mode,
            overrides=tuple(overrides),
            log_every_n_scenes=log_every_n_scenes,
            **extra,
        )
        # Parse the VLA config now so that a typo fails at instantiation, before navsim loads any scene.
        self._vla_config: VLAConfig = load_navsim_vla_config(self._agent_config)
        self._views, self._num_frames = model_views(self._vla_config)
        self._sensor_fields = sensor_config_fields(self._agent_config.cameras, self._views, self._num_frames)
        self._planner: Any = None
        self.stats = NavsimRunStats()
        # The finalizer holds only the small stats (never the agent), so agents of finished chunks leave nothing.
        self.final_summary = weakref.finalize(self, _log_final_summary, self.stats)

    def name(self) -> str:
        """The agent name navsim uses in logs and result files."""
        return "autovla"

    def initialize(self) -> None:
        """Build the planner; the model itself is loaded once per process (``load_vla`` is cached)."""
        if self._planner is not None:
            return
        from autovla_agent.policy.modeling import VLAPlanner  # torch/transformers only where planning happens

        start_s = time.monotonic()
        self._planner = VLAPlanner(self._vla_config)
        self.stats.planner_stats = self._planner.stats
        logger.info(
            "autovla agent ready in %.1f s: views %s -> %s, %d frames at 2 Hz, output %d poses x %.2f s",
            time.monotonic() - start_s,
            list(self._views),
            [self._agent_config.cameras[v] for v in self._views],
            self._num_frames,
            self._trajectory_sampling.num_poses,
            self._trajectory_sampling.interval_length,
        )

    def get_sensor_config(self) -> SensorConfig:
        """Only the model's cameras at its history frames; no lidar and no other camera is read from disk."""
        return SensorConfig(**self._sensor_fields)

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        """Plan from the agent input and return poses at navsim's sampling (a fallback plan is still valid)."""
        if self._planner is None:
            self.initialize()
        num_poses = self._trajectory_sampling.num_poses
        interval_s = self._trajectory_sampling.interval_length
        # Bad input (a camera navsim did not load, a malformed status) raises here: it is a setup error.
        # The current frame is t = 0 (AgentInput carries no clock); the vision cache keys on frame content.
        obs = observation_from_agent_input(
            agent_input, self._agent_config.cameras, self._views, self._num_frames, timestamp_s=0.0
        )
        start_s = time.monotonic()
        try:
            plan = self._planner.plan(obs)
            poses = plan_to_poses(plan, num_poses, interval_s)
            status = plan.status
        except Exception:  # noqa: BLE001 - one failing scene must not drop out of navsim's average
            # navsim excludes a raising scene from the PDMS average (it is not scored 0), which would flatter
            # the agent; a constant-velocity trajectory keeps the scene in the score and is counted.
            if self.stats.errors < _MAX_LOGGED_TRACEBACKS:
                logger.exception("planner raised; using a constant-velocity trajectory for this scene")
            else:
                logger.error("planner raised again; using a constant-velocity trajectory for this scene")
            # Never a reversing stand-in trajectory: a negative speed stands still.
            times_s = trajectory_times_s(num_poses, interval_s)
            poses = constant_velocity_poses(obs.ego.speed_mps, times_s, min_speed_mps=0.0).astype(np.float32)
            status = None
        self.stats.record(status, time.monotonic() - start_s)
        if self.stats.scenes % self._agent_config.log_every_n_scenes == 0:
            logger.info("autovla navsim agent: %s", self.stats.summary())
        return Trajectory(poses, self._trajectory_sampling)

    # Training hooks navsim's run_training.py would call: AutoVLA trains through its own commands.
    def get_feature_builders(self) -> list[Any]:
        """Not supported: raise NotImplementedError naming the training commands."""
        raise NotImplementedError(_TRAINING_HINT)

    def get_target_builders(self) -> list[Any]:
        """Not supported: raise NotImplementedError naming the training commands."""
        raise NotImplementedError(_TRAINING_HINT)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        """Not supported (planning goes through ``compute_trajectory``): raise naming the training commands."""
        raise NotImplementedError(_TRAINING_HINT)

    def compute_loss(self, features: dict[str, Any], targets: dict[str, Any], predictions: dict[str, Any]) -> Any:
        """Not supported: raise NotImplementedError naming the training commands."""
        raise NotImplementedError(_TRAINING_HINT)

    def get_optimizers(self) -> Any:
        """Not supported: raise NotImplementedError naming the training commands."""
        raise NotImplementedError(_TRAINING_HINT)
