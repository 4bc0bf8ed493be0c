"""Jobs: the message format, outcomes and the handler that runs them."""

from killreport_assets.jobs.model import Job, JobDecodeError, Outcome
from killreport_assets.storage import LedgerStatus

__all__ = ["Job", "JobDecodeError", "LedgerStatus", "Outcome"]
