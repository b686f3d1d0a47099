"""GRPO reinforcement fine-tuning of an AutoVLA-style model on TRL's ``GRPOTrainer``.

``python -m autovla_agent.training.grpo --config YAML [section.key=value ...]`` (multi-GPU: ``accelerate launch
--config_file training/accelerate_configs/deepspeed_zero3.yaml -m autovla_agent.training.grpo --config YAML``).

- Starts from a SAVED SFT checkpoint folder (runtime layout): with ``beta > 0`` TRL rebuilds the reference
  model from the folder's path; with LoRA it disables the adapter instead of holding a second copy.
- Groups: every prompt is sampled ``grpo.num_generations`` (G) times on the same device, independent of the
  GPU count; TRL normalises the rewards within each group and applies the clipped-ratio objective with the
  k3 KL term.
- Rollouts go through the runtime's own decode engine (``decoding_autovla.DecodeEngine``, seeded sampling):
  the scaffold is fed, the thinking mode is chosen by the model (``thinking_policy: adaptive``), reasoning is
  sampled up to a limit, and the answer holds exactly N action tokens (logits over the action rows only), so
  every rollout is decodable. Forced scaffold tokens are masked out of the loss (``env_mask``).
- Rewards (``rewards.py``): the PDM-style driving score of the decoded plan on the sample's scene, navsim's
  PDM score where a metric cache is configured, and the reasoning-length penalty; ``reward_weights`` from
  the config (AutoVLA: 10 x PDMS - penalty).
- ``max_completion_length`` is set explicitly and bounds the reasoning tokens of the rollouts.
- vLLM (GPU only, ``grpo.use_vllm: true``): TRL generates with vLLM instead of the decode engine; the action
  span is then constrained with ``vllm_structured_outputs_regex``. Test vLLM against the engine on the saved
  checkpoint first (TRL issues #6294, #6401 on Qwen-VL prompts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autovla_agent.config_io import load_yaml
from autovla_agent.contract import ThinkingMode
from autovla_agent.planners.decoder import BicycleDecoder
from autovla_agent.policy.completion import ANSWER_CLOSE, closing_after_reasoning, fast_opening, slow_opening
from autovla_agent.policy.configuration import DecodingConfig, ThinkingConfig
from autovla_agent.policy.decoding import DecodeEngine
from autovla_agent.policy.modeling import VLARuntime
from autovla_agent.policy.prompt import PromptInput, VisualItem, encode_completion, encode_prompt
from autovla_agent.training.checkpoint import TrainingModel
from autovla_agent.training.common import RuntimeFolderCallback, start_training, train_and_save, trainer_arguments
from autovla_agent.training.config import GRPORunConfig
from autovla_agent.training.data import GRPOTransform, grpo_rows
from autovla_agent.training.rewards import CompletionReader, LengthPenalty, NavsimPDMReward, PDMReward

logger = logging.getLogger(__name__)

END_OF_TURN = "<|im_end|>"


def scaffold_overhead_tokens(tokenizer: Any, num_action_tokens: int) -> int:
    """Completion tokens of a slow answer that are not reasoning: openings, closing, actions, end of turn."""
    fixed = slow_opening() + closing_after_reasoning() + ANSWER_CLOSE
    return len(encode_completion(tokenizer, fixed)) + num_action_tokens + 2


def check_completion_budget(config: GRPORunConfig, tokenizer: Any) -> int:
    """Reasoning tokens that fit ``max_completion_length``; raise when not even a fast answer fits."""
    fast = len(encode_completion(tokenizer, fast_opening(config.prompt.reasoning_model) + ANSWER_CLOSE))
    fast += config.num_action_tokens + 1
    if config.grpo.max_completion_length < fast:
        raise ValueError(
            f"grpo.max_completion_length {config.grpo.max_completion_length} is shorter than a fast answer "
            f"({fast} tokens): every completion would be truncated and score nothing; raise it"
        )
    budget = config.grpo.max_completion_length - scaffold_overhead_tokens(tokenizer, config.num_action_tokens)
    return max(1, min(budget, config.grpo.max_reasoning_tokens))


def prompt_input_from_messages(messages: Sequence[dict[str, Any]]) -> PromptInput:
    """Rebuild the runtime's ``PromptInput`` from TRL's messages (image parts carry PIL images)."""
    clean, items = [], []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            clean.append({"role": message["role"], "content": [{"type": "text", "text": content}]})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image":
                frame = np.asarray(part["image"].convert("RGB"))
                items.append(VisualItem(kind="image", view="", frames=(frame,)))
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": part["text"]})
        clean.append({"role": message["role"], "content": parts})
    return PromptInput(messages=tuple(clean), items=tuple(items))


class EngineRollout:
    """TRL ``rollout_func`` sampling completions with the runtime's decode engine on the live policy."""

    def __init__(self, tm: TrainingModel, config: GRPORunConfig, max_reasoning_tokens: int) -> None:
        self.tm = tm
        self.config = config
        g = config.grpo
        self.decoding = DecodingConfig(
            num_action_tokens=config.num_action_tokens,
            do_sample=True,
            temperature=g.temperature,
            top_k=g.top_k,
            top_p=g.top_p,
            seed=config.train.seed,
            reuse_prefix_cache=False,  # weights change every step: no cache may outlive a rollout
            vision_cache_size=0,
        )
        self.thinking = ThinkingConfig(policy=g.thinking_policy, max_reasoning_tokens=max_reasoning_tokens)
        self.generator_state: torch.Tensor | None = None
        self.checked = False
        tok = tm.processor.tokenizer
        self.eos_id = int(tok.convert_tokens_to_ids(END_OF_TURN))
        self.banned_special = torch.tensor(sorted(set(tok.all_special_ids) - {self.eos_id}), dtype=torch.long)
        self.num_calls = 0

    def _check_prompt_tokens(self, messages: list[dict[str, Any]], ids: list[int]) -> None:
        """Once: TRL's processor must tokenise the prompt exactly like the runtime (its log-probs use that)."""
        kwargs = {"add_vision_id": self.config.prompt.add_vision_id}
        trl_ids = self.tm.processor.apply_chat_template(
            [messages], add_generation_prompt=True, tokenize=True, return_dict=True, **kwargs
        )["input_ids"][0]
        if list(trl_ids) != list(ids):
            raise RuntimeError(
                "the processor tokenises the GRPO prompt differently from the runtime's encode_prompt "
                f"({len(trl_ids)} vs {len(ids)} tokens): check prompt.min_pixels/max_pixels against the model "
                "folder's preprocessor_config.json"
            )

    def _env_mask(self, completion: list[int], mode: ThinkingMode, engine: DecodeEngine) -> list[int]:
        """1 for tokens the policy chose (mode choice, reasoning, actions), 0 for forced scaffold and end of turn."""
        mask = [1] * len(completion)
        opening = engine.fast_ids if mode == ThinkingMode.FAST else engine.slow_ids
        for i in range(min(len(opening), len(completion))):
            mask[i] = 0
        if self.thinking.policy == "adaptive" and engine.common_len < len(opening):
            mask[engine.common_len] = 1  # the token where fast and slow diverge is the model's choice
        tail = len(engine.answer_close_ids) + 1  # </answer> and <|im_end|> are fed, not chosen
        for i in range(len(completion) - tail, len(completion)):
            mask[i] = 0
        return mask

    def __call__(self, prompts: list[list[dict[str, Any]]], trainer: Any) -> dict[str, Any]:
        """Sample one completion per prompt entry (TRL repeats each prompt G times in the batch)."""
        from trl.models import unwrap_model_for_generation

        prompt_ids, completion_ids, env_masks = [], [], []
        dist = getattr(trainer, "_dist", None)  # FSDP: gather the full parameters for generation, as TRL does
        with (
            unwrap_model_for_generation(
                trainer.model_wrapped,
                trainer.accelerator,
                gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
            ) as unwrapped,
            dist.summon_full_params(trainer.model_wrapped, recurse=False) if dist else contextlib.nullcontext(),
        ):
            policy = unwrapped.base_model.model if hasattr(unwrapped, "peft_config") else unwrapped
            was_training = policy.training
            policy.eval()  # no dropout while sampling
            runtime = VLARuntime(
                model=policy,
                processor=self.tm.processor,
                action_vocab=self.tm.action_vocab,
                codebook=self.tm.codebook,
                path=self.tm.path,
                device=trainer.accelerator.device,
                dtype=next(policy.parameters()).dtype,
                model_type="qwen2_5_vl",
            )
            engine = DecodeEngine(runtime, self.decoding, self.thinking, self.config.prompt.reasoning_model)
            # A sampled special token (e.g. <|image_pad|>) in the reasoning would break TRL's log-prob pass.
            engine.banned_in_reasoning = torch.cat([engine.action_ids, self.banned_special.to(engine.device)])
            # Distinct seeded streams per call and process: reproducible, never the same draw twice.
            engine.generator.manual_seed(
                self.config.train.seed * 1_000_003 + 7919 * self.num_calls + trainer.accelerator.process_index
            )
            self.num_calls += 1
            try:
                for messages in prompts:
                    encoded = encode_prompt(self.tm.processor, prompt_input_from_messages(messages), self.config.prompt)
                    ids = encoded.input_ids[0].tolist()
                    if not self.checked:
                        self._check_prompt_tokens(messages, ids)
                        self.checked = True
                    result = engine.run(encoded, self.thinking.policy, time.perf_counter())
                    completion = [int(t) for t in result.completion_ids] + [self.eos_id]
                    prompt_ids.append(ids)
                    completion_ids.append(completion)
                    env_masks.append(self._env_mask(completion, result.mode, engine))
            finally:
                policy.train(was_training)
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None, "env_mask": env_masks}


