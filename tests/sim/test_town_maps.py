import shutil

import pytest

from autovla_agent.paths import MAPS_DIR
from autovla_agent.sim import runner
from autovla_agent.sim.runner_config import load_runner_config
from autovla_agent.sim.world.route_files import load_routes
from autovla_agent.sim.world.simulation import World, WorldConfig
from autovla_agent.sim.world.town import Town, UnknownTownError, available_towns
from autovla_agent.sim.world.traffic_model import TrafficConfig
from autovla_agent.sim.world.walkers import WalkerConfig


def test_a_town_from_a_maps_folder_loads_and_an_unknown_one_names_where_it_was_looked_for(tmp_path):
    shutil.copy(MAPS_DIR / "Town02.xodr", tmp_path / "Town99.xodr")  # stands in for a CARLA release's OpenDrive
    assert "Town99" in available_towns((str(tmp_path),)) and "Town99" not in available_towns()
    town = Town.load("Town99", (str(tmp_path),))
    assert town.name == "Town99" and len(town.lanes) == len(Town.load("Town02").lanes)
    spec = next(r for r in load_routes("routes_default") if r.town == "Town02")
    spec = type(spec)(spec.route_id, "Town99", spec.keypoints_carla_m)
    config = WorldConfig(
        maps_dirs=(str(tmp_path),), traffic=TrafficConfig(num_vehicles=0), walkers=WalkerConfig(num_walkers=0)
    )
    assert World("Town99", spec, config).town is town
    with pytest.raises(UnknownTownError) as err:
        Town.load("Town03", (str(tmp_path),))
    text = str(err.value)
    assert str(tmp_path) in text and str(MAPS_DIR) in text and "--maps-dir" in text and "Town10HD" in text


def test_maps_dir_reaches_the_world_config_of_the_evaluator(tmp_path):
    config = load_runner_config(None, [], None, [str(tmp_path)])
    assert config.world.maps_dirs == (str(tmp_path),)
    args = runner.build_parser().parse_args(
        ["--routes", "x", "--agent", "a.py", "--maps-dir", "/a", "--maps-dir", "/b"]
    )
    assert args.maps_dir == ["/a", "/b"]
