"""Build the action codebook from a dataset's future trajectories and log its reconstruction ADE.

``python -m autovla_agent.training.codebook_cmd DATASET --out CODEBOOK [--num-tokens 2048]
[--tolerance-m 0.05] [--tokenize]`` cuts every 0.5 s window (0.1 s sub-steps, rear axle, ego frame) out of the
samples' dense futures (or a Hermite fit of the 0.5 s poses where no dense future is stored), clusters them
with ``planners.codebook.build_codebook`` (K-disk), logs the ADE/FDE of tokenize -> detokenize on the
training futures and on a held-out share, writes ``CODEBOOK.npz/.json``, and with ``--tokenize`` writes the
action tokens into the dataset (with the codebook checksum in ``dataset.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autovla_agent.config_io import to_dict
from autovla_agent.planners.codebook import ActionCodebook, build_codebook, reconstruction_errors, segments_from_states
from autovla_agent.training.dataset_io import load_samples, read_manifest, write_manifest
from autovla_agent.training.schema import SAMPLES_NAME, Sample
from autovla_agent.training.validate import validate_dataset

logger = logging.getLogger(__name__)

SUBSTEP_S = 0.1
NUM_SUBSTEPS = 5


def hermite_dense(poses_ego: np.ndarray, dt_s: float, substep_s: float = SUBSTEP_S) -> np.ndarray:
    """Poses (T*k + 1, 3) from the origin through (T, 3) poses at ``dt_s``, refined to ``substep_s`` by cubic Hermite.

    Tangents follow each pose's heading with the chord length as magnitude; headings of the refined points come
    from the curve's direction (linear in yaw where the ego barely moves).
    """
    k = round(dt_s / substep_s)
    pts = np.vstack([np.zeros((1, 3)), np.asarray(poses_ego, dtype=np.float64)])
    pts[:, 2] = np.unwrap(pts[:, 2])
    out = [pts[0]]
    s = np.arange(1, k + 1) / k
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        chord = float(np.hypot(*(b[:2] - a[:2])))
        ta = chord * np.array([np.cos(a[2]), np.sin(a[2])])
        tb = chord * np.array([np.cos(b[2]), np.sin(b[2])])
        xy = h00[:, None] * a[:2] + h10[:, None] * ta + h01[:, None] * b[:2] + h11[:, None] * tb
        if chord > 0.05:
            deriv = d00[:, None] * a[:2] + d10[:, None] * ta + d01[:, None] * b[:2] + d11[:, None] * tb
            yaw = np.unwrap(np.concatenate([[a[2]], np.arctan2(deriv[:, 1], deriv[:, 0])]))[1:]
            yaw += np.round((a[2] - yaw[0]) / (2 * np.pi)) * 2 * np.pi
        else:
            yaw = a[2] + s * (b[2] - a[2])
        out.extend(np.column_stack([xy, yaw]))
    return np.asarray(out)


def dense_future(sample: Sample, substep_s: float = SUBSTEP_S) -> np.ndarray:
    """The sample's future as poses (n + 1, 3) every ``substep_s`` from the origin (rear axle, ego frame)."""
    fut = sample.future
    if fut.dense_poses_ego and abs(fut.dense_dt_s - substep_s) < 1e-6:
        return np.vstack([np.zeros((1, 3)), np.asarray(fut.dense_poses_ego, dtype=np.float64)])
    return hermite_dense(np.asarray(fut.poses_ego), fut.dt_s, substep_s)


def dataset_segments(samples: Sequence[Sample], stride: int = 1) -> np.ndarray:
    """0.5 s segments (M, 5, 3), sub-steps in each segment's start frame, from every sample's dense future."""
    parts = []
    for sample in samples:
        states = dense_future(sample)
        if states.shape[0] >= NUM_SUBSTEPS + 1:
            parts.append(segments_from_states(states[None], NUM_SUBSTEPS, stride))
    if not parts:
        raise ValueError("no sample has a future of at least 0.5 s; nothing to build a codebook from")
    return np.concatenate(parts)


def future_array(samples: Sequence[Sample]) -> np.ndarray:
    """Futures (N, T, 3) at 0.5 s of samples that all have the same horizon."""
    return np.asarray([s.future.poses_ego for s in samples], dtype=np.float64)


