"""Convert a released AutoVLA checkpoint (Lightning ``.ckpt`` + ``agent_vocab.pkl``) into a model folder.

``python -m autovla_agent.policy.convert_checkpoint --ckpt AutoVLA.ckpt --base-model Qwen2.5-VL-3B-Instruct/
--codebook agent_vocab.pkl --out models/autovla`` writes a ``save_pretrained`` folder (weights, tokenizer with
the action tokens, torchvision-free processor, chat template) plus ``action_codebook.npz/.json``.

Key layout handled: the Lightning module keeps the Qwen2.5-VL under a wrapper prefix (AutoVLA:
``autovla.vlm.``; older runs ``drivevla.vlm.``), with transformers-4.49 names ``model.layers.*``,
``model.embed_tokens``, ``model.norm``, ``visual.*`` and ``lm_head.weight``. transformers 5 names them
``model.language_model.*`` and ``model.visual.*``; the renames are explicit here. LoRA checkpoints
(``base_model.model.`` + ``base_layer`` / ``lora_A`` / ``lora_B``) are merged with ``--lora-alpha``. Every
expected key must be present with its shape and no key may be left over: the conversion fails loudly
(never ``strict=False``, the cause of the public code's silently untrained weights).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from autovla_agent.planners.autovla_vocab import load_autovla_pickle
from autovla_agent.planners.codebook import ActionCodebook
from autovla_agent.policy.model_folder import save_model_folder
from autovla_agent.policy.processor import (
    ActionVocab,
    ActionVocabError,
    action_token_strings,
    ensure_offline,
    find_action_vocab,
    load_processor,
)

logger = logging.getLogger(__name__)

#: Wrapper prefixes of Lightning modules that are not part of the policy and are dropped (logged).
IGNORED_PREFIXES = ("reference_model.",)
_LORA_RE = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B)\.(?P<adapter>[^.]+)\.weight$")


class ConversionError(ValueError):
    """The checkpoint does not match the model it is converted into; the message lists what differs."""


def load_checkpoint_state(path: str | Path, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of a Lightning ``.ckpt`` (or a plain state-dict file), loaded with ``weights_only`` first."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint {str(path)!r} does not exist")
    try:
        # mmap: a Lightning checkpoint may carry optimizer states several times the size of the weights.
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise ConversionError(f"{path}: cannot read the checkpoint: {exc}") from exc
        data = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format cannot be mapped
    except Exception as exc:
        if not trust_pickle:
            raise ConversionError(
                f"{path} holds Python objects besides tensors ({type(exc).__name__}: {str(exc)[:200]}); loading it "
                "would run pickled code. If you trust the file, pass --trust-pickle"
            ) from exc
        data = torch.load(path, map_location="cpu", weights_only=False)
    state = data.get("state_dict", data) if isinstance(data, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: no state_dict of tensors found (top-level keys: {list(data)[:10]})")
    return dict(state)


def find_wrapper_prefix(keys: Sequence[str]) -> str:
    """The prefix before the Qwen2.5-VL keys, found from the text embedding key (any transformers version)."""
    for suffix in ("model.language_model.embed_tokens.weight", "model.embed_tokens.weight"):
        hits = sorted({k[: -len(suffix)] for k in keys if k.endswith(suffix)}, key=len)
        hits = [h for h in hits if not h.startswith(IGNORED_PREFIXES)]
        if hits:
            return hits[0]
    raise ConversionError(
        "no text embedding (…model.embed_tokens.weight) in the checkpoint: not a Qwen2.5-VL state dict"
    )


def merge_lora(state: dict[str, torch.Tensor], lora_alpha: float | None) -> dict[str, torch.Tensor]:
    """Fold PEFT LoRA adapters into their base weights: W = W0 + (alpha / r) * B @ A; strip PEFT's prefixes."""
    lora_keys = [k for k in state if _LORA_RE.match(k)]
    if not lora_keys:
        return state
    if lora_alpha is None:
        raise ConversionError(
            f"the checkpoint holds {len(lora_keys)} LoRA tensors (e.g. {lora_keys[0]}); pass --lora-alpha "
            "(AutoVLA's GRPO config: r = 8, alpha = 8) so they can be merged into the base weights"
        )
    merged: dict[str, torch.Tensor] = {}
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _LORA_RE.match(key)
        if match:
            adapters.setdefault(match["module"], {})[match["kind"]] = value
        else:
            merged[key] = value
    for module, pair in adapters.items():
        base_key = f"{module}.base_layer.weight"
        if set(pair) != {"lora_A", "lora_B"} or base_key not in merged:
            raise ConversionError(
                f"incomplete LoRA adapter for {module}: have {sorted(pair)}, base {base_key in merged}"
            )
        a, b = pair["lora_A"].float(), pair["lora_B"].float()
        base = merged[base_key]
        merged[base_key] = (base.float() + (lora_alpha / a.shape[0]) * (b @ a)).to(base.dtype)
    renamed = {}
    for key, value in merged.items():
        key = key.replace(".base_layer.", ".")
        renamed[key] = value
    logger.info(
        "merged %d LoRA adapters (alpha %g, rank %d)",
        len(adapters),
        lora_alpha,
        next(iter(adapters.values()))["lora_A"].shape[0],
    )
    return renamed


