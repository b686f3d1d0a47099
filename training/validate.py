"""Dataset validator: checks every row of a dataset against the schema and reports each bad row by number.

CLI: ``python -m autovla_agent.training.validate DATASET [--decode-images] [--num-action-tokens K]
[--require-scene] [--require-tokens]``; exit status 1 when any row is bad. SFT and GRPO call
``validate_dataset(...).raise_if_bad()`` before training starts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from autovla_agent.config_io import ConfigError
from autovla_agent.training.dataset_io import parse_row, read_manifest, sample_from_dict
from autovla_agent.training.schema import MANIFEST_NAME, SAMPLES_NAME, DatasetManifest, Sample

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in one row (row numbers start at 1; row 0 = the manifest)."""

    row: int
    sample_id: str
    message: str

    def __str__(self) -> str:
        where = "manifest" if self.row == 0 else f"row {self.row}"
        ident = f" ({self.sample_id})" if self.sample_id else ""
        return f"{where}{ident}: {self.message}"


class DatasetError(ValueError):
    """A dataset that does not match the schema; the message lists the bad rows."""


@dataclass(slots=True)
class ValidationReport:
    """Outcome of a validation: number of rows read, good rows, and every error found."""

    root: Path
    num_rows: int = 0
    num_good: int = 0
    num_slow: int = 0
    errors: list[RowError] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)  # the good rows, when asked for (keep_samples)

    @property
    def ok(self) -> bool:
        """True when no error was found and at least one row exists."""
        return not self.errors and self.num_rows > 0

    def summary(self, max_lines: int = 50) -> str:
        """Human-readable report: counts, then one line per error (at most ``max_lines``)."""
        head = (
            f"{self.root}: {self.num_rows} rows, {self.num_good} good, {len(self.errors)} error(s), "
            f"{self.num_slow} with reasoning"
        )
        lines = [head] + [f"  {e}" for e in self.errors[:max_lines]]
        if len(self.errors) > max_lines:
            lines.append(f"  ... and {len(self.errors) - max_lines} more")
        return "\n".join(lines)

    def raise_if_bad(self) -> None:
        """Raise DatasetError listing the bad rows (call before starting a long training run)."""
        if self.num_rows == 0 and not self.errors:
            raise DatasetError(f"{self.root}: the dataset has no rows; collect data first")
        if self.errors:
            raise DatasetError("dataset does not match the schema; fix or drop these rows:\n" + self.summary(20))


def _check_sample(
    sample: Sample,
    manifest: DatasetManifest,
    root: Path,
    *,
    decode_images: bool,
    num_action_tokens: int | None,
    require_scene: bool,
    require_tokens: bool,
) -> list[str]:
    """Semantic checks of one parsed row against the manifest and the file system."""
    problems: list[str] = []
    for view in manifest.views:
        paths = sample.cameras.get(view)
        if paths is None:
            problems.append(f"cameras: view {view!r} missing (the manifest lists {list(manifest.views)})")
            continue
        if len(paths) != manifest.num_history_frames:
            problems.append(f"cameras.{view}: {len(paths)} frames, the manifest says {manifest.num_history_frames}")
        for rel in paths:
            problems.extend(_check_image(root, view, rel, manifest, decode_images))
    extra = sorted(set(sample.cameras) - set(manifest.views))
    if extra:
        problems.append(f"cameras: views {extra} are not in the manifest's views {list(manifest.views)}")
    fut = sample.future
    if len(fut.poses_ego) != manifest.future_steps:
        problems.append(f"future.poses_ego: {len(fut.poses_ego)} poses, the manifest says {manifest.future_steps}")
    if abs(fut.dt_s - manifest.future_dt_s) > 1e-6:
        problems.append(f"future.dt_s is {fut.dt_s}, the manifest says {manifest.future_dt_s}")
    if sample.action_tokens is not None:
        if len(sample.action_tokens) != manifest.future_steps:
            problems.append(
                f"action_tokens: {len(sample.action_tokens)} tokens for {manifest.future_steps} future steps"
            )
        if num_action_tokens is not None and any(t >= num_action_tokens for t in sample.action_tokens):
            problems.append(f"action_tokens: index >= codebook size {num_action_tokens}")
    elif require_tokens:
        problems.append("action_tokens missing (run the codebook command to tokenise the dataset)")
    if require_scene and sample.scene is None:
        problems.append("scene missing (the driving-score reward needs the scene state)")
    return problems


