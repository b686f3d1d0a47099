"""End-to-end planning with the tiny model: thinking modes, feasibility, budget, sampling, caches."""

from __future__ import annotations

import numpy as np
import pytest

from autovla_agent.contract import PlanStatus, ThinkingMode
from autovla_agent.policy.completion import FAST_THINKING_SENTENCE, SLOW_THINKING_SENTENCE
from autovla_agent.policy.modeling import VLAPlanner


def assert_feasible(planner: VLAPlanner, plan, speed_mps: float, accel_mps2: float) -> None:
    """The plan's poses are the bicycle decoding of its tokens, and that decoding respects the vehicle limits."""
    vehicle = planner.config.vehicle
    assert len(plan.action_tokens) == planner.config.decoding.num_action_tokens
    assert plan.poses_ego.shape == (planner.config.decoding.plan_num_poses, 3)
    assert np.all(np.isfinite(plan.poses_ego))
    trajectory = planner.decoder.decode(list(plan.action_tokens), speed_mps=speed_mps, accel_mps2=accel_mps2)
    np.testing.assert_allclose(trajectory.sample(plan.times_s), plan.poses_ego, atol=1e-9)
    assert np.all(trajectory.accel_mps2 <= vehicle.max_accel_mps2 + 1e-6)
    assert np.all(trajectory.accel_mps2 >= -vehicle.max_decel_mps2 - 1e-6)
    assert np.all(np.abs(trajectory.steer_rad) <= vehicle.max_steer_rad + 1e-6)
    assert np.all(trajectory.states[:, 3] <= vehicle.max_speed_mps + 1e-6)


@pytest.mark.parametrize("layout", ["video", "images"])
@pytest.mark.parametrize("policy", ["fast", "slow", "adaptive"])
def test_planner_each_policy_gives_full_feasible_plan(make_config, make_obs, policy, layout):
    planner = VLAPlanner(make_config(prompt={"camera_layout": layout}, thinking={"policy": policy}))
    for start in (0, 1):
        obs = make_obs(start=start)
        plan = planner.plan(obs)
        assert plan.status in (PlanStatus.OK, PlanStatus.REPAIRED), plan.status_reason
        assert_feasible(planner, plan, obs.ego.speed_mps, obs.ego.accel_mps2)
        if plan.thinking_mode == ThinkingMode.SLOW:
            assert plan.reasoning.startswith(SLOW_THINKING_SENTENCE)
            assert len(plan.reasoning) > len(SLOW_THINKING_SENTENCE)  # something was generated
        else:
            assert plan.reasoning == FAST_THINKING_SENTENCE
        assert {"preprocess_s", "vision_s", "prefill_s", "actions_s", "postprocess_s", "total_s"} <= set(plan.timings_s)
    expected_mode = {"fast": ThinkingMode.FAST, "slow": ThinkingMode.SLOW}.get(policy)
    if expected_mode is not None:
        assert plan.thinking_mode == expected_mode
    assert planner.stats.steps == 2 and planner.stats.fallback == 0
    assert planner.stats.fast + planner.stats.slow == 2


def test_planner_slow_reasoning_limit_marks_plan_repaired(make_config, make_obs):
    planner = VLAPlanner(make_config(thinking={"policy": "slow", "max_reasoning_tokens": 3}))
    plan = planner.plan(make_obs())
    # The random model never writes </think> within 3 tokens: the closing is forced and the plan says so.
    assert plan.status == PlanStatus.REPAIRED
    assert "limit of 3 tokens" in plan.status_reason
    assert planner.stats.reasoning_truncated == 1 and planner.stats.repaired == 1
    assert planner.engine.last_result.num_reasoning_tokens == 3


