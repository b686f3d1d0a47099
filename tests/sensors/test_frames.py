import math

import numpy as np
import pytest

from autovla_agent.sensors import frames, latitude_sign

TOWN15_REF = (41.50159462977912, 2.103768410783638)


# ---------------------------------------------------------------- planar CARLA <-> world


def test_carla_to_world_xy_flips_y_and_round_trips():
    xy_carla = np.array([[10.0, 5.0], [-3.0, -7.5]])
    xy_world = frames.carla_to_world_xy(xy_carla)
    np.testing.assert_allclose(xy_world, [[10.0, -5.0], [-3.0, 7.5]])
    np.testing.assert_allclose(frames.world_to_carla_xy(xy_world), xy_carla)
    assert xy_carla[0, 1] == 5.0  # the input is not modified


def test_carla_to_world_xy_wrong_shape_raises():
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        frames.carla_to_world_xy([1.0, 2.0, 3.0])


def test_carla_yaw_90_faces_south_gives_world_yaw_minus_half_pi():
    # CARLA Rotation(yaw=90) looks along +y_carla, i.e. south; south in the world frame is yaw -pi/2.
    assert frames.carla_yaw_deg_to_world_rad(90.0) == pytest.approx(-math.pi / 2)
    assert frames.carla_yaw_deg_to_world_rad(-90.0) == pytest.approx(math.pi / 2)
    forward_carla = np.array([0.0, 1.0])  # the forward vector of yaw=90 (verified with the carla wheel)
    yaw = frames.carla_yaw_deg_to_world_rad(90.0)
    np.testing.assert_allclose(frames.carla_to_world_xy(forward_carla), [math.cos(yaw), math.sin(yaw)], atol=1e-12)


@pytest.mark.parametrize("yaw_deg", [-179.0, -90.0, -12.5, 0.0, 33.0, 90.0, 179.0])
def test_carla_yaw_round_trip_is_identity(yaw_deg):
    back = frames.world_yaw_rad_to_carla_deg(frames.carla_yaw_deg_to_world_rad(yaw_deg))
    assert back == pytest.approx(yaw_deg, abs=1e-9)
    assert isinstance(back, float)


def test_carla_yaw_deg_to_world_rad_wraps_into_minus_pi_pi():
    values = frames.carla_yaw_deg_to_world_rad(np.array([360.0 + 45.0, -720.0, 180.0]))
    np.testing.assert_allclose(values, [-math.pi / 4, 0.0, -math.pi])


def test_carla_pose_round_trip_is_identity():
    pose = frames.carla_pose_to_world(12.0, 34.0, 30.0)
    np.testing.assert_allclose(pose, [12.0, -34.0, -math.radians(30.0)])
    assert frames.world_pose_to_carla(pose) == pytest.approx((12.0, 34.0, 30.0))


# ---------------------------------------------------------------- compass


@pytest.mark.parametrize(
    ("compass_rad", "world_yaw_rad"),
    [(0.0, math.pi / 2), (math.pi / 2, 0.0), (math.pi, -math.pi / 2), (3 * math.pi / 2, -math.pi)],
)
def test_compass_to_world_yaw_cardinal_directions(compass_rad, world_yaw_rad):
    # compass 0 = north = world +y; pi/2 = east = world +x (yaw 0); pi = south.
    assert frames.compass_to_world_yaw_rad(compass_rad) == pytest.approx(world_yaw_rad)


def test_compass_matches_carla_yaw_of_the_same_heading():
    # Heading +x_carla: compass pi/2, CARLA yaw 0. Heading +y_carla: compass pi, CARLA yaw 90.
    for compass, yaw_deg in [(math.pi / 2, 0.0), (math.pi, 90.0), (0.0, -90.0)]:
        assert frames.compass_to_world_yaw_rad(compass) == pytest.approx(frames.carla_yaw_deg_to_world_rad(yaw_deg))


@pytest.mark.parametrize("yaw", [-3.0, -1.0, 0.0, 0.5, 2.9])
def test_compass_round_trip_is_identity(yaw):
    compass = frames.world_yaw_rad_to_compass(yaw)
    assert 0.0 <= compass < 2 * math.pi
    assert frames.compass_to_world_yaw_rad(compass) == pytest.approx(yaw)


