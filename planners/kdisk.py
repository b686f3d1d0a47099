"""K-disk clustering of driving segments (sub-step poses in each segment's start frame) into codebook primitives.

Token 0 is standing still and absorbs every segment within the tolerance of it; then repeatedly pick a
random remaining segment, gather every remaining segment within ``tolerance_m`` of it, store the group's
mean as a token and remove the group. Two segments are compared by the mean distance of corresponding
corners of a box placed on their final poses (the codebook's metric, see ``planners.codebook``). A uniform
grid over box centres (the centre distance never exceeds the mean corner distance) keeps each query local,
so a few hundred thousand segments cluster in about a second. ``planners.codebook.build_codebook`` wraps the
result into an ``ActionCodebook``.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

import numpy as np

from autovla_agent.planners.se2 import box_corners, wrap_angle_rad

logger = logging.getLogger(__name__)


def _cell_keys(cells: np.ndarray) -> np.ndarray:
    return cells[..., 0].astype(np.int64) * 1_000_003 + cells[..., 1].astype(np.int64)


def kdisk_cluster(
    segments: np.ndarray,
    num_tokens: int,
    tolerance_m: float,
    seed: int,
    *,
    box_length_m: float,
    box_width_m: float,
) -> tuple[np.ndarray, dict[str, Any]]:
    """K-disk clustering of segments (N, S, 3) (sub-step poses in each segment's start frame).

    Returns the token poses (K, S, 3), token 0 standing still, and the build's provenance (parameters, the
    share of segments covered, the smallest group). Stops early (with a warning) when every segment is
    covered before ``num_tokens``.
    """
    segments = np.asarray(segments, dtype=np.float64)
    if segments.ndim != 3 or segments.shape[2] != 3 or segments.shape[0] < 1:
        raise ValueError(f"segments must have shape (N, S, 3), got {segments.shape}")
    if num_tokens < 1 or not tolerance_m > 0.0:
        raise ValueError(f"need num_tokens >= 1 and tolerance_m > 0, got {num_tokens}, {tolerance_m}")
    start = time.perf_counter()
    n = segments.shape[0]
    corners = box_corners(segments[:, -1], box_length_m, box_width_m)  # (N, 4, 2)
    cells = np.floor(corners.mean(axis=1) / tolerance_m).astype(np.int64)
    keys = _cell_keys(cells)
    order = np.argsort(keys, kind="stable")
    unique_keys, first = np.unique(keys[order], return_index=True)
    bounds = dict(
        zip(unique_keys.tolist(), zip(first.tolist(), np.append(first[1:], n).tolist(), strict=True), strict=True)
    )
    offsets = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    remaining = np.ones(n, dtype=bool)

    def members_near(ref_corners: np.ndarray, cell: np.ndarray) -> np.ndarray:
        parts = [order[slice(*bounds[k])] for dx, dy in offsets if (k := _cell_keys(cell + (dx, dy)).item()) in bounds]
        cand = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        cand = cand[remaining[cand]]
        dist = np.linalg.norm(corners[cand] - ref_corners, axis=-1).mean(axis=-1)
        return cand[dist <= tolerance_m]

    stand = members_near(box_corners(np.zeros(3), box_length_m, box_width_m), np.zeros(2, dtype=np.int64))
    remaining[stand] = False
    tokens, counts = [np.zeros(segments.shape[1:])], [stand.size]
    for i in np.random.default_rng(seed).permutation(n):
        if len(tokens) >= num_tokens:
            break
        if not remaining[i]:
            continue
        group = members_near(corners[i], cells[i])
        remaining[group] = False
        mean = segments[group].mean(axis=0)
        # Average headings relative to the picked segment so a group straddling +-pi averages correctly.
        yaw_offsets = wrap_angle_rad(segments[group, :, 2] - segments[i, :, 2])
        mean[:, 2] = wrap_angle_rad(segments[i, :, 2] + yaw_offsets.mean(axis=0))
        tokens.append(mean)
        counts.append(group.size)
    if len(tokens) < num_tokens:
        logger.warning("all %d segments covered by %d tokens (< %d requested)", n, len(tokens), num_tokens)
    coverage = 1.0 - remaining.sum() / n
    info = {
        "source": "k-disk",
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "num_segments": int(n),
        "tolerance_m": float(tolerance_m),
        "seed": int(seed),
        "box_length_m": box_length_m,
        "box_width_m": box_width_m,
        "reference_point": "rear_axle",
        "coverage": float(coverage),
        "min_group_size": int(min(counts)),
        "build_time_s": round(time.perf_counter() - start, 3),
    }
    logger.info(
        "k-disk: %d tokens from %d segments, coverage %.4f, %.2f s", len(tokens), n, coverage, info["build_time_s"]
    )
    return np.stack(tokens), info