def test_planner_time_budget_exceeded_falls_back_to_fast_plan(make_config, make_obs):
    planner = VLAPlanner(make_config(thinking={"policy": "slow", "max_reasoning_tokens": 50, "time_budget_s": 1e-4}))
    plan = planner.plan(make_obs())
    assert plan.thinking_mode == ThinkingMode.FAST
    assert plan.reasoning == FAST_THINKING_SENTENCE
    assert "time budget" in plan.status_reason
    assert len(plan.action_tokens) == 10 and plan.status == PlanStatus.OK
    assert planner.stats.budget_fallbacks == 1 and planner.stats.fast == 1


def test_planner_seeded_sampling_reproducible_and_seed_dependent(make_config, make_obs):
    def tokens(seed: int) -> list[tuple[int, ...]]:
        planner = VLAPlanner(make_config(decoding={"do_sample": True, "temperature": 1.5, "top_k": 50, "seed": seed}))
        return [planner.plan(make_obs(start=s)).action_tokens for s in range(2)]

    first = tokens(7)
    assert first == tokens(7)
    assert first != tokens(8)
    greedy = VLAPlanner(make_config()).plan(make_obs()).action_tokens
    assert greedy == VLAPlanner(make_config()).plan(make_obs()).action_tokens


def test_planner_action_only_model_plans_without_think_block(make_config, make_obs):
    planner = VLAPlanner(make_config(prompt={"reasoning_model": False}))
    plan = planner.plan(make_obs())
    assert plan.status == PlanStatus.OK and plan.reasoning == ""
    assert planner.runtime.tokenizer.decode(planner.engine.last_result.completion_ids).startswith("<answer>")


@pytest.mark.parametrize("layout", ["images", "video"])
def test_planner_caches_reused_give_identical_tokens(make_config, make_obs, layout):
    cached = VLAPlanner(make_config(prompt={"camera_layout": layout}))
    plain = VLAPlanner(
        make_config(prompt={"camera_layout": layout}, decoding={"vision_cache_size": 0, "reuse_prefix_cache": False})
    )
    for start in range(3):  # the frame window slides by one frame per step, as at 2 Hz replanning
        obs = make_obs(start=start)
        assert cached.plan(obs).action_tokens == plain.plan(obs).action_tokens
    assert cached.stats.prefix_cache_hits == 2 and plain.stats.prefix_cache_hits == 0
    if layout == "images":  # 3 of 4 frames are the previous step's: served from the cache
        assert cached.stats.vision_cache_hits == 6 and cached.stats.vision_cache_misses == 6
    else:  # pairs shift by one frame per step, so a pair recurs two steps later: (2, 3) at steps 0 and 2
        assert cached.stats.vision_cache_hits == 1 and cached.stats.vision_cache_misses == 5
    assert plain.stats.vision_cache_hits == 0


def test_planner_video_stride_two_reuses_older_pair(make_config, make_obs):
    planner = VLAPlanner(make_config(prompt={"camera_layout": "video"}))
    planner.plan(make_obs(start=0))
    planner.plan(make_obs(start=2))  # replanning at 1 Hz: the newer pair becomes the older pair
    assert planner.stats.vision_cache_hits == 1


def test_planner_bad_input_raises_clear_errors(make_config, make_obs):
    planner = VLAPlanner(make_config())
    obs = make_obs()
    with pytest.raises(ValueError, match="no camera view 'front'"):
        planner.plan(make_obs(views=("back",)))
    with pytest.raises(ValueError, match="prompt.num_frames is 4"):
        planner.plan(make_obs(num_frames=2))
    bad_frame = type(obs.cameras["front"][0])(obs.cameras["front"][0].image_rgb.astype(np.float32), 0.0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        planner.plan(type(obs)(timestamp_s=1.5, cameras={"front": (bad_frame,) * 4}, ego_history=obs.ego_history))
    gray = type(bad_frame)(np.zeros((90, 160), dtype=np.uint8), 0.0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        planner.plan(type(obs)(timestamp_s=1.5, cameras={"front": (gray,) * 4}, ego_history=obs.ego_history))
    with pytest.raises(ValueError, match="speed_mps is nan"):
        planner.plan(make_obs(speed_mps=float("nan")))
    assert planner.stats.steps == 0
