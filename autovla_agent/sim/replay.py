"""Route replays: a step log written while a route runs, and a video rendered from it (camera | bird's-eye view).

Log folder of one route (``<record dir>/<route name>/``), written during the run:
- ``meta.json``: route id, town, dense route (world frame), camera id, step, agent file, seed and, once the
  route ended, its results record;
- ``steps.jsonl``: one JSON line per recorded tick (every ``frame_stride`` ticks and every tick with an event):
  ``frame``, ``time_s``, ``ego`` [x_m, y_m, yaw_rad, speed_mps] (box centre, world frame), ``control``
  [steer (CARLA sign), throttle, brake], ``vehicles`` [[id, x_m, y_m, yaw_rad, speed_mps, length_m, width_m,
  parked]], ``events`` [{type, message, time_s}], ``completion_pct``, ``camera`` (frame index or -1), and
  ``plan`` / ``agent`` when the agent exposes them (below);
- ``camera_NNNNN.npz``: camera frames (K, H, W, 3) uint8 RGB, compressed, ``index`` (K,).

The video (``<record dir>/<route name>.mp4``, GIF where no ffmpeg encoder is available) shows the agent's first
camera beside the bird's-eye view of E1's renderer (lanes, route, vehicles, the planned trajectory) and a panel
with speed, steer/throttle/brake, route completion, the thinking mode, plan status and reasoning text of the
latest replan; infractions are flagged (red frame and banner) when they happen.

Agent hooks (optional attributes read after every tick; document for agent authors):
- ``agent.last_plan_record``: dict of the latest replan, a NEW dict object (or a new ``time_s``) per replan:
  ``time_s`` (simulation time of the replan), ``poses_world`` [[x_m, y_m, yaw_rad], ...] in the internal WORLD
  frame (x east, y north = -y_carla, yaw CCW rad), ``thinking_mode`` ("fast" | "slow"), ``reasoning`` (str),
  ``status`` ("ok" | "repaired" | "fallback") and optionally ``status_reason``, ``command`` (str).
- ``agent.last_step_record``: any JSON-serialisable dict of what the agent used this tick (the expert's
  privileged state); stored as ``agent`` in the step line.

Re-render: ``python -m autovla_agent.sim.replay LOGDIR`` (a route log folder or a record folder of them).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["ReplayConfig", "RouteRecorder", "main", "render_video"]

_PLAN_KEYS = ("time_s", "poses_world", "thinking_mode", "reasoning", "status", "status_reason", "command")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayConfig:
    """What the step log keeps and how the video looks."""

    frame_stride: int = 2  # record every 2nd tick: 10 video frames per simulated second at 20 Hz
    camera_height_px: int = 360  # recorded camera frames are resized to this height (aspect kept)
    bev_size_px: int = 360
    bev_meters_per_px: float = 0.15  # 54 m across at 360 px
    panel_height_px: int = 120
    chunk_frames: int = 100  # camera frames per npz file
    fps: float = 10.0
    video_format: Literal["mp4", "gif"] = "mp4"
    event_banner_s: float = 2.0  # how long an infraction stays flagged in the video

    def __post_init__(self) -> None:
        """Reject sizes and rates that cannot make a video."""
        for name in ("frame_stride", "camera_height_px", "bev_size_px", "panel_height_px", "chunk_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"ReplayConfig.{name} must be >= 1")
        if self.fps <= 0.0 or self.bev_meters_per_px <= 0.0:
            raise ValueError("ReplayConfig.fps and bev_meters_per_px must be > 0")


def _r(values: Any, digits: int = 3) -> Any:
    """Round numbers (nested lists too) for compact JSON."""
    if isinstance(values, (list, tuple, np.ndarray)):
        return [_r(v, digits) for v in values]
    if isinstance(values, (bool, np.bool_)):
        return bool(values)
    if isinstance(values, (int, np.integer)):
        return int(values)
    return round(float(values), digits)


def _jsonable(value: Any) -> Any:
    """Plain JSON data of an agent record (numpy arrays and scalars, enums, tuples)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _r(value.tolist(), 4)
    if isinstance(value, (np.floating, float)):
        return round(float(value), 4) if math.isfinite(float(value)) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if hasattr(value, "value") and isinstance(value.value, (str, int)):
        return value.value
    return value if isinstance(value, (str, int, bool)) or value is None else str(value)


