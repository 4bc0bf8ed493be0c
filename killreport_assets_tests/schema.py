"""The application's tables, for tests that read them as the killboard does: the tests' one import
of `storage.tables`, which the package itself keeps inside `storage/`."""

from killreport_assets.storage.tables import *  # noqa: F403
from killreport_assets.storage.tables import metadata  # noqa: F401
