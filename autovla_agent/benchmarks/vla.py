"""Latency benchmark of one planning step, stage by stage: ``python -m autovla_agent.benchmarks.vla``.

For each camera layout (video clips / separate images) and thinking mode (fast / slow) it runs the same
stream of synthetic observations through two paths, interleaved step by step:

* ``generate``: the plain path (AutoVLA's): the processor on all frames, ``model.generate`` with the full
  vocabulary head, every completion token generated (scaffold included), no caches;
* ``optimized``: ``VLAPlanner``: forced scaffold, action-row head, vision-encoder cache per frame unit,
  fixed-prefix KV cache.

Stages (seconds, medians over the measured steps): preprocess, vision, prefill, reasoning (every decoded
token before the first action: the scaffold in the generate path, the reasoning in slow mode), actions
(the N action tokens and the closing), postprocess (parse + bicycle decoder), total. ``--model DIR`` times a
model folder (e.g. the tiny model on a CPU); ``--arch qwen2.5-vl-3b-random`` builds the real 3B architecture
with random weights (no download) for GPU latency. The JSON layout is described in ``RESULT_FIELDS``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from transformers import LogitsProcessor, LogitsProcessorList

from autovla_agent.contract import CameraFrame, EgoState, NavCommand, Observation
from autovla_agent.policy.completion import parse_completion
from autovla_agent.policy.configuration import (
    AUTOVLA_PIXELS,
    DecodingConfig,
    ModelConfig,
    PromptConfig,
    ThinkingConfig,
    VLAConfig,
)
from autovla_agent.policy.modeling import (
    VLAPlanner,
    VLARuntime,
    fallback_poses,
    load_vla,
    resolve_device,
    resolve_dtype,
)
from autovla_agent.policy.prompt import build_prompt, encode_prompt, render_prompt_text

logger = logging.getLogger(__name__)

STAGES = ("preprocess_s", "vision_s", "prefill_s", "reasoning_s", "actions_s", "postprocess_s", "total_s")
SCHEMA = "autovla-benchmark/1"
RESULT_FIELDS = {
    "layout": "video (one clip per view) or images (one image item per frame)",
    "mode": "fast (forced fast scaffold) or slow (slow scaffold + generated reasoning)",
    "path": "generate (plain model.generate, full head, no caches) or optimized (VLAPlanner)",
    "median_s": "per-stage medians in seconds over the measured steps (keys: STAGES)",
    "mean_s": "per-stage means in seconds",
    "total_samples_s": "total seconds of every measured step",
    "prompt_tokens": "prompt length in tokens (text + vision pads)",
    "vision_tokens": "vision tokens in the prompt",
    "completion_tokens": "tokens after the prompt (forced + generated)",
    "decode_forwards": "single-token forward passes after the prefill",
    "vision_cache_hit_rate": "share of vision units served from the cache (optimized path)",
    "statuses": "plan status counts (ok / repaired / fallback)",
}


def synthetic_observations(
    views: Sequence[str], num_frames: int, height_px: int, width_px: int, *, new_frames_per_step: int, seed: int = 0
) -> Iterator[Observation]:
    """Endless stream of observations whose camera windows slide by ``new_frames_per_step`` frames per step."""
    rng = np.random.default_rng(seed)
    pool: dict[str, list[np.ndarray]] = {v: [] for v in views}
    step = 0
    while True:
        t_s = step * 0.5 * new_frames_per_step
        for view in views:
            while len(pool[view]) < num_frames + step * new_frames_per_step:
                pool[view].append(rng.integers(0, 256, (height_px, width_px, 3), dtype=np.uint8))
        start = step * new_frames_per_step
        cameras = {
            v: tuple(
                CameraFrame(img, t_s - 0.5 * (num_frames - 1 - i))
                for i, img in enumerate(pool[v][start : start + num_frames])
            )
            for v in views
        }
        yield Observation(
            timestamp_s=t_s,
            cameras=cameras,
            command=NavCommand.KEEP_FORWARD,
            ego_history=(EgoState(t_s, speed_mps=6.0 + step % 3, accel_mps2=0.3),),
        )
        step += 1


def random_3b_runtime(device: str, dtype: str, attn: str) -> VLARuntime:
    """The Qwen2.5-VL-3B architecture (public config values) with random weights and 2048 action tokens, in memory."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from autovla_agent.planners.codebook import build_synthetic_codebook
    from autovla_agent.policy.processor import AutoVLAProcessor, action_token_strings, find_action_vocab
    from autovla_agent.policy.tiny_model import CHAT_TEMPLATE, build_tiny_tokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    tokenizer = build_tiny_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    tokenizer.add_tokens(action_token_strings(2048), special_tokens=False)
    text = dict(
        vocab_size=153_713,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        max_position_embeddings=128_000,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
        bos_token_id=None,
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
        rms_norm_eps=1e-6,
    )
    vision = dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=2048,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
    )
    config = transformers.Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    config._attn_implementation = attn
    start_s = time.perf_counter()
    with torch.device(dev):
        model = transformers.Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch_dtype).eval()
    logger.info(
        "random Qwen2.5-VL-3B architecture (%.3f B params) built on %s in %.1f s",
        sum(p.numel() for p in model.parameters()) / 1e9,
        dev,
        time.perf_counter() - start_s,
    )
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": AUTOVLA_PIXELS, "longest_edge": AUTOVLA_PIXELS})
    processor = AutoVLAProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    codebook = build_synthetic_codebook(1000, 2048)
    vocab = find_action_vocab(tokenizer, expected_num_tokens=codebook.num_tokens)
    return VLARuntime(
        model=model,
        processor=processor,
        action_vocab=vocab,
        codebook=codebook,
        path=Path("qwen2.5-vl-3b-random"),
        device=dev,
        dtype=torch_dtype,
        model_type="qwen2_5_vl",
    )


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


