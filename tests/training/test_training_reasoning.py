import numpy as np

from autovla_agent.contract import NavCommand
from autovla_agent.training.reasoning import SceneFacts, build_reasoning, meta_action
from autovla_agent.training.schema import AgentBox

T = np.arange(1, 11) * 0.5


def _poses(x, y=None):
    y = np.zeros_like(x) if y is None else y
    return np.stack([x, y, np.zeros_like(x)], -1)


def test_meta_action_longitudinal_rules():
    assert meta_action(_poses(np.full(10, 1.0)), 0.5, 5.0).longitudinal == "stop"
    assert meta_action(_poses(5.0 * T), 0.5, 5.3).longitudinal == "maintain speed"
    assert meta_action(_poses(2.0 * T + 0.5 * T**2), 0.5, 2.0).longitudinal == "quickly accelerate"
    assert meta_action(_poses(5.0 * T + 0.1 * T**2), 0.5, 5.0).longitudinal == "accelerate"
    assert meta_action(_poses(8.0 * T - 0.7 * T**2), 0.5, 8.0).longitudinal == "quickly decelerate"


def test_meta_action_lateral_rules():
    assert meta_action(_poses(5 * T, 0.1 * T), 0.5, 5).lateral == "move forward"
    assert meta_action(_poses(5 * T, 0.7 * T), 0.5, 5).lateral == "change lane to the left"
    assert meta_action(_poses(5 * T, -0.7 * T), 0.5, 5).lateral == "change lane to the right"
    assert meta_action(_poses(5 * T, 0.4 * T**2), 0.5, 5).lateral == "turn left"
    assert meta_action(_poses(5 * T, -0.4 * T**2), 0.5, 5).lateral == "turn right"


def test_build_reasoning_mentions_critical_object_and_meta_action():
    lead = AgentBox(id="7", x_m=12.0, y_m=0.2, yaw_rad=0.0, speed_mps=0.0)
    far = AgentBox(id="8", x_m=-30.0, y_m=0.0, yaw_rad=0.0, speed_mps=5.0)
    facts = SceneFacts(
        town="Town01",
        speed_mps=6.0,
        command=NavCommand.TURN_LEFT,
        junction_ahead_m=20.0,
        agents=(lead, far),
        expert_reason="stopped obstacle ahead.",
    )
    text, action = build_reasoning(facts, _poses(np.minimum(6 * T, 7.0)), 0.5)
    assert "stopped" in text and "12 m ahead" in text and "junction in 20 m" in text
    assert "turn left" in text and "30 m" not in text and "stopped obstacle ahead" in text
    assert text.endswith(f"Meta action: {action.text()}.")
