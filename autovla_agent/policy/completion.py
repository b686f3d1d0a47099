r"""The answer scaffold and the parser of model completions (pure Python: reusable by training rewards).

Completion format (AutoVLA's plain-text markers, no special tokens):
fast: ``<think>\n`` + fast sentence + ``</think>\n<answer>The final output action is: `` + N actions + ``</answer>``;
slow: ``<think>\n`` + slow sentence + reasoning + ``</think>\n<answer>The final output action is: `` + N actions
+ ``</answer>``; an action-only model writes the ``<answer>`` block only. ``parse_completion`` never raises.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autovla_agent.contract import PlanStatus, ThinkingMode

logger = logging.getLogger(__name__)

#: The text of action token i; AutoVLA adds these as normal (not special) tokens.
ACTION_TOKEN_FORMAT = "<action_{}>"

THINK_OPEN = "<think>\n"
FAST_THINKING_SENTENCE = "This is a straightforward scenario, and a direct decision can be made."
SLOW_THINKING_SENTENCE = "This is a complex scenario requiring additional reasoning."
THINK_CLOSE = "</think>\n"
ANSWER_OPEN = "<answer>The final output action is: "
ANSWER_CLOSE = "</answer>"

_ACTION_RE = re.compile(r"<action_(\d{1,9})>")


def fast_opening(reasoning_model: bool = True) -> str:
    """Fixed completion text before the action tokens in fast mode (fed to the model, not generated)."""
    if not reasoning_model:
        return ANSWER_OPEN
    return THINK_OPEN + FAST_THINKING_SENTENCE + THINK_CLOSE + ANSWER_OPEN


def slow_opening() -> str:
    """Fixed completion text before the generated reasoning in slow mode."""
    return THINK_OPEN + SLOW_THINKING_SENTENCE


def closing_after_reasoning() -> str:
    """Fixed text between the generated reasoning and the action tokens."""
    return THINK_CLOSE + ANSWER_OPEN


def format_completion(
    action_indices: Sequence[int],
    *,
    mode: ThinkingMode = ThinkingMode.FAST,
    reasoning: str = "",
    reasoning_model: bool = True,
) -> str:
    """The assistant completion text (without the end-of-turn token), for SFT targets and for logging.

    ``reasoning`` is the chain of thought that follows the slow sentence (ignored in fast mode).
    """
    actions = "".join(ACTION_TOKEN_FORMAT.format(int(i)) for i in action_indices)
    if not reasoning_model:
        return ANSWER_OPEN + actions + ANSWER_CLOSE
    if mode == ThinkingMode.SLOW:
        return slow_opening() + reasoning + closing_after_reasoning() + actions + ANSWER_CLOSE
    return fast_opening() + actions + ANSWER_CLOSE


@dataclass(frozen=True, slots=True)
class ParsedCompletion:
    """What a completion says: its action indices (exactly N when usable), mode, reasoning and a status.

    ``status`` is OK (well-formed, exactly N valid actions), REPAIRED (usable after dropping extra or stray
    text, e.g. more than N actions or a missing ``</answer>``) or FALLBACK (no usable plan: empty, truncated,
    out-of-range ids); ``reason`` says why in words.
    """

    action_indices: tuple[int, ...]
    thinking_mode: ThinkingMode | None
    reasoning: str
    status: PlanStatus
    reason: str
    num_actions_found: int

    @property
    def usable(self) -> bool:
        """True when ``action_indices`` holds a full plan (status OK or REPAIRED)."""
        return self.status != PlanStatus.FALLBACK


def _ids_to_text(token_ids: Sequence[int], id_to_action: Mapping[int, int], tokenizer) -> str:
    """Token ids -> text where action ids become ``<action_i>`` and other runs are decoded (or marked)."""
    parts: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            parts.append(tokenizer.decode(run, skip_special_tokens=False) if tokenizer is not None else "\ufffd")
            run.clear()

    for tid in token_ids:
        tid = int(tid)
        if tid in id_to_action:
            flush()
            parts.append(ACTION_TOKEN_FORMAT.format(id_to_action[tid]))
        else:
            run.append(tid)
    flush()
    return "".join(parts)


def _parse_text(text: str, num_action_tokens: int, num_codebook_tokens: int, reasoning_model: bool) -> ParsedCompletion:
    repairs: list[str] = []
    mode: ThinkingMode | None = None
    reasoning = ""
    think_start = text.find("<think>")
    think_end = text.find("</think>", think_start + 1 if think_start >= 0 else 0)
    if think_start >= 0:
        body = text[think_start + len("<think>") : think_end if think_end >= 0 else len(text)].strip()
        if body.startswith(SLOW_THINKING_SENTENCE) or "complex scenario" in body[:120]:
            mode = ThinkingMode.SLOW
            reasoning = body[len(SLOW_THINKING_SENTENCE) :].strip() if body.startswith(SLOW_THINKING_SENTENCE) else body
        elif body.startswith(FAST_THINKING_SENTENCE) or "straightforward scenario" in body[:120]:
            mode = ThinkingMode.FAST
        else:
            mode = ThinkingMode.SLOW if body else None
            reasoning = body
        if think_end < 0:
            repairs.append("no </think>")
    elif reasoning_model:
        repairs.append("no <think> block")
    else:
        mode = ThinkingMode.FAST
    # Actions count only inside the answer: after the last <answer>, else after </think>, else anywhere.
    answer_start = text.rfind("<answer>")
    if answer_start >= 0:
        segment = text[answer_start:]
    elif think_end >= 0:
        segment = text[think_end:]
        repairs.append("no <answer>")
    else:
        segment = text
        if think_start >= 0:
            segment = ""  # the completion stopped inside <think>: nothing after it is an answer
        repairs.append("no <answer>")
    answer_end = segment.find(ANSWER_CLOSE)
    if answer_end >= 0:
        segment = segment[:answer_end]
    elif segment:
        repairs.append("no </answer>")
    indices = [int(m) for m in _ACTION_RE.findall(segment)]
    found = len(indices)
    invalid = [i for i in indices[:num_action_tokens] if not 0 <= i < num_codebook_tokens]
    if invalid:
        return ParsedCompletion(
            (),
            mode,
            reasoning,
            PlanStatus.FALLBACK,
            f"action index {invalid[0]} outside the codebook (K={num_codebook_tokens})",
            found,
        )
    if found < num_action_tokens:
        what = "empty completion" if not text.strip() else f"{found} of {num_action_tokens} action tokens"
        return ParsedCompletion((), mode, reasoning, PlanStatus.FALLBACK, f"truncated or garbled: {what}", found)
    if found > num_action_tokens:
        repairs.append(f"{found - num_action_tokens} extra action tokens dropped")
    status = PlanStatus.REPAIRED if repairs else PlanStatus.OK
    return ParsedCompletion(tuple(indices[:num_action_tokens]), mode, reasoning, status, "; ".join(repairs), found)


def parse_completion(
    completion: str | Sequence[int],
    *,
    num_action_tokens: int,
    num_codebook_tokens: int,
    action_token_ids: Sequence[int] | None = None,
    tokenizer=None,
    reasoning_model: bool = True,
) -> ParsedCompletion:
    """Parse a completion (text, or token ids) into actions, mode and reasoning; never raises.

    Args:
        completion: the generated text, or the generated token ids (prompt excluded).
        num_action_tokens: N, the actions a plan needs (AutoVLA: 10).
        num_codebook_tokens: K, the codebook size; indices >= K are invalid.
        action_token_ids: ``action_token_ids[i]`` is the id of ``<action_i>``; needed for token-id input.
        tokenizer: decodes the non-action ids of token-id input (without it they only count as text).
        reasoning_model: False for action-only models (no ``<think>`` block expected).

    Returns:
        ParsedCompletion; status FALLBACK (with the reason) when no full plan can be read.
    """
    try:
        if isinstance(completion, str):
            text = completion
        else:
            id_to_action = {int(t): i for i, t in enumerate(action_token_ids or ())}
            text = _ids_to_text(list(completion), id_to_action, tokenizer)
        return _parse_text(text, num_action_tokens, num_codebook_tokens, reasoning_model)
    except Exception as exc:  # noqa: BLE001 - model output must never crash the planner
        logger.warning("completion parser failed (%s: %s); treating the completion as garbled", type(exc).__name__, exc)
        return ParsedCompletion((), None, "", PlanStatus.FALLBACK, f"parser error: {type(exc).__name__}: {exc}", 0)
