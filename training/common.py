"""What SFT and GRPO share: the run setup, dataset loading and checks, LoRA, freezing, trainer arguments, saving."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from autovla_agent.policy.configuration import CODEBOOK_FILENAME
from autovla_agent.training.checkpoint import (
    TrainingModel,
    copy_codebook,
    load_for_training,
    pick_dtype,
    resolve_resume,
    save_final,
    write_provenance,
)
from autovla_agent.training.codebook_cmd import codebook_sha256, future_array
from autovla_agent.training.config import GRPORunConfig, LoraSettings, SFTRunConfig, TrainSettings
from autovla_agent.training.dataset_io import read_manifest
from autovla_agent.training.schema import Sample
from autovla_agent.training.validate import validate_dataset

logger = logging.getLogger(__name__)


def training_device(train: TrainSettings) -> torch.device:
    """The device the trainer will use (CPU when asked or when no GPU exists)."""
    return torch.device("cuda" if torch.cuda.is_available() and not train.use_cpu else "cpu")


def load_checked_samples(
    root: str | Path,
    codebook: Any,
    num_action_tokens: int,
    *,
    tokens: str = "model_codebook",
    require_scene: bool = False,
) -> list[Sample]:
    """Validate a dataset (raising with the bad rows before any training) and give its samples with action tokens.

    ``tokens="model_codebook"`` tokenises every future with the model's codebook; ``"dataset"`` keeps the stored
    tokens but requires that they were written with this very codebook.
    """
    report = validate_dataset(root, require_scene=require_scene, keep_samples=True)
    report.raise_if_bad()
    manifest = read_manifest(root)
    if manifest.future_steps < num_action_tokens or abs(manifest.future_dt_s - codebook.duration_s) > 1e-6:
        raise ValueError(
            f"{root}: futures of {manifest.future_steps} x {manifest.future_dt_s} s cannot give {num_action_tokens} "
            f"action tokens of {codebook.duration_s} s"
        )
    samples = report.samples
    if tokens == "dataset":
        if manifest.codebook_sha256 != codebook_sha256(codebook):
            raise ValueError(
                f"{root} was tokenised with another codebook than the model's; use tokens: model_codebook or "
                "re-tokenise with `python -m autovla_agent.training.codebook_cmd --tokenize`"
            )
        return samples
    futures = future_array(samples)[:, :num_action_tokens]
    rows = codebook.tokenize_batch(futures)
    return [dataclasses.replace(s, action_tokens=tuple(int(t) for t in r)) for s, r in zip(samples, rows, strict=True)]


def freeze_vision_tower(model: Any) -> int:
    """Freeze the vision encoder and merger (AutoVLA trains the LM only); return the frozen parameter count."""
    visual = model.model.visual
    visual.requires_grad_(False)
    return sum(p.numel() for p in visual.parameters())


def lora_config(settings: LoraSettings, action_token_ids: tuple[int, ...] | None) -> Any:
    """PEFT LoraConfig on the language model's projections (vision blocks use other module names).

    With ``train_action_embeddings`` the ``<action_i>`` rows of the (tied) embedding are trained too, as a base
    model's new action rows are untrained.
    """
    from peft import LoraConfig

    kwargs: dict[str, Any] = {}
    if settings.train_action_embeddings and action_token_ids:
        kwargs["trainable_token_indices"] = {"embed_tokens": list(action_token_ids)}
        kwargs["ensure_weight_tying"] = True
    # Vision attention is `qkv`/`proj`, so these names only match language-model layers.
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        task_type="CAUSAL_LM",
        **kwargs,
    )


class RuntimeFolderCallback(TrainerCallback):
    """After each trainer checkpoint: add the codebook and provenance files so the folder is self-describing."""

    def __init__(self, model_path: Path, config: Any, extra: dict[str, Any] | None = None) -> None:
        self.model_path = Path(model_path)
        self.config = config
        self.extra = extra or {}

    def on_save(self, args, state, control, **kwargs):  # noqa: D102 - TrainerCallback hook
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir() and state.is_world_process_zero:
            copy_codebook(self.model_path, folder)
            write_provenance(folder, self.config, {**self.extra, "global_step": state.global_step})
        return control


def has_codebook(folder: Path) -> bool:
    """True when a folder holds ``action_codebook.npz`` and ``.json``."""
    return all((folder / (CODEBOOK_FILENAME + s)).is_file() for s in (".npz", ".json"))


FINAL_DIR = "model"  # the final runtime-layout model inside a run's output_dir


@dataclass(frozen=True, slots=True)
class TrainingStart:
    """What a run trains from, all of it checked before any training (see ``start_training``)."""

    device: torch.device
    dtype: torch.dtype  # the trainer's compute precision
    tm: TrainingModel
    samples: list[Sample]  # the training samples with action tokens
    resume: str | None  # the trainer checkpoint to resume from, or None for a fresh run
    peft_config: Any  # PEFT LoraConfig, or None for full fine-tuning


def start_training(
    config: SFTRunConfig | GRPORunConfig, *, tokens: str = "model_codebook", require_scene: bool = False
) -> TrainingStart:
    """The setup SFT and GRPO share: device, precision, model folder, samples, resume point, frozen vision, LoRA.

    ``tokens`` and ``require_scene`` are those of ``load_checked_samples``. Raises before any training when the
    model folder, the dataset or the resume checkpoint is unusable.
    """
    device = training_device(config.train)
    dtype = pick_dtype(config.train.precision, device)
    # bf16 runs keep float32 weights: the trainer's bf16 autocast computes in bf16, the optimizer steps in fp32.
    tm = load_for_training(config.model_path, dtype=torch.float32 if dtype == torch.bfloat16 else dtype)
    samples = load_checked_samples(
        config.train_data, tm.codebook, config.num_action_tokens, tokens=tokens, require_scene=require_scene
    )
    resume = resolve_resume(config.train.resume, config.output_dir)
    if config.freeze_vision:
        freeze_vision_tower(tm.model)
    peft_config = lora_config(config.lora, tm.action_vocab.token_ids) if config.lora.enabled else None
    return TrainingStart(device=device, dtype=dtype, tm=tm, samples=samples, resume=resume, peft_config=peft_config)


def trainer_arguments(config: SFTRunConfig | GRPORunConfig, dtype: torch.dtype) -> dict[str, Any]:
    """The ``TrainingArguments`` fields SFT and GRPO both set from ``config.train``, as keyword arguments."""
    t = config.train
    return {
        "output_dir": config.output_dir,
        "per_device_train_batch_size": t.per_device_train_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "weight_decay": t.weight_decay,
        "num_train_epochs": t.num_train_epochs,
        "max_steps": t.max_steps,
        "warmup_steps": t.warmup_steps,
        "lr_scheduler_type": t.lr_scheduler_type,
        "max_grad_norm": t.max_grad_norm,
        "logging_steps": t.logging_steps,
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "seed": t.seed,
        "bf16": dtype == torch.bfloat16,
        "gradient_checkpointing": t.gradient_checkpointing,
        "dataloader_num_workers": t.dataloader_num_workers,
        "report_to": t.report_to,
        "use_cpu": t.use_cpu,
        "remove_unused_columns": False,  # the collators and transforms read columns the model does not take
        "save_only_model": False,  # optimizer and RNG states are needed to resume exactly
    }


def train_and_save(
    trainer: Any,
    start: TrainingStart,
    config: SFTRunConfig | GRPORunConfig,
    stage: str,
    *,
    record_train_loss: bool = False,
) -> tuple[Any, Path]:
    """Write the run's provenance, train (resuming where asked) and save ``OUTPUT_DIR/model``.

    Returns the trainer's ``TrainOutput`` and the final runtime-layout folder.
    """
    tm = start.tm
    if trainer.accelerator.is_main_process:
        write_provenance(config.output_dir, config, {"stage": stage, "model_path": str(tm.path)})
    result = trainer.train(resume_from_checkpoint=start.resume)
    extra: dict[str, Any] = {"stage": stage, "base_model": str(tm.path)}
    if record_train_loss:
        extra["train_loss"] = result.training_loss
    extra["steps"] = result.global_step
    final = save_final(trainer, tm, Path(config.output_dir) / FINAL_DIR, config, extra)
    return result, final
