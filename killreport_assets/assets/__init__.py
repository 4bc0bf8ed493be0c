"""The refresh's software-defined assets, in dependency order."""

from killreport_assets.assets.eve import alliance_corporations, alliances, corporations
from killreport_assets.assets.snapshots import SnapshotConfig, alliance_snapshot, corporation_snapshot

ALL_ASSETS = [alliances, alliance_corporations, corporations, alliance_snapshot, corporation_snapshot]

__all__ = [
    "ALL_ASSETS",
    "SnapshotConfig",
    "alliance_corporations",
    "alliance_snapshot",
    "alliances",
    "corporation_snapshot",
    "corporations",
]
