"""Qwen2.5-VL action model folders: the model config from a few sizes, and the save of a complete folder.

Shared by the tiny random model (``tiny_model``), the random 3B architecture of the latency benchmark and the
checkpoint converter, so that every folder the package writes has the same layout: ``save_pretrained`` weights
and config, the processor (tokenizer with the action tokens, image processor, chat template) and the action
codebook next to them (``action_codebook.npz/.json``), which ``modeling.check_model_folder`` insists on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import Qwen2_5_VLConfig

from autovla_agent.planners.codebook import ActionCodebook
from autovla_agent.policy.configuration import CODEBOOK_FILENAME


@dataclass(frozen=True, slots=True)
class QwenVLSizes:
    """The sizes of a Qwen2.5-VL; the defaults are Qwen2.5-VL-3B's public config values."""

    hidden_size: int = 2048
    intermediate_size: int = 11008
    num_layers: int = 36
    num_heads: int = 16
    num_key_value_heads: int = 2
    max_position_embeddings: int = 128_000
    mrope_section: tuple[int, ...] = (16, 24, 24)  # sums to head_dim / 2
    rms_norm_eps: float = 1e-6
    vision_depth: int = 32
    vision_hidden_size: int = 1280
    vision_intermediate_size: int = 3420
    vision_num_heads: int = 16
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
    initializer_range: float | None = None  # None: transformers' default for text, vision and the whole model


def qwen2_5_vl_config(tokenizer: Any, vocab_size: int, sizes: QwenVLSizes) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL config of ``sizes`` whose special-token ids come from ``tokenizer`` (Qwen's special tokens).

    The vision patching (14 px patches, 2 x 2 merge, 2-frame temporal patches, 112 px windows, 2 tokens per
    second) is Qwen2.5-VL's and the same at every size; the head is tied to the embeddings.
    """
    ids = tokenizer.convert_tokens_to_ids
    text: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=sizes.hidden_size,
        intermediate_size=sizes.intermediate_size,
        num_hidden_layers=sizes.num_layers,
        num_attention_heads=sizes.num_heads,
        num_key_value_heads=sizes.num_key_value_heads,
        max_position_embeddings=sizes.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": list(sizes.mrope_section)},
        bos_token_id=None,
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
        rms_norm_eps=sizes.rms_norm_eps,
    )
    vision: dict[str, Any] = dict(
        depth=sizes.vision_depth,
        hidden_size=sizes.vision_hidden_size,
        intermediate_size=sizes.vision_intermediate_size,
        num_heads=sizes.vision_num_heads,
        out_hidden_size=sizes.hidden_size,
        fullatt_block_indexes=list(sizes.fullatt_block_indexes),
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        tokens_per_second=2,
    )
    extra: dict[str, Any] = {}
    if sizes.initializer_range is not None:
        text["initializer_range"] = vision["initializer_range"] = sizes.initializer_range
        extra["initializer_range"] = sizes.initializer_range
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
        **extra,
    )


def save_model_folder(
    out: Path, model: Any, processor: Any, codebook: ActionCodebook, extra_json: Mapping[str, Any] | None = None
) -> Path:
    """Write a complete model folder: weights and config, processor, codebook, and ``{file name: document}`` JSON.

    The folder is created when absent; emptiness checks are the caller's (they differ in their advice).
    """
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    codebook.save(out / CODEBOOK_FILENAME)
    for name, document in (extra_json or {}).items():
        (out / name).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return out
