"""killreport_assets: the nightly EVE Online alliance and corporation refresh, as a Dagster asset graph.

`defs` is loaded lazily so that the parts that do not need Dagster (the ESI simulator, the worker)
import fast and do not depend on the refresh's settings being valid.
"""

from typing import Any

from killreport_assets.version import __version__

__all__ = ["__version__", "defs"]


def __getattr__(name: str) -> Any:
    if name == "defs":
        from killreport_assets.definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
