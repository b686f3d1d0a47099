"""Hand-written decode loop for Qwen2.5-VL action models: forced scaffold, action-row head, caches, thinking switch.

One planning step: vision units are encoded (reusing an LRU cache of encoder outputs per frame unit), the
prompt is prefilled together with the forced scaffold (reusing the KV cache of the fixed text before the
first image), reasoning is generated up to a limit in slow mode, and exactly N action tokens are decoded
from logits over the action rows only (``h @ W[action_ids].T``: a restriction that is also faster). M-RoPE
positions come from ``get_rope_index`` with ``mm_token_type_ids``; decode step i uses position max + 1 + i
on all three axes, as ``generate`` does (checked token for token in tests/runtime).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from autovla_agent.contract import PlanStatus, ThinkingMode
from autovla_agent.policy.completion import (
    ANSWER_CLOSE,
    FAST_THINKING_SENTENCE,
    SLOW_THINKING_SENTENCE,
    closing_after_reasoning,
    fast_opening,
    slow_opening,
)
from autovla_agent.policy.configuration import DecodingConfig, ThinkingConfig
from autovla_agent.policy.lru_cache import LRUCache
from autovla_agent.policy.prompt import EncodedPrompt, encode_completion

logger = logging.getLogger(__name__)


def sample_token(logits: torch.Tensor, config: DecodingConfig, generator: torch.Generator) -> int:
    """Index of the chosen entry of a 1-D logit vector: argmax, or a seeded temperature/top-k/top-p draw."""
    if not config.do_sample:
        return int(torch.argmax(logits))
    scores = logits.detach().float().cpu() / config.temperature
    if config.top_k > 0 and config.top_k < scores.numel():
        kth = torch.topk(scores, config.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if config.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_scores, dim=-1) > config.top_p  # keep the token crossing top_p
        scores[order[drop]] = float("-inf")
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


@dataclass
class DecodeState:
    """KV cache and position bookkeeping of one sequence being decoded (batch size 1)."""

    cache: object
    next_position: int  # M-RoPE position of the next fed token (same on the three axes)
    last_hidden: torch.Tensor  # (hidden,) final hidden state of the last fed token
    length: int  # tokens in the cache


@dataclass
class DecodeResult:
    """Output of one planning step of the decoder."""

    completion_ids: list[int]  # every token after the prompt: forced scaffold, reasoning, actions, closing
    action_indices: tuple[int, ...]
    mode: ThinkingMode
    reasoning: str
    status: PlanStatus
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    budget_fallback: bool = False
    reasoning_truncated: bool = False
    num_reasoning_tokens: int = 0


class DecodeEngine:
    """Runs planning steps on a loaded runtime; holds the vision cache, the prefix KV cache and the RNG."""

    def __init__(self, runtime, decoding: DecodingConfig, thinking: ThinkingConfig, reasoning_model: bool) -> None:
        self.runtime = runtime
        self.decoding = decoding
        self.thinking = thinking
        self.reasoning_model = reasoning_model
        model = runtime.model
        self.model = model
        self.lm = model.model.language_model
        self.visual = model.model.visual
        self.embed = model.get_input_embeddings()
        self.device = runtime.device
        tokenizer = runtime.tokenizer
        self.tokenizer = tokenizer
        ids = runtime.action_vocab.token_ids
        weight = model.lm_head.weight
        if runtime.action_vocab.is_contiguous:
            self.action_rows = weight[ids[0] : ids[0] + len(ids)]  # a view: stays tied to the embeddings
        else:
            self.action_rows = weight[torch.tensor(ids, device=weight.device)]
        self.action_ids = torch.tensor(ids, device=self.device)
        self.vocab_size = weight.shape[0]
        self.banned_in_reasoning = self.action_ids  # reasoning never contains action tokens
        self.eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.fast_ids = encode_completion(tokenizer, fast_opening(reasoning_model))
        self.slow_ids = encode_completion(tokenizer, slow_opening())
        self.close_ids = encode_completion(tokenizer, closing_after_reasoning())
        self.answer_close_ids = encode_completion(tokenizer, ANSWER_CLOSE)
        common = 0
        while common < min(len(self.fast_ids), len(self.slow_ids)) and self.fast_ids[common] == self.slow_ids[common]:
            common += 1
        self.common_len = common
        self.vision_cache = LRUCache(decoding.vision_cache_size)
        # Normalised video frames: a frame is resized once even though sliding windows pair it differently.
        self.frame_cache = LRUCache(decoding.vision_cache_size)
        self._prefix: tuple[tuple[int, ...], object] | None = None
        self.prefix_hits = 0
        self.generator = torch.Generator().manual_seed(decoding.seed)
        self._token_s_ema: float | None = None
        self.last_result: DecodeResult | None = None  # kept for benchmarks and debugging
        self.last_encoded: EncodedPrompt | None = None

    # ------------------------------------------------------------------ low-level steps
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def encode_vision(self, encoded: EncodedPrompt, timings: dict[str, float] | None = None) -> torch.Tensor:
        """Encoder output (vision tokens, hidden) of all units in prompt order, from the cache where possible.

        Only units missing from the cache are preprocessed; that time goes to ``timings["pixels_s"]``.
        """
        outputs: list[torch.Tensor | None] = [self.vision_cache.get(u.key) for u in encoded.units]
        missing = [i for i, out in enumerate(outputs) if out is None]
        if missing:
            t0 = time.perf_counter()
            image_processor = self.runtime.processor.image_processor
            pixels = np.concatenate(
                [encoded.units[i].pixels(image_processor, encoded.budget, self.frame_cache) for i in missing]
            )
            grid = torch.tensor([encoded.units[i].grid_thw for i in missing], dtype=torch.long)
            if timings is not None:
                timings["pixels_s"] = time.perf_counter() - t0
            pixel_tensor = torch.from_numpy(pixels).to(self.device, self.visual.dtype)
            merged = self.visual(pixel_tensor, grid_thw=grid.to(self.device)).pooler_output
            sizes = (grid.prod(-1) // encoded.budget.merge_size**2).tolist()
            for i, chunk in zip(missing, torch.split(merged, sizes), strict=True):
                outputs[i] = chunk
                self.vision_cache.put(encoded.units[i].key, chunk)
        if not outputs:
            return torch.zeros(0, self.embed.embedding_dim, device=self.device)
        return torch.cat(outputs)  # type: ignore[arg-type]

    def _forward(self, embeds: torch.Tensor, positions: torch.Tensor, cache) -> tuple[torch.Tensor, object]:
        out = self.lm(inputs_embeds=embeds, position_ids=positions, past_key_values=cache, use_cache=True)
        return out.last_hidden_state[0, -1], out.past_key_values

    def prefill(self, encoded: EncodedPrompt, vision_embeds: torch.Tensor, extra_ids: list[int]) -> DecodeState:
        """Run the prompt plus forced ``extra_ids`` through the LM, reusing the fixed-prefix KV cache."""
        extra = torch.tensor([extra_ids], dtype=torch.long)
        ids = torch.cat([encoded.input_ids, extra], dim=1)
        mm = torch.cat([encoded.mm_token_type_ids, torch.zeros_like(extra)], dim=1)
        positions, _ = self.model.model.get_rope_index(
            ids,
            mm_token_type_ids=mm,
            image_grid_thw=encoded.image_grid_thw,
            video_grid_thw=encoded.video_grid_thw,
            second_per_grid_ts=encoded.second_per_grid_ts,
        )
        next_position = int(positions.max()) + 1
        ids = ids.to(self.device)
        positions = positions.to(self.device)
        start, cache = 0, None
        prefix_len = min(encoded.prefix_len, ids.shape[1] - 1)
        if self.decoding.reuse_prefix_cache and prefix_len > 0:
            key = tuple(encoded.input_ids[0, :prefix_len].tolist())
            if self._prefix is None or self._prefix[0] != key:
                # The text before the first image is the same at every step: its KV never changes.
                _, prefix_cache = self._forward(self.embed(ids[:, :prefix_len]), positions[:, :, :prefix_len], None)
                self._prefix = (key, prefix_cache)
            else:
                self.prefix_hits += 1
            start, cache = prefix_len, copy.deepcopy(self._prefix[1])
        embeds = self.embed(ids[:, start:])
        mask = mm[:, start:].to(self.device) != 0
        if int(mask.sum()) != vision_embeds.shape[0]:
            raise RuntimeError(f"{int(mask.sum())} vision pad tokens but {vision_embeds.shape[0]} vision embeddings")
        if vision_embeds.shape[0]:
            embeds = embeds.clone()
            embeds[mask] = vision_embeds.to(embeds.dtype)
        hidden, cache = self._forward(embeds, positions[:, :, start:], cache)
        return DecodeState(cache=cache, next_position=next_position, last_hidden=hidden, length=ids.shape[1])

    def feed(self, state: DecodeState, token_ids: list[int]) -> None:
        """Append forced or chosen text tokens to the sequence (updates ``state`` in place)."""
        if not token_ids:
            return
        ids = torch.tensor([token_ids], dtype=torch.long, device=self.device)
        n = len(token_ids)
        positions = torch.arange(state.next_position, state.next_position + n, device=self.device)
        positions = positions.view(1, 1, n).expand(3, 1, n)
        state.last_hidden, state.cache = self._forward(self.embed(ids), positions, state.cache)
        state.next_position += n
        state.length += n

    def rewind(self, state: DecodeState, num_tokens: int) -> None:
        """Drop the last ``num_tokens`` tokens from the cache (the hidden state must be refreshed by a feed)."""
        if num_tokens > 0:
            state.cache.crop(-num_tokens)
            state.next_position -= num_tokens
            state.length -= num_tokens

    def full_logits(self, state: DecodeState) -> torch.Tensor:
        """Logits (vocab,) over the whole vocabulary for the next token."""
        return self.model.lm_head(state.last_hidden[None])[0]

    def action_logits(self, state: DecodeState) -> torch.Tensor:
        """Logits (K,) over the action rows only."""
        return state.last_hidden @ self.action_rows.T

    def decode_actions(self, state: DecodeState, num_actions: int) -> list[int]:
        """Exactly ``num_actions`` action indices; the last one is not fed back (nothing follows it)."""
        indices: list[int] = []
        for i in range(num_actions):
            index = sample_token(self.action_logits(state), self.decoding, self.generator)
            indices.append(index)
            if i + 1 < num_actions:
                self.feed(state, [int(self.action_ids[index])])
        return indices

    # ------------------------------------------------------------------ thinking
    def _choose_adaptive(self, state: DecodeState) -> ThinkingMode:
        """Fast or slow from the logits of the first token where the two opening sentences diverge."""
        if self.common_len >= min(len(self.fast_ids), len(self.slow_ids)):
            return ThinkingMode.FAST  # the tokenizer does not separate the sentences: nothing to compare
        pair = torch.tensor([self.fast_ids[self.common_len], self.slow_ids[self.common_len]], device=self.device)
        logits = (state.last_hidden @ self.model.lm_head.weight[pair].T).float()
        margin = float(logits[0] - logits[1]) + self.thinking.adaptive_fast_bias
        if not self.decoding.do_sample:
            return ThinkingMode.FAST if margin >= 0 else ThinkingMode.SLOW
        p_fast = float(torch.sigmoid(torch.tensor(margin / self.decoding.temperature)))
        draw = float(torch.rand(1, generator=self.generator))
        return ThinkingMode.FAST if draw < p_fast else ThinkingMode.SLOW

    def _over_budget(self, deadline_s: float | None) -> bool:
        """True when one more reasoning token plus the closing and the actions would overrun the deadline."""
        if deadline_s is None or self._token_s_ema is None:
            return False
        reserve_tokens = 2 + self.decoding.num_action_tokens  # next token, the closing feed, the actions
        return time.perf_counter() + reserve_tokens * self._token_s_ema > deadline_s

    def _reason(self, state: DecodeState, deadline_s: float | None, result: DecodeResult) -> bool:
        """Generate reasoning after the slow opening, then feed the closing; False when the time budget says stop.

        Stops at ``</think>`` (the tokens from the one that starts the tag are dropped and the exact closing
        is fed instead), at the end-of-turn token, or at ``max_reasoning_tokens`` (closing forced: REPAIRED).
        """
        ids: list[int] = []
        text = ""
        stop = "limit"
        for _ in range(self.thinking.max_reasoning_tokens):
            if self._over_budget(deadline_s):
                result.notes.append(
                    f"slow thinking stopped after {len(ids)} tokens by the time budget of "
                    f"{self.thinking.time_budget_s:g} s; fell back to a fast plan"
                )
                result.num_reasoning_tokens = len(ids)
                return False
            t0 = time.perf_counter()
            logits = self.full_logits(state).float()
            logits[self.banned_in_reasoning] = float("-inf")
            token = sample_token(logits, self.decoding, self.generator)
            if token == self.eos_id:
                stop = "eos"
                break
            ids.append(token)
            self.feed(state, [token])
            self._sync()
            step_s = time.perf_counter() - t0
            self._token_s_ema = step_s if self._token_s_ema is None else 0.8 * self._token_s_ema + 0.2 * step_s
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            if "</think>" in text:
                stop = "closed"
                break
        result.num_reasoning_tokens = len(ids)
        keep, tail = len(ids), ""
        if stop == "closed":
            cut = text.index("</think>")
            while keep > 0 and len(self.tokenizer.decode(ids[:keep], skip_special_tokens=False)) > cut:
                keep -= 1
            kept_text = self.tokenizer.decode(ids[:keep], skip_special_tokens=False)
            tail = text[len(kept_text) : cut] if text.startswith(kept_text) else ""
            self.rewind(state, len(ids) - keep)
            text = text[:cut]
        else:
            result.reasoning_truncated = True
            result.notes.append(
                f"reasoning reached the limit of {self.thinking.max_reasoning_tokens} tokens; closing forced"
                if stop == "limit"
                else "the model ended its turn inside <think>; closing forced"
            )
        result.reasoning = SLOW_THINKING_SENTENCE + text
        closing = encode_completion(self.tokenizer, tail + closing_after_reasoning()) if tail else self.close_ids
        result.completion_ids.extend(ids[:keep])
        result.completion_ids.extend(closing)
        self.feed(state, closing)
        return True

    # ------------------------------------------------------------------ one step
    @torch.inference_mode()
    def run(self, encoded: EncodedPrompt, policy: str, start_s: float) -> DecodeResult:
        """Plan one step: vision, prefill (+ scaffold), optional reasoning, N actions."""
        timings: dict[str, float] = {}
        deadline_s = None if self.thinking.time_budget_s is None else start_s + self.thinking.time_budget_s
        t0 = time.perf_counter()
        vision = self.encode_vision(encoded, timings)
        self._sync()
        t1 = time.perf_counter()
        timings["vision_s"] = t1 - t0 - timings.get("pixels_s", 0.0)
        if not self.reasoning_model or policy == "fast":
            forced = list(self.fast_ids)
        elif policy == "slow":
            forced = list(self.slow_ids)
        else:
            forced = list(self.fast_ids[: self.common_len])
        state = self.prefill(encoded, vision, forced)
        prompt_length = encoded.input_ids.shape[1]
        self._sync()
        t2 = time.perf_counter()
        timings["prefill_s"] = t2 - t1
        result = DecodeResult(
            completion_ids=list(forced), action_indices=(), mode=ThinkingMode.FAST, reasoning="", status=PlanStatus.OK
        )
        mode = ThinkingMode.FAST
        if self.reasoning_model and policy == "adaptive":
            mode = self._choose_adaptive(state)
            rest = (self.fast_ids if mode == ThinkingMode.FAST else self.slow_ids)[self.common_len :]
            self.feed(state, list(rest))
            result.completion_ids.extend(rest)
        elif self.reasoning_model and policy == "slow":
            mode = ThinkingMode.SLOW
        if mode == ThinkingMode.SLOW:
            if not self._reason(state, deadline_s, result):
                mode = ThinkingMode.FAST
                result.budget_fallback = True
                self.rewind(state, state.length - prompt_length)
                result.completion_ids = list(self.fast_ids)
                result.reasoning = FAST_THINKING_SENTENCE
                self.feed(state, list(self.fast_ids))
        else:
            result.reasoning = FAST_THINKING_SENTENCE if self.reasoning_model else ""
        self._sync()
        t3 = time.perf_counter()
        timings["reasoning_s"] = t3 - t2
        indices = self.decode_actions(state, self.decoding.num_action_tokens)
        self._sync()
        timings["actions_s"] = time.perf_counter() - t3
        result.completion_ids.extend(int(self.action_ids[i]) for i in indices)
        result.completion_ids.extend(self.answer_close_ids)
        result.action_indices = tuple(indices)
        result.mode = mode
        result.timings_s = timings
        if result.reasoning_truncated:
            result.status = PlanStatus.REPAIRED
        self.last_result, self.last_encoded = result, encoded
        return result
