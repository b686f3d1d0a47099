"""The ego history of an ``Observation``, built one way for the driving loop and for the training-data collector.

Both keep the ego's own samples at the simulator rate (rear-axle pose in the internal WORLD frame, speed,
acceleration) in an ``EgoHistory`` and turn them into the ``EgoState`` tuple of an ``Observation``: the
samples nearest to ``t - k * period`` for ``k = num_states - 1 ... 0``, oldest first, in the ego frame of the
latest sample (last, at the origin). Near the route start, times not driven yet are left out (a shorter
history). One builder for both means the features a model is trained on are the features it is driven with.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np

from autovla_agent.contract import EgoState
from autovla_agent.loop.agent_config import AgentConfig
from autovla_agent.sensors import frames


class EgoSample(NamedTuple):
    """One simulator-rate ego sample."""

    timestamp_s: float
    rear_axle_pose_world: np.ndarray  # (3,) x_m, y_m, yaw_rad in the internal WORLD frame
    speed_mps: float  # signed: negative when reversing
    accel_mps2: float  # signed longitudinal acceleration


class EgoHistory:
    """The last seconds of ego samples and the model-rate ego history built from them (see the module docstring).

    ``push`` keeps the sample as given (callers hand over a pose array they no longer change).
    """

    def __init__(self, num_states: int, period_s: float, sim_dt_s: float) -> None:
        if not (period_s > 0.0 and sim_dt_s > 0.0):
            raise ValueError(f"period_s and sim_dt_s must be > 0; got {period_s} and {sim_dt_s}")
        self.num_states = max(1, int(num_states))
        self.period_s = float(period_s)
        # Ticks carry float jitter: a past time counts as driven half a simulator step early.
        self.tolerance_s = 0.5 * float(sim_dt_s)
        # A second beyond the oldest state, so the sample nearest to it is always still held.
        horizon_s = self.num_states * self.period_s + 1.0
        self._samples: deque[EgoSample] = deque(maxlen=int(math.ceil(horizon_s / sim_dt_s - 1e-9)) + 2)

    @classmethod
    def for_agent(cls, config: AgentConfig, sim_dt_s: float | None = None) -> EgoHistory:
        """The history an agent with ``config`` prompts with; ``sim_dt_s`` defaults to the config's tick."""
        return cls(
            config.vla.prompt.num_history_states,
            config.frame_buffer.period_s,
            config.sim_dt_s if sim_dt_s is None else sim_dt_s,
        )

    def __len__(self) -> int:
        """Samples held."""
        return len(self._samples)

    def push(self, sample: EgoSample) -> None:
        """Add this tick's sample (the newest; the ego frame of ``states`` is its pose)."""
        self._samples.append(sample)

    def states(self) -> tuple[EgoState, ...]:
        """The ``Observation.ego_history`` at the newest sample: oldest first, the newest last at the origin."""
        if not self._samples:
            raise RuntimeError("EgoHistory.states() before any push()")
        entries = list(self._samples)
        now = entries[-1]
        times = np.array([e.timestamp_s for e in entries])
        states = []
        for k in range(self.num_states - 1, -1, -1):
            t_k = now.timestamp_s - k * self.period_s
            if k > 0 and times[0] > t_k + self.tolerance_s:
                continue  # not that far back yet (route start): a shorter history
            entry = now if k == 0 else entries[int(np.argmin(np.abs(times - t_k)))]
            x, y, yaw = frames.world_to_ego(entry.rear_axle_pose_world, now.rear_axle_pose_world)
            states.append(
                EgoState(
                    timestamp_s=float(entry.timestamp_s),
                    x_m=float(x),
                    y_m=float(y),
                    yaw_rad=float(yaw),
                    speed_mps=float(entry.speed_mps),
                    accel_mps2=float(entry.accel_mps2),
                )
            )
        return tuple(states)
