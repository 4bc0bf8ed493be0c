"""A local ESI simulator: the six ESI routes this project scrapes, over real loopback HTTP.

Deterministic for a seed, with ESI's headers, caching, error limit/token buckets, faults,
downtime and nightly drift, so the scraper can be tested end to end without the internet.
"""

from killreport_assets.simulator.app import create_app
from killreport_assets.simulator.config import SimulatorConfig
from killreport_assets.simulator.server import SimulatorProcess, SimulatorServer
from killreport_assets.simulator.state import SimulatorState
from killreport_assets.simulator.universe import Universe, diff

__all__ = [
    "SimulatorConfig",
    "SimulatorProcess",
    "SimulatorServer",
    "SimulatorState",
    "Universe",
    "create_app",
    "diff",
]
