"""The reliability record: each fault scenario of `test_reliability.py` measures what it cost and
writes one row; `python -m killreport_assets_tests.reliability` turns the rows of the last run into
`docs/reliability.md`.

Rows are JSON files under `test-output/reliability/`, one per scenario; a test session starts by
clearing them, so the page always shows one run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa

from killreport_assets.simulator.universe import Universe
from killreport_assets.storage import Storage
from killreport_assets_tests import schema as t
from killreport_assets_tests.db import rows
from killreport_assets_tests.refresh_support import expected_alliance, expected_corporation, stored

ROWS = Path(__file__).resolve().parent.parent / "test-output" / "reliability"
# The test modules that record rows, and the one command that reruns them and writes the page.
SCENARIO_MODULES = ("test_reliability.py", "test_rabbitmq_refresh.py", "test_rabbitmq_worker.py")
REGENERATE = (
    ".venv/bin/python -m pytest "
    + " ".join(f"killreport_assets_tests/{name}" for name in SCENARIO_MODULES)
    + " && .venv/bin/python -m killreport_assets_tests.reliability"
)
DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"


@dataclass(frozen=True)
class Damage:
    """How the tables differ from the universe ESI served."""

    lost: int  # listed alliances, memberships or member corporations missing
    duplicated: int  # membership events recorded twice in one refresh
    stale: int  # stored rows whose fields differ from what ESI answered


def damage(storage: Storage, universe: Universe) -> Damage:
    listed = set(universe.listed_alliance_ids())
    alliances = stored(storage, t.alliances)
    memberships = {
        (r.alliance_id, r.corporation_id) for r in rows(storage, sa.select(t.alliance_corporations))
    }
    wanted = {(a, c) for a in listed for c in universe.members(a)}
    corporations = stored(storage, t.corporations)
    members = {c for _, c in wanted}
    lost = len(listed - set(alliances)) + len(wanted - memberships) + len(members - set(corporations))
    stale = len(memberships - wanted)
    for alliance_id, row in alliances.items():
        want = expected_alliance(universe, alliance_id)
        closed = want.pop("closed")
        stale += (row.closed_at is not None) != closed or any(getattr(row, k) != v for k, v in want.items())
    for corporation_id, row in corporations.items():
        if universe.corporation(corporation_id) is None:
            stale += row.closed_at is None
            continue
        want = expected_corporation(universe, corporation_id)
        stale += row.closed_at is not None or any(getattr(row, k) != v for k, v in want.items())
    history = Counter(
        (r.alliance_id, r.corporation_id, r.event, r.refresh_id)
        for r in rows(storage, sa.select(t.membership_history))
    )
    duplicated = sum(n - 1 for n in history.values())
    return Damage(lost=lost, duplicated=duplicated, stale=stale)


@dataclass(frozen=True)
class Row:
    key: str  # the scenario number, with a letter for variants
    injected: str
    scenario: str
    expected: str
    lost: int
    duplicated: int
    stale: int
    esi_requests: str  # what the fault cost in ESI requests, in the scenario's own terms
    recovery_seconds: float | None  # from the end of the fault to the refresh finishing

    @property
    def order(self) -> tuple[int, str]:
        number = "".join(ch for ch in self.key if ch.isdigit())
        return int(number or 0), self.key


def record(row: Row) -> None:
    ROWS.mkdir(parents=True, exist_ok=True)
    (ROWS / f"{row.key}.json").write_text(json.dumps(asdict(row), indent=1))


def render(found: list[Row]) -> str:
    lines = [
        "# Reliability",
        "",
        "What each fault scenario of `killreport_assets_tests/test_reliability.py` injected, what it",
        "expected and what it measured, in the suite's last run on this machine (real PostgreSQL, real",
        "RabbitMQ, real worker processes and signals, the ESI simulator over loopback HTTP). Every",
        "scenario ends with a field-by-field comparison of the tables against the simulator's universe.",
        "",
        f"Regenerate: `{REGENERATE}`.",
        "",
        "| # | scenario | injected | expected | lost | duplicated | stale | ESI requests | recovery |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(found, key=lambda r: r.order):
        recovery = "–" if row.recovery_seconds is None else f"{row.recovery_seconds:.1f} s"
        lines.append(
            f"| {row.key} | {row.scenario} | {row.injected} | {row.expected} | {row.lost} | {row.duplicated} "
            f"| {row.stale} | {row.esi_requests} | {recovery} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write docs/reliability.md from the last suite run")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args(argv)
    found = [Row(**json.loads(path.read_text())) for path in sorted(ROWS.glob("*.json"))]
    if not found:
        print(
            f"no scenario rows under {ROWS}: run killreport_assets_tests/test_reliability.py first",
            file=sys.stderr,
        )
        return 1
    args.out.write_text(render(found))
    print(f"{args.out}: {len(found)} scenario(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
