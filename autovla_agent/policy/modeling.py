"""The VLA runtime: load a Qwen2.5-VL action model folder and plan from an Observation (``VLAPlanner``).

``load_vla`` checks the folder (config, tokenizer action vocabulary, codebook) before loading any weight and
caches the loaded runtime per process. ``VLAPlanner.plan`` builds the prompt with the shared builder, runs
the decode engine (``policy.decoding``), parses the completion with the shared parser and decodes the
action tokens through the planners' kinematic bicycle decoder. Model output never raises: anything
unusable becomes a FALLBACK plan with a logged reason, counted in ``VLAPlanner.stats``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autovla_agent.constant_velocity import constant_velocity_poses
from autovla_agent.contract import EgoState, Observation, Plan, PlanStatus, ThinkingMode
from autovla_agent.planners.codebook import ActionCodebook
from autovla_agent.planners.decoder import BicycleDecoder
from autovla_agent.policy.completion import parse_completion
from autovla_agent.policy.configuration import CODEBOOK_FILENAME, ModelConfig, VLAConfig
from autovla_agent.policy.decoding import DecodeEngine, DecodeResult
from autovla_agent.policy.processor import ActionVocab, ensure_offline, find_action_vocab, load_processor
from autovla_agent.policy.prompt import build_prompt, encode_prompt, validate_observation

logger = logging.getLogger(__name__)

#: model_type -> transformers class name. The decode engine is verified for these; later Qwen-VL versions
#: (different vision features or rope) need their own entry and a check against ``generate``.
SUPPORTED_MODEL_TYPES = {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}


class ModelFolderError(ValueError):
    """A model folder that cannot be loaded; the message says what is missing and how to fix it."""


@dataclass
class VLARuntime:
    """A loaded model with its processor, action vocabulary and codebook (shared by planners in a process)."""

    model: Any
    processor: Any
    action_vocab: ActionVocab
    codebook: ActionCodebook
    path: Path
    device: torch.device
    dtype: torch.dtype
    model_type: str

    @property
    def tokenizer(self) -> Any:
        """The processor's tokenizer."""
        return self.processor.tokenizer


_RUNTIMES: dict[tuple[str, ...], VLARuntime] = {}


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; other strings as torch understands them."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelFolderError(f"model.device is {device!r} but torch sees no CUDA device; use model.device: cpu")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bfloat16 on cuda, float32 elsewhere."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def check_model_folder(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Check a model folder's files before any long work; return the resolved path and its config.json."""
    if not str(path):
        raise ModelFolderError("model.path is empty; set it to a model folder (save_pretrained layout)")
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise ModelFolderError(
            f"model folder {str(folder)!r} does not exist; build a test model with `autovla-make-tiny "
            "--out DIR` or convert an AutoVLA checkpoint with `python -m autovla_agent.policy.convert_checkpoint`"
        )
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelFolderError(f"{folder} has no config.json: it is not a save_pretrained model folder")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelFolderError(
            f"{folder}: model_type {model_type!r} is not supported (supported: {sorted(SUPPORTED_MODEL_TYPES)}); "
            "a new Qwen-VL version needs an entry in SUPPORTED_MODEL_TYPES and its decode loop checked against generate"
        )
    if not list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin")):
        raise ModelFolderError(f"{folder} has no weight files (*.safetensors); the folder is incomplete")
    for suffix in (".npz", ".json"):
        if not (folder / (CODEBOOK_FILENAME + suffix)).is_file():
            raise ModelFolderError(
                f"{folder} has no {CODEBOOK_FILENAME}{suffix}: the action codebook must sit next to the weights "
                "(ActionCodebook.save(folder / 'action_codebook'); the converter writes it from agent_vocab.pkl)"
            )
    return folder, config


def _quantization_config(config: ModelConfig, dtype: torch.dtype) -> Any:
    if config.quantization == "none":
        return None
    if importlib.util.find_spec("bitsandbytes") is None or importlib.util.find_spec("accelerate") is None:
        raise ModelFolderError(
            f"model.quantization {config.quantization!r} needs bitsandbytes and accelerate, which are not installed: "
            '`pip install "autovla-agent[quant]"` (CUDA; its CPU backend works but is slower than bf16), '
            "or set model.quantization: none"
        )
    from transformers import BitsAndBytesConfig

    if config.quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def load_vla(config: ModelConfig) -> VLARuntime:
    """Load (once per process and key: path, device, dtype, attention, quantisation) a VLA model folder."""
    folder, hf_config = check_model_folder(config.path)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    key = (str(folder), str(device), str(dtype), config.attn_implementation, config.quantization)
    if key in _RUNTIMES:
        return _RUNTIMES[key]
    if config.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ModelFolderError("model.attn_implementation flash_attention_2 needs the flash-attn package; use sdpa")
    quantization = _quantization_config(config, dtype)
    ensure_offline()
    start_s = time.perf_counter()
    processor = load_processor(folder)
    codebook = ActionCodebook.load(folder / CODEBOOK_FILENAME)
    vocab = find_action_vocab(processor.tokenizer, expected_num_tokens=codebook.num_tokens)
    vocab_size = (hf_config.get("text_config") or {}).get("vocab_size", hf_config.get("vocab_size"))
    if vocab_size is not None and max(vocab.token_ids) >= vocab_size:
        raise ModelFolderError(
            f"{folder}: the tokenizer's action ids reach {max(vocab.token_ids)} but the model has {vocab_size} "
            "embedding rows; resize the embeddings (resize_token_embeddings(len(tokenizer))) and save again"
        )
    import transformers

    cls = getattr(transformers, SUPPORTED_MODEL_TYPES[hf_config["model_type"]])
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "attn_implementation": config.attn_implementation,
        "local_files_only": True,
    }
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": str(device)})
    model = cls.from_pretrained(str(folder), **kwargs)
    if quantization is None:
        model.to(device)
    model.eval()
    runtime = VLARuntime(
        model=model,
        processor=processor,
        action_vocab=vocab,
        codebook=codebook,
        path=folder,
        device=device,
        dtype=dtype,
        model_type=hf_config["model_type"],
    )
    _RUNTIMES[key] = runtime
    logger.info(
        "loaded %s (%s, K=%d action tokens, ids %s%s) on %s/%s in %.1f s",
        folder.name,
        runtime.model_type,
        vocab.num_tokens,
        vocab.token_ids[0],
        "+" if vocab.is_contiguous else " (non-contiguous)",
        device,
        dtype,
        time.perf_counter() - start_s,
    )
    return runtime


