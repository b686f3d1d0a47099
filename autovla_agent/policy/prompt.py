"""The one prompt builder shared by training and inference: Observation -> chat messages -> model inputs.

Training imports the same functions (``build_prompt``, ``encode_prompt``, ``format_completion``) so that the
prompt text, the camera layout, the pixel budget and the answer scaffold can never drift between the two.
Layout (AutoVLA's structure, own wording): a system prompt (action-only or reasoning), then one user turn
with a fixed sentence about the cameras, one line plus one clip (or one image per frame) per view, the
signed speed and acceleration (optionally their history), the navigation command and the horizon. The text
before the first image is identical at every step, which lets the runtime reuse its KV cache.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from autovla_agent.contract import Observation, ThinkingMode
from autovla_agent.policy.completion import (  # noqa: F401 - re-exported: the scaffold is part of the prompt
    ANSWER_CLOSE,
    ANSWER_OPEN,
    FAST_THINKING_SENTENCE,
    SLOW_THINKING_SENTENCE,
    THINK_CLOSE,
    THINK_OPEN,
    closing_after_reasoning,
    fast_opening,
    format_completion,
    slow_opening,
)
from autovla_agent.policy.configuration import ACTION_TOKEN_DURATION_S, PromptConfig
from autovla_agent.policy.processor import (
    PixelBudget,
    frame_digest,
    normalize_frame,
    patchify_clip,
    pixel_budget,
    preprocess_image,
)

SYSTEM_PROMPT_ACTION_ONLY = (
    "You are the driving policy of an autonomous vehicle. From the camera views, the vehicle's current speed "
    "and acceleration and the navigation command, choose the best driving action for the next {horizon} seconds."
)
SYSTEM_PROMPT_REASONING = (
    SYSTEM_PROMPT_ACTION_ONLY + " Pay attention to traffic lights, other road users and lane markings. When the "
    "scene needs it, reason step by step (scene analysis, critical objects, their likely behaviour, the ego "
    "intent) before deciding; otherwise decide directly. Always finish with the final action."
)

IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
VISION_START = "<|vision_start|>"

_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


def view_label(view: str) -> str:
    """Prompt label of a camera view name: ``front_left`` -> ``front-left``."""
    return view.replace("_", "-")


def validate_observation(obs: Observation, config: PromptConfig) -> None:
    """Raise ValueError saying what is wrong with an observation and how to fix it (before any model work)."""
    for view in config.views:
        if view not in obs.cameras:
            raise ValueError(
                f"observation has no camera view {view!r} (it has {sorted(obs.cameras)}); the prompt config asks "
                f"for views {list(config.views)}: fix prompt.views or the rig/frame buffer"
            )
        frames = obs.cameras[view]
        if len(frames) < config.num_frames:
            raise ValueError(
                f"view {view!r} has {len(frames)} frames but prompt.num_frames is {config.num_frames}; the frame "
                "buffer must keep at least that many frames (oldest first)"
            )
        shape = None
        for i, frame in enumerate(frames[-config.num_frames :]):
            img = frame.image_rgb
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                got = f"{type(img).__name__} {getattr(img, 'shape', None)} {getattr(img, 'dtype', None)}"
                raise ValueError(
                    f"view {view!r} frame {i}: image_rgb must be an (H, W, 3) uint8 RGB array, got {got}; convert "
                    "BGRA/float images in the frame buffer"
                )
            if min(img.shape[:2]) < 1:
                raise ValueError(f"view {view!r} frame {i}: empty image of shape {img.shape}")
            if max(img.shape[:2]) / min(img.shape[:2]) > 200:
                raise ValueError(f"view {view!r} frame {i}: aspect ratio of {img.shape[:2]} exceeds 200; crop it")
            if shape is not None and img.shape != shape:
                raise ValueError(f"view {view!r}: frames differ in shape ({shape} vs {img.shape}); resize them alike")
            shape = img.shape
    if not obs.ego_history:
        raise ValueError("observation.ego_history is empty; it must end with the current ego state")
    for state in obs.ego_history:
        for name in ("speed_mps", "accel_mps2", "x_m", "y_m", "yaw_rad", "timestamp_s"):
            if not math.isfinite(getattr(state, name)):
                raise ValueError(
                    f"ego state at t={state.timestamp_s}: {name} is {getattr(state, name)}; "
                    "the adapter must fill NaN/inf from the last valid value before planning"
                )
    if obs.target_point_ego_m is not None and not all(math.isfinite(v) for v in obs.target_point_ego_m):
        raise ValueError(f"target_point_ego_m {obs.target_point_ego_m} is not finite")


@dataclass(frozen=True, slots=True)
class VisualItem:
    """One image or video placeholder of the prompt: a view's frames (oldest first), RGB uint8."""

    kind: Literal["image", "video"]
    view: str
    frames: tuple[np.ndarray, ...]