def test_compass_nan_returns_last_value_or_none():
    assert frames.compass_to_world_yaw_rad(float("nan")) is None
    assert frames.compass_to_world_yaw_rad(float("nan"), last_yaw_rad=0.3) == 0.3
    assert frames.compass_to_world_yaw_rad(None, last_yaw_rad=-1.0) == -1.0


# ---------------------------------------------------------------- steering


def test_steer_norm_left_is_negative_carla_steer():
    assert frames.steer_norm_to_carla(0.25) == -0.25
    assert frames.carla_steer_to_norm(-0.25) == 0.25
    assert frames.carla_steer_to_norm(frames.steer_norm_to_carla(-0.7)) == pytest.approx(-0.7)


def test_steer_norm_to_carla_returns_python_float_clipped_and_nan_safe():
    value = frames.steer_norm_to_carla(np.float32(-2.0))
    assert type(value) is float and value == 1.0
    assert frames.steer_norm_to_carla(float("nan")) == 0.0
    assert frames.carla_steer_to_norm(float("inf")) == 0.0


# ---------------------------------------------------------------- rear axle and mounts


def test_origin_to_rear_axle_is_behind_along_heading_and_round_trips():
    pose = np.array([10.0, 5.0, math.pi / 2])  # facing world +y
    rear = frames.origin_to_rear_axle(pose, 1.4)
    np.testing.assert_allclose(rear, [10.0, 3.6, math.pi / 2], atol=1e-12)
    np.testing.assert_allclose(frames.rear_axle_to_origin(rear, 1.4), pose, atol=1e-12)


def test_carla_mount_to_ego_flips_y_yaw_pitch_and_shifts_to_rear_axle():
    mount = frames.carla_mount_to_ego(0.8, 0.55, 1.6, 5.0, 10.0, 55.0, rear_axle_offset_m=1.4)
    np.testing.assert_allclose(mount, [2.2, -0.55, 1.6, math.radians(5.0), -math.radians(10.0), -math.radians(55.0)])


def test_carla_imu_to_ego_left_turn_gives_positive_yaw_rate():
    # Turning left in CARLA decreases its yaw: the gyroscope z is negative (carla-ros-bridge convention).
    accel, gyro = frames.carla_imu_to_ego([1.0, 2.0, 9.81], [0.1, 0.2, -0.5])
    np.testing.assert_allclose(accel, [1.0, -2.0, 9.81])
    np.testing.assert_allclose(gyro, [-0.1, 0.2, 0.5])


# ---------------------------------------------------------------- world <-> ego


def test_world_to_ego_point_ahead_and_left():
    ego = np.array([10.0, 20.0, math.pi / 2])  # facing world +y
    pts = frames.world_to_ego([[10.0, 25.0], [7.0, 20.0]], ego)
    np.testing.assert_allclose(pts, [[5.0, 0.0], [0.0, 3.0]], atol=1e-12)  # ahead; to the left


def test_world_to_ego_round_trip_is_identity_for_points_and_poses():
    rng = np.random.default_rng(0)
    ego = np.array([3.0, -4.0, 2.5])
    poses = np.column_stack([rng.uniform(-50, 50, (20, 2)), rng.uniform(-3, 3, 20)])
    back = frames.ego_to_world(frames.world_to_ego(poses, ego), ego)
    np.testing.assert_allclose(back[:, :2], poses[:, :2], atol=1e-9)
    np.testing.assert_allclose(frames.wrap_angle_rad(back[:, 2] - poses[:, 2]), 0.0, atol=1e-12)
    np.testing.assert_allclose(frames.world_to_ego(ego, ego), [0.0, 0.0, 0.0], atol=1e-12)


def test_world_to_ego_bad_pose_shape_raises():
    with pytest.raises(ValueError, match="ego_pose_world"):
        frames.world_to_ego([[0.0, 0.0]], [0.0, 0.0])


# ---------------------------------------------------------------- GNSS


def _leaderboard_location_to_gps(lat_ref, lon_ref, x, y):
    """The leaderboard's _location_to_gps written out independently, as the reference for the tests."""
    r = 6378137.0
    scale = math.cos(lat_ref * math.pi / 180.0)
    mx = scale * lon_ref * math.pi * r / 180.0
    my = scale * r * math.log(math.tan((90.0 + lat_ref) * math.pi / 360.0))
    mx += x
    my -= y
    lon = mx * 180.0 / (math.pi * r * scale)
    lat = 360.0 * math.atan(math.exp(my / (r * scale))) / math.pi - 90.0
    return lat, lon


