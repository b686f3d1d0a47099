"""Hydra search-path plugin: makes ``agent=autovla`` resolvable in navsim once this package is installed."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class AutoVLASearchPathPlugin(SearchPathPlugin):
    """Appends this package's navsim config folder, which holds only ``agent/autovla.yaml``."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        """Append, never prepend: navsim's own configs keep precedence on any name clash."""
        search_path.append(provider="autovla-agent", path="pkg://autovla_agent.adapters.navsim.config")
