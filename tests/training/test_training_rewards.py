import json

import numpy as np
import pytest

from autovla_agent.config_io import to_dict
from autovla_agent.contract import ThinkingMode
from autovla_agent.planners.decoder import BicycleDecoder
from autovla_agent.policy.completion import format_completion
from autovla_agent.training.checkpoint import load_for_training
from autovla_agent.training.data import completion_tokens
from autovla_agent.training.rewards import CompletionReader, LengthPenalty, PDMReward, RewardConfig, length_penalty
from autovla_agent.training.schema import AgentBox, SceneState

ROAD = (((-30.0, -3.5), (200.0, -3.5), (200.0, 3.5), (-30.0, 3.5)),)
CENTER = ((-30.0, 0.0), (200.0, 0.0))


@pytest.fixture(scope="module")
def parts(tiny_model_dir):
    tm = load_for_training(tiny_model_dir)
    reader = CompletionReader(tm.action_vocab.token_ids, 10, tm.processor.tokenizer)
    return tm, reader


def _straight_ids(tm, speed_mps, reasoning=None):
    t = np.arange(1, 11) * 0.5
    poses = np.stack([speed_mps * t, 0 * t, 0 * t], -1)
    indices = tm.codebook.tokenize(poses)
    return completion_tokens(tm.processor.tokenizer, tm.action_vocab.token_ids, indices, reasoning).ids, poses


def _call(reward, ids_list, scene, speed, future=None):
    n = len(ids_list)
    return reward(
        prompts=[None] * n,
        completions=[None] * n,
        completion_ids=ids_list,
        sample_id=["s"] * n,
        scene_json=[json.dumps(to_dict(scene))] * n,
        speed_mps=[speed] * n,
        accel_mps2=[0.0] * n,
        future_json=[json.dumps(future) if future else ""] * n,
    )


def test_pdm_reward_scenes_collision_offroad_clean(parts):
    tm, reader = parts
    reward = PDMReward(BicycleDecoder(tm.codebook), reader, RewardConfig())
    ids, poses = _straight_ids(tm, 4.0)
    future = {"dt_s": 0.5, "poses_ego": poses.tolist()}
    clean = SceneState(drivable_area_ego_m=ROAD, centerline_ego_m=CENTER)
    blocked = SceneState(
        drivable_area_ego_m=ROAD, centerline_ego_m=CENTER, agents=(AgentBox(id="car", x_m=12.0, y_m=0.0, yaw_rad=0.0),)
    )
    short_road = SceneState(
        drivable_area_ego_m=(((-30.0, -3.5), (8.0, -3.5), (8.0, 3.5), (-30.0, 3.5)),), centerline_ego_m=CENTER
    )
    assert _call(reward, [ids], clean, 4.0, future)[0] > 0.9
    assert _call(reward, [ids], blocked, 4.0, future) == [0.0]
    assert reward.last_results[0].nc == 0.0
    assert _call(reward, [ids], short_road, 4.0, future) == [0.0]
    assert reward.last_results[0].dac == 0.0


def test_pdm_reward_fewer_action_tokens_invalid_not_crash(parts):
    tm, reader = parts
    reward = PDMReward(BicycleDecoder(tm.codebook), reader, RewardConfig(invalid_plan_reward=-1.0))
    ids, _ = _straight_ids(tm, 4.0)
    action_set = set(tm.action_vocab.token_ids)
    first_actions = [i for i, t in enumerate(ids) if t in action_set]
    truncated = ids[: first_actions[6]]  # 6 of 10 actions
    scene = SceneState(drivable_area_ego_m=ROAD, centerline_ego_m=CENTER)
    out = _call(reward, [truncated, [], ids], scene, 4.0)
    assert out[0] == -1.0 and out[1] == -1.0 and out[2] > 0.5


def test_pdm_reward_scene_missing_gives_none(parts):
    tm, reader = parts
    reward = PDMReward(BicycleDecoder(tm.codebook), reader, RewardConfig())
    ids, _ = _straight_ids(tm, 4.0)
    out = reward(
        prompts=[None],
        completions=[None],
        completion_ids=[ids],
        sample_id=["x"],
        scene_json=[""],
        speed_mps=[4.0],
        accel_mps2=[0.0],
    )
    assert out == [None]


def test_length_penalty_slow_negative_fast_zero(parts):
    tm, reader = parts
    penalty = LengthPenalty(reader, RewardConfig())
    fast, _ = _straight_ids(tm, 4.0)
    short, _ = _straight_ids(tm, 4.0, reasoning="Clear road.")
    long, _ = _straight_ids(tm, 4.0, reasoning="The lane ahead is clear and the command is to keep forward. " * 20)
    out = penalty(prompts=[None] * 3, completions=[None] * 3, completion_ids=[fast, short, long])
    assert out[0] == 0.0
    assert out[2] < out[1] < 0.0
    assert length_penalty(100, RewardConfig()) == pytest.approx(-0.15)


def test_completion_tokens_text_equals_runtime_format(parts):
    tm, _ = parts
    tok = tm.processor.tokenizer
    ids = completion_tokens(tok, tm.action_vocab.token_ids, [3] * 10, "Because.").ids
    text = tok.decode(ids, skip_special_tokens=False)
    expected = format_completion([3] * 10, mode=ThinkingMode.SLOW, reasoning=" Because.") + "<|im_end|>"
    assert text == expected
