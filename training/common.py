"""Pieces shared by SFT and GRPO: dataset loading and checks, LoRA, freezing, devices, provenance callback."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from autovla_agent.policy.configuration import CODEBOOK_FILENAME
from autovla_agent.training.checkpoint import copy_codebook, write_provenance
from autovla_agent.training.codebook_cmd import codebook_sha256, future_array
from autovla_agent.training.config import LoraSettings, TrainSettings
from autovla_agent.training.schema import Sample, read_manifest
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