def build_rewards(config: GRPORunConfig, tm: TrainingModel) -> tuple[list[Any], list[float]]:
    """Reward functions and their weights: PDM-style score, navsim PDM (when configured), length penalty."""
    decoder = BicycleDecoder(tm.codebook, config.vehicle, config.decoder)
    reader = CompletionReader(
        tm.action_vocab.token_ids, config.num_action_tokens, tm.processor.tokenizer, config.prompt.reasoning_model
    )
    funcs: list[Any] = [PDMReward(decoder, reader, config.rewards)]
    weights = [config.rewards.pdm_weight]
    if config.rewards.navsim_metric_cache:
        funcs.append(NavsimPDMReward(decoder, reader, config.rewards))
        weights.append(config.rewards.pdm_weight)
    if config.prompt.reasoning_model:
        funcs.append(LengthPenalty(reader, config.rewards))
        weights.append(config.rewards.length_weight)
    return funcs, weights


def action_regex(num_actions: int, reasoning_model: bool) -> str:
    """The structured-output regex for vLLM: the scaffold, free reasoning, then exactly N action tokens."""
    actions = f"(<action_[0-9]+>){{{num_actions}}}"
    answer = r"<answer>The final output action is: " + actions + "</answer>"
    if not reasoning_model:
        return answer
    return (
        r"<think>\n(This is a straightforward scenario, and a direct decision can be made\.|This is a complex "
        r"scenario requiring additional reasoning\.[^<]*)</think>\n" + answer
    )