@dataclass(frozen=True, slots=True)
class PromptInput:
    """Chat messages (TRL's conversational format with image/video placeholders) and their visual items."""

    messages: tuple[dict[str, Any], ...]
    items: tuple[VisualItem, ...]

    @property
    def images(self) -> list[np.ndarray]:
        """Frames of all image items in prompt order (TRL's ``images`` column; images layout only)."""
        return [item.frames[0] for item in self.items if item.kind == "image"]


def _ego_text(obs: Observation, config: PromptConfig) -> str:
    ego = obs.ego
    text = f"Current speed: {ego.speed_mps:.3f} m/s. Current acceleration: {ego.accel_mps2:.3f} m/s^2."
    if config.include_ego_history and len(obs.ego_history) > 1:
        past = obs.ego_history[-1 - config.num_history_states : -1]
        times = ", ".join(f"{s.timestamp_s - ego.timestamp_s:+.1f} s" for s in past)
        speeds = ", ".join(f"{s.speed_mps:.3f}" for s in past)
        accels = ", ".join(f"{s.accel_mps2:.3f}" for s in past)
        text += f" Past states at {times}: speeds {speeds} m/s; accelerations {accels} m/s^2."
    return text


def build_prompt(obs: Observation, config: PromptConfig, *, num_action_tokens: int = 10) -> PromptInput:
    """Observation -> chat messages and visual items (validates the observation first)."""
    validate_observation(obs, config)
    horizon_s = num_action_tokens * ACTION_TOKEN_DURATION_S
    system = (SYSTEM_PROMPT_REASONING if config.reasoning_model else SYSTEM_PROMPT_ACTION_ONLY).format(
        horizon=f"{horizon_s:g}"
    )
    n = len(config.views)
    labels = ", ".join(view_label(v) for v in config.views)
    noun = "clip" if config.camera_layout == "video" else "sequence of images"
    content: list[dict[str, Any]] = [
        {
            "type": "text",
            "text": f"The vehicle has {n} camera view{'s' if n > 1 else ''} ({labels}); each comes as a "
            f"{noun} of {config.num_frames} frames at {config.frame_rate_hz:g} Hz, oldest first, the last one now.\n",
        }
    ]
    items: list[VisualItem] = []
    for i, view in enumerate(config.views):
        frames = tuple(f.image_rgb for f in obs.cameras[view][-config.num_frames :])
        ordinal = _ORDINALS[i] if i < len(_ORDINALS) else f"#{i + 1}"
        content.append({"type": "text", "text": f"The {ordinal} {noun} shows the {view_label(view)} view: "})
        if config.camera_layout == "video":
            content.append({"type": "video"})
            items.append(VisualItem(kind="video", view=view, frames=frames))
        else:
            for frame in frames:
                content.append({"type": "image"})
                items.append(VisualItem(kind="image", view=view, frames=(frame,)))
        content.append({"type": "text", "text": "\n"})
    tail = _ego_text(obs, config) + f" The navigation command is: {obs.command.value}."
    if config.include_target_point and obs.target_point_ego_m is not None:
        x_m, y_m = obs.target_point_ego_m
        tail += f" The route target point is {x_m:.1f} m ahead and {y_m:.1f} m to the left."
    tail += f" Plan the driving action for the next {horizon_s:g} seconds."
    content.append({"type": "text", "text": tail})
    messages = (
        {"role": "system", "content": [{"type": "text", "text": system}]},
        {"role": "user", "content": content},
    )
    return PromptInput(messages=messages, items=tuple(items))


