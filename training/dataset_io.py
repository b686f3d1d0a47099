"""Reading and writing dataset folders (``dataset.json`` + ``samples.jsonl``) in the layout of ``training.schema``.

Rows are parsed strictly: unknown or missing keys, wrong types and NaN/Infinity are errors naming the key
(the rules of ``config_io.from_dict``, with a fast path for the large numeric arrays: futures, polygons).
``training.validate`` lists every bad row of a dataset instead of stopping at the first.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from autovla_agent.config_io import ConfigError, from_dict, to_dict
from autovla_agent.training.schema import (
    MANIFEST_NAME,
    SAMPLES_NAME,
    AgentBox,
    DatasetManifest,
    EgoRecord,
    FutureTrajectory,
    Sample,
    SceneState,
)


def _keys(data: Any, cls: type, path: str) -> Mapping[str, Any]:
    """Check a mapping has no unknown keys and every required key of ``cls`` (errors name the dotted path)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {[f'{path}.{k}' for k in unknown]}; allowed: {sorted(fields)}")
    for name, f in fields.items():
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {f'{path}.{name}'!r}")
    return data


_NUMBER_TYPES = frozenset((int, float))  # exact types: a JSON true/false (bool) is not a number


def _num(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    return float(value)


def _rows(value: Any, path: str) -> tuple[tuple[float, ...], ...]:
    """A list of lists of numbers as nested tuples of floats (fast path for trajectories and polygons)."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
    out = []
    for i, row in enumerate(value):
        if not isinstance(row, (list, tuple)):
            raise ConfigError(f"{path}[{i}]: expected a list of numbers, got {row!r}")
        if not _NUMBER_TYPES.issuperset(map(type, row)):
            bad = next(v for v in row if type(v) not in _NUMBER_TYPES)
            raise ConfigError(f"{path}[{i}]: expected a number, got {bad!r}")
        out.append(tuple(map(float, row)))
    return tuple(out)


def _agent(data: Any, path: str) -> AgentBox:
    d = _keys(data, AgentBox, path)
    kind = d.get("kind", "vehicle")
    if kind not in ("vehicle", "pedestrian", "cyclist", "static"):
        raise ConfigError(f"{path}.kind: {kind!r} is not one of ['vehicle', 'pedestrian', 'cyclist', 'static']")
    if not isinstance(d["id"], str):
        raise ConfigError(f"{path}.id: expected a string, got {d['id']!r}")
    numbers = {
        k: _num(d[k], f"{path}.{k}") for k in ("x_m", "y_m", "yaw_rad", "length_m", "width_m", "speed_mps") if k in d
    }
    future = _rows(d.get("future_poses_ego", ()), f"{path}.future_poses_ego")
    return AgentBox(id=d["id"], kind=kind, future_poses_ego=future, **numbers)


def _scene(data: Any, path: str) -> SceneState:
    d = _keys(data, SceneState, path)
    polys = d["drivable_area_ego_m"]
    if not isinstance(polys, (list, tuple)):
        raise ConfigError(f"{path}.drivable_area_ego_m: expected a list of polygons")
    return SceneState(
        drivable_area_ego_m=tuple(_rows(p, f"{path}.drivable_area_ego_m[{i}]") for i, p in enumerate(polys)),
        centerline_ego_m=_rows(d["centerline_ego_m"], f"{path}.centerline_ego_m"),
        agents=tuple(_agent(a, f"{path}.agents[{i}]") for i, a in enumerate(d.get("agents", ()))),
        dt_s=_num(d.get("dt_s", 0.1), f"{path}.dt_s"),
        red_light_stop_line_ego_m=_rows(d.get("red_light_stop_line_ego_m", ()), f"{path}.red_light_stop_line_ego_m"),
    )


def sample_from_dict(data: Mapping[str, Any]) -> Sample:
    """Parse one JSON row strictly (unknown or missing keys, wrong types and NaN are errors naming the key).

    Same rules as ``config_io.from_dict`` with a fast path for the large numeric arrays (futures, polygons).
    """
    try:
        d = _keys(data, Sample, "sample")
        ego = _keys(d["ego"], EgoRecord, "ego")
        fut = _keys(d["future"], FutureTrajectory, "future")
        arrays = {
            "ego": EgoRecord(
                speed_mps=_num(ego["speed_mps"], "ego.speed_mps"),
                accel_mps2=_num(ego.get("accel_mps2", 0.0), "ego.accel_mps2"),
                history=_rows(ego.get("history", ()), "ego.history"),
            ),
            "future": FutureTrajectory(
                dt_s=_num(fut.get("dt_s", 0.5), "future.dt_s"),
                poses_ego=_rows(fut["poses_ego"], "future.poses_ego"),
                dense_dt_s=_num(fut.get("dense_dt_s", 0.1), "future.dense_dt_s"),
                dense_poses_ego=_rows(fut.get("dense_poses_ego", ()), "future.dense_poses_ego"),
            ),
            "scene": None if d.get("scene") is None else _scene(d["scene"], "scene"),
        }
        rest = {k: v for k, v in d.items() if k not in arrays}
        placeholder = {
            "ego": {"speed_mps": 0.0},
            "future": {"poses_ego": [[0.0, 0.0, 0.0]]},
        }
        sample = from_dict(Sample, {**rest, **placeholder})
        return dataclasses.replace(sample, **arrays)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None


def sample_to_dict(sample: Sample) -> dict[str, Any]:
    """Plain JSON-ready data of a sample (the inverse of ``sample_from_dict``)."""
    return to_dict(sample)


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not valid JSON in a dataset row; write finite numbers only")


def parse_row(line: str) -> dict[str, Any]:
    """Decode one JSON line; NaN/Infinity literals and non-object rows raise ValueError."""
    data = json.loads(line, parse_constant=_reject_constant)
    if not isinstance(data, dict):
        raise ValueError(f"a row must be a JSON object, got {type(data).__name__}")
    return data


def read_manifest(root: str | Path) -> DatasetManifest:
    """Load ``dataset.json`` of a dataset folder; raise FileNotFoundError or ConfigError saying what to fix."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {root} is not a dataset folder (collect one first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    return from_dict(DatasetManifest, data)


def write_manifest(root: str | Path, manifest: DatasetManifest) -> Path:
    """Write ``dataset.json`` into ``root`` (created if needed) and return its path."""
    path = Path(root) / MANIFEST_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_dict(manifest), indent=2) + "\n", encoding="utf-8")
    return path