def generate_step(
    planner: VLAPlanner, obs: Observation, num_new_tokens: int, first_action: int, reference_tokens: Sequence[int]
) -> dict[str, Any]:
    """One step of the plain path; returns stage times and counts.

    A random model's free completion rarely parses; the bicycle decoder then runs on ``reference_tokens`` (the
    optimized path's tokens) so that the post-processing cost stays comparable.
    """
    runtime, config = planner.runtime, planner.config
    device = runtime.device
    t0 = time.perf_counter()
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
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    for key in ("pixel_values", "pixel_values_videos"):
        if key in inputs:
            inputs[key] = inputs[key].to(runtime.dtype)
    t1 = time.perf_counter()
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
    t2 = time.perf_counter()
    completion = out[0, inputs["input_ids"].shape[1] :].tolist()
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
    t3 = time.perf_counter()
    stamps = clock.stamps
    per_token = [stamps[0] - t1] + [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    vision = sum(vision_s)
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


def _bench_config(args: argparse.Namespace, model_path: str, layout: str, mode: str) -> VLAConfig:
    pixels = args.pixels
    return VLAConfig(
        model=ModelConfig(path=model_path, device=args.device, dtype=args.dtype, attn_implementation=args.attn),
        prompt=PromptConfig(
            views=tuple(args.views),
            num_frames=args.num_frames,
            camera_layout=layout,
            min_pixels=pixels,
            max_pixels=pixels,
        ),
        thinking=ThinkingConfig(policy=mode, max_reasoning_tokens=args.reasoning_tokens),
        decoding=DecodingConfig(num_action_tokens=args.num_action_tokens, plan_num_poses=args.num_action_tokens),
    )


def _summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {
        "median_s": {s: statistics.median(r[s] for r in rows) for s in STAGES},
        "mean_s": {s: statistics.fmean(r[s] for r in rows) for s in STAGES},
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run every (layout, mode) pair over both paths; return the result document (see RESULT_FIELDS)."""
    if args.arch:
        runtime = random_3b_runtime(args.device, args.dtype, args.attn)
        model_path = ""
    else:
        runtime = load_vla(
            ModelConfig(path=str(args.model), device=args.device, dtype=args.dtype, attn_implementation=args.attn)
        )
        model_path = str(args.model)
    results: list[dict[str, Any]] = []
    for layout in args.layouts:
        for mode in args.modes:
            config = _bench_config(args, model_path, layout, mode)
            planner = VLAPlanner(config, runtime=runtime)
            stream = synthetic_observations(
                args.views,
                args.num_frames,
                args.image_height,
                args.image_width,
                new_frames_per_step=args.new_frames_per_step,
                seed=args.seed,
            )
            rows: dict[str, list[dict[str, Any]]] = {"optimized": [], "generate": []}
            statuses: dict[str, dict[str, int]] = {"optimized": {}, "generate": {}}
            extra: dict[str, Any] = {}
            for step in range(args.warmup + args.steps):
                obs = next(stream)
                hits0, miss0 = planner.engine.vision_cache.hits, planner.engine.vision_cache.misses
                plan = planner.plan(obs)
                result = planner.engine.last_result
                encoded = planner.engine.last_encoded
                first_action = (
                    result.completion_ids.index(runtime.action_vocab.token_ids[plan.action_tokens[0]])
                    if plan.action_tokens
                    else len(result.completion_ids)
                )
                gen = generate_step(planner, obs, len(result.completion_ids), first_action, plan.action_tokens)
                if step < args.warmup:
                    continue
                opt = {s: plan.timings_s.get(s, 0.0) for s in STAGES}
                opt["hits"] = planner.engine.vision_cache.hits - hits0
                opt["lookups"] = opt["hits"] + planner.engine.vision_cache.misses - miss0
                rows["optimized"].append(opt)
                rows["generate"].append(gen)
                for path, status in (("optimized", plan.status.value), ("generate", gen["status"])):
                    statuses[path][status] = statuses[path].get(status, 0) + 1
                extra = {
                    "prompt_tokens": int(encoded.input_ids.shape[1]),
                    "vision_tokens": int((encoded.mm_token_type_ids != 0).sum()),
                    "completion_tokens": len(result.completion_ids),
                    "forced_tokens": len(result.completion_ids) - result.num_reasoning_tokens - len(plan.action_tokens),
                    "reasoning_tokens": result.num_reasoning_tokens,
                }
            for path in ("generate", "optimized"):
                entry = {
                    "layout": layout,
                    "mode": mode,
                    "path": path,
                    **_summary(rows[path]),
                    "total_samples_s": [r["total_s"] for r in rows[path]],
                    "statuses": statuses[path],
                    "prompt_tokens": extra["prompt_tokens"],
                    "vision_tokens": extra["vision_tokens"],
                    "completion_tokens": extra["completion_tokens"],
                }
                if path == "optimized":
                    lookups = sum(r["lookups"] for r in rows[path])
                    entry["vision_cache_hit_rate"] = sum(r["hits"] for r in rows[path]) / lookups if lookups else 0.0
                    entry["decode_forwards"] = (
                        extra["reasoning_tokens"] + args.num_action_tokens - 1 + (1 if extra["reasoning_tokens"] else 0)
                    )
                    entry["reasoning_tokens"] = extra["reasoning_tokens"]
                else:
                    entry["decode_forwards"] = extra["completion_tokens"] - 1
                results.append(entry)
    speedup = {}
    for layout in args.layouts:
        for mode in args.modes:
            pair = {r["path"]: r["median_s"]["total_s"] for r in results if r["layout"] == layout and r["mode"] == mode}
            speedup[f"{layout}/{mode}"] = pair["generate"] / pair["optimized"] if pair["optimized"] > 0 else None
    model = runtime.model
    device = runtime.device
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine(),
            "dtype": str(runtime.dtype).replace("torch.", ""),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "attn_implementation": args.attn,
        },
        "model": {
            "source": args.arch or str(runtime.path),
            "params": sum(p.numel() for p in model.parameters()),
            "vision_params": sum(p.numel() for p in model.model.visual.parameters()),
            "vocab_rows": int(model.lm_head.weight.shape[0]),
            "num_action_tokens": runtime.action_vocab.num_tokens,
            "text_layers": model.config.text_config.num_hidden_layers,
            "hidden_size": model.config.text_config.hidden_size,
        },
        "settings": {
            "steps": args.steps,
            "warmup": args.warmup,
            "views": list(args.views),
            "num_frames": args.num_frames,
            "image_hw_px": [args.image_height, args.image_width],
            "pixels": args.pixels,
            "new_frames_per_step": args.new_frames_per_step,
            "reasoning_tokens": args.reasoning_tokens,
            "num_action_tokens": args.num_action_tokens,
        },
        "fields": RESULT_FIELDS,
        "results": results,
        "speedup_total": speedup,
    }


def format_table(document: dict[str, Any]) -> str:
    """Human-readable table of the medians in milliseconds."""
    head = ["layout", "mode", "path", *[s.removesuffix("_s") for s in STAGES], "tokens"]
    lines = ["  ".join(f"{h:>10}" for h in head)]
    for r in document["results"]:
        ms = [f"{1000 * r['median_s'][s]:10.1f}" for s in STAGES]
        lines.append(
            "  ".join(
                [f"{r['layout']:>10}", f"{r['mode']:>10}", f"{r['path']:>10}", *ms, f"{r['completion_tokens']:>10}"]
            )
        )
    speed = ", ".join(f"{k}: {v:.2f}x" for k, v in document["speedup_total"].items() if v)
    return "\n".join(lines) + f"\nspeed-up of the total (generate / optimized): {speed}"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: benchmark one planning step (stages, both paths, fast and slow, video and images layouts)."""
    parser = argparse.ArgumentParser(prog="autovla-benchmark-vla", description=main.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="model folder (save_pretrained layout with the codebook)")
    source.add_argument("--arch", choices=("qwen2.5-vl-3b-random",), help="real architecture, random weights")
    parser.add_argument("--steps", type=int, default=5, help="measured steps per (layout, mode)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured steps first")
    parser.add_argument("--json", type=Path, default=None, help="write the result document here")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    parser.add_argument("--attn", default="sdpa", choices=("eager", "sdpa", "flash_attention_2"))
    parser.add_argument("--layouts", nargs="+", default=["video", "images"], choices=("video", "images"))
    parser.add_argument("--modes", nargs="+", default=["fast", "slow"], choices=("fast", "slow"))
    parser.add_argument("--views", nargs="+", default=["front", "front_left", "front_right"])
    parser.add_argument("--num-frames", type=int, default=4)
    parser.add_argument("--image-height", type=int, default=900)
    parser.add_argument("--image-width", type=int, default=1600)
    parser.add_argument("--pixels", type=int, default=None, help="per-frame pixel budget; default: the model's")
    parser.add_argument("--new-frames-per-step", type=int, default=1, help="1 = replanning at the 2 Hz frame rate")
    parser.add_argument("--reasoning-tokens", type=int, default=64, help="slow mode: reasoning tokens (limit)")
    parser.add_argument("--num-action-tokens", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.arch and args.pixels is None:
        args.pixels = AUTOVLA_PIXELS
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    document = run_benchmark(args)
    logger.info("median stage times in ms:\n%s", format_table(document))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        logger.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
