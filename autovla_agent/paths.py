"""Folders of the data shipped inside the package: routes, agent configs, town maps and the default model."""

from pathlib import Path

# Not resolved: routes/ and leaderboard_configs/ are links in a checkout, and the link's path is the package path.
PACKAGE_DIR = Path(__file__).parent
ROUTES_DIR = PACKAGE_DIR / "routes"
AGENT_CONFIGS_DIR = PACKAGE_DIR / "leaderboard_configs"
MAPS_DIR = PACKAGE_DIR / "sim" / "world" / "maps"
DEFAULT_MODEL_DIR = PACKAGE_DIR / "assets" / "default_model"
NAVSIM_CONFIG_DIR = PACKAGE_DIR / "adapters" / "navsim" / "config"