def _check_image(root: Path, view: str, rel: str, manifest: DatasetManifest, decode: bool) -> list[str]:
    path = Path(rel)
    if path.is_absolute() or ".." in path.parts:
        return [f"cameras.{view}: {rel!r} must be a path relative to the dataset folder, inside it"]
    full = root / path
    if not full.is_file():
        return [f"cameras.{view}: image {rel!r} is missing"]
    if not decode:
        return []
    from PIL import Image

    try:
        with Image.open(full) as img:
            img.load()
            size = img.size
    except Exception as exc:  # noqa: BLE001 - any decoder failure means a bad file
        return [f"cameras.{view}: image {rel!r} cannot be decoded ({type(exc).__name__}: {exc})"]
    want = (manifest.image_width_px, manifest.image_height_px)
    if want[0] and want[1] and size != want:
        return [f"cameras.{view}: image {rel!r} is {size[0]}x{size[1]} px, the manifest says {want[0]}x{want[1]}"]
    return []


def validate_dataset(
    root: str | Path,
    *,
    decode_images: bool = False,
    num_action_tokens: int | None = None,
    require_scene: bool = False,
    require_tokens: bool = False,
    keep_samples: bool = False,
) -> ValidationReport:
    """Check a dataset folder against the schema; every bad row is reported with its row number.

    With ``keep_samples`` the parsed good rows are kept in ``report.samples`` (one pass for check and load).
    """
    root = Path(root)
    report = ValidationReport(root=root)
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, ConfigError, ValueError) as exc:
        report.errors.append(RowError(0, "", f"{MANIFEST_NAME}: {exc}"))
        return report
    samples_path = root / SAMPLES_NAME
    if not samples_path.is_file():
        report.errors.append(RowError(0, "", f"{SAMPLES_NAME} is missing in {root}"))
        return report
    seen: dict[str, int] = {}
    with samples_path.open(encoding="utf-8") as fh:
        for row, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            report.num_rows += 1
            sample_id = ""
            try:
                data = parse_row(line)
                sample_id = str(data.get("id", ""))
                sample = sample_from_dict(data)
            except (ValueError, ConfigError) as exc:
                report.errors.append(RowError(row, sample_id, str(exc)))
                continue
            problems = _check_sample(
                sample,
                manifest,
                root,
                decode_images=decode_images,
                num_action_tokens=num_action_tokens,
                require_scene=require_scene,
                require_tokens=require_tokens,
            )
            if sample.id in seen:
                problems.append(f"id {sample.id!r} already used by row {seen[sample.id]}")
            seen.setdefault(sample.id, row)
            report.errors.extend(RowError(row, sample.id, p) for p in problems)
            if not problems:
                report.num_good += 1
                report.num_slow += int(sample.is_slow)
                if keep_samples:
                    report.samples.append(sample)
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: validate a dataset folder and log the report; exit status 1 on any bad row."""
    parser = argparse.ArgumentParser(prog="autovla-validate-data", description=__doc__)
    parser.add_argument("dataset", type=Path, help="dataset folder (holds dataset.json and samples.jsonl)")
    parser.add_argument("--decode-images", action="store_true", help="open every image and check its size")
    parser.add_argument("--num-action-tokens", type=int, default=None, help="codebook size K to check indices")
    parser.add_argument("--require-scene", action="store_true", help="every row needs a scene state (GRPO)")
    parser.add_argument("--require-tokens", action="store_true", help="every row needs action tokens (SFT)")
    parser.add_argument("--max-lines", type=int, default=200, help="errors to print at most")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = validate_dataset(
        args.dataset,
        decode_images=args.decode_images,
        num_action_tokens=args.num_action_tokens,
        require_scene=args.require_scene,
        require_tokens=args.require_tokens,
    )
    text = report.summary(args.max_lines)
    if report.ok:
        logger.info(text)
        return 0
    logger.error(text)
    return 1


if __name__ == "__main__":
    sys.exit(main())
