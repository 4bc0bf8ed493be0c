"""Storage on both dialects: migrations, compare-then-upsert semantics, memberships, snapshots, ledger."""

from __future__ import annotations

import datetime as dt
import socket
import threading

import pytest
import sqlalchemy as sa

from killreport_assets.esi.models import Alliance, AllianceMembers, Corporation
from killreport_assets.jobs import Job, LedgerStatus, Outcome
from killreport_assets.registry import ALLIANCE_CORPORATIONS, ALLIANCES, CORPORATIONS, EntityKind
from killreport_assets.storage import Storage, migrate
from killreport_assets.storage.database import current_revision, head_revision
from killreport_assets_tests import schema as t
from killreport_assets_tests.db import rows, scalar

REFRESH = "run-1"


def corp(corporation_id: int, **changes) -> Corporation:
    fields = dict(
        id=corporation_id,
        name=f"Corp {corporation_id}",
        ticker="TICK",
        member_count=10,
        ceo_id=90000001,
        creator_id=90000002,
        date_founded=dt.datetime(2015, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        description="<font>hi</font>",
        alliance_id=99000001,
        faction_id=None,
        home_station_id=60000001,
        shares=1000,
        tax_rate=0.1,
        url="https://example.com",
        war_eligible=True,
    )
    fields.update(changes)
    return Corporation(**fields)


def make_alliance(alliance_id: int, **changes) -> Alliance:
    fields = dict(
        id=alliance_id,
        name="A",
        ticker="A",
        date_founded=dt.datetime(2010, 1, 1, tzinfo=dt.UTC),
        creator_corporation_id=98000001,
        creator_id=90000001,
        executor_corporation_id=98000001,
    )
    fields.update(changes)
    return Alliance(**fields)


def members(alliance_id: int, *corporation_ids: int) -> AllianceMembers:
    return AllianceMembers(id=alliance_id, corporation_ids=corporation_ids)


def done(kind: EntityKind, entity_id: int, value, status=LedgerStatus.DONE, refresh=REFRESH) -> Outcome:
    return Outcome(job=Job(refresh, kind, entity_id), status=status, value=value, http_status=200)


@pytest.fixture
def storage(database_url: str):
    storage = Storage.open(database_url)
    yield storage
    storage.dispose()


def test_migrations_are_applied_once_and_idempotent(storage: Storage) -> None:
    assert migrate(storage.engine) == head_revision()
    assert migrate(storage.engine) == head_revision()
    with storage.engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        names = set(sa.inspect(conn).get_table_names())
    assert {table.name for table in t.metadata.sorted_tables} <= names


def test_upsert_keeps_created_at_and_never_clears_fields_a_shape_omits(storage: Storage) -> None:
    first = storage.apply([done(CORPORATIONS, 98000001, corp(98000001))])
    assert (first.created, first.updated) == (1, 0)
    before = rows(storage, sa.select(t.corporations))[0]

    # The new ESI shape may omit ceo_id/creator_id; the stored values must survive.
    changed = corp(98000001, ceo_id=None, creator_id=None, member_count=11)
    second = storage.apply([done(CORPORATIONS, 98000001, changed)])
    after = rows(storage, sa.select(t.corporations))[0]
    assert (second.created, second.updated) == (0, 1)
    assert after.ceo_id == before.ceo_id and after.creator_id == before.creator_id
    assert after.member_count == 11
    assert after.created_at == before.created_at
    assert after.updated_at > before.updated_at

    # Same data again: nothing written, updated_at untouched.
    third = storage.apply([done(CORPORATIONS, 98000001, changed)])
    assert third.unchanged == 1 and third.updated == 0
    assert rows(storage, sa.select(t.corporations))[0].updated_at == after.updated_at


def test_leaving_an_alliance_clears_alliance_id(storage: Storage) -> None:
    storage.apply([done(CORPORATIONS, 98000001, corp(98000001))])
    storage.apply([done(CORPORATIONS, 98000001, corp(98000001, alliance_id=None))])
    assert scalar(storage, sa.select(t.corporations.c.alliance_id)) is None


def test_gone_corporation_is_closed_and_not_deleted(storage: Storage) -> None:
    storage.apply([done(CORPORATIONS, 98000001, corp(98000001))])
    counts = storage.apply([done(CORPORATIONS, 98000001, None, status=LedgerStatus.GONE)])
    row = rows(storage, sa.select(t.corporations))[0]
    assert counts.closed == 1
    assert row.closed_at is not None and row.alliance_id is None and row.name == "Corp 98000001"


def test_memberships_record_joins_and_leaves(storage: Storage) -> None:
    storage.apply([done(ALLIANCE_CORPORATIONS, 99000001, members(99000001, 98000001, 98000002))])
    counts = storage.apply(
        [done(ALLIANCE_CORPORATIONS, 99000001, members(99000001, 98000002, 98000003), refresh="run-2")]
    )
    assert (counts.joined, counts.left) == (1, 1)
    ac, h = t.alliance_corporations, t.membership_history
    assert sorted(r.corporation_id for r in rows(storage, sa.select(ac))) == [98000002, 98000003]
    events = sorted(
        (r.event, r.corporation_id) for r in rows(storage, sa.select(h).where(h.c.refresh_id == "run-2"))
    )
    assert events == [("joined", 98000003), ("left", 98000001)]


def test_ledger_tracks_pending_and_keeps_finished_rows_on_retry(storage: Storage) -> None:
    storage.ledger.add_pending(REFRESH, "corporations", [1, 2, 3])
    storage.apply([done(CORPORATIONS, 1, corp(1))])
    storage.ledger.add_pending(REFRESH, "corporations", [1, 2, 3])  # a retried step re-records its entities
    assert storage.ledger.pending_ids(REFRESH, "corporations") == [2, 3]
    progress = storage.ledger.progress(REFRESH, "corporations")
    assert (progress.total, progress.pending, progress.finished) == (3, 2, 1)


def test_withdrawn_rows_say_why_and_a_retried_step_takes_them_back(storage: Storage) -> None:
    storage.ledger.add_pending(REFRESH, "corporations", [1, 2, 3])
    storage.apply([done(CORPORATIONS, 1, corp(1))])
    assert storage.ledger.withdraw(REFRESH, "corporations", "the step timed out") == 2
    assert storage.ledger.state(REFRESH, "corporations", 2) == (LedgerStatus.WITHDRAWN, 0)
    assert storage.ledger.failures(REFRESH, "corporations") == [
        (2, "the step timed out"),
        (3, "the step timed out"),
    ]
    storage.ledger.spend(REFRESH, "corporations", 2, 4)
    storage.ledger.add_pending(REFRESH, "corporations", [1, 2, 3])
    assert storage.ledger.pending_ids(REFRESH, "corporations") == [2, 3]
    assert storage.ledger.state(REFRESH, "corporations", 2) == (LedgerStatus.PENDING, 4), (
        "spent requests stay"
    )
    storage.apply([done(CORPORATIONS, 2, corp(2))])
    assert storage.ledger.state(REFRESH, "corporations", 2) == (LedgerStatus.DONE, 5), "requests add up"


def test_a_step_lease_goes_to_one_refresh_until_its_heartbeat_lapses(storage: Storage) -> None:
    lease, dead = storage.leases.acquire("corporations", "night-1", "run 1", ttl=60)
    assert (lease.refresh_id, dead) == ("night-1", None)
    busy, _ = storage.leases.acquire("corporations", "manual-1", "run 2", ttl=60)
    assert busy.refresh_id == "night-1" and busy.holder == "run 1", "the live holder keeps it"
    again, _ = storage.leases.acquire("corporations", "night-1", "run 1 retried", ttl=60)
    assert again.refresh_id == "night-1" and again.acquired_at == lease.acquired_at, (
        "a retried step re-enters"
    )
    with storage.engine.begin() as conn:
        conn.execute(
            t.step_leases.update().values(heartbeat_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
        )
    taken, dead = storage.leases.acquire("corporations", "manual-1", "run 2", ttl=60)
    assert taken.refresh_id == "manual-1" and dead is not None and dead.refresh_id == "night-1"
    assert not storage.leases.heartbeat("corporations", "night-1"), "the old holder learns it lost the step"
    assert storage.leases.heartbeat("corporations", "manual-1")
    storage.leases.release("corporations", "night-1")  # not its lease any more: nothing happens
    assert storage.leases.current()["corporations"].refresh_id == "manual-1"
    storage.leases.release("corporations", "manual-1")
    assert storage.leases.current() == {}


def test_a_process_sees_the_ip_wide_esi_pauses_of_the_others_on_its_host(storage: Storage) -> None:
    here = socket.gethostname()
    storage.pauses.reporter("worker 1")("outage", 30.0)
    storage.pauses.reporter("worker 2")("rate_limited", 30.0)  # one route group: not shared
    storage.pauses.record("worker 9 on another-host", "outage", 60.0)
    assert storage.pauses.peers("worker 1")() is None, "its own pause and other hosts' are not peers'"
    reason, seconds = storage.pauses.peers("worker 3")() or ("", 0.0)
    assert reason == "outage" and 25 < seconds <= 30
    storage.pauses.reporter("worker 1")("outage", 0.0)  # the circuit closed
    assert storage.pauses.peers("worker 3")() is None
    assert [source for source, *_ in storage.pauses.active()] == [
        "worker 9 on another-host",
        f"worker 2 on {here}",
    ]


def test_fleet_bookings_from_many_threads_never_overlap(storage: Storage) -> None:
    """8 processes' threads booking 2 slots 10 ms apart, 25 times each, all at once: 400 slots,
    back to back on one timeline, none shared."""
    starts: list[float] = []

    def book() -> None:
        for _ in range(25):
            starts.append(storage.fleet.book("https://esi.test", 2, 0.01, 1000.0))

    threads = [threading.Thread(target=book) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(starts) == pytest.approx([1000.0 + 0.02 * i for i in range(200)])
    assert storage.fleet.book("https://esi.test", 1, 0.01, 2000.0) == 2000.0, "an idle timeline starts now"
    assert storage.fleet.book("https://other-esi.test", 1, 0.01, 1000.0) == 1000.0, "one timeline per ESI"


def test_fleet_members_are_the_processes_that_sent_lately(storage: Storage) -> None:
    fleet = storage.fleet
    fleet.heartbeat("https://esi.test", "worker 1", 100.0, 3.0)
    fleet.heartbeat("https://esi.test", "worker 2", 102.0, 3.0)
    fleet.heartbeat("https://other-esi.test", "worker 9", 102.0, 3.0)
    assert fleet.heartbeat("https://esi.test", "worker 3", 103.5, 3.0) == 2, "worker 1 went quiet"
    fleet.leave("worker 2")
    assert fleet.members("https://esi.test", 103.5, 3.0) == 1


def test_retention_deletes_old_ledger_rows_stale_cache_entries_and_rows_of_processes_gone(
    storage: Storage,
) -> None:
    now = dt.datetime.now(dt.UTC)
    storage.ledger.add_pending("night-1", "corporations", [1, 2, 3])
    storage.ledger.add_pending("night-40", "corporations", [1, 2])
    storage.pauses.record("worker 1 on gone-host", "outage", 0.0)
    storage.fleet.heartbeat(
        "https://esi.test", "worker 1 on gone-host", (now - dt.timedelta(days=2)).timestamp(), 3
    )
    storage.fleet.heartbeat("https://esi.test", "worker 2 on here", now.timestamp(), 3)
    with storage.engine.begin() as conn:
        conn.execute(
            sa.update(t.refresh_ledger)
            .where(t.refresh_ledger.c.refresh_id == "night-40")
            .values(created_at=now - dt.timedelta(days=40))
        )
        conn.execute(sa.update(t.esi_pauses).values(updated_at=now - dt.timedelta(days=2)))
        for url, age in (("https://esi.test/old", 31), ("https://esi.test/recent", 29)):
            conn.execute(
                sa.insert(t.esi_cache).values(
                    url=url, expires_at=now, body=b"{}", updated_at=now - dt.timedelta(days=age)
                )
            )
    pruned = storage.retention.prune(ledger_days=30, cache_days=30)
    assert pruned.as_dict() == {"ledger_rows": 2, "refreshes": 1, "cache_entries": 1, "process_rows": 2}
    assert storage.ledger.progress("night-1", "corporations").pending == 3
    assert storage.ledger.progress("night-40", "corporations").pending == 0
    assert rows(storage, sa.select(t.esi_cache.c.url)) == [("https://esi.test/recent",)]
    assert rows(storage, sa.select(t.esi_fleet.c.member)) == [("worker 2 on here",)]


def test_snapshots_replace_the_days_rows(storage: Storage) -> None:
    alliance = make_alliance(99000001)
    storage.apply(
        [
            done(ALLIANCES, 99000001, alliance),
            done(ALLIANCE_CORPORATIONS, 99000001, members(99000001, 98000001, 98000002)),
            done(CORPORATIONS, 98000001, corp(98000001, member_count=5)),
            done(CORPORATIONS, 98000002, corp(98000002, member_count=7)),
        ]
    )
    day = dt.date(2026, 11, 29)
    assert storage.snapshots.write_alliance_snapshot(day) == 1
    assert storage.snapshots.write_alliance_snapshot(day) == 1
    assert storage.snapshots.write_corporation_snapshot(day) == 2
    assert storage.snapshots.write_corporation_snapshot(day) == 2
    s = t.alliance_snapshots
    assert [(r.member_count, r.corporation_count) for r in rows(storage, sa.select(s))] == [(12, 2)]
    a = rows(storage, sa.select(t.alliances))[0]
    assert (a.member_count, a.corporation_count) == (12, 2)
