"""Replay videos: the route's first camera beside a bird's-eye view, over a panel of state, controls and replan.

Reads a route log written by ``replay.RouteRecorder`` (``meta.json``, ``steps.jsonl``, ``camera_*.npz``); the
bird's-eye view is E1's town renderer (``render.CameraRenderer.render_bev``: lanes, route, vehicles, pedestrians,
light states, the planned trajectory) or, where the town cannot be loaded, a plain view of boxes and route.
Infractions are flagged (red frame and banner) for ``event_banner_s`` and marked where they happened. Written
with imageio: MP4 (H.264) or, without an encoder, GIF.
"""

from __future__ import annotations

import logging
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autovla_agent.optional_deps import require_cv2
from autovla_agent.sim.replay.log import FrameStore, ReplayConfig, load_log

cv2 = require_cv2()

logger = logging.getLogger(__name__)

__all__ = ["render_video"]

_MARK_LABELS = {  # infractions marked on the bird's-eye view, with their label
    "COLLISION_PEDESTRIAN": "pedestrian",
    "COLLISION_VEHICLE": "vehicle",
    "COLLISION_STATIC": "layout",
    "TRAFFIC_LIGHT_INFRACTION": "red light",
    "STOP_INFRACTION": "stop sign",
    "ROUTE_DEVIATION": "deviation",
    "VEHICLE_BLOCKED": "blocked",
}


def _snapshot_from_step(
    step: Mapping[str, Any],
    ego_size_m: tuple[float, float] = (4.9, 2.1),
    colors: Mapping[int, Sequence[int]] | None = None,
) -> Any:
    """Rebuild the ``WorldSnapshot`` a step line was logged from (what the BEV renderer draws)."""
    from autovla_agent.sim.world.simulation import ActorArrays, WorldSnapshot

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
    walkers = arrays([[*w[:5], 0.4, 0.5, False] for w in step.get("walkers", [])], None)
    lights = step.get("lights")
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
        walkers=walkers,
        light_state=np.array([int(c) for c in lights], np.int8) if lights else None,
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
    from autovla_agent.sim.world.lane_query import oriented_box_corners

    for arr, color in ((snap.vehicles, (220, 220, 220)), (snap.ego, (90, 220, 90))):
        for k in range(len(arr)):
            corners = oriented_box_corners(arr.x_m[k], arr.y_m[k], arr.yaw_rad[k], arr.length_m[k], arr.width_m[k])
            cv2.fillPoly(img, [px(corners)], color)
    if plan_xy is not None and len(plan_xy) > 1:
        cv2.polylines(img, [px(plan_xy)], False, (255, 200, 40), 2)
    return img


def _bev_renderer(town_name: str, maps_dirs: Sequence[str] = ()) -> Any:
    """E1's town renderer, or None (the plain fallback view is used) when it cannot be built."""
    try:
        from autovla_agent.sim.world.render import CameraRenderer, RenderConfig
        from autovla_agent.sim.world.town import Town

        return CameraRenderer.for_town(Town.load(town_name, tuple(maps_dirs)), RenderConfig())
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
    meta, steps = load_log(log_dir)
    frames = FrameStore(log_dir)
    out = Path(out_path) if out_path is not None else log_dir.parent / log_dir.name
    route_xy = np.asarray(meta.get("route_xy_world_m", []), float).reshape(-1, 2)
    renderer = _bev_renderer(str(meta.get("town", "")), meta.get("maps_dirs", ()))
    ego_size = (float(meta.get("ego_length_m", 4.9)), float(meta.get("ego_width_m", 2.1)))
    events_t = [(float(ev["time_s"]), ev["type"]) for st in steps for ev in st.get("events", [])]
    # where infractions happened: (time, x, y, label), marked on the map from then on
    marks = [
        (float(ev["time_s"]), *ev["xy"], _MARK_LABELS[ev["type"]])
        for st in steps
        for ev in st.get("events", [])
        if ev.get("xy") and ev["type"] in _MARK_LABELS
    ]
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
                        markers=[(mx, my, label) for te, mx, my, label in marks if te <= float(st["time_s"])],
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
