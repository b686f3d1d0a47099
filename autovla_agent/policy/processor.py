"""Qwen2.5-VL processor without torchvision, the action-token vocabulary and hand-built vision inputs.

Since transformers 5.4 the stock ``Qwen2_5_VLProcessor`` requires a video processor, and every video
processor imports torchvision, which has no CPU build next to this torch. ``AutoVLAProcessor`` drops the
video slot (``ProcessorMixin`` derives its sub-processors from the ``__init__`` signature); video clips are
patchified here by hand in the order of Qwen2-VL's video processor. Importing this module registers the
class with ``AutoProcessor`` so that ``AutoProcessor.from_pretrained`` on a saved folder gives it back.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from transformers import AutoProcessor, PretrainedConfig, Qwen2_5_VLConfig, Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize

from autovla_agent.policy.completion import ACTION_TOKEN_FORMAT


def ensure_offline() -> None:
    """Switch the Hugging Face hub to offline mode: loading a folder that is incomplete must fail, not download."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import huggingface_hub.constants

    # The hub reads the variable once at import; loading paths may run after transformers was imported.
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def action_token_strings(num_tokens: int) -> list[str]:
    """The strings ``<action_0>`` ... ``<action_{num_tokens-1}>``."""
    return [ACTION_TOKEN_FORMAT.format(i) for i in range(num_tokens)]


class ActionVocabError(ValueError):
    """The tokenizer's action tokens are missing, incomplete or do not match the codebook."""


@dataclass(frozen=True, slots=True)
class ActionVocab:
    """Token ids of ``<action_0>`` ... ``<action_{K-1}>``, read from a tokenizer (never hard-coded)."""

    token_ids: tuple[int, ...]  # token_ids[i] is the id of <action_i>

    @property
    def num_tokens(self) -> int:
        """K, the number of action tokens."""
        return len(self.token_ids)

    @property
    def is_contiguous(self) -> bool:
        """True when the ids are first_id, first_id + 1, ... (then the action head is a slice)."""
        first = self.token_ids[0]
        return self.token_ids == tuple(range(first, first + len(self.token_ids)))

    def index_map(self) -> dict[int, int]:
        """Mapping token id -> action index."""
        return {tid: i for i, tid in enumerate(self.token_ids)}


def find_action_vocab(tokenizer, expected_num_tokens: int | None = None) -> ActionVocab:
    """Look up the action token ids in ``tokenizer``; raise ActionVocabError saying what is wrong and how to fix it.

    The count K is found by probing ``<action_0>``, ``<action_1>``, ... until one is not a single token;
    ``expected_num_tokens`` (the codebook size) must then equal K.
    """
    vocab = tokenizer.get_vocab()
    ids: list[int] = []
    while ACTION_TOKEN_FORMAT.format(len(ids)) in vocab:
        ids.append(int(vocab[ACTION_TOKEN_FORMAT.format(len(ids))]))
    if not ids:
        raise ActionVocabError(
            "the tokenizer has no action tokens (<action_0> is not in its vocabulary): this looks like a base "
            "Qwen2.5-VL folder, not an AutoVLA model. Convert an AutoVLA checkpoint with "
            "`python -m autovla_agent.policy.convert_checkpoint`, or build a test model with "
            "`python -m autovla_agent.policy.tiny_model`"
        )
    if len(set(ids)) != len(ids):
        raise ActionVocabError("two action tokens share one id; rebuild the tokenizer with distinct <action_i> tokens")
    expected = set(action_token_strings(len(ids)))
    stray = [t for t in vocab if t.startswith("<action_") and t.endswith(">") and t not in expected]
    if stray:
        raise ActionVocabError(
            f"the tokenizer's action tokens are not <action_0>..<action_{len(ids) - 1}> without gaps: found also "
            f"{sorted(stray)[:5]}; the action vocabulary must be consecutive indices"
        )
    if expected_num_tokens is not None and len(ids) != expected_num_tokens:
        raise ActionVocabError(
            f"the tokenizer has {len(ids)} action tokens but the codebook has {expected_num_tokens} primitives; "
            "the model folder's tokenizer and action_codebook.npz must come from the same checkpoint"
        )
    return ActionVocab(token_ids=tuple(ids))


class AutoVLAProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` with images only (no torchvision-backed video processor)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )


class _AutoVLAProcessorKey(PretrainedConfig):
    """Registration key: transformers >= 5.x ignores registrations under its own config classes.

    ``AutoProcessor`` resolves the ``processor_class`` name saved in ``processor_config.json`` by searching its
    registered extras, so registering under a config class of this package makes ``AutoVLAProcessor`` findable.
    """

    model_type = "autovla_processor_key"


AutoProcessor.register(Qwen2_5_VLConfig, AutoVLAProcessor, exist_ok=True)  # effective where transformers allows it
AutoProcessor.register(_AutoVLAProcessorKey, AutoVLAProcessor, exist_ok=True)


def load_processor(path: str | Path) -> AutoVLAProcessor:
    """Load the processor of a model folder (tokenizer, PIL image processor, chat template) offline."""
    ensure_offline()
    processor = AutoVLAProcessor.from_pretrained(str(path), local_files_only=True)
    if not isinstance(processor.image_processor, Qwen2VLImageProcessorPil):
        # A folder saved with the torch backend names Qwen2VLImageProcessor; rebuild the PIL one with its settings.
        ip = processor.image_processor
        processor.image_processor = Qwen2VLImageProcessorPil(
            size=dict(ip.size),
            patch_size=ip.patch_size,
            temporal_patch_size=ip.temporal_patch_size,
            merge_size=ip.merge_size,
            image_mean=list(ip.image_mean),
            image_std=list(ip.image_std),
        )
    return processor


@dataclass(frozen=True, slots=True)
class PixelBudget:
    """Per-frame pixel budget and the patch geometry of the vision encoder."""

    min_pixels: int
    max_pixels: int
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2

    @property
    def factor(self) -> int:
        """Side length in pixels of one merged token (patch_size * merge_size)."""
        return self.patch_size * self.merge_size

    def resized_hw(self, height_px: int, width_px: int) -> tuple[int, int]:
        """(height, width) a frame is resized to (Qwen's smart_resize)."""
        return smart_resize(height_px, width_px, self.factor, self.min_pixels, self.max_pixels)

    def grid_hw(self, height_px: int, width_px: int) -> tuple[int, int]:
        """Patch grid (rows, cols) of a frame after resizing."""
        h, w = self.resized_hw(height_px, width_px)
        return h // self.patch_size, w // self.patch_size

    def key(self) -> str:
        """A string that changes whenever preprocessing output would change (cache key part)."""
        return f"{self.min_pixels}-{self.max_pixels}-{self.patch_size}-{self.merge_size}-{self.temporal_patch_size}"


def pixel_budget(
    image_processor: Qwen2VLImageProcessorPil, min_pixels: int | None, max_pixels: int | None
) -> PixelBudget:
    """The budget from the config, or the folder's preprocessor settings when the config leaves it open."""
    size = image_processor.size
    lo = int(min_pixels if min_pixels is not None else size["shortest_edge"])
    hi = int(max_pixels if max_pixels is not None else size["longest_edge"])
    return PixelBudget(
        min_pixels=lo,
        max_pixels=hi,
        patch_size=int(image_processor.patch_size),
        merge_size=int(image_processor.merge_size),
        temporal_patch_size=int(image_processor.temporal_patch_size),
    )


def frame_digest(image_rgb: np.ndarray) -> str:
    """Content hash of one frame (shape, dtype and bytes): the identity used by the vision cache.

    SHA-1 because it is the fastest hashlib digest here (hardware SHA: ~4 ms for a 1600 x 900 frame against
    ~11 ms for BLAKE2b); the cache needs identity of camera frames, not protection against forgeries.
    """
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"{image_rgb.shape}{image_rgb.dtype}".encode())
    h.update(np.ascontiguousarray(image_rgb).data)
    return h.hexdigest()


def preprocess_image(
    image_rgb: np.ndarray, image_processor: Qwen2VLImageProcessorPil, budget: PixelBudget
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """One still image -> (patches (h*w, C*T*p*p) float32, grid (1, h, w)), exactly as the processor does it."""
    size = {"shortest_edge": budget.min_pixels, "longest_edge": budget.max_pixels}
    out = image_processor(images=[image_rgb], size=size, return_tensors="np")
    grid = tuple(int(v) for v in out["image_grid_thw"][0])
    return np.asarray(out["pixel_values"], dtype=np.float32), grid  # type: ignore[return-value]


def normalize_frame(
    image_rgb: np.ndarray, image_processor: Qwen2VLImageProcessorPil, budget: PixelBudget
) -> np.ndarray:
    """One video frame -> (3, H, W) float32: resized (PIL, smart_resize), rescaled and normalised like an image."""
    rh, rw = budget.resized_hw(*image_rgb.shape[:2])
    mean = np.asarray(image_processor.image_mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(image_processor.image_std, dtype=np.float32).reshape(3, 1, 1)
    scale = np.float32(image_processor.rescale_factor)
    img = Image.fromarray(image_rgb).resize((rw, rh), resample=Image.Resampling(int(image_processor.resample)))
    return (np.asarray(img, dtype=np.float32).transpose(2, 0, 1) * scale - mean) / std


def patchify_clip(frames_chw: Sequence[np.ndarray], budget: PixelBudget) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Normalised frames (3, H, W), oldest first -> (patches (t*h*w, C*T*p*p), grid (t, h, w)).

    Frames are padded to a multiple of the temporal patch by repeating the last one and laid out as
    (t, h/m, w/m, m, m, C, T, p, p), the order of Qwen2-VL's video processor.
    """
    frames = list(frames_chw)
    tp = budget.temporal_patch_size
    while len(frames) % tp:
        frames.append(frames[-1])
    video = np.stack(frames)  # (F, C, H, W)
    p, m = budget.patch_size, budget.merge_size
    gt, gh, gw = len(frames) // tp, video.shape[2] // p, video.shape[3] // p
    patches = video.reshape(gt, tp, 3, gh // m, m, p, gw // m, m, p)
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(patches.reshape(gt * gh * gw, 3 * tp * p * p)), (gt, gh, gw)


def preprocess_clip(
    frames_rgb: Sequence[np.ndarray], image_processor: Qwen2VLImageProcessorPil, budget: PixelBudget
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Video frames (oldest first) -> (patches (t*h*w, C*T*p*p) float32, grid (t, h, w)) without torchvision."""
    return patchify_clip([normalize_frame(f, image_processor, budget) for f in frames_rgb], budget)
