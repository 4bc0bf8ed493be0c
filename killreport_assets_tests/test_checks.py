"""The asset checks pass on a good refresh and fail on seeded bad data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from killreport_assets.assets import ALL_ASSETS
from killreport_assets.checks import ALL_CHECKS, memberships_reference_corporations
from killreport_assets.resources import refresh_resources
from killreport_assets.sensors import failure_alert_sensor
from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets.storage import Storage
from killreport_assets_tests import schema as t
from killreport_assets_tests.http_receiver import HttpReceiver
from killreport_assets_tests.refresh_support import check_results, failure_message, materialize_all


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory: pytest.TempPathFactory):
    """A good refresh on SQLite, copied afresh for each test that damages it."""
    folder = tmp_path_factory.mktemp("checks")
    mp = pytest.MonkeyPatch()
    mp.setenv("KILLREPORT_ESI_MAX_RPS", "400")
    with SimulatorServer(SimulatorConfig(seed=21, alliances=40, corporations=200)) as simulator:
        resource = refresh_resources(
            database_url=f"sqlite:///{folder / 'good.db'}",
            esi_base_url=simulator.url,
            poll_interval_seconds=0.05,
        )
        result = materialize_all(resource)
    mp.undo()
    assert result.success
    return folder / "good.db", check_results(result)


def run_checks(database: Path) -> dict[str, bool]:
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        selection=dg.AssetSelection.checks(*ALL_CHECKS),  # the steps' own checks run with their steps
        resources=refresh_resources(database_url=f"sqlite:///{database}"),
        raise_on_error=False,  # a failing blocking check fails the run
    )
    return check_results(result)


def damaged_copy(refreshed, tmp_path: Path, damage: Callable[[sa.Connection], None]) -> Path:
    """A copy of the good refresh's database with `damage` applied."""
    good, _ = refreshed
    database = tmp_path / "bad.db"
    database.write_bytes(good.read_bytes())
    storage = Storage.open(f"sqlite:///{database}")
    with storage.engine.begin() as conn:
        damage(conn)
    storage.dispose()
    return database


def test_checks_pass_on_good_data(refreshed) -> None:
    _, results = refreshed
    assert results and all(results.values()), results


def _dangling_membership(conn: sa.Connection) -> None:
    conn.execute(
        t.alliance_corporations.insert().values(
            alliance_id=sa.select(sa.func.min(t.alliances.c.id)).scalar_subquery(),
            corporation_id=98999999,
            first_seen_at=dt.datetime.now(dt.UTC),
        )
    )


def _missing_snapshot(conn: sa.Connection) -> None:
    s = t.alliance_snapshots
    conn.execute(
        s.delete().where(s.c.alliance_id == sa.select(sa.func.min(s.c.alliance_id)).scalar_subquery())
    )


def _missing_corporation_snapshot(conn: sa.Connection) -> None:
    s = t.corporation_snapshots
    first = sa.select(sa.func.min(s.c.corporation_id)).scalar_subquery()
    conn.execute(s.delete().where(s.c.corporation_id == first))


def _corporation_changed_after_its_snapshot(conn: sa.Connection) -> None:
    c, members = t.corporations, t.alliance_corporations
    first = sa.select(sa.func.min(members.c.corporation_id)).scalar_subquery()  # a member: totals move too
    conn.execute(c.update().where(c.c.id == first).values(member_count=c.c.member_count + 1))


def _inconsistent_totals(conn: sa.Connection) -> None:
    a = t.alliances
    conn.execute(
        a.update().where(a.c.id == sa.select(sa.func.min(a.c.id)).scalar_subquery()).values(member_count=1)
    )


def _members_dropped(conn: sa.Connection) -> None:
    s = t.alliance_snapshots
    today = conn.scalar(sa.select(sa.func.max(s.c.snapshot_date)))
    yesterday = today - dt.timedelta(days=1)
    rows = conn.execute(sa.select(s.c.alliance_id, s.c.member_count, s.c.corporation_count)).all()
    conn.execute(
        s.insert(),
        [
            {
                "alliance_id": r.alliance_id,
                "snapshot_date": yesterday,
                "member_count": r.member_count * 2,
                "corporation_count": r.corporation_count,
                "created_at": dt.datetime.now(dt.UTC),
            }
            for r in rows
        ],
    )


@pytest.mark.parametrize(
    ("damage", "failing"),
    [
        (_dangling_membership, {"memberships_reference_corporations"}),
        # A missing row also breaks the snapshot's totals.
        (_missing_snapshot, {"open_alliances_have_snapshot", "totals_consistent"}),
        (_missing_corporation_snapshot, {"open_corporations_have_snapshot"}),
        # The alliance totals are the corporations' sums: they disagree with the snapshot now too.
        (
            _corporation_changed_after_its_snapshot,
            {"corporation_snapshot_matches_corporations", "totals_consistent"},
        ),
        (_inconsistent_totals, {"totals_consistent"}),
        (_members_dropped, {"member_total_day_over_day"}),
    ],
)
def test_checks_fail_on_seeded_bad_data(
    refreshed, tmp_path: Path, damage: Callable[[sa.Connection], None], failing: set[str]
) -> None:
    results = run_checks(damaged_copy(refreshed, tmp_path, damage))
    assert {name for name, passed in results.items() if not passed} == failing


def test_a_failing_check_on_corporations_keeps_the_night_out_of_the_snapshots_and_alerts(
    refreshed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = damaged_copy(refreshed, tmp_path, _dangling_membership)
    with dg.instance_for_test() as instance, HttpReceiver() as hook:
        result = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            selection=dg.AssetSelection.checks(memberships_reference_corporations)
            | dg.AssetSelection.assets("alliance_snapshot", "corporation_snapshot"),
            resources=refresh_resources(database_url=f"sqlite:///{database}"),
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        assert check_results(result)["memberships_reference_corporations"] is False
        assert result.get_asset_materialization_events() == [], "no snapshot was written"

        monkeypatch.setenv("KILLREPORT_ALERT_WEBHOOK_URL", f"{hook.url}/services/T000/B000/secret")
        failure_alert_sensor(
            dg.build_run_status_sensor_context(
                sensor_name=failure_alert_sensor.name,
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                dagster_event=result.get_run_failure_event(),
            ).for_run_failure()
        )
        lines = hook.next_request().json()["text"].splitlines()
    assert lines[1] == "Failed step: corporations_memberships_reference_corporations"
    assert "memberships_reference_corporations" in lines[2]


def test_a_snapshot_for_another_day_is_refused_unless_forced(tmp_path: Path) -> None:
    from killreport_assets.assets import alliance_snapshot

    resources = refresh_resources(database_url=f"sqlite:///{tmp_path / 'snap.db'}")
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()

    def run(**config: object) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [alliance_snapshot],
            resources=resources,
            run_config={"ops": {"alliance_snapshot": {"config": config}}},
            raise_on_error=False,
        )

    refused = run(snapshot_date=yesterday)
    assert not refused.success
    assert failure_message(refused).startswith(f"snapshot_date={yesterday} is not today's UTC date")
    assert run(snapshot_date=yesterday, force=True).success
    assert run().success
