"""The hand-written decode loop against transformers' own forward/generate: positions, caches, vision units."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from autovla_agent.contract import ThinkingMode
from autovla_agent.policy.configuration import DecodingConfig
from autovla_agent.policy.decoding import sample_token
from autovla_agent.policy.modeling import VLAPlanner
from autovla_agent.policy.prompt import build_prompt, encode_prompt


class AllowOnly(LogitsProcessor):
    """Logit restriction for generate: only ``allowed`` ids (or every id but ``banned``) keep their scores."""

    def __init__(self, allowed: torch.Tensor | None = None, banned: torch.Tensor | None = None) -> None:
        self.allowed, self.banned = allowed, banned

    def __call__(self, input_ids, scores):
        if self.allowed is not None:
            mask = torch.full_like(scores, float("-inf"))
            mask[:, self.allowed] = 0.0
            return scores + mask
        scores = scores.clone()
        scores[:, self.banned] = float("-inf")
        return scores


def generate_after(planner: VLAPlanner, encoded, forced: list[int], num_tokens: int, processor) -> list[int]:
    """Greedy ``model.generate`` continuation of prompt + forced tokens under a logit restriction."""
    runtime = planner.runtime
    extra = torch.tensor([forced])
    ids = torch.cat([encoded.input_ids, extra], dim=1)
    mm = torch.cat([encoded.mm_token_type_ids, torch.zeros_like(extra)], dim=1)
    with torch.inference_mode():
        out = runtime.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            mm_token_type_ids=mm,
            **encoded.vision_inputs(runtime.processor.image_processor),
            max_new_tokens=num_tokens,
            min_new_tokens=num_tokens,
            do_sample=False,
            logits_processor=LogitsProcessorList([processor]),
        )
    return out[0, ids.shape[1] :].tolist()


def encode(planner: VLAPlanner, obs):
    return encode_prompt(planner.runtime.processor, build_prompt(obs, planner.config.prompt), planner.config.prompt)


@pytest.mark.parametrize("layout", ["video", "images"])
def test_decode_loop_fast_actions_match_generate_with_restriction(make_config, make_obs, layout):
    planner = VLAPlanner(make_config(prompt={"camera_layout": layout}))
    obs = make_obs()
    plan = planner.plan(make_obs(start=1))  # warm the caches with another step first
    plan = planner.plan(obs)
    ids = planner.runtime.action_vocab.token_ids
    reference = generate_after(
        planner, encode(planner, obs), planner.engine.fast_ids, 10, AllowOnly(allowed=torch.tensor(ids))
    )
    assert [ids[i] for i in plan.action_tokens] == reference


def test_decode_loop_slow_reasoning_matches_generate_without_actions(make_config, make_obs):
    planner = VLAPlanner(
        make_config(prompt={"camera_layout": "video"}, thinking={"policy": "slow", "max_reasoning_tokens": 5})
    )
    obs = make_obs()
    planner.plan(obs)
    result = planner.engine.last_result
    assert result.mode == ThinkingMode.SLOW and result.num_reasoning_tokens == 5
    slow_ids = planner.engine.slow_ids
    generated = result.completion_ids[len(slow_ids) : len(slow_ids) + 5]
    reference = generate_after(
        planner,
        encode(planner, obs),
        slow_ids,
        5,
        AllowOnly(banned=torch.tensor(planner.runtime.action_vocab.token_ids)),
    )
    assert generated == reference


def test_vision_units_match_native_video_encoding(make_config, make_obs):
    planner = VLAPlanner(make_config(prompt={"camera_layout": "video", "views": ("front", "front_left")}))
    encoded = encode(planner, make_obs(views=("front", "front_left")))
    model = planner.runtime.model
    inputs = encoded.vision_inputs(planner.runtime.processor.image_processor)
    with torch.inference_mode():
        native = torch.cat(
            model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"]).pooler_output
        )
        per_unit = planner.engine.encode_vision(encoded)  # 2 frame pairs per clip, encoded as separate units
    assert len(encoded.units) == 4
    torch.testing.assert_close(per_unit, native, rtol=1e-5, atol=1e-5)


def test_cached_and_uncached_steps_give_identical_logits(make_config, make_obs):
    cached = VLAPlanner(make_config(prompt={"camera_layout": "images"}))
    plain = VLAPlanner(
        make_config(prompt={"camera_layout": "images"}, decoding={"vision_cache_size": 0, "reuse_prefix_cache": False})
    )
    for planner in (cached, plain):
        planner.plan(make_obs(start=0))
    obs = make_obs(start=1)
    logits = []
    for planner in (cached, plain):
        encoded = encode(planner, obs)
        with torch.inference_mode():
            state = planner.engine.prefill(encoded, planner.engine.encode_vision(encoded), planner.engine.fast_ids)
            logits.append(planner.engine.action_logits(state))
    assert cached.engine.vision_cache.hits == 3 and cached.engine.prefix_hits == 1
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-5, atol=1e-5)
    assert int(logits[0].argmax()) == int(logits[1].argmax())


def test_adaptive_mode_follows_first_divergent_token_logits(make_config, make_obs):
    bias_fast = VLAPlanner(make_config(thinking={"policy": "adaptive", "adaptive_fast_bias": 1e6}))
    bias_slow = VLAPlanner(make_config(thinking={"policy": "adaptive", "adaptive_fast_bias": -1e6}))
    assert bias_fast.plan(make_obs()).thinking_mode == ThinkingMode.FAST
    assert bias_slow.plan(make_obs()).thinking_mode == ThinkingMode.SLOW
    engine = bias_fast.engine
    assert 0 < engine.common_len < len(engine.fast_ids)
    assert engine.fast_ids[engine.common_len] != engine.slow_ids[engine.common_len]


def test_sample_token_top_k_one_is_greedy_and_top_p_keeps_best():
    logits = torch.tensor([0.1, 2.0, 1.9, -3.0])
    generator = torch.Generator().manual_seed(0)
    top1 = DecodingConfig(do_sample=True, top_k=1)
    assert all(sample_token(logits, top1, generator) == 1 for _ in range(20))
    tight = DecodingConfig(do_sample=True, top_p=0.01)
    assert all(sample_token(logits, tight, generator) == 1 for _ in range(20))
    wide = DecodingConfig(do_sample=True, temperature=5.0)
    assert len({sample_token(logits, wide, generator) for _ in range(200)}) == 4
