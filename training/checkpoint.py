"""Model folders for training: checked loading, runtime-layout saving, provenance files and resume lookup.

A training checkpoint is a folder the runtime loads as is (``load_vla``): weights, tokenizer + processor,
``action_codebook.npz/.json``, plus ``training_config.yaml`` (the resolved run config, including the prompt
config the model must be driven with) and ``versions.json`` (package versions). Trainer checkpoints
(``checkpoint-N``) get the same extra files so that any of them can be driven or resumed.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import platform
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from autovla_agent.config_io import dump_yaml
from autovla_agent.planners.codebook import ActionCodebook
from autovla_agent.policy.configuration import CODEBOOK_FILENAME
from autovla_agent.policy.modeling import ModelFolderError, check_model_folder
from autovla_agent.policy.processor import ActionVocab, ActionVocabError, find_action_vocab, load_processor

logger = logging.getLogger(__name__)

VERSIONS_FILE = "versions.json"
CONFIG_FILE = "training_config.yaml"
_PACKAGES = ("autovla-agent", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "numpy", "tokenizers")


class CheckpointError(RuntimeError):
    """A model folder or checkpoint that cannot be trained from; the message says what to fix."""


@dataclasses.dataclass
class TrainingModel:
    """A model loaded for training with everything that belongs to its folder."""

    model: Any
    processor: Any
    codebook: ActionCodebook
    action_vocab: ActionVocab
    path: Path


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that shape training results."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["cuda"] = torch.version.cuda or "none"
    return out


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """bf16 where requested or (``auto``) where the device supports it, else float32."""
    if precision == "fp32":
        return torch.float32
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16":
        if device.type == "cuda" and not supported:
            raise CheckpointError("train.precision bf16 asked for but this GPU has no bf16; use precision: fp32")
        return torch.bfloat16
    return torch.bfloat16 if supported else torch.float32


def load_for_training(path: str | Path, dtype: torch.dtype = torch.float32) -> TrainingModel:
    """Load a runtime-layout folder for training, checking everything before any training starts.

    Raises CheckpointError for a missing or corrupt folder, weights that do not load, or a codebook that does not
    match the tokenizer's action vocabulary or the embedding size.
    """
    try:
        folder, hf_config = check_model_folder(path)
        processor = load_processor(folder)
        codebook = ActionCodebook.load(folder / CODEBOOK_FILENAME)
        vocab = find_action_vocab(processor.tokenizer, expected_num_tokens=codebook.num_tokens)
    except (ModelFolderError, ActionVocabError, FileNotFoundError, ValueError, OSError) as exc:
        raise CheckpointError(f"cannot train from {path}: {exc}") from exc
    import transformers

    try:
        model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
            str(folder), dtype=dtype, local_files_only=True
        )
    except Exception as exc:  # corrupt safetensors, truncated files, shape mismatches: all stop the run here
        raise CheckpointError(
            f"the weights in {folder} do not load ({type(exc).__name__}: {exc}); the checkpoint is corrupt or "
            "incomplete: re-save or re-convert it"
        ) from exc
    rows = model.get_input_embeddings().weight.shape[0]
    if max(vocab.token_ids) >= rows:
        raise CheckpointError(
            f"{folder}: action ids reach {max(vocab.token_ids)} but the model has {rows} embedding rows; the "
            "tokenizer and the weights come from different checkpoints"
        )
    return TrainingModel(model=model, processor=processor, codebook=codebook, action_vocab=vocab, path=folder)


def write_provenance(folder: str | Path, config: Any, extra: dict[str, Any] | None = None) -> None:
    """Write ``training_config.yaml`` (resolved config) and ``versions.json`` (packages + ``extra``) into a folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dump_yaml(config, folder / CONFIG_FILE)
    info = {"packages": package_versions(), **(extra or {})}
    (folder / VERSIONS_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def copy_codebook(codebook_src: Path, folder: str | Path) -> None:
    """Copy ``action_codebook.npz/.json`` from a model folder into another folder."""
    for suffix in (".npz", ".json"):
        shutil.copy2(codebook_src / (CODEBOOK_FILENAME + suffix), Path(folder) / (CODEBOOK_FILENAME + suffix))


def save_runtime_folder(
    model: Any,
    processor: Any,
    codebook_src: Path,
    out_dir: str | Path,
    config: Any,
    extra: dict | None = None,
    state_dict: dict | None = None,
) -> Path:
    """Save a plain (merged) model in the runtime's folder layout with codebook and provenance files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):  # PEFT: ship merged weights, never an adapter the runtime cannot load
        model = model.merge_and_unload()
    model.save_pretrained(out, safe_serialization=True, state_dict=state_dict)
    processor.save_pretrained(out)
    copy_codebook(codebook_src, out)
    write_provenance(out, config, extra)
    return out


def save_final(trainer: Any, tm: TrainingModel, out_dir: str | Path, config: Any, extra: dict[str, Any]) -> Path:
    """Write the trained model as a runtime folder from the main process (call on every rank).

    DDP: the main process saves its replica. FSDP / DeepSpeed ZeRO-3: the full state dict is gathered first (a
    collective every rank joins); a LoRA model under sharding is saved as a PEFT adapter folder beside it
    (``adapter/``, merge it with ``peft`` before driving), since merging needs the full weights.
    """
    acc = trainer.accelerator
    acc.wait_for_everyone()
    out = Path(out_dir)
    ds_plugin = getattr(acc.state, "deepspeed_plugin", None)
    sharded = bool(getattr(trainer, "is_fsdp_enabled", False)) or (
        ds_plugin is not None and getattr(ds_plugin, "zero_stage", 0) == 3
    )
    state_dict = acc.get_state_dict(trainer.model_wrapped) if sharded else None
    if sharded and hasattr(trainer.model, "peft_config"):
        trainer.save_model(str(out / "adapter"))
        logger.warning(
            "sharded LoRA run: adapter saved to %s; merge it into %s before driving", out / "adapter", tm.path
        )
    elif acc.is_main_process:
        save_runtime_folder(trainer.model, tm.processor, tm.path, out, config, extra, state_dict=state_dict)
    acc.wait_for_everyone()
    return out


_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The ``checkpoint-N`` folder with the largest N that holds a ``trainer_state.json`` (complete), or None."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    found = []
    for child in folder.iterdir():
        m = _CHECKPOINT_RE.match(child.name)
        if m and child.is_dir() and (child / "trainer_state.json").is_file():
            found.append((int(m.group(1)), child))
    return max(found)[1] if found else None


def resolve_resume(resume: str, output_dir: str | Path) -> str | None:
    """Checkpoint path to resume from: ``auto`` = latest complete one (or None), ``""`` = none, else that path."""
    if resume == "":
        return None
    if resume == "auto":
        found = latest_checkpoint(output_dir)
        if found is not None:
            logger.info("resuming from %s", found)
        return str(found) if found else None
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise CheckpointError(f"train.resume {resume!r} is not a complete trainer checkpoint (no trainer_state.json)")
    return str(path)
