"""The shared prompt builder: content, determinism, equality with the stock processor, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autovla_agent.contract import NavCommand, PlanStatus, ThinkingMode
from autovla_agent.policy.completion import format_completion, parse_completion
from autovla_agent.policy.configuration import PromptConfig
from autovla_agent.policy.processor import load_processor, pixel_budget, preprocess_clip, preprocess_image
from autovla_agent.policy.prompt import build_prompt, completion_token_ids, encode_prompt, render_prompt_text


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return load_processor(tiny_model_dir)


def test_prompt_text_carries_views_signed_state_command_and_horizon(processor, make_obs):
    config = PromptConfig(views=("front", "front_left"), include_ego_history=True, num_history_states=2)
    obs = make_obs(views=("front", "front_left"), speed_mps=-1.5, accel_mps2=-2.25, command=NavCommand.TURN_RIGHT)
    text = render_prompt_text(processor, build_prompt(obs, config, num_action_tokens=8), config)
    assert "Current speed: -1.500 m/s. Current acceleration: -2.250 m/s^2." in text
    assert "The navigation command is: turn right." in text
    assert "front-left view" in text and "2 camera views (front, front-left)" in text
    assert "next 4 seconds" in text and "reason step by step" in text
    assert "Past states at -1.0 s, -0.5 s: speeds -1.700, -1.600 m/s" in text
    assert text.count("<|video_pad|>") == 2 and "Video 2: " in text
    assert text.endswith("<|im_start|>assistant\n")
    action_only = PromptConfig(reasoning_model=False, camera_layout="images")
    text = render_prompt_text(processor, build_prompt(make_obs(), action_only), action_only)
    assert "reason step by step" not in text and text.count("<|image_pad|>") == 4 and "Picture 4: " in text


@pytest.mark.parametrize("layout", ["video", "images"])
def test_prompt_prefix_identical_across_observations(processor, make_obs, layout):
    config = PromptConfig(camera_layout=layout)
    a = encode_prompt(processor, build_prompt(make_obs(start=0, speed_mps=1.0), config), config)
    b = encode_prompt(
        processor, build_prompt(make_obs(start=3, speed_mps=9.0, command=NavCommand.UNKNOWN), config), config
    )
    assert a.prefix_len == b.prefix_len > 20
    assert torch.equal(a.input_ids[0, : a.prefix_len], b.input_ids[0, : b.prefix_len])
    assert not torch.equal(a.input_ids, b.input_ids)


def test_encode_prompt_images_matches_stock_processor_call(processor, make_obs):
    config = PromptConfig(
        camera_layout="images", views=("front", "back"), min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 4
    )
    prompt = build_prompt(make_obs(views=("front", "back")), config)
    encoded = encode_prompt(processor, prompt, config)
    reference = processor(
        text=[render_prompt_text(processor, prompt, config)],
        images=prompt.images,
        images_kwargs={"size": {"shortest_edge": 3136, "longest_edge": 3136}},
        return_tensors="pt",
    )
    ours = encoded.vision_inputs(processor.image_processor)
    assert torch.equal(encoded.input_ids, reference["input_ids"])
    assert torch.equal(encoded.mm_token_type_ids, reference["mm_token_type_ids"])
    assert torch.equal(encoded.image_grid_thw, reference["image_grid_thw"])
    torch.testing.assert_close(ours["pixel_values"], reference["pixel_values"])
    assert len(encoded.units) == 8 and encoded.video_grid_thw is None


def test_encode_prompt_video_layout_counts_tokens_and_time_step(processor, make_obs):
    config = PromptConfig(camera_layout="video", num_frames=3)  # odd: the last frame is repeated, as Qwen does
    encoded = encode_prompt(processor, build_prompt(make_obs(num_frames=3), config), config)
    assert encoded.video_grid_thw.tolist() == [[2, 4, 6]]  # 90 x 160 px -> 56 x 84 px
    assert int((encoded.mm_token_type_ids == 2).sum()) == 2 * 4 * 6 // 4
    assert encoded.second_per_grid_ts.tolist() == [1.0]  # 2 frames per temporal patch at 2 Hz
    assert encoded.units[1].frames[0] is encoded.units[1].frames[1]


def test_preprocess_clip_of_repeated_frame_equals_image_preprocessing(processor, make_obs):
    frame = make_obs().cameras["front"][0].image_rgb
    budget = pixel_budget(processor.image_processor, 28 * 28 * 6, 28 * 28 * 6)
    image_patches, image_grid = preprocess_image(frame, processor.image_processor, budget)
    clip_patches, clip_grid = preprocess_clip([frame, frame], processor.image_processor, budget)
    assert image_grid == clip_grid
    np.testing.assert_allclose(clip_patches, image_patches, atol=1e-5)


@pytest.mark.parametrize(
    ("mode", "reasoning_model"), [(ThinkingMode.FAST, True), (ThinkingMode.SLOW, True), (ThinkingMode.FAST, False)]
)
def test_format_completion_parses_back(mode, reasoning_model):
    actions = [0, 5, 2047, 17, 3, 3, 9, 100, 1000, 42]
    text = format_completion(actions, mode=mode, reasoning=" Scene: red light ahead.", reasoning_model=reasoning_model)
    parsed = parse_completion(text, num_action_tokens=10, num_codebook_tokens=2048, reasoning_model=reasoning_model)
    assert parsed.status == PlanStatus.OK and parsed.action_indices == tuple(actions)
    assert parsed.thinking_mode == mode
    if mode == ThinkingMode.SLOW:
        assert parsed.reasoning == "Scene: red light ahead."


def test_completion_token_ids_equal_what_the_runtime_feeds(make_config, make_obs):
    from autovla_agent.policy.modeling import VLAPlanner

    for policy in ("fast", "slow"):
        planner = VLAPlanner(make_config(thinking={"policy": policy}))
        plan = planner.plan(make_obs())
        result, engine = planner.engine.last_result, planner.engine
        vocab = planner.runtime.action_vocab.token_ids
        if policy == "fast":
            target = completion_token_ids(planner.runtime.tokenizer, vocab, plan.action_tokens)
            assert target == result.completion_ids
        else:
            target = completion_token_ids(
                planner.runtime.tokenizer, vocab, plan.action_tokens, mode=ThinkingMode.SLOW, reasoning="x"
            )
            assert target[: len(engine.slow_ids)] == result.completion_ids[: len(engine.slow_ids)] == engine.slow_ids
            tail = engine.close_ids + [vocab[i] for i in plan.action_tokens] + engine.answer_close_ids
            assert target[-len(tail) :] == result.completion_ids[-len(tail) :] == tail


def test_prompt_config_rejects_bad_values():
    with pytest.raises(ValueError, match="min_pixels"):
        PromptConfig(min_pixels=10_000, max_pixels=5_000)
    with pytest.raises(ValueError, match="both"):
        PromptConfig(min_pixels=10_000)
    with pytest.raises(ValueError, match="distinct"):
        PromptConfig(views=("front", "front"))