@pytest.mark.parametrize("ref", [(0.0, 0.0), (42.0, 2.0), TOWN15_REF, (41.0937, -81.5937)])
def test_location_to_gnss_matches_leaderboard_formula(ref):
    for x, y in [(0.0, 0.0), (150.0, -320.0), (-1999.0, 2000.0)]:
        assert frames.location_to_gnss(x, y, *ref) == pytest.approx(_leaderboard_location_to_gps(*ref, x, y), abs=1e-12)


def test_location_to_gnss_plus_y_carla_lowers_latitude():
    lat0, _ = frames.location_to_gnss(0.0, 0.0, *TOWN15_REF)
    lat_south, _ = frames.location_to_gnss(0.0, 100.0, *TOWN15_REF)
    _, lon_east = frames.location_to_gnss(100.0, 0.0, *TOWN15_REF)
    assert lat0 == pytest.approx(TOWN15_REF[0], abs=1e-12)
    assert lat_south < lat0
    assert lon_east > TOWN15_REF[1]


@pytest.mark.parametrize("ref", [(0.0, 0.0), TOWN15_REF, (41.0937, -81.5937), (-33.9, 151.2)])
def test_gnss_round_trip_under_one_millimetre_over_2_km(ref):
    grid = np.linspace(-2000.0, 2000.0, 41)
    x, y = np.meshgrid(grid, grid)
    lat, lon = frames.location_to_gnss(x, y, *ref)
    x_back, y_back = frames.gnss_to_carla_xy(lat, lon, *ref)
    assert np.max(np.hypot(x_back - x, y_back - y)) < 1e-3


def test_gnss_linear_shortcut_is_wrong_for_town15_reference():
    # The "lon * 111319.49" shortcut is only valid for a 0/0 georeference; the exact inverse is not.
    lat, lon = frames.location_to_gnss(100.0, 50.0, *TOWN15_REF)
    assert abs(lon * 111319.490945 - 100.0) > 1e5
    assert frames.gnss_to_carla_xy(lat, lon, *TOWN15_REF) == pytest.approx((100.0, 50.0), abs=1e-6)


def _xodr(georef: str | None) -> str:
    geo = f"<geoReference><![CDATA[{georef}]]></geoReference>" if georef is not None else ""
    return (
        '<?xml version="1.0" standalone="yes"?>\n<OpenDRIVE>\n'
        f'  <header revMajor="1" revMinor="4" name="tiny" version="1">\n    {geo}\n  </header>\n'
        '  <road name="r0" length="100.0" id="0" junction="-1"><link/>\n'
        '    <planView><geometry s="0.0" x="0.0" y="0.0" hdg="0.0" length="100.0"><line/></geometry></planView>\n'
        "    <elevationProfile/><lateralProfile/>\n"
        '    <lanes><laneSection s="0.0"><center><lane id="0" type="none" level="false"><link/></lane></center>\n'
        '      <right><lane id="-1" type="driving" level="false"><link/>'
        '<width sOffset="0.0" a="3.5" b="0" c="0" d="0"/></lane></right></laneSection></lanes>\n'
        "  </road>\n</OpenDRIVE>\n"
    )


TOWN15_PROJ = "+proj=tmerc +lat_0=41.50159462977912 +lon_0=2.103768410783638 +k=1 +x_0=0 +y_0=0 +datum=WGS84"


def test_parse_georeference_reads_lat_0_and_lon_0():
    assert frames.parse_georeference(_xodr(TOWN15_PROJ)) == TOWN15_REF
    assert frames.parse_georeference(_xodr("+proj=tmerc +lat_0=0 +lon_0=0 +k=1")) == (0.0, 0.0)


def test_parse_georeference_missing_uses_leaderboard_default():
    assert frames.parse_georeference(_xodr(None)) == (42.0, 2.0)
    assert frames.parse_georeference(_xodr("+proj=tmerc +lon_0=5.5")) == (42.0, 5.5)


def test_parse_georeference_bad_number_raises():
    with pytest.raises(ValueError, match=r"\+lat_0=abc"):
        frames.parse_georeference(_xodr("+proj=tmerc +lat_0=abc +lon_0=0"))