def render_prompt_text(processor, prompt: PromptInput, config: PromptConfig) -> str:
    """The chat-template text of the prompt with one pad token per visual item, ending with the assistant header."""
    return processor.apply_chat_template(
        list(prompt.messages), tokenize=False, add_generation_prompt=True, add_vision_id=config.add_vision_id
    )


@dataclass(frozen=True, slots=True)
class VisionUnit:
    """One independently encodable vision input: a still image, or one temporal patch (2 frames) of a clip.

    Qwen2.5-VL's vision tower attends within one temporal patch of one item and its rotary embedding is
    spatial only, so a unit's encoder output depends on its own frames alone: that makes it cacheable.
    """

    key: str  # content hash of the frames + kind + preprocessing settings
    kind: Literal["image", "video"]
    frames: tuple[np.ndarray, ...]
    frame_keys: tuple[str, ...]  # per frame: content hash + preprocessing settings
    grid_thw: tuple[int, int, int]  # (1, h, w) patch grid of this unit

    def pixels(self, image_processor, budget: PixelBudget, frame_cache: Any = None) -> np.ndarray:
        """Patches (h*w, C*T*p*p) float32 of this unit; ``frame_cache`` keeps normalised video frames by key.

        A clip's frames are resized and normalised one by one, so a frame shared with an earlier pair
        (sliding windows) is taken from ``frame_cache`` exactly as it was computed.
        """
        if self.kind == "image":
            return preprocess_image(self.frames[0], image_processor, budget)[0]
        normalized = []
        for frame, key in zip(self.frames, self.frame_keys, strict=True):
            chw = frame_cache.get(key) if frame_cache is not None else None
            if chw is None:
                chw = normalize_frame(frame, image_processor, budget)
                if frame_cache is not None:
                    frame_cache[key] = chw
            normalized.append(chw)
        return patchify_clip(normalized, budget)[0]


@dataclass(frozen=True, slots=True)
class EncodedPrompt:
    """Token ids and vision inputs of one prompt, batch size 1, on the CPU."""

    input_ids: torch.Tensor  # (1, L) long
    mm_token_type_ids: torch.Tensor  # (1, L) long: 0 text, 1 image, 2 video
    units: tuple[VisionUnit, ...]  # in prompt order; their tokens fill the pad positions in this order
    image_grid_thw: torch.Tensor | None  # (num_images, 3)
    video_grid_thw: torch.Tensor | None  # (num_videos, 3)
    second_per_grid_ts: torch.Tensor | None  # (num_videos,) seconds per temporal patch
    prefix_len: int  # tokens before the first <|vision_start|>: identical at every step
    budget: PixelBudget

    def vision_inputs(self, image_processor) -> dict[str, torch.Tensor]:
        """Pixel tensors for ``model.generate``/``forward`` (all units preprocessed, none cached)."""
        out: dict[str, torch.Tensor] = {}
        images = [u.pixels(image_processor, self.budget) for u in self.units if u.kind == "image"]
        videos = [u.pixels(image_processor, self.budget) for u in self.units if u.kind == "video"]
        if images:
            out["pixel_values"] = torch.from_numpy(np.concatenate(images))
            out["image_grid_thw"] = self.image_grid_thw
        if videos:
            out["pixel_values_videos"] = torch.from_numpy(np.concatenate(videos))
            out["video_grid_thw"] = self.video_grid_thw
            out["second_per_grid_ts"] = self.second_per_grid_ts
        return out


