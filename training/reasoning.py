"""Chain-of-thought text from privileged scene facts, and AutoVLA's meta-action rules on a future trajectory.

Meta-action rules (AutoVLA App. CoT annotation): longitudinal "stop" when the final speed is below 0.3 m/s,
"maintain speed" when it stays within +/-0.8 m/s of the current speed, "quickly ..." when the speed ratio
exceeds 2; lateral "move forward" when |y| < 2 m along the whole path, a lane change when the final |y| is
<= 4 m, otherwise a turn (left for y > 0: the ego frame's y points left).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autovla_agent.contract import NavCommand
from autovla_agent.training.schema import AgentBox, MetaAction


@dataclass(frozen=True, kw_only=True, slots=True)
class MetaActionRules:
    """Thresholds of AutoVLA's meta-action rules."""

    stop_speed_mps: float = 0.3
    constant_band_mps: float = 0.8
    quick_ratio: float = 2.0
    forward_max_abs_y_m: float = 2.0
    lane_change_max_abs_y_m: float = 4.0


def meta_action(
    poses_ego: np.ndarray, dt_s: float, speed_mps: float, rules: MetaActionRules = MetaActionRules()
) -> MetaAction:
    """Meta-action of a future trajectory (T, 3) at ``dt_s`` in the ego frame, with current speed ``speed_mps``."""
    poses = np.asarray(poses_ego, dtype=np.float64)
    prev = poses[-2, :2] if len(poses) > 1 else np.zeros(2)
    final_speed = float(np.linalg.norm(poses[-1, :2] - prev)) / dt_s
    v0 = abs(speed_mps)
    if final_speed < rules.stop_speed_mps:
        longitudinal = "stop"
    elif abs(final_speed - v0) <= rules.constant_band_mps:
        longitudinal = "maintain speed"
    elif final_speed > v0:
        quick = final_speed > rules.quick_ratio * max(v0, rules.stop_speed_mps)
        longitudinal = "quickly accelerate" if quick else "accelerate"
    else:
        quick = v0 > rules.quick_ratio * final_speed
        longitudinal = "quickly decelerate" if quick else "decelerate"
    y = poses[:, 1]
    if np.all(np.abs(y) < rules.forward_max_abs_y_m):
        lateral = "move forward"
    elif abs(y[-1]) <= rules.lane_change_max_abs_y_m:
        lateral = "change lane to the left" if y[-1] > 0 else "change lane to the right"
    else:
        lateral = "turn left" if y[-1] > 0 else "turn right"
    return MetaAction(lateral=lateral, longitudinal=longitudinal)


@dataclass(frozen=True, kw_only=True, slots=True)
class SceneFacts:
    """Privileged facts the reasoning text is written from (ego frame, SI units)."""

    town: str = ""
    speed_mps: float = 0.0
    command: NavCommand = NavCommand.UNKNOWN
    in_junction: bool = False
    junction_ahead_m: float | None = None  # distance to the next junction along the route, if close
    lanes_same_direction: int = 1
    agents: tuple[AgentBox, ...] = ()
    expert_reason: str = ""  # why the expert brakes or waits, e.g. "a vehicle ahead is slower"


def _side(y_m: float) -> str:
    if abs(y_m) < 1.5:
        return "in the ego lane"
    return "to the left" if y_m > 0 else "to the right"


def critical_objects(
    agents: Sequence[AgentBox], path_ego: np.ndarray, max_objects: int = 3, corridor_m: float = 3.5
) -> list[tuple[AgentBox, float]]:
    """Agents near the ego's future path (x_m > -5 m, within ``corridor_m`` of it), nearest first, with distance."""
    path = np.vstack([np.zeros((1, 2)), np.asarray(path_ego, dtype=np.float64)[:, :2]])
    picked = []
    for agent in agents:
        if agent.x_m < -5.0:
            continue
        d_path = float(np.min(np.linalg.norm(path - np.array([agent.x_m, agent.y_m]), axis=1)))
        if d_path <= corridor_m or (0.0 < agent.x_m < 25.0 and abs(agent.y_m) < corridor_m):
            picked.append((agent, math.hypot(agent.x_m, agent.y_m)))
    picked.sort(key=lambda p: p[1])
    return picked[:max_objects]


def _describe_agent(agent: AgentBox, dist_m: float, ego_speed_mps: float) -> tuple[str, str]:
    """(description, predicted behaviour) of one critical object, in few words (reasoning costs tokens)."""
    kind = {"vehicle": "vehicle", "pedestrian": "pedestrian", "cyclist": "cyclist", "static": "obstacle"}[agent.kind]
    moving = abs(agent.speed_mps) > 0.5
    where = "ahead" if agent.x_m > 0 else "beside"
    state = f"at {agent.speed_mps:.0f} m/s" if moving else "stopped"
    desc = f"{kind} {dist_m:.0f} m {where} {_side(agent.y_m)}, {state}"
    heading_rel = (agent.yaw_rad + math.pi) % (2 * math.pi) - math.pi
    if not moving:
        behaviour = "it stays"
    elif abs(heading_rel) > 2.5:
        behaviour = "oncoming, stays in its lane"
    elif agent.speed_mps < ego_speed_mps - 0.5 and agent.x_m > 0:
        behaviour = "slower, the gap shrinks"
    else:
        behaviour = "keeps its lane and speed"
    return desc, behaviour


def _reason_part(expert_reason: str) -> str:
    """The cause from an expert note like 'turn left, decelerate: following vehicle 3 12 m ahead.'."""
    text = expert_reason.strip(" .")
    return text.split(": ", 1)[1] if ": " in text else text


def build_reasoning(facts: SceneFacts, future_poses_ego: np.ndarray, dt_s: float) -> tuple[str, MetaAction]:
    """Reasoning text (scene, critical objects, prediction, intent, meta-action) and the meta-action chosen.

    Kept short on purpose (about 60-100 tokens for Qwen's tokenizer): reasoning is decoded token by token.
    """
    action = meta_action(future_poses_ego, dt_s, facts.speed_mps)
    road = "junction" if facts.in_junction else f"{facts.lanes_same_direction} lane(s) our way"
    scene = f"Scene: {road}, {facts.speed_mps:.1f} m/s"
    if facts.junction_ahead_m is not None and not facts.in_junction:
        scene += f", junction in {facts.junction_ahead_m:.0f} m"
    scene += "."
    crit = critical_objects(facts.agents, np.asarray(future_poses_ego))
    if crit:
        described = [_describe_agent(a, d, facts.speed_mps) for a, d in crit]
        objects = "Critical objects: " + "; ".join(d for d, _ in described) + "."
        prediction = "Prediction: " + "; ".join(b for _, b in described) + "."
    else:
        objects = "Critical objects: none."
        prediction = "Prediction: no conflict."
    intent = f"Intent: {facts.command.value}"
    reason = _reason_part(facts.expert_reason)
    if reason:
        intent += f"; {reason}"
    intent += "."
    final = f"Meta action: {action.text()}."
    return " ".join([scene, objects, prediction, intent, final]), action
