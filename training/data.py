"""Samples -> model inputs through the runtime's own prompt builder: SFT collator and GRPO dataset rows.

The prompt side is never re-implemented here: a sample becomes an ``Observation`` and goes through
``autovla_agent.policy.prompt.build_prompt`` / ``encode_prompt``, exactly as at inference. The completion side is
tokenised piece by piece the way the runtime feeds it: the fixed scaffold strings (``fast_opening()``,
``slow_opening()``, ``closing_after_reasoning()``) each on their own, the action tokens as their ids, then
``</answer>`` and the end-of-turn token. Sequences are LEFT-padded so that every completion ends at the last
position and the loss needs logits for the last ``max_completion + 1`` positions only (``logits_to_keep``).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from autovla_agent.config_io import to_dict
from autovla_agent.contract import CameraFrame, EgoState, Observation
from autovla_agent.policy.completion import ANSWER_CLOSE, closing_after_reasoning, fast_opening, slow_opening
from autovla_agent.policy.configuration import PromptConfig
from autovla_agent.policy.prompt import build_prompt, encode_completion, encode_prompt
from autovla_agent.training.dataset_io import sample_from_dict
from autovla_agent.training.schema import Sample

logger = logging.getLogger(__name__)

END_OF_TURN = "<|im_end|>"


class ImageCache:
    """Small LRU of decoded RGB frames: consecutive samples share 3 of their 4 history frames."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[Path, np.ndarray] = OrderedDict()

    def load(self, path: Path) -> np.ndarray:
        """RGB uint8 (H, W, 3) of an image file; FileNotFoundError names the file."""
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        if not path.is_file():
            raise FileNotFoundError(f"image {path} is missing; run the dataset validator")
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        self._items[path] = rgb
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return rgb


def sample_observation(
    sample: Sample, root: Path, prompt: PromptConfig, cache: ImageCache | None = None
) -> Observation:
    """The ``Observation`` the runtime would have seen for this sample (frames loaded from disk)."""
    cache = cache or ImageCache(0)
    t0 = sample.source.timestamp_s
    dt = 1.0 / prompt.frame_rate_hz
    cameras = {}
    for view, paths in sample.cameras.items():
        n = len(paths)
        cameras[view] = tuple(
            CameraFrame(image_rgb=cache.load(root / p), timestamp_s=t0 - (n - 1 - i) * dt) for i, p in enumerate(paths)
        )
    if sample.ego.history:
        history = tuple(
            EgoState(timestamp_s=t0 + t, x_m=x, y_m=y, yaw_rad=yaw, speed_mps=v, accel_mps2=a)
            for t, x, y, yaw, v, a in sample.ego.history
        )
    else:
        history = (EgoState(timestamp_s=t0, speed_mps=sample.ego.speed_mps, accel_mps2=sample.ego.accel_mps2),)
    return Observation(
        timestamp_s=t0,
        cameras=cameras,
        ego_history=history,
        command=sample.command,
        target_point_ego_m=sample.target_point_ego_m,
    )


def reasoning_segment(reasoning: str) -> str:
    """The reasoning as it follows the slow sentence in a completion (one leading space)."""
    return reasoning if reasoning[:1].isspace() else " " + reasoning


@dataclass(frozen=True, slots=True)
class CompletionTokens:
    """Token ids of one target completion, and which of them are action tokens."""

    ids: list[int]
    is_action: list[bool]


def completion_tokens(
    tokenizer: Any,
    action_token_ids: Sequence[int],
    action_indices: Sequence[int],
    reasoning: str | None,
    reasoning_model: bool = True,
) -> CompletionTokens:
    """Target completion of a sample: the scaffold pieces the runtime feeds, the actions, ``</answer>``, end of turn.

    Fast samples (no reasoning) get exactly the fast scaffold the runtime force-feeds; slow samples get the slow
    sentence, the reasoning and the closing scaffold.
    """
    pieces: list[tuple[list[int], bool]] = []
    if reasoning is None or not reasoning_model:
        pieces.append((encode_completion(tokenizer, fast_opening(reasoning_model)), False))
    else:
        pieces.append((encode_completion(tokenizer, slow_opening()), False))
        pieces.append((encode_completion(tokenizer, reasoning_segment(reasoning)), False))
        pieces.append((encode_completion(tokenizer, closing_after_reasoning()), False))
    pieces.append(([int(action_token_ids[i]) for i in action_indices], True))
    pieces.append((encode_completion(tokenizer, ANSWER_CLOSE), False))
    pieces.append(([int(tokenizer.convert_tokens_to_ids(END_OF_TURN))], False))
    ids: list[int] = []
    is_action: list[bool] = []
    for piece_ids, action in pieces:
        ids.extend(piece_ids)
        is_action.extend([action] * len(piece_ids))
    return CompletionTokens(ids=ids, is_action=is_action)