@pytest.mark.parametrize("ref", [(0.0, 0.0), TOWN15_REF, (41.0937, -81.5937), (-33.9, 151.2)])
def test_georeference_from_route_recovers_reference_exactly(ref):
    x, y = 1234.5, -876.25
    lat, lon = frames.location_to_gnss(x, y, *ref)
    lat_ref, lon_ref = frames.georeference_from_route(lat, lon, x, y)
    assert lat_ref == pytest.approx(ref[0], abs=1e-10)
    assert lon_ref == pytest.approx(ref[1], abs=1e-10)


# ---------------------------------------------------------------- latitude sign


def _fix(x, y, ref, flipped):
    """A GNSS fix at CARLA (x, y): route formula, or carla 0.9.16's flipped latitude (lat rises with +y)."""
    return frames.location_to_gnss(x, -y if flipped else y, *ref)


@pytest.mark.parametrize("flipped", [False, True])
def test_latitude_sign_resolver_decides_on_first_fix(flipped):
    route = [(120.0, 55.0), (150.0, 55.0), (150.0, 90.0)]
    resolver = latitude_sign.LatitudeSignResolver(route, *TOWN15_REF)
    sign = resolver.resolve(*_fix(120.3, 54.8, TOWN15_REF, flipped))
    assert sign == (latitude_sign.LATITUDE_SIGN_FLIPPED if flipped else latitude_sign.LATITUDE_SIGN_ROUTE)
    assert resolver.is_resolved
    np.testing.assert_allclose(resolver.to_carla_xy(*_fix(140.0, 55.5, TOWN15_REF, flipped)), [140.0, 55.5], atol=1e-6)


def test_latitude_sign_resolver_waits_while_route_start_is_near_y_zero():
    # route[0] at y = 0.3 m: both signs put the first fix within a metre of it; moving south decides.
    route = [(100.0, 0.3), (100.0, 80.0)]
    resolver = latitude_sign.LatitudeSignResolver(route, 0.0, 0.0)
    assert resolver.resolve(*_fix(100.0, 0.3, (0.0, 0.0), True)) is None
    np.testing.assert_allclose(resolver.to_carla_xy(*_fix(100.0, 1.0, (0.0, 0.0), True)), [100.0, 1.0], atol=1e-6)
    assert resolver.latitude_sign is None
    assert resolver.resolve(*_fix(100.0, 6.0, (0.0, 0.0), True)) == latitude_sign.LATITUDE_SIGN_FLIPPED
    np.testing.assert_allclose(resolver.to_carla_xy(*_fix(100.0, 40.0, (0.0, 0.0), True)), [100.0, 40.0], atol=1e-6)


def test_latitude_sign_resolver_ignores_nan_fix_and_rejects_bad_route():
    resolver = latitude_sign.LatitudeSignResolver([(0.0, 50.0)], 0.0, 0.0)
    assert resolver.resolve(float("nan"), 0.0) is None
    with pytest.raises(ValueError, match="route_xy_carla_m"):
        latitude_sign.LatitudeSignResolver(np.zeros((0, 2)), 0.0, 0.0)


def test_latitude_sign_resolver_detects_carla_0916_gnss_projection():
    carla = pytest.importorskip("carla")  # the dev extra installs it; conformance with the real wheel
    carla_map = carla.Map("tiny", _xodr(TOWN15_PROJ))
    ref = frames.parse_georeference(_xodr(TOWN15_PROJ))
    start = carla.Location(x=60.0, y=-35.0, z=0.0)
    route = [(60.0, -35.0), (100.0, -35.0)]
    geo = carla_map.transform_to_geolocation(start)
    resolver = latitude_sign.LatitudeSignResolver(route, *ref)
    assert resolver.resolve(geo.latitude, geo.longitude) == latitude_sign.LATITUDE_SIGN_FLIPPED
    later = carla_map.transform_to_geolocation(carla.Location(x=90.0, y=-36.0, z=0.0))
    # 0.9.16 uses its own transverse Mercator: after the sign fix it agrees with the route formula to ~0.04 %.
    np.testing.assert_allclose(resolver.to_carla_xy(later.latitude, later.longitude), [90.0, -36.0], atol=0.1)
