"""Physical parameters and limits of the ego vehicle shared by the bicycle model, decoder and controllers."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class VehicleParams:
    """Geometry and actuation limits of the ego vehicle (defaults: CARLA ``vehicle.lincoln.mkz_2020``).

    The kinematic reference point is the rear-axle centre; ``rear_axle_offset_m`` is how far it lies behind
    the vehicle origin (the CARLA actor location, treated as the bounding-box centre). Accelerations are
    signed longitudinal accelerations; ``max_decel_mps2`` is the magnitude of the strongest braking.
    """

    wheelbase_m: float = 2.875
    length_m: float = 4.9
    width_m: float = 2.1
    rear_axle_offset_m: float = 1.4
    max_steer_rad: float = 0.6
    max_steer_rate_radps: float = 1.2
    max_accel_mps2: float = 3.5
    max_decel_mps2: float = 8.0
    max_jerk_mps3: float = 10.0
    max_speed_mps: float = 25.0
    max_reverse_speed_mps: float = 3.0

    def __post_init__(self) -> None:
        """Reject non-physical values with a message that says which field to fix."""
        positive = (
            "wheelbase_m",
            "length_m",
            "width_m",
            "max_steer_rad",
            "max_steer_rate_radps",
            "max_accel_mps2",
            "max_decel_mps2",
            "max_jerk_mps3",
            "max_speed_mps",
        )
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"VehicleParams.{name} must be a finite number > 0, got {value!r}")
        if not (math.isfinite(self.max_reverse_speed_mps) and self.max_reverse_speed_mps >= 0.0):
            raise ValueError(f"VehicleParams.max_reverse_speed_mps must be >= 0, got {self.max_reverse_speed_mps!r}")
        if self.max_steer_rad >= math.pi / 2:
            raise ValueError(f"VehicleParams.max_steer_rad must be < pi/2 (wheel angle), got {self.max_steer_rad}")
        if not (0.0 <= self.rear_axle_offset_m < self.length_m / 2):
            raise ValueError(
                f"VehicleParams.rear_axle_offset_m must be in [0, length_m/2) = [0, {self.length_m / 2}), "
                f"got {self.rear_axle_offset_m}"
            )
        if self.wheelbase_m > self.length_m:
            raise ValueError(f"VehicleParams.wheelbase_m ({self.wheelbase_m}) cannot exceed length_m ({self.length_m})")

    @property
    def max_curvature_1pm(self) -> float:
        """Largest path curvature in 1/m the steering allows: tan(max_steer_rad) / wheelbase_m."""
        return math.tan(self.max_steer_rad) / self.wheelbase_m

    @property
    def min_turn_radius_m(self) -> float:
        """Smallest turning radius of the rear-axle centre in metres."""
        return 1.0 / self.max_curvature_1pm
