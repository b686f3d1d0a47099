"""Latency benchmark of one planning step, stage by stage: ``python -m autovla_agent.benchmarks.vla``.

For each camera layout (video clips / separate images) and thinking mode (fast / slow) it runs the same
stream of synthetic observations through two paths, interleaved step by step:

* ``generate``: the plain path (AutoVLA's, ``benchmarks.generate_path``): the processor on all frames,
  ``model.generate`` with the full vocabulary head, every completion token generated (scaffold included), no caches;
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

from autovla_agent.benchmarks.generate_path import generate_step
from autovla_agent.contract import CameraFrame, EgoState, NavCommand, Observation
from autovla_agent.policy.configuration import (
    AUTOVLA_PIXELS,
    DecodingConfig,
    ModelConfig,
    PromptConfig,
    ThinkingConfig,
    VLAConfig,
)
from autovla_agent.policy.modeling import VLAPlanner, VLARuntime, load_vla, resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

STAGES = ("preprocess_s", "vision_s", "prefill_s", "reasoning_s", "actions_s", "postprocess_s", "total_s")
SCHEMA = "autovla-benchmark/1"
PATHS = ("generate", "optimized")  # the order of each (layout, mode) pair's results in the document
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
    from autovla_agent.policy.model_folder import QwenVLSizes, qwen2_5_vl_config
    from autovla_agent.policy.processor import AutoVLAProcessor, action_token_strings, find_action_vocab
    from autovla_agent.policy.tiny_model import CHAT_TEMPLATE, build_tiny_tokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_tokens(action_token_strings(2048), special_tokens=False)
    config = qwen2_5_vl_config(tokenizer, 153_713, QwenVLSizes())
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


def _load_runtime(args: argparse.Namespace) -> tuple[VLARuntime, str]:
    """The runtime to time and the model path its configs name ("" for the random architecture)."""
    if args.arch:
        return random_3b_runtime(args.device, args.dtype, args.attn), ""
    runtime = load_vla(
        ModelConfig(path=str(args.model), device=args.device, dtype=args.dtype, attn_implementation=args.attn)
    )
    return runtime, str(args.model)


def _measure(
    args: argparse.Namespace, planner: VLAPlanner
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, int]], dict[str, int]]:
    """Both paths over the same observations, interleaved: per-path rows and status counts, prompt sizes."""
    runtime = planner.runtime
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
    sizes: dict[str, int] = {}
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
        sizes = {
            "prompt_tokens": int(encoded.input_ids.shape[1]),
            "vision_tokens": int((encoded.mm_token_type_ids != 0).sum()),
            "completion_tokens": len(result.completion_ids),
            "forced_tokens": len(result.completion_ids) - result.num_reasoning_tokens - len(plan.action_tokens),
            "reasoning_tokens": result.num_reasoning_tokens,
        }
    return rows, statuses, sizes


def _entry(
    layout: str,
    mode: str,
    path: str,
    rows: list[dict[str, Any]],
    statuses: dict[str, int],
    sizes: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One result of the document (see RESULT_FIELDS)."""
    entry = {
        "layout": layout,
        "mode": mode,
        "path": path,
        **_summary(rows),
        "total_samples_s": [r["total_s"] for r in rows],
        "statuses": statuses,
        "prompt_tokens": sizes["prompt_tokens"],
        "vision_tokens": sizes["vision_tokens"],
        "completion_tokens": sizes["completion_tokens"],
    }
    if path == "optimized":
        lookups = sum(r["lookups"] for r in rows)
        entry["vision_cache_hit_rate"] = sum(r["hits"] for r in rows) / lookups if lookups else 0.0
        reasoning = sizes["reasoning_tokens"]
        entry["decode_forwards"] = reasoning + args.num_action_tokens - 1 + (1 if reasoning else 0)
        entry["reasoning_tokens"] = reasoning
    else:
        entry["decode_forwards"] = sizes["completion_tokens"] - 1
    return entry


def _environment(args: argparse.Namespace, runtime: VLARuntime) -> dict[str, Any]:
    """Versions, device and threads the numbers were taken with."""
    device = runtime.device
    return {
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
    }


def _model_info(args: argparse.Namespace, runtime: VLARuntime) -> dict[str, Any]:
    """Size and shape of the timed model."""
    model = runtime.model
    return {
        "source": args.arch or str(runtime.path),
        "params": sum(p.numel() for p in model.parameters()),
        "vision_params": sum(p.numel() for p in model.model.visual.parameters()),
        "vocab_rows": int(model.lm_head.weight.shape[0]),
        "num_action_tokens": runtime.action_vocab.num_tokens,
        "text_layers": model.config.text_config.num_hidden_layers,
        "hidden_size": model.config.text_config.hidden_size,
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run every (layout, mode) pair over both paths; return the result document (see RESULT_FIELDS)."""
    runtime, model_path = _load_runtime(args)
    results: list[dict[str, Any]] = []
    speedup = {}
    for layout in args.layouts:
        for mode in args.modes:
            planner = VLAPlanner(_bench_config(args, model_path, layout, mode), runtime=runtime)
            rows, statuses, sizes = _measure(args, planner)
            pair = {path: _entry(layout, mode, path, rows[path], statuses[path], sizes, args) for path in PATHS}
            results.extend(pair.values())
            generate_s, optimized_s = (pair[p]["median_s"]["total_s"] for p in PATHS)
            speedup[f"{layout}/{mode}"] = generate_s / optimized_s if optimized_s > 0 else None
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": _environment(args, runtime),
        "model": _model_info(args, runtime),
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
