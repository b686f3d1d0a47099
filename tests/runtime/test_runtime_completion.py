"""parse_completion and plans from foreign completions: garbled, truncated or empty output never raises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autovla_agent.contract import EgoState, PlanStatus, ThinkingMode
from autovla_agent.policy.completion import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    format_completion,
    parse_completion,
)
from autovla_agent.policy.modeling import VLAPlanner

K, N = 2048, 10
FRAGMENTS = st.sampled_from(
    [
        THINK_OPEN,
        THINK_CLOSE,
        ANSWER_OPEN,
        ANSWER_CLOSE,
        "<action_",
        ">",
        "<action_12>",
        "<action_99999>",
        "<action_-1>",
        "<|im_end|>",
        "\n",
        " ",
        "<think>",
        "</answer>",
        "This is a complex scenario",
        "straightforward scenario",
        "\x00",
        "<<>>",
    ]
)
GARBLED_TEXT = st.lists(
    st.one_of(FRAGMENTS, st.text(max_size=12), st.integers(0, 3 * K).map(lambda i: f"<action_{i}>")), max_size=40
).map("".join)


@settings(max_examples=300, deadline=None)
@given(GARBLED_TEXT)
def test_parse_completion_garbled_text_never_raises_and_is_consistent(text):
    parsed = parse_completion(text, num_action_tokens=N, num_codebook_tokens=K)
    if parsed.status == PlanStatus.FALLBACK:
        assert parsed.action_indices == () and parsed.reason
    else:
        assert len(parsed.action_indices) == N and all(0 <= i < K for i in parsed.action_indices)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 8), min_size=N, max_size=N), st.sampled_from(list(ThinkingMode)), st.data())
def test_parse_completion_truncated_completion_falls_back(actions, mode, data):
    text = format_completion(actions, mode=mode, reasoning=" The light is red.")
    last_action_end = text.rindex(">", 0, text.rindex(ANSWER_CLOSE))  # end of the N-th action token
    cut = data.draw(st.integers(0, last_action_end))  # truncate anywhere before the last action is complete
    parsed = parse_completion(text[:cut], num_action_tokens=N, num_codebook_tokens=K)
    assert parsed.status == PlanStatus.FALLBACK
    full = parse_completion(text, num_action_tokens=N, num_codebook_tokens=K)
    assert full.status == PlanStatus.OK and full.action_indices == tuple(actions) and full.thinking_mode == mode


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-5, 3000), max_size=30))
def test_parse_completion_token_ids_never_raise(ids):
    action_ids = list(range(1000, 1000 + K))
    parsed = parse_completion(ids, num_action_tokens=N, num_codebook_tokens=K, action_token_ids=action_ids)
    assert parsed.status in tuple(PlanStatus)
    assert parsed.usable == (len(parsed.action_indices) == N)


def test_parse_completion_extra_or_out_of_range_actions():
    text = format_completion(list(range(12)))
    parsed = parse_completion(text, num_action_tokens=N, num_codebook_tokens=K)
    assert parsed.status == PlanStatus.REPAIRED and parsed.action_indices == tuple(range(10))
    assert "2 extra" in parsed.reason
    bad = parse_completion(format_completion([K + 5] * N), num_action_tokens=N, num_codebook_tokens=K)
    assert bad.status == PlanStatus.FALLBACK and "outside the codebook" in bad.reason
    inside_think = parse_completion(THINK_OPEN + "<action_1>" * N, num_action_tokens=N, num_codebook_tokens=K)
    assert inside_think.status == PlanStatus.FALLBACK  # actions inside an unfinished <think> are not an answer
    assert (
        parse_completion("", num_action_tokens=N, num_codebook_tokens=K).reason == "truncated or garbled: "
        "empty completion"
    )


@pytest.fixture(scope="module")
def planner(tiny_model_dir):
    from autovla_agent.policy.configuration import ModelConfig, VLAConfig

    return VLAPlanner(VLAConfig(model=ModelConfig(path=str(tiny_model_dir), device="cpu")))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(completion=st.one_of(GARBLED_TEXT, st.lists(st.integers(0, 2700), max_size=40)), speed=st.floats(-3.0, 30.0))
def test_plan_from_garbled_completion_is_fallback_or_full(planner, completion, speed):
    fallbacks = planner.stats.fallback
    plan = planner.plan_from_completion(completion, EgoState(0.0, speed_mps=speed))
    assert plan.poses_ego.shape == (10, 3) and np.all(np.isfinite(plan.poses_ego))
    if plan.status == PlanStatus.FALLBACK:
        assert planner.stats.fallback == fallbacks + 1 and plan.action_tokens == () and plan.status_reason
    else:
        assert len(plan.action_tokens) == N


def test_plan_from_truncated_completion_is_constant_velocity_fallback(planner):
    ego = EgoState(0.0, speed_mps=8.0)
    plan = planner.plan_from_completion(format_completion([3] * N)[:-40], ego)
    assert plan.status == PlanStatus.FALLBACK and "truncated" in plan.status_reason
    np.testing.assert_allclose(plan.poses_ego[:, 0], 8.0 * plan.times_s)
    np.testing.assert_allclose(plan.poses_ego[:, 1:], 0.0)
    standing = planner.plan_from_completion("", EgoState(0.0, speed_mps=0.05))
    np.testing.assert_allclose(standing.poses_ego, 0.0)  # hold the pose when (almost) stopped
    full = planner.plan_from_completion(format_completion([3] * N, mode=ThinkingMode.SLOW, reasoning=" ok"), ego)
    assert full.status == PlanStatus.OK and full.thinking_mode == ThinkingMode.SLOW and full.reasoning == "ok"
