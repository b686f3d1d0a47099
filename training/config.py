"""Frozen run configurations of SFT and GRPO (loaded strictly from YAML with dotted overrides).

Example: ``python -m autovla_agent.training.sft --config training/configs/sft_tiny.yaml train.max_steps=20``.
The prompt section is the runtime's ``PromptConfig``: a model must be trained and driven with the same one
(it is saved beside every checkpoint as ``training_config.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from autovla_agent.planners.decoder import DecoderConfig
from autovla_agent.planners.vehicle import VehicleParams
from autovla_agent.policy.configuration import PromptConfig
from autovla_agent.training.rewards import RewardConfig


@dataclass(frozen=True, kw_only=True, slots=True)
class LoraSettings:
    """PEFT LoRA on the language model (AutoVLA's RFT: r = 8, alpha = 8, dropout 0.1 on q/k/v/o_proj)."""

    enabled: bool = False
    r: int = 8
    alpha: int = 8
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    train_action_embeddings: bool = True  # also train the <action_i> embedding rows (PEFT trainable_token_indices)

    def __post_init__(self) -> None:
        """Reject empty adapters."""
        if self.r < 1 or self.alpha < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("lora.r and lora.alpha must be >= 1 and lora.dropout in [0, 1)")
        if not self.target_modules:
            raise ValueError("lora.target_modules must name at least one module, e.g. [q_proj, v_proj]")


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainSettings:
    """Optimiser, schedule, precision, checkpointing and resume (mapped onto TRL/transformers arguments)."""

    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 4
    warmup_steps: int = 0
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = 3
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where the device supports it
    gradient_checkpointing: bool = True
    dataloader_num_workers: int = 0
    report_to: str = "none"  # "tensorboard", "wandb", ... (must be installed)
    resume: str = "auto"  # "auto": latest checkpoint-* in output_dir if any; "": fresh; or a checkpoint path
    use_cpu: bool = False  # force CPU even where a GPU exists

    def __post_init__(self) -> None:
        """Reject impossible optimisation settings."""
        if self.learning_rate <= 0:
            raise ValueError("train.learning_rate must be > 0")
        if self.per_device_train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("train.per_device_train_batch_size and gradient_accumulation_steps must be >= 1")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("train.max_steps must be -1 (use num_train_epochs) or > 0")
        if self.save_steps < 1 or self.logging_steps < 1:
            raise ValueError("train.save_steps and train.logging_steps must be >= 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class SFTLossSettings:
    """AutoVLA's SFT loss per sample: L = w * (L_LM + action_weight * L_action), w = cot_weight for CoT samples."""

    cot_weight: float = 40.0
    action_weight: float = 1.0  # lambda_a
    # Keep weight 1 on the thinking-mode token (where fast and slow openings differ): x40 there would teach an
    # adaptive model to think slowly almost always (AutoVLA weights the whole CoT sample).
    neutral_mode_token: bool = True

    def __post_init__(self) -> None:
        """Reject negative weights."""
        if self.cot_weight <= 0 or self.action_weight < 0:
            raise ValueError("loss.cot_weight must be > 0 and loss.action_weight >= 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class SFTRunConfig:
    """One supervised fine-tuning run: model folder in, runtime-layout checkpoints out."""

    model_path: str  # runtime-layout folder (tokenizer with action tokens, processor, action_codebook.npz)
    output_dir: str
    train_data: str  # dataset folder (validated before training)
    eval_data: str = ""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    num_action_tokens: int = 10
    loss: SFTLossSettings = field(default_factory=SFTLossSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    freeze_vision: bool = True  # AutoVLA keeps the vision tower frozen
    tokens: Literal["model_codebook", "dataset"] = "model_codebook"  # re-tokenise futures with the model's codebook
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self) -> None:
        """Reject empty paths."""
        if not self.model_path or not self.output_dir or not self.train_data:
            raise ValueError("model_path, output_dir and train_data must be set")
        if self.num_action_tokens < 1:
            raise ValueError("num_action_tokens must be >= 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class GRPOSettings:
    """Group sampling, objective and generation of GRPO (TRL ``GRPOConfig`` fields of the same names)."""

    num_generations: int = 8  # G completions per prompt (a group), independent of the number of GPUs
    max_completion_length: int = 320  # set explicitly: truncation silently zeroes the reward
    max_reasoning_tokens: int = 256  # rollout reasoning limit (also bounded by max_completion_length)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    beta: float = 0.04  # KL to the reference policy (> 0; with LoRA the adapter is disabled for it)
    epsilon: float = 0.2  # lower clip of the probability ratio
    epsilon_high: float = 0.28  # upper clip (DAPO)
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "dapo"
    num_iterations: int = 1  # policy updates per generation batch (mu)
    scale_rewards: Literal["group", "batch", "none"] = "group"
    thinking_policy: Literal["adaptive", "fast", "slow"] = "adaptive"  # who picks the mode during rollouts
    constrain_actions: bool = True  # vLLM: structured-output regex (the engine always decodes exactly N actions)
    use_vllm: bool = False  # GPU only; see the README's GRPO section
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_gpu_memory_utilization: float = 0.3

    def __post_init__(self) -> None:
        """Reject settings that break group normalisation or the KL term."""
        if self.num_generations < 2:
            raise ValueError("grpo.num_generations must be >= 2 (advantages are normalised within a group)")
        if self.max_completion_length < 1:
            raise ValueError("grpo.max_completion_length must be >= 1")
        if self.beta < 0 or self.temperature <= 0:
            raise ValueError("grpo.beta must be >= 0 and grpo.temperature > 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class GRPORunConfig:
    """One GRPO run: starts from a SAVED SFT checkpoint folder (the reference model is reloaded from it)."""

    model_path: str
    output_dir: str
    train_data: str  # dataset folder with scene states (the driving-score reward needs them)
    prompt: PromptConfig = field(default_factory=lambda: PromptConfig(camera_layout="images"))
    num_action_tokens: int = 10
    rewards: RewardConfig = field(default_factory=RewardConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    vehicle: VehicleParams = field(default_factory=VehicleParams)
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(enabled=True, train_action_embeddings=False))
    freeze_vision: bool = True
    train: TrainSettings = field(
        default_factory=lambda: TrainSettings(learning_rate=3e-5, per_device_train_batch_size=8)
    )

    def __post_init__(self) -> None:
        """Reject empty paths and a batch that cannot hold whole groups."""
        if not self.model_path or not self.output_dir or not self.train_data:
            raise ValueError("model_path, output_dir and train_data must be set")
        if self.rewards.num_plan_tokens != self.num_action_tokens:
            raise ValueError("rewards.num_plan_tokens must equal num_action_tokens")
        if self.lora.enabled and self.lora.train_action_embeddings:
            raise ValueError(
                "lora.train_action_embeddings is not supported in GRPO (TRL's fused LM head cannot wrap the tied "
                "embedding); set it to false (AutoVLA's RFT trains LoRA on q/k/v/o only) or train without LoRA"
            )
