"""Build a tiny random Qwen2.5-VL action model offline (tests, embedded sim): ``autovla-make-tiny``.

Same architecture and folder layout as a converted AutoVLA checkpoint, only small: a byte-level BPE
tokenizer trained here on driving sentences (including the prompt and scaffold text), Qwen's special
tokens in Qwen's order, a Qwen2-VL-style chat template, ``<action_0>`` ... ``<action_{K-1}>`` added as normal
tokens, embeddings resized without mean initialisation, random weights, and a K-disk codebook built by
``autovla_agent.planners`` from synthetic driving. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AddedToken, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from autovla_agent.contract import NavCommand, ThinkingMode
from autovla_agent.planners.codebook import build_synthetic_codebook
from autovla_agent.policy.completion import FAST_THINKING_SENTENCE, SLOW_THINKING_SENTENCE, format_completion
from autovla_agent.policy.model_folder import QwenVLSizes, qwen2_5_vl_config, save_model_folder
from autovla_agent.policy.processor import AutoVLAProcessor, action_token_strings, ensure_offline
from autovla_agent.policy.prompt import SYSTEM_PROMPT_ACTION_ONLY, SYSTEM_PROMPT_REASONING

logger = logging.getLogger(__name__)

#: Qwen2.5's special tokens in Qwen's id order (after <|endoftext|>, which the tokenizer adds first).
QWEN_SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
#: Added but not special in Qwen2.5 (they stay visible in decode(skip_special_tokens=True)).
QWEN_ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)

#: Qwen2-VL-style chat template: each image/video becomes <|vision_start|><|image_pad|/video_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_REASONING_SNIPPETS = (
    "The traffic light ahead is red, so the vehicle should slow down and stop before the line.",
    "A pedestrian is crossing on the right; keep a safe distance and yield.",
    "The lane ahead is clear and the command is to keep forward at the current speed.",
    "A vehicle in front is braking; reduce speed to keep the gap.",
    "The road curves to the left; follow the lane and turn left smoothly.",
    "Scene analysis: an intersection with a green light. Critical objects: the car on the left. Final action: go.",
)


def driving_corpus(num_sentences: int = 400, seed: int = 0) -> list[str]:
    """Driving sentences for the tokenizer: prompt text, scaffold, numbers, commands, reasoning snippets."""
    rng = random.Random(seed)
    corpus = [
        SYSTEM_PROMPT_ACTION_ONLY.format(horizon=5),
        SYSTEM_PROMPT_REASONING.format(horizon=5),
        FAST_THINKING_SENTENCE,
        SLOW_THINKING_SENTENCE,
        *(_REASONING_SNIPPETS * 3),
    ]
    views = ("front", "front-left", "front-right", "back")
    for i in range(num_sentences):
        cmd = rng.choice(list(NavCommand)).value
        corpus.append(
            f"The {rng.choice(('first', 'second', 'third'))} clip shows the {rng.choice(views)} view. Current speed: "
            f"{rng.uniform(-2, 25):.3f} m/s. Current acceleration: {rng.uniform(-6, 3):.3f} m/s^2. The navigation "
            f"command is: {cmd}. Plan the driving action for the next {rng.choice((4, 5))} seconds."
        )
        mode = ThinkingMode.SLOW if i % 3 == 0 else ThinkingMode.FAST
        corpus.append(format_completion([], mode=mode, reasoning=" " + rng.choice(_REASONING_SNIPPETS)))
    return corpus


def build_tiny_tokenizer(vocab_size: int = 600, seed: int = 0) -> Qwen2Tokenizer:
    """A byte-level BPE tokenizer trained offline with Qwen's pre-tokenizer and Qwen's special tokens (no actions)."""
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    bpe.train_from_iterator(driving_corpus(seed=seed), trainer)
    state = json.loads(bpe.to_str())["model"]
    # tokenizers >= 0.20 stores merges as pairs; the Qwen2Tokenizer constructor wants a list of tuples.
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"], merges=merges, unk_token=None, extra_special_tokens=list(QWEN_SPECIAL_TOKENS)
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_ADDED_TOKENS])
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_config(
    tokenizer: Qwen2Tokenizer,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    vision_hidden_size: int = 64,
    vision_depth: int = 2,
) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL config of the tiny model: same structure as 3B, small sizes; vocab = the tokenizer (no actions)."""
    num_heads = 4
    half = hidden_size // num_heads // 2  # mrope_section must sum to head_dim / 2: 1/4, 3/8, 3/8 like 3B's
    section = (half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2)
    sizes = QwenVLSizes(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_position_embeddings=8192,
        mrope_section=section,
        rms_norm_eps=1e-5,  # transformers' default, which the tiny model has always used
        vision_depth=vision_depth,
        vision_hidden_size=vision_hidden_size,
        vision_intermediate_size=2 * vision_hidden_size,
        vision_num_heads=2,
        fullatt_block_indexes=(vision_depth - 1,),
        # A larger init than 3B's 0.02 keeps a 64-wide random model's outputs input-dependent (tests compare tokens).
        initializer_range=1.0 / math.sqrt(hidden_size),
    )
    return qwen2_5_vl_config(tokenizer, len(tokenizer), sizes)


