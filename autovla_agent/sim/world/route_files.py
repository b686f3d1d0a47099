"""Leaderboard route files (2.0 and 1.0 XML): parsing into ``RouteSpec``s, the shipped files, the 1.0 converter.

A route file is parsed into ``RouteSpec``s in file order, keypoints in CARLA coordinates as written in the file;
``--routes-subset`` ids ("0-3,7") select routes. Densification over a town's lanes is in ``routes.py``.

Route XML extension (ignored by the leaderboard's parser): ``<obstacles><vehicle x y z yaw hold_s/></obstacles>``
inside a ``<route>`` places a stopped vehicle (CARLA coordinates and degrees); ``hold_s`` seconds later it drives
off with the traffic, ``hold_s="inf"`` (default) keeps it parked.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from autovla_agent.paths import ROUTES_DIR

__all__ = [
    "ObstacleSpec",
    "RouteError",
    "RouteSpec",
    "convert_lb1_routes",
    "load_routes",
    "packaged_routes_dir",
    "parse_routes_file",
    "parse_subset",
    "shipped_route_names",
]


class RouteError(ValueError):
    """A route file or route that cannot be run (bad XML, unknown town, keypoint off the road, no path)."""


@dataclass(frozen=True, slots=True)
class ObstacleSpec:
    """A stopped vehicle placed by a route (CARLA coordinates); it drives off after ``hold_s`` (inf: parked)."""

    x: float
    y: float
    z: float
    yaw_deg: float
    hold_s: float = math.inf


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One ``<route>`` of a route file: id, town and keypoints ``(x, y, z)`` in CARLA coordinates."""

    route_id: str
    town: str
    keypoints_carla_m: tuple[tuple[float, float, float], ...]
    obstacles: tuple[ObstacleSpec, ...] = ()
    source: str = ""  # the file it came from

    @property
    def name(self) -> str:
        """The leaderboard's route name, ``RouteScenario_<id>``."""
        return f"RouteScenario_{self.route_id}"


def parse_subset(subset: str) -> list[str] | None:
    """Parse the leaderboard ``--routes-subset`` syntax ("0-3,7"; inclusive ranges) into route ids; "" -> None."""
    if not subset or not subset.strip():
        return None
    ids: list[str] = []
    for part in subset.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            if not (lo.strip().isdigit() and hi.strip().isdigit()) or int(lo) > int(hi):
                raise RouteError(f"bad routes subset range {part!r}: use 'first-last' with integers, first <= last")
            ids.extend(str(i) for i in range(int(lo), int(hi) + 1))
        elif part:
            ids.append(part)
    return ids


def _float_attr(el: ET.Element, key: str, where: str, default: float | None = None) -> float:
    """A float attribute of ``el``; RouteError naming ``where`` when missing or malformed."""
    raw = el.get(key)
    if raw is None:
        if default is not None:
            return default
        raise RouteError(f"{where}: <{el.tag}> lacks the attribute {key!r}")
    try:
        return float(raw)
    except ValueError:
        raise RouteError(f"{where}: <{el.tag} {key}={raw!r}> is not a number") from None


def parse_routes_file(path: str | Path, subset: str = "") -> list[RouteSpec]:
    """Parse a Leaderboard 2.0 (``<waypoints><position/>``) or 1.0 (``<waypoint/>``) route file, in file order."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise RouteError(f"cannot read route file {path}: {exc}") from exc
    wanted = parse_subset(subset)
    routes = []
    for el in root.iter("route"):
        rid, town = el.get("id"), el.get("town")
        where = f"{path.name} route {rid}"
        if rid is None or town is None:
            raise RouteError(f"{path.name}: every <route> needs 'id' and 'town' attributes")
        if wanted is not None and rid not in wanted:
            continue
        container = el.find("waypoints")
        points = container.findall("position") if container is not None else el.findall("waypoint")
        keypoints = tuple(
            (_float_attr(p, "x", where), _float_attr(p, "y", where), _float_attr(p, "z", where, 0.0)) for p in points
        )
        if len(keypoints) < 2:
            raise RouteError(f"{where}: a route needs at least 2 waypoints, found {len(keypoints)}")
        obstacles = tuple(
            ObstacleSpec(
                x=_float_attr(v, "x", where),
                y=_float_attr(v, "y", where),
                z=_float_attr(v, "z", where, 0.0),
                yaw_deg=_float_attr(v, "yaw", where, 0.0),
                hold_s=_float_attr(v, "hold_s", where, math.inf),
            )
            for v in el.findall("obstacles/vehicle")
        )
        routes.append(RouteSpec(rid, town, keypoints, obstacles, str(path)))
    if wanted is not None:
        missing = sorted(set(wanted) - {r.route_id for r in routes})
        if missing:
            raise RouteError(f"{path.name}: routes subset names ids {missing} that are not in the file")
    return routes


def packaged_routes_dir() -> Path:
    """Folder of the route files shipped with the package (the repository's routes/)."""
    return ROUTES_DIR


def shipped_route_names() -> list[str]:
    """Names (without ``.xml``) of the route files shipped with the package, sorted; read from the folder."""
    return sorted(p.stem for p in packaged_routes_dir().glob("*.xml"))


def load_routes(path_or_name: str | Path, subset: str = "") -> list[RouteSpec]:
    """Parse a route file given as a path, or as the name of a shipped one (``shipped_route_names()``)."""
    path = Path(path_or_name)
    if not path.is_file():
        name = path.name if path.suffix == ".xml" else f"{path.name}.xml"
        shipped = packaged_routes_dir() / name
        if not shipped.is_file():
            known = sorted(p.name for p in packaged_routes_dir().glob("*.xml"))
            raise RouteError(f"route file {path_or_name!r} not found (shipped route files: {known})")
        path = shipped
    return parse_routes_file(path, subset)


def convert_lb1_routes(src: str | Path, dst: str | Path, towns: tuple[str, ...]) -> int:
    """Write the Leaderboard 1.0 routes of ``src`` on ``towns`` to ``dst`` in the 2.0 format; return their count."""
    routes = [r for r in parse_routes_file(src) if r.town in towns]
    out = ET.Element("routes")
    for r in routes:
        el = ET.SubElement(out, "route", {"id": r.route_id, "town": r.town})
        wps = ET.SubElement(el, "waypoints")
        for x, y, z in r.keypoints_carla_m:
            ET.SubElement(wps, "position", {"x": f"{x:.2f}", "y": f"{y:.2f}", "z": f"{z:.2f}"})
    ET.indent(out, space="   ")
    comment = f" Converted from Leaderboard 1.0 {Path(src).name} (MIT, see LICENSE-leaderboard.txt): {towns} "
    text = f'<?xml version="1.0" encoding="UTF-8"?>\n<!--{comment}-->\n' + ET.tostring(out, encoding="unicode")
    Path(dst).write_text(text + "\n", encoding="utf-8")
    return len(routes)