def iter_samples(root: str | Path) -> Iterator[tuple[int, Sample]]:
    """Yield (row_number, Sample) from ``samples.jsonl``, row numbers starting at 1; raise on the first bad row.

    Use ``autovla_agent.training.validate`` to list every bad row instead of stopping at the first.
    """
    path = Path(root) / SAMPLES_NAME
    with path.open(encoding="utf-8") as fh:
        for row, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield row, sample_from_dict(parse_row(line))
            except (ValueError, ConfigError) as exc:
                raise ValueError(f"{path}: row {row}: {exc}") from None


def load_samples(root: str | Path) -> list[Sample]:
    """All samples of a dataset folder, in file order."""
    return [s for _, s in iter_samples(root)]


class SampleWriter:
    """Appends samples to ``samples.jsonl`` of a dataset folder (one flushed line per sample)."""

    def __init__(self, root: str | Path, manifest: DatasetManifest, append: bool = False) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        write_manifest(self.root, manifest)
        self.manifest = manifest
        self._fh = (self.root / SAMPLES_NAME).open("a" if append else "w", encoding="utf-8")
        self.count = 0

    def write(self, sample: Sample) -> None:
        """Append one sample as a JSON line."""
        self._fh.write(json.dumps(sample_to_dict(sample), allow_nan=False, separators=(",", ":")) + "\n")
        self._fh.flush()
        self.count += 1

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