def grpo_arguments(config: GRPORunConfig, dtype: torch.dtype, reward_weights: list[float]) -> Any:
    """TRL ``GRPOConfig`` from the run config."""
    from trl import GRPOConfig

    g = config.grpo
    vllm: dict[str, Any] = {}
    if g.use_vllm:
        vllm = {"use_vllm": True, "vllm_mode": g.vllm_mode}
        vllm["vllm_gpu_memory_utilization"] = g.vllm_gpu_memory_utilization
        if g.constrain_actions:
            regex = action_regex(config.num_action_tokens, config.prompt.reasoning_model)
            vllm["vllm_structured_outputs_regex"] = regex
    return GRPOConfig(
        **trainer_arguments(config, dtype),
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        top_p=g.top_p,
        top_k=g.top_k,
        beta=g.beta,
        epsilon=g.epsilon,
        epsilon_high=g.epsilon_high,
        loss_type=g.loss_type,
        num_iterations=g.num_iterations,
        scale_rewards=g.scale_rewards,
        reward_weights=reward_weights,
        mask_truncated_completions=False,
        chat_template_kwargs={"add_vision_id": config.prompt.add_vision_id},
        **vllm,
    )


def run_grpo(config: GRPORunConfig) -> Path:
    """Run GRPO end to end; return the final runtime-layout model folder (LoRA merged)."""
    import datasets
    from trl import GRPOTrainer

    start_s = time.perf_counter()
    start = start_training(config, require_scene=True)
    tm, samples = start.tm, start.samples
    max_reasoning = check_completion_budget(config, tm.processor.tokenizer)
    tm.processor.tokenizer.padding_side = "left"  # TRL pads prompts on the left (generation continues at the end)
    if config.prompt.min_pixels is not None:
        # TRL's log-prob pass runs the processor on the images: give it the budget the runtime uses.
        tm.processor.image_processor.size = {
            "shortest_edge": config.prompt.min_pixels,
            "longest_edge": config.prompt.max_pixels,
        }
    transform = GRPOTransform(config.prompt, config.num_action_tokens)
    transform.prompt_and_images(samples[0], Path(config.train_data))  # prompt problems surface before training
    dataset = datasets.Dataset.from_list(grpo_rows(samples, config.train_data)).with_transform(transform)
    reward_funcs, reward_weights = build_rewards(config, tm)
    rollout = None if config.grpo.use_vllm else EngineRollout(tm, config, max_reasoning)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL 1.16, and known
    logger.info(
        "GRPO: %d prompts x G=%d, beta %.3g, %s, rewards %s (weights %s), reasoning <= %d tokens, device %s",
        len(samples),
        config.grpo.num_generations,
        config.grpo.beta,
        "LoRA" if config.lora.enabled else "full",
        [f.__name__ for f in reward_funcs],
        reward_weights,
        max_reasoning,
        start.device,
    )
    trainer = GRPOTrainer(
        model=tm.model,
        reward_funcs=reward_funcs,
        args=grpo_arguments(config, start.dtype, reward_weights),
        train_dataset=dataset,
        processing_class=tm.processor,
        peft_config=start.peft_config,
        rollout_func=rollout,
        callbacks=[RuntimeFolderCallback(tm.path, config, {"stage": "grpo"})],
    )
    result, final = train_and_save(trainer, start, config, "grpo")
    if trainer.accelerator.is_main_process:
        history = [e for e in trainer.state.log_history if "reward" in e]
        (Path(config.output_dir) / "reward_history.json").write_text(json.dumps(history, indent=1), "utf-8")
    logger.info("GRPO done in %.1f s (%d steps): %s", time.perf_counter() - start_s, result.global_step, final)
    return final


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: ``--config YAML`` plus dotted overrides."""
    parser = argparse.ArgumentParser(
        prog="autovla-train-grpo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML of GRPORunConfig")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. grpo.num_generations=4")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_grpo(load_yaml(GRPORunConfig, args.config, args.overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