def sft_dataset(samples: Sequence[Sample], root: str | Path) -> Any:
    """A ``datasets.Dataset`` of samples with action tokens: columns ``sample_id``, ``sample_json``, ``root``."""
    import datasets

    missing = [s.id for s in samples if s.action_tokens is None]
    if missing:
        raise ValueError(
            f"{len(missing)} samples have no action_tokens (first: {missing[0]}); tokenise them with the model's "
            "codebook first (the SFT command does it with tokens: model_codebook)"
        )
    return datasets.Dataset.from_dict(
        {
            "sample_id": [s.id for s in samples],
            "sample_json": [json.dumps(to_dict(s)) for s in samples],
            "root": [str(root)] * len(samples),
        }
    )


class SFTCollator:
    """Builds a left-padded batch: prompt via the runtime's encoder (labels -100), completion supervised.

    Output keys: ``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``labels``, ``action_mask`` (True where
    the label is an action token), ``sample_weight`` (B,), ``token_weight`` (B, L) and the vision tensors
    (``pixel_values``, ``image_grid_thw`` and/or ``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``).

    ``token_weight`` is the sample's weight (``cot_weight`` for chain-of-thought samples, else 1) on every
    completion token, except, with ``neutral_mode_token``, the first token where the fast and slow openings
    differ (the thinking-mode choice) keeps weight 1: weighting it x40 would teach P(slow) ~ 0.94 from 30 %
    chain-of-thought data and make an adaptive model think slowly everywhere.
    """

    def __init__(
        self,
        processor: Any,
        prompt_config: PromptConfig,
        action_token_ids: Sequence[int],
        *,
        num_action_tokens: int = 10,
        cot_weight: float = 40.0,
        neutral_mode_token: bool = True,
        image_cache_size: int = 256,
    ) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.prompt_config = prompt_config
        self.action_token_ids = tuple(int(t) for t in action_token_ids)
        self.num_action_tokens = num_action_tokens
        self.cot_weight = cot_weight
        self.cache = ImageCache(image_cache_size)
        self.mode_index: int | None = None
        if prompt_config.reasoning_model and neutral_mode_token:
            fast = encode_completion(self.tokenizer, fast_opening(True))
            slow = encode_completion(self.tokenizer, slow_opening())
            common = 0
            while common < min(len(fast), len(slow)) and fast[common] == slow[common]:
                common += 1
            self.mode_index = common if common < min(len(fast), len(slow)) else None
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.convert_tokens_to_ids(END_OF_TURN))

    def encode_sample(self, sample: Sample, root: Path) -> dict[str, Any]:
        """Prompt encoding (``EncodedPrompt``), completion tokens and weight of one sample."""
        if sample.action_tokens is None or len(sample.action_tokens) != self.num_action_tokens:
            raise ValueError(f"sample {sample.id}: needs exactly {self.num_action_tokens} action tokens")
        obs = sample_observation(sample, root, self.prompt_config, self.cache)
        prompt = build_prompt(obs, self.prompt_config, num_action_tokens=self.num_action_tokens)
        encoded = encode_prompt(self.processor, prompt, self.prompt_config)
        completion = completion_tokens(
            self.tokenizer,
            self.action_token_ids,
            sample.action_tokens,
            sample.reasoning,
            self.prompt_config.reasoning_model,
        )
        weight = self.cot_weight if (sample.is_slow and self.prompt_config.reasoning_model) else 1.0
        return {"prompt": encoded, "completion": completion, "weight": weight}

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate ``sft_dataset`` rows into model inputs plus loss masks and weights."""
        encoded = [
            self.encode_sample(sample_from_dict(json.loads(f["sample_json"])), Path(f["root"])) for f in features
        ]
        lengths = [e["prompt"].input_ids.shape[1] + len(e["completion"].ids) for e in encoded]
        width = max(lengths)
        batch = len(encoded)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((batch, width), dtype=torch.long)
        mm_types = torch.zeros((batch, width), dtype=torch.long)
        labels = torch.full((batch, width), -100, dtype=torch.long)
        action_mask = torch.zeros((batch, width), dtype=torch.bool)
        token_weight = torch.zeros((batch, width), dtype=torch.float32)
        vision: dict[str, list[torch.Tensor]] = {}
        for i, e in enumerate(encoded):
            p = e["prompt"]
            c = e["completion"]
            start = width - lengths[i]
            plen = p.input_ids.shape[1]
            ids = torch.cat([p.input_ids[0], torch.tensor(c.ids, dtype=torch.long)])
            input_ids[i, start:] = ids
            attention[i, start:] = 1
            mm_types[i, start : start + plen] = p.mm_token_type_ids[0]
            labels[i, start + plen :] = torch.tensor(c.ids, dtype=torch.long)
            action_mask[i, start + plen :] = torch.tensor(c.is_action, dtype=torch.bool)
            token_weight[i, start + plen :] = e["weight"]
            if self.mode_index is not None:
                token_weight[i, start + plen + self.mode_index] = 1.0
            for key, value in p.vision_inputs(self.processor.image_processor).items():
                vision.setdefault(key, []).append(value)
        out: dict[str, torch.Tensor] = {
            "input_ids": input_ids,
            "attention_mask": attention,
            "mm_token_type_ids": mm_types,
            "labels": labels,
            "action_mask": action_mask,
            "sample_weight": torch.tensor([e["weight"] for e in encoded], dtype=torch.float32),
            "token_weight": token_weight,
        }
        for key, values in vision.items():
            out[key] = torch.cat(values)
        return out


def grpo_rows(samples: Sequence[Sample], root: str | Path) -> list[dict[str, Any]]:
    """Plain rows for a ``datasets.Dataset`` (JSON strings for nested data); prompts are built lazily.

    Columns: ``sample_id``, ``root``, ``sample_json`` (the whole sample), ``speed_mps``, ``accel_mps2``,
    ``scene_json`` ("" when absent), ``future_json``, ``scene_token`` (NAVSIM, "" otherwise).
    """
    rows = []
    for s in samples:
        rows.append(
            {
                "sample_id": s.id,
                "root": str(root),
                "sample_json": json.dumps(to_dict(s)),
                "speed_mps": float(s.ego.speed_mps),
                "accel_mps2": float(s.ego.accel_mps2),
                "scene_json": json.dumps(to_dict(s.scene)) if s.scene is not None else "",
                "future_json": json.dumps(to_dict(s.future)),
                "scene_token": s.source.scene_token,
            }
        )
    return rows


class GRPOTransform:
    """``datasets`` transform: adds ``prompt`` (runtime chat messages) and ``images`` (PIL) to GRPO rows."""

    def __init__(self, prompt_config: PromptConfig, num_action_tokens: int = 10, image_cache_size: int = 256) -> None:
        if prompt_config.camera_layout != "images":
            raise ValueError(
                "GRPO through TRL feeds images only (no video path in its log-prob pass): set "
                "prompt.camera_layout: images for GRPO (and for the SFT and inference of that model)"
            )
        self.prompt_config = prompt_config
        self.num_action_tokens = num_action_tokens
        self.cache = ImageCache(image_cache_size)

    def prompt_and_images(self, sample: Sample, root: Path) -> tuple[list[dict[str, Any]], list[Image.Image]]:
        """Runtime chat messages (image placeholders unfilled) and the frames as PIL images, in prompt order."""
        obs = sample_observation(sample, root, self.prompt_config, self.cache)
        prompt = build_prompt(obs, self.prompt_config, num_action_tokens=self.num_action_tokens)
        messages = json.loads(json.dumps(list(prompt.messages)))  # plain, mutable copies for TRL
        return messages, [Image.fromarray(img) for img in prompt.images]

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Batch transform (``Dataset.with_transform``): keeps every column, adds ``prompt`` and ``images``."""
        prompts, images = [], []
        for sample_json, root in zip(batch["sample_json"], batch["root"], strict=True):
            sample = sample_from_dict(json.loads(sample_json))
            messages, frames = self.prompt_and_images(sample, Path(root))
            prompts.append(messages)
            images.append(frames)
        return {**batch, "prompt": prompts, "images": images}
