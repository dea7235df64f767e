"""The installed version of Ostinato."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("ostinato")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.0.0+unknown"
