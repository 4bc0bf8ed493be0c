"""`killreport worker` on compressed time, for outage scenarios that last hours in production: every
wait of the ESI governor's circuit breaker is divided by `SCALE`, so one minute of test is two hours
of outage as the worker experiences it (probes 5 s → 60 s become 0.04 s → 0.5 s; a job is handed
back after 1 s instead of 120 s). Run as `python -m killreport_assets_tests.compressed_worker -v worker`."""

import sys

from killreport_assets.cli import main
from killreport_assets.esi import circuit, governor

SCALE = 120.0


def _compress() -> None:
    original = governor.EsiGovernor.__init__

    def compressed(self: governor.EsiGovernor, config: object, **options: object) -> None:
        original(self, config, **{"max_hold": 120.0 / SCALE, "downtime_probe": 30.0 / SCALE, **options})
        self._circuit = circuit.Circuit(first_probe=5.0 / SCALE, max_probe=60.0 / SCALE)

    governor.EsiGovernor.__init__ = compressed  # type: ignore[method-assign]


if __name__ == "__main__":
    _compress()
    sys.exit(main(sys.argv[1:]))
