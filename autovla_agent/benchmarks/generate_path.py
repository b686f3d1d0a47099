"""The plain path of the latency benchmark (AutoVLA's): the processor on all frames, then ``model.generate``.

Full vocabulary head, every completion token generated (scaffold included), no caches. Stage times come from
a logits processor that stamps each forward and from hooks around the vision tower.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from autovla_agent.contract import Observation
from autovla_agent.policy.completion import ParsedCompletion, parse_completion
from autovla_agent.policy.modeling import VLAPlanner, VLARuntime, fallback_poses
from autovla_agent.policy.prompt import build_prompt, encode_prompt, render_prompt_text


class _StepClock(LogitsProcessor):
    """Records a timestamp each time ``generate`` asks for the next token's scores (after each forward)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stamps: list[float] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stamps.append(time.perf_counter())
        return scores


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _plain_inputs(planner: VLAPlanner, obs: Observation) -> dict[str, Any]:
    """The model inputs of the plain path, on the model's device and dtype."""
    runtime, config = planner.runtime, planner.config
    prompt = build_prompt(obs, config.prompt, num_action_tokens=config.decoding.num_action_tokens)
    if config.prompt.camera_layout == "images":  # exactly what TRL/AutoVLA do: the processor on all frames
        budget = {"shortest_edge": config.prompt.min_pixels, "longest_edge": config.prompt.max_pixels}
        images_kwargs = {"size": budget} if config.prompt.min_pixels is not None else {}
        inputs = dict(
            runtime.processor(
                text=[render_prompt_text(runtime.processor, prompt, config.prompt)],
                images=prompt.images,
                images_kwargs=images_kwargs,
                return_tensors="pt",
            )
        )
    else:  # no torchvision video processor: the clip is patchified by hand, as in the optimized path
        encoded = encode_prompt(runtime.processor, prompt, config.prompt)
        inputs = {
            "input_ids": encoded.input_ids,
            "attention_mask": torch.ones_like(encoded.input_ids),
            "mm_token_type_ids": encoded.mm_token_type_ids,
            **encoded.vision_inputs(runtime.processor.image_processor),
        }
    inputs = {k: v.to(runtime.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    for key in ("pixel_values", "pixel_values_videos"):
        if key in inputs:
            inputs[key] = inputs[key].to(runtime.dtype)
    return inputs


def _timed_generate(
    runtime: VLARuntime, inputs: dict[str, Any], num_new_tokens: int
) -> tuple[torch.Tensor, list[float], float]:
    """Greedy ``generate`` of exactly ``num_new_tokens``: output ids, per-forward stamps, vision seconds."""
    device = runtime.device
    vision_s: list[float] = []
    marks: dict[str, float] = {}

    def pre_hook(module, args, kwargs=None):
        _sync(device)
        marks["start"] = time.perf_counter()

    def post_hook(module, args, output):
        _sync(device)
        vision_s.append(time.perf_counter() - marks["start"])

    handles = [
        runtime.model.model.visual.register_forward_pre_hook(pre_hook),
        runtime.model.model.visual.register_forward_hook(post_hook),
    ]
    clock = _StepClock(device)
    try:
        with torch.inference_mode():
            out = runtime.model.generate(
                **inputs,
                max_new_tokens=num_new_tokens,
                min_new_tokens=num_new_tokens,
                do_sample=False,
                logits_processor=LogitsProcessorList([clock]),
            )
        _sync(device)
    finally:
        for handle in handles:
            handle.remove()
    return out, clock.stamps, sum(vision_s)


def _postprocess(
    planner: VLAPlanner, obs: Observation, completion: list[int], reference_tokens: Sequence[int]
) -> ParsedCompletion:
    """Parse the completion and run the bicycle decoder (on ``reference_tokens`` when it does not parse)."""
    runtime, config = planner.runtime, planner.config
    vocab = runtime.action_vocab
    parsed = parse_completion(
        completion,
        num_action_tokens=config.decoding.num_action_tokens,
        num_codebook_tokens=vocab.num_tokens,
        action_token_ids=vocab.token_ids,
        tokenizer=runtime.tokenizer,
        reasoning_model=config.prompt.reasoning_model,
    )
    tokens = list(parsed.action_indices) if parsed.usable else list(reference_tokens)
    if tokens:
        planner.decoder.decode(tokens, speed_mps=obs.ego.speed_mps).sample(planner.times_s)
    else:
        fallback_poses(obs.ego.speed_mps, planner.times_s, config)
    return parsed


def generate_step(
    planner: VLAPlanner, obs: Observation, num_new_tokens: int, first_action: int, reference_tokens: Sequence[int]
) -> dict[str, Any]:
    """One step of the plain path; returns stage times and counts.

    A random model's free completion rarely parses; the bicycle decoder then runs on ``reference_tokens`` (the
    optimized path's tokens) so that the post-processing cost stays comparable.
    """
    t0 = time.perf_counter()
    inputs = _plain_inputs(planner, obs)
    t1 = time.perf_counter()
    out, stamps, vision = _timed_generate(planner.runtime, inputs, num_new_tokens)
    t2 = time.perf_counter()
    completion = out[0, inputs["input_ids"].shape[1] :].tolist()
    parsed = _postprocess(planner, obs, completion, reference_tokens)
    t3 = time.perf_counter()
    per_token = [stamps[0] - t1] + [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    # Token 0 comes out of the prefill forward; token k >= 1 out of the k-th decode forward.
    reasoning = sum(per_token[1 : max(first_action, 1)])
    actions = sum(per_token[max(first_action, 1) :]) + (t2 - stamps[-1])
    return {
        "preprocess_s": t1 - t0,
        "vision_s": vision,
        "prefill_s": per_token[0] - vision,
        "reasoning_s": reasoning,
        "actions_s": actions,
        "postprocess_s": t3 - t2,
        "total_s": t3 - t0,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "completion_tokens": len(completion),
        "decode_forwards": len(completion) - 1,
        "status": parsed.status.value,
    }
