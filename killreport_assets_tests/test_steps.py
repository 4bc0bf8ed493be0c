"""Waiting on the ledger: completion, step timeout, stall detection, transport errors, progress lines."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from killreport_assets.esi import EsiClient, EsiConfig, EsiGovernor
from killreport_assets.jobs import Job, LedgerStatus, Outcome
from killreport_assets.registry import ALLIANCES, CORPORATIONS
from killreport_assets.simulator import SimulatorConfig, SimulatorServer
from killreport_assets.steps import StepTimeout, WaitPolicy, describe, run_step
from killreport_assets.storage import Storage
from killreport_assets.transport.inline import InlineTransport

LOG = logging.getLogger("test")


class LedgerTransport:
    """Finishes the jobs it is given (or only some) straight in the ledger, from another thread."""

    def __init__(self, storage: Storage, finish: int | None = None, error: Exception | None = None) -> None:
        self.storage = storage
        self.finish = finish
        self.error = error

    def submit(self, jobs: Sequence[Job]) -> None:
        chosen = list(jobs)[: self.finish] if self.finish is not None else list(jobs)
        outcomes = [Outcome(job, LedgerStatus.GONE, None, 404) for job in chosen]
        worker = threading.Thread(target=self.storage.apply, args=(outcomes,))
        worker.start()
        worker.join()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def storage(tmp_path: Path):
    storage = Storage.open(f"sqlite:///{tmp_path / 'steps.db'}")
    yield storage
    storage.dispose()


def policy(**changes: float) -> WaitPolicy:
    values = {"timeout": 30.0, "stall_timeout": 30.0, "progress_interval": 0.0, "poll_interval": 0.01}
    values.update(changes)
    return WaitPolicy(**values)


def test_a_step_finishes_when_the_ledger_has_no_pending_entity(storage: Storage, caplog) -> None:
    caplog.set_level(logging.INFO)
    outcome = run_step(storage, LedgerTransport(storage), "r1", CORPORATIONS, [1, 2, 3], policy(), LOG)
    assert (outcome.progress.total, outcome.progress.pending) == (3, 0)
    assert any("3/3 (100.0%)" in record.getMessage() for record in caplog.records)


def test_a_retried_step_submits_only_what_is_still_pending(storage: Storage) -> None:
    run_step(storage, LedgerTransport(storage), "r1", CORPORATIONS, [1, 2], policy(), LOG)
    submitted: list[Job] = []

    class Recording(LedgerTransport):
        def submit(self, jobs: Sequence[Job]) -> None:
            submitted.extend(jobs)
            super().submit(jobs)

    run_step(storage, Recording(storage), "r1", CORPORATIONS, [1, 2, 3], policy(), LOG)
    assert [j.entity_id for j in submitted] == [3]


def test_timeout_fails_with_how_far_it_got_and_what_to_do(storage: Storage) -> None:
    with pytest.raises(StepTimeout, match=r"timed out .* with 2 of 3 entities still pending.*re-run"):
        run_step(
            storage,
            LedgerTransport(storage, finish=1),
            "r1",
            CORPORATIONS,
            [1, 2, 3],
            policy(timeout=0.2),
            LOG,
        )


def test_no_progress_for_the_stall_time_fails(storage: Storage) -> None:
    with pytest.raises(StepTimeout, match="made no progress for"):
        run_step(
            storage,
            LedgerTransport(storage, finish=0),
            "r1",
            CORPORATIONS,
            [1, 2],
            policy(stall_timeout=0.2),
            LOG,
        )


def test_a_transport_error_stops_the_wait(storage: Storage) -> None:
    failing = LedgerTransport(storage, finish=0, error=RuntimeError("no consumer on killreport.corporations"))
    with pytest.raises(RuntimeError, match="no consumer"):
        run_step(storage, failing, "r1", CORPORATIONS, [1], policy(), LOG)


def test_progress_line_has_done_total_rate_and_eta(storage: Storage) -> None:
    storage.ledger.add_pending("r1", "corporations", range(1, 101))
    storage.apply([Outcome(Job("r1", CORPORATIONS, i), LedgerStatus.GONE, None, 404) for i in range(1, 26)])
    line = describe(storage.ledger.progress("r1", "corporations"), elapsed=5.0)
    assert line.startswith("25/100 (25.0%) at 5.0/s, ETA 15 s")


@pytest.mark.timeout(120)
def test_an_embedded_step_ends_when_its_last_job_is_written_not_at_its_next_poll(storage: Storage) -> None:
    """The embedded transport knows when every job it was given is written and ends the step's wait
    then: with a 60 s poll interval the step still ends within seconds."""
    with SimulatorServer(SimulatorConfig(seed=3, alliances=30, corporations=100)) as esi:
        config = EsiConfig(base_url=esi.url, contact="test", max_requests_per_second=1000)
        with (
            EsiClient(config, storage.cache, governor=EsiGovernor(config)) as client,
            InlineTransport(storage, client, workers=4) as transport,
        ):
            ids = client.alliance_ids().value or []
            outcome = run_step(
                storage,
                transport,
                "r1",
                ALLIANCES,
                ids,
                policy(poll_interval=60.0, progress_interval=3600.0),
                LOG,
            )
    assert (outcome.progress.total, outcome.progress.pending) == (30, 0)
    assert outcome.seconds < 30
