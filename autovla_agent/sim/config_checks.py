"""Validation shared by the embedded runner's frozen config dataclasses (their ``__post_init__``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["require_at_least"]


def require_at_least(
    config: Any, names: Sequence[str], low: float, *, strict: bool = False, finite: bool = False
) -> None:
    """Raise ValueError naming the first field of ``config`` in ``names`` below ``low`` (or equal, when strict).

    ``finite`` also rejects infinities; NaN is always rejected. The message says the rule and the value found.
    """
    for name in names:
        value = getattr(config, name)
        ok = value > low if strict else value >= low
        if not ok or (finite and not math.isfinite(value)):
            rule = f"{'a finite number ' if finite else ''}{'>' if strict else '>='} {low:g}"
            raise ValueError(f"{type(config).__name__}.{name} must be {rule}, got {value!r}")