def to_transformers5_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers-4.49 Qwen2.5-VL names -> transformers-5 names (``model.language_model.*``, ``model.visual.*``)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("visual."):
            new = "model." + key
        elif key.startswith("model.") and not key.startswith(("model.language_model.", "model.visual.")):
            new = "model.language_model." + key[len("model.") :]
        else:
            new = key
        if new in out:
            raise ConversionError(f"two checkpoint keys map to {new}: the state dict mixes 4.x and 5.x names")
        out[new] = value
    return out


def policy_state_dict(raw: Mapping[str, torch.Tensor], lora_alpha: float | None = None) -> dict[str, torch.Tensor]:
    """Checkpoint state -> transformers-5 Qwen2.5-VL state dict (prefix stripped, LoRA merged, keys renamed)."""
    prefix = find_wrapper_prefix(list(raw))
    state: dict[str, torch.Tensor] = {}
    foreign: list[str] = []
    for key, value in raw.items():
        if key.startswith(prefix):
            state[key[len(prefix) :]] = value
        elif key.startswith(IGNORED_PREFIXES):
            continue
        else:
            foreign.append(key)
    if foreign:
        raise ConversionError(f"{len(foreign)} checkpoint keys are outside the policy prefix {prefix!r}: {foreign[:8]}")
    dropped = sum(1 for k in raw if k.startswith(IGNORED_PREFIXES))
    if dropped:
        logger.info("dropped %d keys of %s (not part of the policy)", dropped, IGNORED_PREFIXES)
    peft_prefix = "base_model.model."
    if any(k.startswith(peft_prefix) for k in state):
        state = {k[len(peft_prefix) :] if k.startswith(peft_prefix) else k: v for k, v in state.items()}
    return to_transformers5_keys(merge_lora(state, lora_alpha))


def check_against_model(state: dict[str, torch.Tensor], model: torch.nn.Module, tied: bool) -> None:
    """Raise ConversionError unless ``state`` has exactly the model's keys and shapes (tied head handled)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if tied:
        expected.pop("lm_head.weight", None)
        head = state.pop("lm_head.weight", None)
        embed = state.get("model.language_model.embed_tokens.weight")
        if head is not None and embed is not None and not torch.equal(head, embed):
            raise ConversionError(
                "the config ties lm_head to the embeddings but the checkpoint's lm_head.weight differs"
            )
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {expected[k]}"
        for k in sorted(set(expected) & set(state))
        if tuple(state[k].shape) != expected[k]
    ]
    if missing or unexpected or shapes:
        raise ConversionError(
            f"checkpoint does not match the model: {len(missing)} missing {missing[:6]}, {len(unexpected)} unexpected "
            f"{unexpected[:6]}, {len(shapes)} shape mismatches {shapes[:4]}"
        )


def _load_codebook(path: Path, rear_axle_offset_m: float) -> ActionCodebook:
    """Our ``.npz`` codebook, or AutoVLA's ``agent_vocab.pkl`` read with a numpy-only unpickler."""
    if not path.is_file():
        raise ConversionError(f"codebook {str(path)!r} does not exist")
    if path.suffix == ".npz":
        return ActionCodebook.load(path)
    return load_autovla_pickle(path, rear_axle_offset_m=rear_axle_offset_m)


def _processor_with_actions(base: Path, num_tokens: int) -> tuple[Any, ActionVocab]:
    """The base model's processor with ``<action_0>`` ... added to its tokenizer unless already there."""
    processor = load_processor(base)
    tokenizer = processor.tokenizer
    try:
        find_action_vocab(tokenizer, expected_num_tokens=num_tokens)
    except ActionVocabError:
        if "<action_0>" in tokenizer.get_vocab():
            raise
        tokenizer.add_tokens(action_token_strings(num_tokens), special_tokens=False)
    return processor, find_action_vocab(tokenizer, expected_num_tokens=num_tokens)