class RouteRecorder:
    """Writes the step log of one route (see the module docstring) while the route runs."""

    def __init__(self, log_dir: str | Path, meta: Mapping[str, Any], config: ReplayConfig | None = None) -> None:
        self.config = config or ReplayConfig()
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for old in [*self.log_dir.glob("camera_*.npz"), self.log_dir / "steps.jsonl"]:
            old.unlink(missing_ok=True)  # a re-run of the route replaces its log
        self.meta = dict(_jsonable(meta))
        self._write_meta()
        self._steps = (self.log_dir / "steps.jsonl").open("w", encoding="utf-8")
        self._frames: list[np.ndarray] = []
        self._frame_ids: list[int] = []
        self._num_frames = 0
        self._chunk = 0
        self._last_plan: tuple[int, Any] | None = None
        self._pending_events: list[dict[str, Any]] = []
        self._tick = 0
        self._colored: set[int] = set()

    def _write_meta(self) -> None:
        (self.log_dir / "meta.json").write_text(json.dumps(self.meta, indent=1), encoding="utf-8")

    def _camera_rgb(self, input_data: Mapping[str, Any], camera_id: str | None) -> np.ndarray | None:
        if not camera_id or camera_id not in input_data:
            return None
        bgra = np.asarray(input_data[camera_id][1])
        if bgra.ndim != 3 or bgra.shape[2] < 3:
            return None
        rgb = np.ascontiguousarray(bgra[..., 2::-1])
        h = self.config.camera_height_px
        if rgb.shape[0] != h:
            w = max(1, round(rgb.shape[1] * h / rgb.shape[0]))
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        return rgb

    def step(
        self,
        snapshot: Any,
        input_data: Mapping[str, Any],
        camera_id: str | None = None,
        plan_record: Mapping[str, Any] | None = None,
        agent_record: Mapping[str, Any] | None = None,
        events: Sequence[Any] = (),
        completion_pct: float = 0.0,
    ) -> None:
        """Log one tick: ``snapshot`` (a ``WorldSnapshot``) after the control of this tick, its sensor data."""
        self._tick += 1
        self._pending_events += [
            {"type": e.event_type.value, "message": e.message, "time_s": round(float(e.time_s), 3)} for e in events
        ]
        new_plan = None
        if plan_record is not None:
            key = (id(plan_record), plan_record.get("time_s"))
            if key != self._last_plan:
                self._last_plan = key
                new_plan = _jsonable({k: plan_record[k] for k in _PLAN_KEYS if k in plan_record})
        is_video = (self._tick - 1) % self.config.frame_stride == 0
        if not (is_video or self._pending_events or new_plan):
            return
        e, v = snapshot.ego, snapshot.vehicles
        line: dict[str, Any] = {
            "frame": int(snapshot.frame),
            "time_s": round(float(snapshot.time_s), 3),
            "video": is_video,
            "ego": _r([e.x_m[0], e.y_m[0], e.yaw_rad[0], e.speed_mps[0]]),
            "accel_mps2": _r(getattr(snapshot, "ego_accel_mps2", 0.0)),
            "control": _r(list(snapshot.control)),
            "vehicles": [
                _r([v.ids[k], v.x_m[k], v.y_m[k], v.yaw_rad[k], v.speed_mps[k], v.length_m[k], v.width_m[k]])
                + [bool(v.parked[k])]
                for k in range(len(v))
            ],
            "events": self._pending_events,
            "completion_pct": round(float(completion_pct), 2),
            "camera": -1,
        }
        self._pending_events = []
        colors = getattr(v, "color_rgb", None)
        if colors is not None:
            fresh = [k for k in range(len(v)) if int(v.ids[k]) not in self._colored]
            new = {int(v.ids[k]): [int(c) for c in colors[k]] for k in fresh}
            if new:
                line["colors"] = new
                self._colored.update(new)
        if new_plan is not None:
            line["plan"] = new_plan
        if agent_record is not None:
            line["agent"] = _jsonable(agent_record)
        if is_video:
            rgb = self._camera_rgb(input_data, camera_id)
            if rgb is not None:
                line["camera"] = self._num_frames
                self._frames.append(rgb)
                self._frame_ids.append(self._num_frames)
                self._num_frames += 1
                if len(self._frames) >= self.config.chunk_frames:
                    self._flush_frames()
        self._steps.write(json.dumps(line, separators=(",", ":")) + "\n")

    def _flush_frames(self) -> None:
        if not self._frames:
            return
        path = self.log_dir / f"camera_{self._chunk:05d}.npz"
        np.savez_compressed(path, frames=np.stack(self._frames), index=np.asarray(self._frame_ids, np.int64))
        self._chunk += 1
        self._frames, self._frame_ids = [], []

    def close(self, record: Mapping[str, Any] | None = None) -> None:
        """Flush the frames and the log; store the route's results record in ``meta.json``."""
        self._flush_frames()
        if self._pending_events:
            self._steps.write(json.dumps({"events": self._pending_events, "video": False}) + "\n")
            self._pending_events = []
        self._steps.close()
        if record is not None:
            self.meta["record"] = _jsonable(record)
            self._write_meta()


