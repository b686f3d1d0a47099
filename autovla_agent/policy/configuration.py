"""Frozen configuration of the VLA runtime: model loading, prompt, thinking switch, decoding (no torch import).

``VLAConfig`` composes one dataclass per concern plus the planners' ``DecoderConfig`` and ``VehicleParams``;
load it from YAML with ``autovla_agent.config_io.load_yaml(VLAConfig, path, overrides)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from autovla_agent.planners.decoder import DecoderConfig
from autovla_agent.planners.vehicle import VehicleParams

#: Base name of the codebook pair (``.npz`` + ``.json``) inside a model folder.
CODEBOOK_FILENAME = "action_codebook"
#: Seconds covered by one action token (one codebook motion primitive), as in AutoVLA.
ACTION_TOKEN_DURATION_S = 0.5
#: AutoVLA's inference pixel budget per frame (28 * 28 * 140), min = max so every frame has the same size.
AUTOVLA_PIXELS = 109_760


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig:
    """Where the model folder is and how to load it (device, dtype, attention kernel, quantisation)."""

    path: str = ""  # Hugging Face folder (save_pretrained layout) holding action_codebook.npz/.json
    device: str = "auto"  # "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1", ...
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bfloat16 on cuda, float32 on cpu
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] = "sdpa"
    quantization: Literal["none", "4bit", "8bit"] = "none"  # bitsandbytes; saves memory, slower on CPU

    def __post_init__(self) -> None:
        """Reject a device string torch would not understand."""
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ValueError(f"model.device {self.device!r} must be auto, cpu, cuda, cuda:<index> or mps")


@dataclass(frozen=True, kw_only=True, slots=True)
class PromptConfig:
    """What goes into the prompt: cameras, frame history, pixel budget, ego state, command, system prompt."""

    views: tuple[str, ...] = ("front",)  # Observation.cameras keys, in prompt order
    num_frames: int = 4  # frames per view, oldest first, the current frame last
    frame_rate_hz: float = 2.0  # rate of those frames (AutoVLA: 4 frames at 2 Hz)
    camera_layout: Literal["video", "images"] = "video"  # video clips (AutoVLA) or one image item per frame
    min_pixels: int | None = None  # per-frame pixel budget; None = the model folder's preprocessor setting
    max_pixels: int | None = None  # AutoVLA uses min = max = 109760 (28*28*140)
    add_vision_id: bool = True  # "Video 1: " / "Picture 1: " labels from the chat template (AutoVLA: on)
    reasoning_model: bool = True  # True: <think>/<answer> scaffold and the reasoning system prompt
    include_ego_history: bool = False  # add past speeds/accelerations (AutoVLA's code: current values only)
    num_history_states: int = 4  # past ego states listed when include_ego_history
    include_target_point: bool = False  # add the route target point in the ego frame (not in AutoVLA)

    def __post_init__(self) -> None:
        """Validate counts, rates and the pixel budget."""
        if not self.views or len(set(self.views)) != len(self.views):
            raise ValueError(f"prompt.views {self.views!r} must be a non-empty list of distinct camera view names")
        if self.num_frames < 1:
            raise ValueError(f"prompt.num_frames must be >= 1, got {self.num_frames}")
        if not (self.frame_rate_hz > 0 and math.isfinite(self.frame_rate_hz)):
            raise ValueError(f"prompt.frame_rate_hz must be > 0, got {self.frame_rate_hz}")
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 28 * 28:
                raise ValueError(f"prompt.{name} must be >= 784 (one 28x28 merged patch) or null, got {value}")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"prompt.min_pixels {self.min_pixels} > max_pixels {self.max_pixels}; swap them")
        if (self.min_pixels is None) != (self.max_pixels is None):
            raise ValueError("set both prompt.min_pixels and prompt.max_pixels, or neither (folder default)")
        if self.num_history_states < 1:
            raise ValueError(f"prompt.num_history_states must be >= 1, got {self.num_history_states}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ThinkingConfig:
    """The fast/slow thinking switch and its time budget."""

    policy: Literal["fast", "slow", "adaptive"] = "fast"  # adaptive: the model picks at the first divergent token
    time_budget_s: float | None = None  # whole planning step; slow thinking that would exceed it falls back to fast
    max_reasoning_tokens: int = 256  # generated reasoning tokens before the closing scaffold is forced
    adaptive_fast_bias: float = 0.0  # logit added to the fast choice in adaptive mode (> 0 favours fast)

    def __post_init__(self) -> None:
        """Validate the budget and the token limit."""
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"thinking.time_budget_s must be > 0 or null (no budget), got {self.time_budget_s}")
        if self.max_reasoning_tokens < 1:
            raise ValueError(f"thinking.max_reasoning_tokens must be >= 1, got {self.max_reasoning_tokens}")
        if not math.isfinite(self.adaptive_fast_bias):
            raise ValueError("thinking.adaptive_fast_bias must be finite")


@dataclass(frozen=True, kw_only=True, slots=True)
class DecodingConfig:
    """Token decoding (greedy or seeded sampling), caches, output sampling and the fallback plan."""

    num_action_tokens: int = 10  # action tokens per plan, each 0.5 s (AutoVLA: 10 = 5 s)
    do_sample: bool = False  # False: greedy (evaluation); True: seeded sampling (RL rollouts)
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    seed: int = 0  # seeds the torch.Generator used for sampling; reset at planner construction
    reuse_prefix_cache: bool = True  # reuse the KV cache of the fixed text before the first image
    vision_cache_size: int = 64  # LRU entries of vision-encoder output per frame unit; 0 disables
    plan_dt_s: float = 0.5  # output sampling interval of Plan.poses_ego
    plan_num_poses: int = 10  # output poses (AutoVLA: 10 x 0.5 s; NAVSIM reads 8 via Plan.resample)
    fallback: Literal["constant_velocity", "brake"] = "constant_velocity"  # plan when decoding fails
    fallback_decel_mps2: float = 3.0  # deceleration of the "brake" fallback
    standstill_speed_mps: float = 0.3  # below this speed a fallback plan holds the current pose

    def __post_init__(self) -> None:
        """Validate token counts, sampling parameters and the output sampling."""
        if self.num_action_tokens < 1:
            raise ValueError(f"decoding.num_action_tokens must be >= 1, got {self.num_action_tokens}")
        if not self.temperature > 0:
            raise ValueError(
                f"decoding.temperature must be > 0 (use do_sample: false for greedy), got {self.temperature}"
            )
        if self.top_k < 0:
            raise ValueError(f"decoding.top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"decoding.top_p must be in (0, 1], got {self.top_p}")
        if self.vision_cache_size < 0:
            raise ValueError(f"decoding.vision_cache_size must be >= 0, got {self.vision_cache_size}")
        if not self.plan_dt_s > 0 or self.plan_num_poses < 1:
            raise ValueError("decoding.plan_dt_s must be > 0 and decoding.plan_num_poses >= 1")
        horizon_s = self.num_action_tokens * ACTION_TOKEN_DURATION_S
        if self.plan_dt_s * self.plan_num_poses > horizon_s + 1e-9:
            raise ValueError(
                f"decoding asks {self.plan_num_poses} poses x {self.plan_dt_s} s but {self.num_action_tokens} action "
                f"tokens cover only {horizon_s} s; lower plan_num_poses or raise num_action_tokens"
            )
        if not self.fallback_decel_mps2 > 0 or self.standstill_speed_mps < 0:
            raise ValueError("decoding.fallback_decel_mps2 must be > 0 and standstill_speed_mps >= 0")

    @property
    def plan_times_s(self) -> tuple[float, ...]:
        """Output times in seconds after the observation: plan_dt_s, 2 * plan_dt_s, ..."""
        return tuple(self.plan_dt_s * (i + 1) for i in range(self.plan_num_poses))


@dataclass(frozen=True, kw_only=True, slots=True)
class VLAConfig:
    """Everything the VLA planner needs: model, prompt, thinking, decoding, bicycle decoder and vehicle."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    thinking: ThinkingConfig = field(default_factory=ThinkingConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    vehicle: VehicleParams = field(default_factory=VehicleParams)

    def __post_init__(self) -> None:
        """Reject combinations that cannot work together."""
        if not self.prompt.reasoning_model and self.thinking.policy != "fast":
            raise ValueError(
                f"thinking.policy {self.thinking.policy!r} needs a reasoning model; an action-only model "
                "(prompt.reasoning_model: false) has no <think> block, so use thinking.policy: fast"
            )
