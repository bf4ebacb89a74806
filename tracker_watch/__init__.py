"""tracker-watch: monitors BitTorrent swarms and keeps verifiable evidence of who shares registered works."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tracker-watch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

SOFTWARE = f"tracker-watch/{__version__}"