def encode_prompt(processor, prompt: PromptInput, config: PromptConfig) -> EncodedPrompt:
    """Render, expand the pad tokens and tokenise; vision units are hashed but preprocessed lazily."""
    image_processor = processor.image_processor
    budget = pixel_budget(image_processor, config.min_pixels, config.max_pixels)
    text = render_prompt_text(processor, prompt, config)
    pieces = re.split(f"({re.escape(IMAGE_PAD)}|{re.escape(VIDEO_PAD)})", text)
    pads = pieces[1::2]
    expected = [IMAGE_PAD if item.kind == "image" else VIDEO_PAD for item in prompt.items]
    if pads != expected:
        raise ValueError(
            f"the chat template produced pad tokens {pads[:6]}... for items {expected[:6]}...; the model folder's "
            "chat_template must render {'type': 'image'/'video'} as "
            "<|vision_start|><|image_pad|/video_pad|><|vision_end|>"
        )
    digests: dict[int, str] = {}
    units: list[VisionUnit] = []
    image_grids: list[tuple[int, int, int]] = []
    video_grids: list[tuple[int, int, int]] = []
    expanded: list[str] = [pieces[0]]
    merge_area = budget.merge_size**2
    for item, after in zip(prompt.items, pieces[2::2], strict=True):
        gh, gw = budget.grid_hw(*item.frames[0].shape[:2])
        for frame in item.frames:
            if id(frame) not in digests:
                digests[id(frame)] = frame_digest(frame)
        if item.kind == "image":
            frame_key = f"{budget.key()}:{digests[id(item.frames[0])]}"
            units.append(
                VisionUnit(
                    key="image:" + frame_key,
                    kind="image",
                    frames=item.frames,
                    frame_keys=(frame_key,),
                    grid_thw=(1, gh, gw),
                )
            )
            image_grids.append((1, gh, gw))
            expanded.append(IMAGE_PAD * (gh * gw // merge_area))
        else:
            frames = list(item.frames)
            while len(frames) % budget.temporal_patch_size:
                frames.append(frames[-1])  # as Qwen's video processor pads an odd clip
            tp = budget.temporal_patch_size
            for t in range(0, len(frames), tp):
                pair = tuple(frames[t : t + tp])
                frame_keys = tuple(f"{budget.key()}:{digests[id(f)]}" for f in pair)
                key = "video:" + budget.key() + ":" + ":".join(digests[id(f)] for f in pair)
                units.append(
                    VisionUnit(key=key, kind="video", frames=pair, frame_keys=frame_keys, grid_thw=(1, gh, gw))
                )
            video_grids.append((len(frames) // tp, gh, gw))
            expanded.append(VIDEO_PAD * (len(frames) // tp * gh * gw // merge_area))
        expanded.append(after)
    text = "".join(expanded)
    tokenizer = processor.tokenizer
    ids = tokenizer(text)["input_ids"]
    input_ids = torch.tensor([ids], dtype=torch.long)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    video_id = tokenizer.convert_tokens_to_ids(VIDEO_PAD)
    mm = torch.zeros_like(input_ids)
    mm[input_ids == image_id] = 1
    mm[input_ids == video_id] = 2
    start_id = tokenizer.convert_tokens_to_ids(VISION_START)
    starts = (input_ids[0] == start_id).nonzero()
    prefix_len = int(starts[0, 0]) if len(starts) else input_ids.shape[1]
    return EncodedPrompt(
        input_ids=input_ids,
        mm_token_type_ids=mm,
        units=tuple(units),
        image_grid_thw=torch.tensor(image_grids, dtype=torch.long) if image_grids else None,
        video_grid_thw=torch.tensor(video_grids, dtype=torch.long) if video_grids else None,
        second_per_grid_ts=(
            torch.full((len(video_grids),), budget.temporal_patch_size / config.frame_rate_hz) if video_grids else None
        ),
        prefix_len=prefix_len,
        budget=budget,
    )


def encode_completion(tokenizer, text: str) -> list[int]:
    """Token ids of completion text, tokenised on its own as the runtime feeds it (no special tokens added)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def completion_token_ids(
    tokenizer,
    action_token_ids: Sequence[int],
    action_indices: Sequence[int],
    *,
    mode: ThinkingMode = ThinkingMode.FAST,
    reasoning: str = "",
    reasoning_model: bool = True,
) -> list[int]:
    """Completion ids for SFT targets, split into the same pieces the runtime feeds (end-of-turn not included).

    The runtime feeds the fixed opening, generates the reasoning, feeds the closing and decodes the actions,
    so each piece is tokenised on its own; tokenising the whole completion string at once could merge
    characters across a piece boundary (a full stop and a newline) and teach token sequences the runtime never
    produces.
    """
    actions = [int(action_token_ids[i]) for i in action_indices]
    close = encode_completion(tokenizer, ANSWER_CLOSE)
    if not reasoning_model or mode == ThinkingMode.FAST:
        return encode_completion(tokenizer, fast_opening(reasoning_model)) + actions + close
    pieces = encode_completion(tokenizer, slow_opening())
    pieces += encode_completion(tokenizer, reasoning) if reasoning else []
    return pieces + encode_completion(tokenizer, closing_after_reasoning()) + actions + close
