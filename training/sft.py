"""Supervised fine-tuning of an AutoVLA-style model on TRL (``SFTTrainer`` subclass with AutoVLA's loss).

``python -m autovla_agent.training.sft --config YAML [section.key=value ...]``; multi-GPU / multi-node:
``accelerate launch --config_file training/accelerate_configs/{ddp,fsdp,deepspeed_zero2,deepspeed_zero3}.yaml
-m autovla_agent.training.sft --config YAML``.

What happens: the model folder is checked (weights load, tokenizer action vocabulary = codebook size) and the
dataset validated before any training; futures are tokenised with the model's codebook; each batch is built
by ``data.SFTCollator`` through the runtime's prompt builder (prompt masked, assistant turn supervised, fast
samples with exactly the runtime's fast scaffold); the loss is AutoVLA's, per sample:
``L_i = w_i * (L_LM,i + action_weight * L_action,i)`` with ``w_i = cot_weight`` for chain-of-thought samples,
averaged over the batch. Trainer checkpoints (``checkpoint-N``) resume with ``train.resume: auto``; the final
model is written in the runtime's layout to ``OUTPUT_DIR/model`` (LoRA merged), with the resolved config and
package versions beside it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional
from trl import SFTConfig, SFTTrainer

from autovla_agent.config_io import load_yaml
from autovla_agent.training.common import (
    RuntimeFolderCallback,
    load_checked_samples,
    start_training,
    train_and_save,
    trainer_arguments,
)
from autovla_agent.training.config import SFTRunConfig
from autovla_agent.training.data import SFTCollator, sft_dataset

logger = logging.getLogger(__name__)


def autovla_sft_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    action_mask: torch.Tensor,
    weight: torch.Tensor,
    action_weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """AutoVLA's per-sample SFT loss from logits aligned with ``labels`` (logits[:, t] predicts labels[:, t]).

    ``weight`` is per sample (B,) or per token (B, L). With a sample weight w the loss of a sample is
    ``w * (L_LM + action_weight * L_action)`` (token means over its supervised and its action tokens); the batch
    loss is the mean over samples. Also returns the unweighted per-sample parts for logging.
    """
    ce = functional.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    supervised = labels != -100
    actions = action_mask & supervised
    w = weight[:, None].expand_as(ce) if weight.dim() == 1 else weight
    lm = (w * ce * supervised).sum(1) / supervised.sum(1).clamp(min=1)
    act = (w * ce * actions).sum(1) / actions.sum(1).clamp(min=1)
    per_sample = lm + action_weight * act
    with torch.no_grad():
        correct = (logits.argmax(-1) == labels) & actions
        acc = correct.sum(1).float() / actions.sum(1).clamp(min=1)
    with torch.no_grad():
        plain_lm = (ce * supervised).sum(1) / supervised.sum(1).clamp(min=1)
        plain_act = (ce * actions).sum(1) / actions.sum(1).clamp(min=1)
    return per_sample.mean(), {"lm_loss": plain_lm, "action_loss": plain_act, "action_accuracy": acc}


class AutoVLASFTTrainer(SFTTrainer):
    """``SFTTrainer`` with AutoVLA's per-sample weighted loss on the completion (logits of the tail only)."""

    def __init__(self, *args: Any, action_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action_weight = action_weight
        # The loss is a per-batch mean: let Trainer divide by the accumulation steps (not a token count).
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Forward on the batch, logits only over the completion tail, AutoVLA's weighted loss."""
        mode = "train" if self.model.training else "eval"
        labels = inputs.pop("labels")
        action_mask = inputs.pop("action_mask")
        inputs.pop("sample_weight")
        token_weight = inputs.pop("token_weight")
        supervised = labels != -100
        # Left padding: completions end at the last position, so the first supervised column bounds the tail.
        first = int(supervised.float().argmax(dim=1).min())
        keep = labels.shape[1] - first + 1
        outputs = model(**inputs, use_cache=False, logits_to_keep=keep)
        logits = outputs.logits[:, :-1]
        loss, parts = autovla_sft_loss(
            logits,
            labels[:, -(keep - 1) :],
            action_mask[:, -(keep - 1) :],
            token_weight[:, -(keep - 1) :],
            self.action_weight,
        )
        for name, values in parts.items():
            self._metrics[mode][name].append(self.accelerator.gather_for_metrics(values).mean().item())
        return (loss, outputs) if return_outputs else loss


def training_arguments(config: SFTRunConfig, dtype: torch.dtype) -> SFTConfig:
    """TRL ``SFTConfig`` from the run config (custom collator: no dataset preparation, keep every column)."""
    return SFTConfig(
        **trainer_arguments(config, dtype),
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.train.gradient_checkpointing else None,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
        packing=False,
    )


def run_sft(config: SFTRunConfig) -> Path:
    """Run SFT end to end; return the final runtime-layout model folder."""
    start_s = time.perf_counter()
    start = start_training(config, tokens=config.tokens)
    tm, samples = start.tm, start.samples
    eval_samples = (
        load_checked_samples(config.eval_data, tm.codebook, config.num_action_tokens, tokens=config.tokens)
        if config.eval_data
        else None
    )
    logger.info(
        "SFT: %d samples (%d with reasoning), model %s, K=%d, device %s, %s",
        len(samples),
        sum(s.is_slow for s in samples),
        tm.path,
        tm.codebook.num_tokens,
        start.device,
        start.dtype,
    )
    collator = SFTCollator(
        tm.processor,
        config.prompt,
        tm.action_vocab.token_ids,
        num_action_tokens=config.num_action_tokens,
        cot_weight=config.loss.cot_weight,
        neutral_mode_token=config.loss.neutral_mode_token,
    )
    collator.encode_sample(samples[0], Path(config.train_data))  # fail on prompt/config problems before training
    trainer = AutoVLASFTTrainer(
        model=tm.model,
        args=training_arguments(config, start.dtype),
        train_dataset=sft_dataset(samples, config.train_data),
        eval_dataset=sft_dataset(eval_samples, config.eval_data) if eval_samples else None,
        data_collator=collator,
        processing_class=tm.processor,
        peft_config=start.peft_config,
        callbacks=[RuntimeFolderCallback(tm.path, config, {"stage": "sft"})],
        action_weight=config.loss.action_weight,
    )
    result, final = train_and_save(trainer, start, config, "sft", record_train_loss=True)
    logger.info(
        "SFT done in %.1f s (%d steps, loss %.4f): %s",
        time.perf_counter() - start_s,
        result.global_step,
        result.training_loss,
        final,
    )
    return final


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: ``--config YAML`` plus dotted overrides."""
    parser = argparse.ArgumentParser(
        prog="autovla-train-sft",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML of SFTRunConfig")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=10")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_yaml(SFTRunConfig, args.config, args.overrides)
    run_sft(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
