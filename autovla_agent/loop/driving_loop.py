"""The simulator-neutral closed loop of the CARLA agent: frame buffer, route, replanning, plan tracking, control.

Each tick the adapter hands over the localised ego (internal WORLD frame) and the raw camera images. The loop
keeps the frames on the model-rate grid, follows the route for the navigation command and target point,
queries the planner at ``replan_hz`` with an ``Observation`` whose ego history is the agent's own pose history
at the model rate, turns the plan (ego frame of the rear axle at the query time) into world poses, and tracks
the last plan between replans with the planners' ``TrajectoryTracker``. It brakes while the frame buffer
warms up and while the last plan is a fallback, and logs each change of that state. Nothing here imports
``carla``; the adapter converts the returned ``ControlCommand`` (internal sign: +steer = left).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from autovla_agent.contract import NavCommand, Observation, Plan, Planner, PlanStatus
from autovla_agent.loop.agent_config import AgentConfig
from autovla_agent.loop.ego_history import EgoHistory, EgoSample
from autovla_agent.loop.localizer import EgoEstimate
from autovla_agent.planners.control import ControlCommand, TrajectoryTracker
from autovla_agent.planners.route import RouteFollower
from autovla_agent.sensors import frames
from autovla_agent.sensors.frame_buffer import FrameBuffer

logger = logging.getLogger(__name__)

LoopState = Literal["warmup", "fallback", "no_plan", "tracking"]
BRAKE = ControlCommand(steer_norm=0.0, throttle_norm=0.0, brake_norm=1.0)


@dataclass(frozen=True, slots=True)
class TickResult:
    """What the loop decided at one tick."""

    command: ControlCommand  # internal sign convention (+steer = left)
    state: LoopState
    replanned: bool
    nav_command: NavCommand
    target_point_ego_m: tuple[float, float] | None
    planner_time_s: float  # wall time spent inside the planner this tick (0 without a replan)


def _history_entry(ego: EgoEstimate) -> EgoSample:
    return EgoSample(ego.timestamp_s, ego.rear_axle_pose_world.copy(), ego.speed_mps, ego.accel_mps2)


class DrivingLoop:
    """Per-route state of the closed loop; build one per route (see the module docstring)."""

    def __init__(
        self,
        config: AgentConfig,
        planner: Planner,
        route_xy_world_m: np.ndarray,
        route_commands: Sequence[NavCommand],
    ) -> None:
        self.config = config
        self.planner = planner
        self.frame_buffer = FrameBuffer(config.frame_buffer, config.rig.camera_ids)
        self.route = RouteFollower(np.asarray(route_xy_world_m, dtype=np.float64), list(route_commands), config.route)
        self.tracker = TrajectoryTracker(config.control, config.vehicle)
        self._views = config.rig.views
        self._replan_period_s = 1.0 / config.replan_hz
        # Ticks carry float jitter: a replan is due half a simulator step before its nominal time.
        self._tolerance_s = 0.5 * config.sim_dt_s
        self._history = EgoHistory.for_agent(config)
        self._t_start_s: float | None = None
        self._last_t_s: float | None = None
        self._last_plan_t_s: float | None = None
        self._plan_is_fallback = False
        self._state: LoopState | None = None
        self.last_plan: Plan | None = None
        self.last_plan_world: np.ndarray | None = None  # (N + 1, 3) rear-axle world poses incl. the start pose
        self.last_plan_record: dict[str, Any] | None = None
        self.num_plans = 0
        self.num_fallbacks = 0

    # ------------------------------------------------------------------------------------------------ helpers
    def _set_state(self, state: LoopState, detail: str = "") -> None:
        if state != self._state:
            log = logger.info if state in ("tracking", "warmup") else logger.warning
            messages = {
                "warmup": "braking while the frame buffer warms up",
                "fallback": "braking: the last plan is a fallback",
                "no_plan": "braking: no plan yet",
                "tracking": "tracking the plan",
            }
            log("%s%s", messages[state], f" ({detail})" if detail else "")
            self._state = state

    def _replan(
        self,
        t_s: float,
        now: tuple[float, np.ndarray, float, float],
        command: NavCommand,
        target_ego: tuple[float, float] | None,
    ) -> float:
        """Query the planner; store the plan in world poses for the tracker. Returns the planner's wall time."""
        obs = Observation(
            timestamp_s=t_s,
            cameras=self.frame_buffer.frames(self._views),
            ego_history=self._history.states(),  # in the ego frame of `now`, the newest sample pushed
            command=command,
            target_point_ego_m=target_ego,
        )
        start = time.perf_counter()
        try:
            plan = self.planner.plan(obs)
            poses = np.asarray(plan.poses_ego, dtype=np.float64)
            if not (np.all(np.isfinite(poses)) and np.all(np.isfinite(plan.times_s)) and plan.times_s[0] > 0.0):
                raise ValueError("the plan has non-finite poses or times that do not start after 0 s")
        except Exception as exc:  # noqa: BLE001 -- the agent must keep driving (braking) whatever the planner does
            logger.exception("planner failed at t=%.2f s; braking until the next replan", t_s)
            plan = Plan(
                times_s=np.array([self._replan_period_s]),
                poses_ego=np.zeros((1, 3)),
                status=PlanStatus.FALLBACK,
                status_reason=f"planner raised {type(exc).__name__}: {exc}",
            )
        elapsed_s = time.perf_counter() - start
        self._last_plan_t_s = t_s
        self.num_plans += 1
        self.last_plan = plan
        pose_now = now[1]
        world = frames.ego_to_world(np.vstack([np.zeros((1, 3)), plan.poses_ego]), pose_now)
        self.last_plan_world = world
        self._plan_is_fallback = plan.status == PlanStatus.FALLBACK
        if self._plan_is_fallback:
            self.num_fallbacks += 1
            logger.warning("fallback plan at t=%.2f s: %s", t_s, plan.status_reason or "no reason given")
        else:
            self.tracker.set_plan(t_s, np.concatenate([[0.0], plan.times_s]), world)
        self.last_plan_record = {
            "time_s": float(t_s),
            "poses_world": world[1:].tolist(),
            "thinking_mode": plan.thinking_mode.value,
            "reasoning": plan.reasoning,
            "status": plan.status.value,
            "status_reason": plan.status_reason,
            "command": command.value,
            "action_tokens": list(plan.action_tokens),
            "timings_s": dict(plan.timings_s),
        }
        return elapsed_s

    # ----------------------------------------------------------------------------------------------- the tick
    def step(self, ego: EgoEstimate, images: Mapping[str, np.ndarray | None]) -> TickResult:
        """One tick at ``ego.timestamp_s`` with this tick's camera images ``{camera_id: BGRA array or None}``."""
        t_s = ego.timestamp_s
        if self._t_start_s is None:
            self._t_start_s = t_s
        dt_s = self.config.sim_dt_s if self._last_t_s is None else t_s - self._last_t_s
        if not 0.0 < dt_s <= 1.0:
            dt_s = self.config.sim_dt_s
        self._last_t_s = t_s
        self.frame_buffer.push(t_s, images)
        now = _history_entry(ego)
        self._history.push(now)

        target = self.route.step(ego.origin_pose_world[:2])
        command = target.command if isinstance(target.command, NavCommand) else NavCommand.UNKNOWN
        tx, ty = frames.world_to_ego(np.asarray(target.xy_world_m, dtype=np.float64), ego.rear_axle_pose_world)
        target_ego = (float(tx), float(ty))

        warm = self.frame_buffer.ready and t_s - self._t_start_s >= self.config.warmup_s - self._tolerance_s
        if not warm:
            self._set_state("warmup", f"{len(self._history)} ticks")
            return TickResult(BRAKE, "warmup", False, command, target_ego, 0.0)

        replanned, planner_time_s = False, 0.0
        due = self._last_plan_t_s is None or t_s - self._last_plan_t_s >= self._replan_period_s - self._tolerance_s
        if due:
            planner_time_s = self._replan(t_s, now, command, target_ego)
            replanned = True
        if self._plan_is_fallback:
            reason = self.last_plan.status_reason if self.last_plan is not None else ""
            self._set_state("fallback", reason)
            return TickResult(BRAKE, "fallback", replanned, command, target_ego, planner_time_s)
        if not self.tracker.has_plan:
            self._set_state("no_plan")
            return TickResult(BRAKE, "no_plan", replanned, command, target_ego, planner_time_s)
        self._set_state("tracking")
        cmd = self.tracker.step(t_s, ego.rear_axle_pose_world, ego.speed_mps, dt_s)
        return TickResult(cmd, "tracking", replanned, command, target_ego, planner_time_s)
