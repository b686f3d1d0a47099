"""Whether a results file left by an earlier run can be resumed by this one (the leaderboard's checkpoint rules)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def resumable_checkpoint(path: Path, data: dict[str, Any], num_routes: int) -> dict[str, Any] | None:
    """The ``_checkpoint`` of a results file that a run of ``num_routes`` routes can resume, else None (warned)."""
    checkpoint = data.get("_checkpoint") if data else None
    if not isinstance(checkpoint, dict) or not data.get("entry_status"):
        logger.warning("cannot resume: %s has no leaderboard checkpoint; running all routes", path)
        return None
    if data.get("entry_status") == "Invalid":
        logger.warning("cannot resume: %s has entry_status 'Invalid'; running all routes", path)
        return None
    progress = checkpoint.get("progress") or []
    if len(progress) != 2 or int(progress[1]) != num_routes:
        shown = progress[1] if len(progress) == 2 else "?"
        logger.warning(
            "cannot resume: %s was written for %s routes, this run has %d; running all routes", path, shown, num_routes
        )
        return None
    return checkpoint
