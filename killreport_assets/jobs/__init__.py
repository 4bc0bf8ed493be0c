"""Jobs: the message format, outcomes and the handlers that run them."""

from killreport_assets.jobs.model import Job, JobDecodeError, JobKind, LedgerStatus, Outcome

__all__ = ["Job", "JobDecodeError", "JobKind", "LedgerStatus", "Outcome"]
