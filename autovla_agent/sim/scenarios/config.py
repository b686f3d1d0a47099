"""The ``<scenarios>`` of a Leaderboard 2.0 route: ``ScenarioConfig`` as the leaderboard's parser reads them.

A route's ``<scenarios>`` holds ``<scenario name=".." type="..">`` elements; their ``<trigger_point x y z yaw/>``
(CARLA coordinates and degrees) is where the scenario starts, every other child is a parameter kept with its
attributes, as the leaderboard's ``other_parameters`` (``<distance value="100"/>``, ``<frequency from="35"
to="110"/>``). ``value`` and ``interval`` read them the way scenario_runner's ``get_value_parameter`` and
``get_interval_parameter`` do: the default when absent, ``ScenarioSetupError`` naming the parameter when present
but malformed. A scenario without a usable trigger point is dropped here with a warning; the route still runs.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

__all__ = ["ScenarioConfig", "ScenarioSetupError", "parse_scenarios"]

T = TypeVar("T")


class ScenarioSetupError(ValueError):
    """A scenario that cannot be set up (bad parameter, no fitting lane or junction): it is skipped, not the route."""


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    """One ``<scenario>`` of a route: name, type, trigger point (CARLA x, y, z metres and yaw degrees), parameters.

    ``parameters`` are ``(tag, ((attribute, text), ...))`` pairs in file order (hashable, like the rest of a route).
    """

    name: str
    type: str
    trigger_carla: tuple[float, float, float, float]
    parameters: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def attributes(self, tag: str) -> dict[str, str] | None:
        """The attributes of parameter ``tag`` (the last one when repeated), None when absent."""
        found = None
        for key, attrs in self.parameters:
            if key == tag:
                found = dict(attrs)
        return found

    def _convert(self, tag: str, attr: str, kind: Callable[[str], T]) -> T:
        attrs = self.attributes(tag) or {}
        if attr not in attrs:
            raise ScenarioSetupError(f"parameter <{tag}> lacks the attribute {attr!r}")
        text = attrs[attr]
        try:
            out = kind(text)
        except (TypeError, ValueError):
            raise ScenarioSetupError(f"parameter <{tag} {attr}={text!r}> is not a {kind.__name__}") from None
        if isinstance(out, float) and not math.isfinite(out):
            raise ScenarioSetupError(f"parameter <{tag} {attr}={text!r}> is not finite")
        return out

    def value(self, tag: str, kind: Callable[[str], T], default: T) -> T:
        """``<tag value=".."/>`` converted with ``kind``, or ``default`` when the route does not give it."""
        if self.attributes(tag) is None:
            return default
        return self._convert(tag, "value", kind)

    def interval(self, tag: str, kind: Callable[[str], T], default: tuple[T, T]) -> tuple[T, T]:
        """``<tag from=".." to=".."/>`` as ``(from, to)``, or ``default``; ``from`` must not exceed ``to``."""
        if self.attributes(tag) is None:
            return default
        lo, hi = self._convert(tag, "from", kind), self._convert(tag, "to", kind)
        if lo > hi:  # type: ignore[operator]
            raise ScenarioSetupError(f"parameter <{tag} from={lo} to={hi}>: 'from' must not exceed 'to'")
        return lo, hi

    def choice(self, tag: str, options: tuple[str, ...], default: str) -> str:
        """``<tag value=".."/>`` that must be one of ``options`` (scenario_runner raises otherwise)."""
        got = self.value(tag, str, default)
        if got not in options:
            raise ScenarioSetupError(f"'{tag}' must be one of {list(options)} but {got!r} was given")
        return got


def _trigger(el: ET.Element) -> tuple[float, float, float, float]:
    """(x, y, z, yaw) of a ``<trigger_point>``; ValueError when x or y is missing or not a number."""
    out = []
    for key, default in (("x", None), ("y", None), ("z", "0"), ("yaw", "0")):
        raw = el.get(key, default)
        if raw is None:
            raise ValueError(f"<trigger_point> lacks the attribute {key!r}")
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(f"<trigger_point {key}={raw!r}> is not finite")
        out.append(value)
    return out[0], out[1], out[2], out[3]


def parse_scenarios(route_el: ET.Element, where: str) -> tuple[ScenarioConfig, ...]:
    """The scenarios of a ``<route>`` element, in file order; ``where`` names the route in warnings."""
    configs = []
    for k, el in enumerate(route_el.findall("scenarios/scenario")):
        name = el.get("name") or f"scenario_{k}"
        kind = el.get("type") or ""
        point = el.find("trigger_point")
        try:
            if not kind:
                raise ValueError("it has no 'type' attribute")
            if point is None:
                raise ValueError("it has no <trigger_point>")
            trigger = _trigger(point)
        except ValueError as exc:
            logger.warning("%s: ignoring scenario %r: %s", where, name, exc)
            continue
        params = tuple((child.tag, tuple(sorted(child.attrib.items()))) for child in el if child.tag != "trigger_point")
        configs.append(ScenarioConfig(name, kind, trigger, params))
    return tuple(configs)