@dataclass
class PlannerStats:
    """Counts of plan outcomes and thinking modes since the planner was built."""

    steps: int = 0
    ok: int = 0
    repaired: int = 0
    fallback: int = 0
    fast: int = 0
    slow: int = 0
    budget_fallbacks: int = 0  # slow thinking abandoned for a fast plan because of the time budget
    reasoning_truncated: int = 0  # reasoning hit the token limit (or ended the turn) before </think>
    errors: int = 0  # exceptions inside the model step (counted in fallback as well)
    vision_cache_hits: int = 0
    vision_cache_misses: int = 0
    prefix_cache_hits: int = 0
    last_fallback_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for logging and JSON."""
        return dataclasses.asdict(self)


def fallback_poses(speed_mps: float, times_s: np.ndarray, config: VLAConfig) -> np.ndarray:
    """(N, 3) ego poses of the fallback plan: constant velocity along the heading, or braking; hold when ~stopped."""
    speed = float(speed_mps) if math.isfinite(speed_mps) else 0.0
    poses = np.zeros((len(times_s), 3))
    if abs(speed) < config.decoding.standstill_speed_mps:
        return poses
    if config.decoding.fallback == "constant_velocity":
        return constant_velocity_poses(speed, times_s)
    decel = config.decoding.fallback_decel_mps2 * np.sign(speed)
    stop_s = abs(speed) / config.decoding.fallback_decel_mps2
    t = np.minimum(times_s, stop_s)
    poses[:, 0] = speed * t - 0.5 * decel * t**2
    return poses


class VLAPlanner:
    """Plans from Observations with a VLA model: prompt -> decode -> parse -> bicycle decoder -> Plan."""

    def __init__(self, config: VLAConfig, runtime: VLARuntime | None = None) -> None:
        self.config = config
        self.runtime = runtime if runtime is not None else load_vla(config.model)
        self.engine = DecodeEngine(self.runtime, config.decoding, config.thinking, config.prompt.reasoning_model)
        self.decoder = BicycleDecoder(self.runtime.codebook, config.vehicle, config.decoder)
        self.times_s = np.asarray(config.decoding.plan_times_s, dtype=np.float64)
        horizon_s = config.decoding.num_action_tokens * self.runtime.codebook.duration_s
        if self.times_s[-1] > horizon_s + 1e-9:
            raise ValueError(
                f"decoding asks poses up to {self.times_s[-1]} s but {config.decoding.num_action_tokens} "
                f"tokens of {self.runtime.codebook.duration_s} s cover {horizon_s} s"
            )
        self.stats = PlannerStats()

    def plan(self, obs: Observation) -> Plan:
        """Plan from one observation; raises ValueError only for bad input, never for model output."""
        start_s = time.perf_counter()
        validate_observation(obs, self.config.prompt)
        timings: dict[str, float] = {}
        ego = obs.ego
        hits0, misses0 = self.engine.vision_cache.hits, self.engine.vision_cache.misses
        prefix0 = self.engine.prefix_hits
        result: DecodeResult | None = None
        error = ""
        try:
            prompt = build_prompt(obs, self.config.prompt, num_action_tokens=self.config.decoding.num_action_tokens)
            encoded = encode_prompt(self.runtime.processor, prompt, self.config.prompt)
            timings["preprocess_s"] = time.perf_counter() - start_s
            result = self.engine.run(encoded, self.config.thinking.policy, start_s)
            stage_s = dict(result.timings_s)
            # Frames are preprocessed lazily (only those not in the vision cache): count it as preprocessing.
            timings["preprocess_s"] += stage_s.pop("pixels_s", 0.0)
            timings.update(stage_s)
        except Exception as exc:  # noqa: BLE001 - a failing model step must give a fallback plan, not a crash
            logger.exception("VLA step failed; using the fallback plan")
            error = f"model step failed: {type(exc).__name__}: {exc}"
            self.stats.errors += 1
        t_post = time.perf_counter()
        self.stats.vision_cache_hits += self.engine.vision_cache.hits - hits0
        self.stats.vision_cache_misses += self.engine.vision_cache.misses - misses0
        self.stats.prefix_cache_hits += self.engine.prefix_hits - prefix0
        plan = self._finish(result, error, ego.speed_mps, ego.accel_mps2, timings)
        timings["postprocess_s"] = time.perf_counter() - t_post
        timings["total_s"] = time.perf_counter() - start_s
        return dataclasses.replace(plan, timings_s=dict(timings))

    def plan_from_completion(
        self, completion: str | Sequence[int], ego: EgoState, mode: ThinkingMode | None = None
    ) -> Plan:
        """Plan from a completion produced elsewhere (``generate``, vLLM, a GRPO rollout); never raises.

        ``completion`` is the text or the token ids after the prompt; the trajectory starts from ``ego``.
        """
        result = DecodeResult(
            completion_ids=[], action_indices=(), mode=mode or ThinkingMode.FAST, reasoning="", status=PlanStatus.OK
        )
        return self._finish(
            result, "", ego.speed_mps, ego.accel_mps2, {}, completion=completion, trust_mode=mode is not None
        )

    def _finish(
        self,
        result: DecodeResult | None,
        error: str,
        speed_mps: float,
        accel_mps2: float,
        timings: dict[str, float],
        completion: str | Sequence[int] | None = None,
        trust_mode: bool = True,
    ) -> Plan:
        """Parse the completion, decode the tokens, count the outcome; fall back when anything is unusable."""
        self.stats.steps += 1
        mode = result.mode if result is not None else ThinkingMode.FAST
        reasoning = result.reasoning if result is not None else ""
        notes = list(result.notes) if result is not None else []
        status = result.status if result is not None else PlanStatus.FALLBACK
        indices: tuple[int, ...] = ()
        if result is not None:
            vocab = self.runtime.action_vocab
            parsed = parse_completion(
                result.completion_ids if completion is None else completion,
                num_action_tokens=self.config.decoding.num_action_tokens,
                num_codebook_tokens=vocab.num_tokens,
                action_token_ids=vocab.token_ids,
                tokenizer=self.runtime.tokenizer,
                reasoning_model=self.config.prompt.reasoning_model,
            )
            if not trust_mode:
                mode = parsed.thinking_mode or ThinkingMode.FAST
                reasoning = parsed.reasoning
            if parsed.usable:
                indices = parsed.action_indices
                if parsed.status == PlanStatus.REPAIRED:
                    status = PlanStatus.REPAIRED
                    notes.append(parsed.reason)
            else:
                status = PlanStatus.FALLBACK
                error = parsed.reason
            self.stats.budget_fallbacks += int(result.budget_fallback)
            self.stats.reasoning_truncated += int(result.reasoning_truncated)
        poses = None
        if status != PlanStatus.FALLBACK:
            try:
                trajectory = self.decoder.decode(list(indices), speed_mps=speed_mps, accel_mps2=accel_mps2)
                poses = np.asarray(trajectory.sample(self.times_s), dtype=np.float64)
                if poses.shape != (len(self.times_s), 3) or not np.all(np.isfinite(poses)):
                    raise ValueError(f"decoded poses have shape {poses.shape} or are not finite")
            except Exception as exc:  # noqa: BLE001 - a decoder failure on model output must not crash
                logger.exception("bicycle decoding failed")
                status, error, poses = PlanStatus.FALLBACK, f"trajectory decoding failed: {exc}", None
        if status == PlanStatus.FALLBACK or poses is None:
            status = PlanStatus.FALLBACK
            poses = fallback_poses(speed_mps, self.times_s, self.config)
            indices = ()
            self.stats.fallback += 1
            self.stats.last_fallback_reason = error
            logger.warning("fallback plan (%s) at %.2f m/s: %s", self.config.decoding.fallback, speed_mps, error)
            notes.append(error)
        elif status == PlanStatus.REPAIRED:
            self.stats.repaired += 1
        else:
            self.stats.ok += 1
        if mode == ThinkingMode.SLOW:
            self.stats.slow += 1
        else:
            self.stats.fast += 1
        return Plan(
            times_s=self.times_s.copy(),
            poses_ego=poses,
            action_tokens=tuple(int(i) for i in indices),
            thinking_mode=mode,
            reasoning=reasoning,
            timings_s=timings,
            status=status,
            status_reason="; ".join(n for n in notes if n),
        )
