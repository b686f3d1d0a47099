"""Which latitude sign the running CARLA's GNSS sensor uses: the route formula's or carla 0.9.16's flipped one.

The convention itself (the leaderboard's GPS formula, the 0.9.16 flip and its size) is stated in
``sensors.frames``, whose ``gnss_to_carla_xy`` converts a fix; this module only decides the sign at run time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from autovla_agent.sensors.frames import gnss_to_carla_xy

logger = logging.getLogger(__name__)

LATITUDE_SIGN_ROUTE = 1  # fixes follow the route formula (lat falls with +y_carla): CARLA <= 0.9.15
LATITUDE_SIGN_FLIPPED = -1  # fixes rise with +y_carla: the carla 0.9.16 GNSS sensor


def _distance_to_polyline_m(point: np.ndarray, polyline: np.ndarray) -> float:
    """Shortest distance from a point (2,) to a polyline (N, 2); a single vertex is a point."""
    if len(polyline) == 1:
        return float(np.hypot(*(point - polyline[0])))
    a, b = polyline[:-1], polyline[1:]
    ab = b - a
    denom = np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12)
    t = np.clip(np.einsum("ij,ij->i", point - a, ab) / denom, 0.0, 1.0)
    closest = a + t[:, None] * ab
    return float(np.min(np.hypot(*(point - closest).T)))


class LatitudeSignResolver:
    """Decides whether GNSS fixes follow the route formula's latitude sign or carla 0.9.16's flipped one.

    The ego spawns at route[0], so the first fix, converted with both signs, is compared with the first
    route point: the sign whose position lies ``margin_m`` closer wins. When route[0] lies near
    y_carla = 0 both signs give almost the same position (and so the same answer); the decision then waits
    for later fixes, compared with the whole route polyline, while ``to_carla_xy`` uses the sign that puts
    the current fix nearer the route. Put the GNSS at the actor origin (x = y = 0) so the fix is route[0].
    """

    def __init__(
        self,
        route_xy_carla_m: ArrayLike | Sequence[Sequence[float]],
        lat_ref_deg: float,
        lon_ref_deg: float,
        *,
        margin_m: float = 2.0,
        max_start_error_m: float = 10.0,
    ) -> None:
        route = np.asarray(route_xy_carla_m, dtype=np.float64)
        if route.ndim != 2 or route.shape[1] != 2 or len(route) == 0:
            raise ValueError(f"route_xy_carla_m must be (N >= 1, 2) CARLA x, y in metres; got {route.shape}")
        if margin_m <= 0.0:
            raise ValueError(f"margin_m must be > 0 (a few GNSS noise sigmas, e.g. 2.0); got {margin_m}")
        self._route = route
        self._lat_ref = float(lat_ref_deg)
        self._lon_ref = float(lon_ref_deg)
        self._margin_m = float(margin_m)
        self._max_start_error_m = float(max_start_error_m)
        self._sign: int | None = None
        self._num_fixes = 0

    @property
    def latitude_sign(self) -> int | None:
        """+1 (route formula, CARLA <= 0.9.15), -1 (flipped, carla 0.9.16), or None while undecided."""
        return self._sign

    @property
    def is_resolved(self) -> bool:
        """Whether the sign has been decided."""
        return self._sign is not None

    def _candidates(self, lat_deg: float, lon_deg: float) -> tuple[np.ndarray, np.ndarray]:
        x, y = gnss_to_carla_xy(lat_deg, lon_deg, self._lat_ref, self._lon_ref)
        return np.array([x, y]), np.array([x, -y])

    def resolve(self, lat_deg: float, lon_deg: float) -> int | None:
        """Observe one fix; return the decided sign, or None while both signs fit equally well."""
        if self._sign is not None:
            return self._sign
        if not (math.isfinite(lat_deg) and math.isfinite(lon_deg)):
            return None
        route_sign, flipped = self._candidates(lat_deg, lon_deg)
        reference = self._route[:1] if self._num_fixes == 0 else self._route
        d_route = _distance_to_polyline_m(route_sign, reference)
        d_flipped = _distance_to_polyline_m(flipped, reference)
        if self._num_fixes == 0 and min(d_route, d_flipped) > self._max_start_error_m:
            logger.error(
                "first GNSS fix is %.1f m (route sign) / %.1f m (flipped) from route[0]; the georeference "
                "(%s, %s) is probably wrong",
                d_route,
                d_flipped,
                self._lat_ref,
                self._lon_ref,
            )
        self._num_fixes += 1
        if abs(d_route - d_flipped) < self._margin_m:
            return None
        self._sign = LATITUDE_SIGN_ROUTE if d_route < d_flipped else LATITUDE_SIGN_FLIPPED
        logger.info(
            "GNSS latitude sign %+d (%s) after %d fix(es): %.2f m vs %.2f m from the route",
            self._sign,
            "route formula" if self._sign == LATITUDE_SIGN_ROUTE else "flipped, carla 0.9.16",
            self._num_fixes,
            d_route,
            d_flipped,
        )
        return self._sign

    def to_carla_xy(self, lat_deg: float, lon_deg: float) -> np.ndarray:
        """A fix to CARLA (2,) x_m, y_m with the decided sign; while undecided it observes the fix first."""
        sign = self.resolve(lat_deg, lon_deg)
        route_sign, flipped = self._candidates(lat_deg, lon_deg)
        if sign is None:
            closer = _distance_to_polyline_m(route_sign, self._route) <= _distance_to_polyline_m(flipped, self._route)
            return route_sign if closer else flipped
        return route_sign if sign == LATITUDE_SIGN_ROUTE else flipped