# --------------------------------------------------------------------------------------------------- video
def _load_log(log_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    meta_path, steps_path = log_dir / "meta.json", log_dir / "steps.jsonl"
    if not meta_path.is_file() or not steps_path.is_file():
        raise FileNotFoundError(f"{log_dir} is not a route log (needs meta.json and steps.jsonl)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    steps = []
    with steps_path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    steps.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning("%s: skipping a truncated step line", steps_path)
    return meta, steps


class _FrameStore:
    """Random access to the camera frames of a log, one npz chunk in memory at a time."""

    def __init__(self, log_dir: Path) -> None:
        self._chunks = []
        for path in sorted(log_dir.glob("camera_*.npz")):
            with np.load(path) as data:
                index = data["index"]
            if len(index):
                self._chunks.append((int(index[0]), int(index[-1]), path))
        self._cached: tuple[Path, np.ndarray, np.ndarray] | None = None

    def get(self, k: int) -> np.ndarray | None:
        for lo, hi, path in self._chunks:
            if lo <= k <= hi:
                if self._cached is None or self._cached[0] != path:
                    with np.load(path) as data:
                        self._cached = (path, data["frames"], data["index"])
                pos = np.flatnonzero(self._cached[2] == k)
                return self._cached[1][pos[0]] if len(pos) else None
        return None


def _snapshot_from_step(
    step: Mapping[str, Any],
    ego_size_m: tuple[float, float] = (4.9, 2.1),
    colors: Mapping[int, Sequence[int]] | None = None,
) -> Any:
    """Rebuild the ``WorldSnapshot`` a step line was logged from (what the BEV renderer draws)."""
    from autovla_agent.sim.world import ActorArrays, WorldSnapshot

    def arrays(rows: list[list[Any]], start_id: int | None) -> ActorArrays:
        a = np.asarray([r[:7] for r in rows], float).reshape(-1, 7)
        ids = np.zeros(len(a), np.int64) if start_id is not None else a[:, 0].astype(np.int64)
        rgb = np.array([(colors or {}).get(int(i), (170, 170, 180)) for i in ids], np.uint8).reshape(-1, 3)
        return ActorArrays(
            color_rgb=rgb,
            ids=ids,
            x_m=a[:, 1],
            y_m=a[:, 2],
            yaw_rad=a[:, 3],
            speed_mps=a[:, 4],
            length_m=a[:, 5],
            width_m=a[:, 6],
            parked=np.asarray([bool(r[7]) if len(r) > 7 else False for r in rows], bool),
        )

    x, y, yaw, speed = step["ego"]
    ego = arrays([[0, x, y, yaw, speed, *ego_size_m, False]], start_id=0)
    return WorldSnapshot(
        frame=int(step["frame"]),
        time_s=float(step["time_s"]),
        ego=ego,
        vehicles=arrays(step.get("vehicles", []), None),
        ego_accel_mps2=float(step.get("accel_mps2", 0.0)),
        ego_yaw_rate_radps=0.0,
        ego_steer_rad=0.0,
        control=tuple(step.get("control", (0.0, 0.0, 0.0))),
        ego_rear_axle_xy_m=(x, y),
    )


def _text(img: np.ndarray, text: str, xy: tuple[int, int], color=(235, 235, 235), scale: float = 0.45) -> None:
    cv2.putText(img, text, xy, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def _bar(img: np.ndarray, label: str, value: float, xy: tuple[int, int], signed: bool, color) -> None:
    """A labelled horizontal bar for a control value in [0, 1] (or [-1, 1] when signed)."""
    x, y = xy
    w, h = 110, 10
    _text(img, label, (x, y + 9))
    x0 = x + 62
    cv2.rectangle(img, (x0, y), (x0 + w, y + h), (90, 90, 90), 1)
    v = float(np.clip(value, -1.0 if signed else 0.0, 1.0))
    if signed:
        mid = x0 + w // 2
        cv2.rectangle(img, (mid, y), (int(mid + v * w / 2), y + h), color, -1)
    else:
        cv2.rectangle(img, (x0, y), (int(x0 + v * w), y + h), color, -1)


def _panel(
    width: int,
    step: Mapping[str, Any],
    plan: Mapping[str, Any] | None,
    banner: list[str],
    config: ReplayConfig,
    num_infractions: int,
) -> np.ndarray:
    """The text panel under the views: state, controls, replan text and infraction banner."""
    img = np.full((config.panel_height_px, width, 3), 24, np.uint8)
    steer, throttle, brake = (list(step.get("control", [0.0, 0.0, 0.0])) + [0.0, 0.0, 0.0])[:3]
    speed = float(step["ego"][3])
    _text(
        img,
        f"t {step['time_s']:7.2f} s   speed {speed:5.2f} m/s ({speed * 3.6:5.1f} km/h)   "
        f"route {step.get('completion_pct', 0.0):5.1f} %   infractions {num_infractions}",
        (8, 18),
    )
    # CARLA steer sign (+ = right); the bar shows it as CARLA does.
    _bar(img, "steer", steer, (8, 28), True, (80, 170, 255))
    _bar(img, "throttle", throttle, (200, 28), False, (80, 220, 120))
    _bar(img, "brake", brake, (392, 28), False, (240, 80, 80))
    if plan:
        mode = str(plan.get("thinking_mode", "?"))
        status = str(plan.get("status", "?"))
        head = f"replan @ {float(plan.get('time_s', 0.0)):.1f} s   mode {mode}   status {status}"
        if plan.get("command"):
            head += f"   command: {plan['command']}"
        if plan.get("status_reason"):
            head += f"   ({plan['status_reason']})"
        _text(img, head, (8, 58), (255, 220, 120))
        reasoning = " ".join(str(plan.get("reasoning", "")).split())
        chars = max(20, width // 8)
        for i, line in enumerate(textwrap.wrap(reasoning, chars)[:3]):
            _text(img, line, (8, 76 + 16 * i), (200, 200, 200), 0.42)
    if banner:
        cv2.rectangle(img, (0, 0), (width - 1, config.panel_height_px - 1), (230, 40, 40), 2)
        _text(img, "INFRACTION: " + "; ".join(banner)[: width // 8], (8, config.panel_height_px - 8), (255, 90, 90))
    return img


def _fallback_bev(snap: Any, route_xy: np.ndarray, plan_xy: np.ndarray | None, config: ReplayConfig) -> np.ndarray:
    """A plain bird's-eye view (route, boxes, plan) when the town renderer is not available."""
    size, mpp = config.bev_size_px, config.bev_meters_per_px
    img = np.full((size, size, 3), 40, np.uint8)
    ex, ey, eyaw = float(snap.ego.x_m[0]), float(snap.ego.y_m[0]), float(snap.ego.yaw_rad[0])
    c, s = math.cos(eyaw), math.sin(eyaw)

    def px(xy: np.ndarray) -> np.ndarray:  # world -> image, ego heading up
        d = np.asarray(xy, float).reshape(-1, 2) - (ex, ey)
        fwd, left = d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c
        return np.stack([size / 2 - left / mpp, size / 2 - fwd / mpp], -1).astype(np.int32)

    cv2.polylines(img, [px(route_xy)], False, (70, 130, 220), 2)
    from autovla_agent.sim.lane_query import oriented_box_corners

    for arr, color in ((snap.vehicles, (220, 220, 220)), (snap.ego, (90, 220, 90))):
        for k in range(len(arr)):
            corners = oriented_box_corners(arr.x_m[k], arr.y_m[k], arr.yaw_rad[k], arr.length_m[k], arr.width_m[k])
            cv2.fillPoly(img, [px(corners)], color)
    if plan_xy is not None and len(plan_xy) > 1:
        cv2.polylines(img, [px(plan_xy)], False, (255, 200, 40), 2)
    return img


def _bev_renderer(town_name: str) -> Any:
    """E1's town renderer, or None (the plain fallback view is used) when it cannot be built."""
    try:
        from autovla_agent.sim.render import CameraRenderer, RenderConfig
        from autovla_agent.sim.town import Town

        return CameraRenderer.for_town(Town.load(town_name), RenderConfig())
    except Exception as exc:  # noqa: BLE001 -- a replay must still come out without the town renderer
        logger.warning("town renderer unavailable (%s: %s); drawing a plain bird's-eye view", type(exc).__name__, exc)
        return None


def _pad16(img: np.ndarray) -> np.ndarray:
    """Pad to multiples of 16 pixels (H.264 macro blocks) so the encoder never rescales."""
    h, w = img.shape[:2]
    return np.pad(img, ((0, (-h) % 16), (0, (-w) % 16), (0, 0)))


def _video_writer(out_path: Path, fps: float, fmt: str) -> tuple[Any, Path]:
    """An imageio writer for MP4 (ffmpeg) or, where no encoder is available, GIF."""
    import imageio.v2 as imageio

    if fmt == "mp4":
        try:
            import imageio_ffmpeg

            imageio_ffmpeg.get_ffmpeg_exe()
            path = out_path.with_suffix(".mp4")
            return imageio.get_writer(
                path, fps=fps, codec="libx264", quality=7, pixelformat="yuv420p", macro_block_size=16
            ), path
        except Exception as exc:  # noqa: BLE001 -- any encoder problem falls back to GIF
            logger.warning("no MP4 encoder (%s); writing a GIF instead", exc)
    path = out_path.with_suffix(".gif")
    return imageio.get_writer(path, mode="I", duration=1000.0 / fps, loop=0), path


def render_video(log_dir: str | Path, out_path: str | Path | None = None, config: ReplayConfig | None = None) -> Path:
    """Render the replay video of one route log; return the written file (``.mp4`` or ``.gif``)."""
    config = config or ReplayConfig()
    log_dir = Path(log_dir)
    meta, steps = _load_log(log_dir)
    frames = _FrameStore(log_dir)
    out = Path(out_path) if out_path is not None else log_dir.parent / log_dir.name
    route_xy = np.asarray(meta.get("route_xy_world_m", []), float).reshape(-1, 2)
    renderer = _bev_renderer(str(meta.get("town", "")))
    ego_size = (float(meta.get("ego_length_m", 4.9)), float(meta.get("ego_width_m", 2.1)))
    events_t = [(float(ev["time_s"]), ev["type"]) for st in steps for ev in st.get("events", [])]
    video_steps = [st for st in steps if st.get("video") and "ego" in st]
    if not video_steps:
        raise ValueError(f"{log_dir}: the log has no video frames")
    writer, path = _video_writer(out, config.fps, config.video_format)
    plan: dict[str, Any] | None = None
    colors: dict[int, Sequence[int]] = {}
    cam_shape: tuple[int, int] | None = None
    plan_by_frame = {st["frame"]: st["plan"] for st in steps if "plan" in st and "frame" in st}
    try:
        for st in video_steps:
            for f in [f for f in sorted(plan_by_frame) if f <= st["frame"]]:
                plan = plan_by_frame.pop(f)
            for vid, rgb in st.get("colors", {}).items():
                colors[int(vid)] = rgb
            snap = _snapshot_from_step(st, ego_size, colors)
            plan_xy = None
            if plan and plan.get("poses_world"):
                plan_xy = np.asarray(plan["poses_world"], float).reshape(-1, 3)[:, :2]
            bev = None
            if renderer is not None:
                try:
                    bev = renderer.render_bev(
                        snap,
                        route_xy,
                        size_px=config.bev_size_px,
                        meters_per_px=config.bev_meters_per_px,
                        planned_xy_world_m=plan_xy,
                    )
                except Exception as exc:  # noqa: BLE001
                    logger.warning("town renderer failed (%s); using the plain bird's-eye view", exc)
                    renderer = None
            if bev is None:
                bev = _fallback_bev(snap, route_xy, plan_xy, config)
            bev = np.asarray(bev, np.uint8)[..., :3]
            cam = frames.get(int(st.get("camera", -1))) if st.get("camera", -1) >= 0 else None
            if cam is not None:
                h = bev.shape[0]
                cam = cv2.resize(cam, (max(1, round(cam.shape[1] * h / cam.shape[0])), h))
                cam_shape = cam.shape[:2]
            elif cam_shape is not None:
                cam = np.zeros((*cam_shape, 3), np.uint8)
            t = float(st["time_s"])
            banner = sorted({kind for te, kind in events_t if te <= t < te + config.event_banner_s})
            if banner:
                cv2.rectangle(bev, (0, 0), (bev.shape[1] - 1, bev.shape[0] - 1), (230, 40, 40), 4)
            top = np.concatenate([cam, bev], axis=1) if cam is not None else bev
            num_infractions = sum(1 for te, kind in events_t if te <= t and kind != "ROUTE_COMPLETION")
            frame = np.concatenate([top, _panel(top.shape[1], st, plan, banner, config, num_infractions)], axis=0)
            writer.append_data(_pad16(np.ascontiguousarray(frame)))
    finally:
        writer.close()
    logger.info("replay video: %s (%d frames)", path, len(video_steps))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: re-render replay videos from recorded route logs (``autovla-replay LOGDIR``)."""
    parser = argparse.ArgumentParser(prog="autovla-replay", description=__doc__.splitlines()[0])
    parser.add_argument("logdir", help="a route log folder (meta.json + steps.jsonl) or a --record folder of them")
    parser.add_argument("--out", default=None, help="output folder (default: beside each route log folder)")
    parser.add_argument("--format", choices=("mp4", "gif"), default="mp4")
    parser.add_argument("--fps", type=float, default=10.0)
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root = Path(args.logdir)
    logs = [root] if (root / "meta.json").is_file() else sorted(p.parent for p in root.glob("*/meta.json"))
    if not logs:
        logger.error("%s holds no route logs (folders with meta.json and steps.jsonl)", root)
        return 2
    config = ReplayConfig(video_format=args.format, fps=args.fps)
    failed = 0
    for log in logs:
        out = None
        if args.out:
            out = Path(args.out) / log.name
            out.parent.mkdir(parents=True, exist_ok=True)
        try:
            render_video(log, out, config)
        except (OSError, ValueError) as exc:
            logger.error("cannot render %s: %s", log, exc)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