def build_tiny_model(
    out_dir: str | Path,
    *,
    num_action_tokens: int = 2048,
    seed: int = 0,
    pixels: int = 28 * 28 * 8,
    hidden_size: int = 64,
    num_layers: int = 2,
    tokenizer_vocab_size: int = 600,
    codebook_trajectories: int = 1000,
    overwrite: bool = False,
) -> Path:
    """Build and save a tiny random action model folder; return its path.

    Args:
        out_dir: folder to create (must be empty or absent unless ``overwrite``).
        num_action_tokens: K, the codebook size and the number of ``<action_i>`` tokens.
        seed: seeds the tokenizer corpus, the weights and the codebook.
        pixels: per-frame pixel budget (min = max) of the saved image processor; 6272 gives 56x112 for 16:9.
        hidden_size: text hidden size (the vision tower projects to it).
        num_layers: decoder layers.
        tokenizer_vocab_size: BPE vocabulary before special and action tokens.
        codebook_trajectories: synthetic 10 s rollouts the K-disk codebook is built from.
        overwrite: replace an existing non-empty folder.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True (CLI: --force) or another folder")
    if num_action_tokens < 1 or pixels < 28 * 28:
        raise ValueError(f"need num_action_tokens >= 1 and pixels >= 784, got {num_action_tokens}, {pixels}")
    ensure_offline()
    start_s = time.perf_counter()
    codebook = build_synthetic_codebook(codebook_trajectories, num_action_tokens, seed=seed)
    if codebook.num_tokens != num_action_tokens:
        raise ValueError(
            f"the synthetic data gave only {codebook.num_tokens} primitives for K={num_action_tokens}; "
            "raise codebook_trajectories"
        )
    tokenizer = build_tiny_tokenizer(tokenizer_vocab_size, seed)
    config = tiny_config(tokenizer, hidden_size=hidden_size, num_layers=num_layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
        tokenizer.add_tokens(action_token_strings(num_action_tokens), special_tokens=False)
        # Fresh rows from the model's own initialiser, as on a base checkpoint with a Gaussian fit disabled.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": pixels, "longest_edge": pixels})
    processor = AutoVLAProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    save_model_folder(out, model, processor, codebook.with_metadata(model=f"tiny random Qwen2.5-VL, seed {seed}"))
    size_mb = sum(p.stat().st_size for p in out.iterdir() if p.is_file()) / 1e6
    logger.info(
        "tiny model (%d params, vocab %d incl. %d actions, %.1f MB) written to %s in %.1f s",
        sum(p.numel() for p in model.parameters()),
        len(tokenizer),
        num_action_tokens,
        size_mb,
        out,
        time.perf_counter() - start_s,
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: build a tiny random action model folder."""
    parser = argparse.ArgumentParser(prog="autovla-make-tiny", description=main.__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument("--num-action-tokens", type=int, default=2048, help="codebook size K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pixels", type=int, default=28 * 28 * 8, help="per-frame pixel budget (min = max)")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build_tiny_model(
        args.out,
        num_action_tokens=args.num_action_tokens,
        seed=args.seed,
        pixels=args.pixels,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        overwrite=args.force,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
