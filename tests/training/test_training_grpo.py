import json
import math

import pytest
import torch

from autovla_agent.policy.configuration import PromptConfig
from autovla_agent.training.checkpoint import load_for_training
from autovla_agent.training.config import GRPORunConfig, GRPOSettings, LoraSettings, TrainSettings
from autovla_agent.training.grpo import action_regex, check_completion_budget, run_grpo

PROMPT = PromptConfig(camera_layout="images")


def _config(model, data, out, lora):
    return GRPORunConfig(
        model_path=str(model),
        output_dir=str(out),
        train_data=str(data),
        prompt=PROMPT,
        grpo=GRPOSettings(num_generations=4, max_completion_length=40, beta=0.04),
        lora=LoraSettings(enabled=lora, train_action_embeddings=False),
        train=TrainSettings(
            max_steps=1,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=1,
            learning_rate=5e-3,
            logging_steps=1,
            save_steps=10,
            gradient_checkpointing=False,
            use_cpu=True,
            resume="",
        ),
    )


@pytest.mark.parametrize("lora", [False, True])
def test_grpo_one_step_changes_parameters_finite_loss(tiny_model_dir, dataset_dir, tmp_path, lora):
    before = load_for_training(tiny_model_dir).model.state_dict()
    out = run_grpo(_config(tiny_model_dir, dataset_dir, tmp_path / "grpo", lora))
    after = load_for_training(out).model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("visual" not in k for k in changed)  # vision tower frozen
    if lora:  # merged adapters touch only the attention projections
        assert all(any(p in k for p in ("q_proj", "k_proj", "v_proj", "o_proj")) for k in changed)
    history = json.loads((tmp_path / "grpo" / "reward_history.json").read_text())
    assert math.isfinite(history[0]["loss"]) and "rewards/pdm_score/mean" in history[0]
    assert history[0]["reward_std"] > 0.0 or history[0]["frac_reward_zero_std"] == 1.0


def test_grpo_completion_budget_too_short_raises(tiny_model_dir, dataset_dir, tmp_path):
    config = _config(tiny_model_dir, dataset_dir, tmp_path, False)
    tokenizer = load_for_training(tiny_model_dir).processor.tokenizer
    assert check_completion_budget(config, tokenizer) >= 1
    import dataclasses

    short = dataclasses.replace(config, grpo=dataclasses.replace(config.grpo, max_completion_length=8))
    with pytest.raises(ValueError, match="shorter than a fast answer"):
        check_completion_budget(short, tokenizer)


def test_grpo_vllm_regex_accepts_exactly_n_actions():
    import re

    pattern = re.compile(action_regex(3, True))
    fast = "<think>\nThis is a straightforward scenario, and a direct decision can be made.</think>\n"
    ok = fast + "<answer>The final output action is: <action_1><action_22><action_3></answer>"
    assert pattern.fullmatch(ok)
    assert not pattern.fullmatch(ok.replace("<action_3>", ""))