def split_heldout(samples: Sequence[Sample], share: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Deterministic (train, held-out) split by a seeded hash of the route (whole routes are held out)."""
    if share <= 0:
        return list(samples), []

    def bucket(s: Sample) -> float:
        key = f"{seed}:{s.source.town}:{s.source.route}:{s.source.seed}".encode()
        return int(hashlib.sha256(key).hexdigest()[:8], 16) / 0xFFFFFFFF

    train = [s for s in samples if bucket(s) >= share]
    held = [s for s in samples if bucket(s) < share]
    if not train or not held:  # too few routes: fall back to a per-sample split
        rng = np.random.default_rng(seed)
        mask = rng.random(len(samples)) < share
        train = [s for s, m in zip(samples, mask, strict=True) if not m]
        held = [s for s, m in zip(samples, mask, strict=True) if m]
    return train, held


def build_from_dataset(
    root: str | Path,
    *,
    num_tokens: int = 2048,
    tolerance_m: float = 0.05,
    seed: int = 0,
    stride: int = 1,
    heldout_share: float = 0.1,
) -> tuple[ActionCodebook, dict[str, dict[str, float]]]:
    """Codebook from a dataset folder and its reconstruction errors {'train': {...}, 'heldout': {...}}."""
    report = validate_dataset(root, keep_samples=True)
    report.raise_if_bad()
    samples = report.samples
    train, held = split_heldout(samples, heldout_share, seed)
    segments = dataset_segments(train, stride)
    codebook = build_codebook(
        segments,
        num_tokens,
        tolerance_m,
        seed,
        metadata={"data": str(root), "num_samples": len(train), "stride": stride},
    )
    errors = {"train": reconstruction_errors(codebook, future_array(train))}
    if held:
        errors["heldout"] = reconstruction_errors(codebook, future_array(held))
    codebook = codebook.with_metadata(
        **{f"{part}_{k}": round(v, 6) for part, errs in errors.items() for k, v in errs.items()}
    )
    return codebook, errors


def codebook_sha256(codebook: ActionCodebook) -> str:
    """Checksum of a codebook's poses (the same one ``ActionCodebook.save`` writes)."""
    return hashlib.sha256(np.ascontiguousarray(codebook.poses, dtype=np.float64).tobytes()).hexdigest()


def tokenize_dataset(root: str | Path, codebook: ActionCodebook) -> int:
    """Write ``action_tokens`` of every sample (greedy, drift-free) and the codebook checksum; return the count."""
    root = Path(root)
    samples = load_samples(root)
    tokens = codebook.tokenize_batch(future_array(samples)) if samples else np.zeros((0, 0), dtype=np.int64)
    tmp = root / (SAMPLES_NAME + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for sample, row in zip(samples, tokens, strict=True):
            updated = dataclasses.replace(sample, action_tokens=tuple(int(t) for t in row))
            fh.write(json.dumps(to_dict(updated), allow_nan=False, separators=(",", ":")) + "\n")
    os.replace(tmp, root / SAMPLES_NAME)  # atomic: an interrupted run leaves the old file intact
    manifest = dataclasses.replace(read_manifest(root), codebook_sha256=codebook_sha256(codebook))
    write_manifest(root, manifest)
    return len(samples)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="autovla-build-codebook", description=__doc__)
    parser.add_argument("dataset", type=Path, help="dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="writes <out>.npz and <out>.json")
    parser.add_argument("--num-tokens", type=int, default=2048, help="codebook size K (fewer if data run out)")
    parser.add_argument("--tolerance-m", type=float, default=0.05, help="K-disk mean corner distance tolerance")
    parser.add_argument("--stride", type=int, default=1, help="segment start stride in 0.1 s sub-steps")
    parser.add_argument("--heldout-share", type=float, default=0.1, help="share of routes held out for the ADE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenize", action="store_true", help="write action_tokens into the dataset")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    codebook, errors = build_from_dataset(
        args.dataset,
        num_tokens=args.num_tokens,
        tolerance_m=args.tolerance_m,
        seed=args.seed,
        stride=args.stride,
        heldout_share=args.heldout_share,
    )
    for part, errs in errors.items():
        logger.info(
            "reconstruction (%s): ADE %.4f m, FDE %.4f m, max %.4f m, yaw MAE %.4f rad",
            part,
            errs["ade_m"],
            errs["fde_m"],
            errs["max_m"],
            errs["yaw_mae_rad"],
        )
    npz, js = codebook.save(args.out)
    logger.info("codebook K=%d written to %s and %s", codebook.num_tokens, npz, js)
    if args.tokenize:
        count = tokenize_dataset(args.dataset, codebook)
        logger.info("tokenised %d samples of %s", count, args.dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