def _load_into_model(base: Path, state: dict[str, torch.Tensor], dtype: str) -> torch.nn.Module:
    """The base architecture (vocabulary resized to the checkpoint) holding ``state`` in ``dtype``, checked strictly."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(base), local_files_only=True)
    config.text_config.vocab_size = state["model.language_model.embed_tokens.weight"].shape[0]
    cls = getattr(transformers, {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}.get(config.model_type, ""), None)
    if cls is None:
        raise ConversionError(f"base model_type {config.model_type!r} is not supported (qwen2_5_vl)")
    with torch.device("meta"):
        model = cls(config)
    check_against_model(state, model, bool(config.tie_word_embeddings))
    torch_dtype = getattr(torch, dtype)
    weights = {k: v.to(torch_dtype) for k, v in state.items()}
    if config.tie_word_embeddings:  # checked equal above; one tensor serves both names
        weights["lm_head.weight"] = weights["model.language_model.embed_tokens.weight"]
    model.load_state_dict(weights, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.config.dtype = torch_dtype
    return model


def convert(
    ckpt: str | Path,
    base_model: str | Path,
    codebook: str | Path,
    out_dir: str | Path,
    *,
    lora_alpha: float | None = None,
    dtype: str = "bfloat16",
    trust_pickle: bool = False,
    codebook_rear_axle_offset_m: float = 0.0,
    overwrite: bool = False,
) -> Path:
    """Convert checkpoint + codebook into ``out_dir``; return it. See the module docstring for the key layout.

    Args:
        ckpt: Lightning checkpoint (``state_dict`` of the fine-tuned Qwen2.5-VL) or a plain state-dict file.
        base_model: folder of the base model (config.json, tokenizer, preprocessor): Qwen2.5-VL-3B-Instruct.
        codebook: AutoVLA ``agent_vocab.pkl`` (read with a numpy-only unpickler) or our ``.npz`` codebook.
        out_dir: folder to write.
        lora_alpha: LoRA alpha when the checkpoint holds unmerged adapters.
        dtype: dtype of the written weights.
        trust_pickle: allow non-tensor objects in the checkpoint (runs pickled code).
        codebook_rear_axle_offset_m: passed to ``load_autovla_pickle``; 0 keeps AutoVLA's box-centre motion.
        overwrite: write into a non-empty folder.
    """
    start_s = time.perf_counter()
    ensure_offline()
    out, base, codebook_path = Path(out_dir), Path(base_model), Path(codebook)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConversionError(f"{out} exists and is not empty; pass --force or choose another folder")
    if not (base / "config.json").is_file():
        raise ConversionError(
            f"base model folder {str(base)!r} has no config.json (give the Qwen2.5-VL-3B-Instruct folder)"
        )
    book = _load_codebook(codebook_path, codebook_rear_axle_offset_m)
    processor, vocab = _processor_with_actions(base, book.num_tokens)
    state = policy_state_dict(load_checkpoint_state(ckpt, trust_pickle=trust_pickle), lora_alpha)
    rows = state["model.language_model.embed_tokens.weight"].shape[0]
    if rows < len(processor.tokenizer):
        raise ConversionError(
            f"the checkpoint has {rows} embedding rows but the tokenizer with actions has "
            f"{len(processor.tokenizer)} tokens: it was not trained with these {book.num_tokens} action tokens"
        )
    model = _load_into_model(base, state, dtype)
    provenance: dict[str, Any] = {
        "source_checkpoint": Path(ckpt).name,
        "source_checkpoint_bytes": Path(ckpt).stat().st_size,
        "source_codebook": codebook_path.name,
        "source_codebook_sha256": hashlib.sha256(codebook_path.read_bytes()).hexdigest(),
        "base_model": base.name,
        "num_action_tokens": book.num_tokens,
        "action_token_ids": [vocab.token_ids[0], vocab.token_ids[-1]],
        "lora_alpha": lora_alpha,
        "dtype": dtype,
    }
    save_model_folder(out, model, processor, book, {"autovla_conversion.json": provenance})
    logger.info(
        "converted %s -> %s (%d tensors, K=%d) in %.1f s",
        Path(ckpt).name,
        out,
        len(state),
        book.num_tokens,
        time.perf_counter() - start_s,
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: convert an AutoVLA Lightning checkpoint and codebook into a model folder."""
    parser = argparse.ArgumentParser(prog="autovla-convert-checkpoint", description=main.__doc__)
    parser.add_argument("--ckpt", type=Path, required=True, help="Lightning .ckpt (or plain state dict)")
    parser.add_argument("--base-model", type=Path, required=True, help="local Qwen2.5-VL-3B-Instruct folder")
    parser.add_argument("--codebook", type=Path, required=True, help="agent_vocab.pkl or an action_codebook.npz")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--lora-alpha", type=float, default=None, help="merge LoRA adapters with this alpha")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    parser.add_argument(
        "--codebook-rear-axle-offset-m",
        type=float,
        default=0.0,
        help="shift AutoVLA's box-centre primitives to a rear-axle reference (0 = as published)",
    )
    parser.add_argument("--trust-pickle", action="store_true", help="allow Python objects in the checkpoint")
    parser.add_argument("--force", action="store_true", help="write into a non-empty folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    convert(
        args.ckpt,
        args.base_model,
        args.codebook,
        args.out,
        lora_alpha=args.lora_alpha,
        dtype=args.dtype,
        trust_pickle=args.trust_pickle,
        codebook_rear_axle_offset_m=args.codebook_rear_axle_offset_m,
        overwrite=args.force,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
