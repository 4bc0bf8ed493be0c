"""Logging of the `killreport` commands: JSON lines, a size-rotated file, quiet HTTP libraries, and
bad settings stopping the program with the variable named."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from killreport_assets.logs import QUIET_LOGGERS, configure_logging
from killreport_assets.settings import LogSettings, SettingsError
from killreport_assets_tests.http_receiver import HttpReceiver

log = logging.getLogger("killreport_assets.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for name, previous in quiet.items():
        logging.getLogger(name).setLevel(previous)


def test_json_lines_on_stderr_and_in_the_file(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "logs" / "killreport.log"  # the folder is created
    configure_logging(LogSettings(format="json", file=path))
    log.info("refreshed %d alliances", 3, extra={"queue": "killreport.alliance"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("job failed")

    lines = path.read_text().splitlines()
    assert lines == capfd.readouterr().err.splitlines(), "stderr and the file carry the same lines"
    info, error = (json.loads(line) for line in lines)
    assert info.keys() == {"time", "level", "logger", "message", "queue"}
    assert (info["level"], info["logger"], info["message"], info["queue"]) == (
        "INFO",
        "killreport_assets.test",
        "refreshed 3 alliances",
        "killreport.alliance",
    )
    assert info["time"].endswith("+00:00")
    assert error["level"] == "ERROR" and error["message"] == "job failed"
    assert error["exception"].startswith("Traceback") and "ValueError: boom" in error["exception"]


def test_the_file_rotates_by_size_and_keeps_the_configured_count(tmp_path: Path) -> None:
    path = tmp_path / "killreport.log"
    configure_logging(LogSettings(file=path, max_bytes=2_000, backups=3))
    for n in range(400):
        log.info("line %04d %s", n, "x" * 40)

    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == [f"killreport.log{suffix}" for suffix in ("", ".1", ".2", ".3")]
    assert all(f.stat().st_size <= 2_000 for f in files)
    assert path.read_text().splitlines()[-1].endswith(f"line 0399 {'x' * 40}"), (
        "the newest line is in the file"
    )
    assert "line 0000 " not in "".join(f.read_text() for f in files), "the oldest lines were rotated away"


def test_text_lines_levels_and_quiet_http_requests(tmp_path: Path) -> None:
    path = tmp_path / "killreport.log"
    configure_logging(LogSettings(level="WARNING", file=path))
    log.info("not shown at WARNING")
    log.warning("shown")
    configure_logging(LogSettings(file=path), verbose=True)
    log.debug("shown with -v")
    with HttpReceiver() as server:
        httpx.get(server.url)  # httpx logs every request at INFO

    text = path.read_text()
    assert "not shown" not in text and "HTTP Request" not in text
    warning, debug = text.splitlines()
    assert warning.endswith("Z WARNING killreport_assets.test: shown")
    assert debug.endswith("Z DEBUG killreport_assets.test: shown with -v")
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING


def test_bad_settings_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(
        SettingsError, match="KILLREPORT_LOG_FORMAT='xml' is invalid: expected one of text, json"
    ):
        LogSettings.from_env({"KILLREPORT_LOG_FORMAT": "xml"})
    with pytest.raises(SettingsError, match="KILLREPORT_LOG_BACKUPS='0' is invalid"):
        LogSettings.from_env({"KILLREPORT_LOG_BACKUPS": "0"})
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SettingsError, match="KILLREPORT_LOG_FILE=.* cannot be written"):
        configure_logging(LogSettings(file=blocker / "killreport.log"))


def test_the_cli_logs_json_lines_to_the_rotating_file(tmp_path: Path) -> None:
    path = tmp_path / "killreport.log"
    env = {
        **os.environ,
        "KILLREPORT_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "KILLREPORT_LOG_FORMAT": "json",
        "KILLREPORT_LOG_FILE": str(path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "killreport_assets.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert any(r["logger"].startswith("alembic") and "upgrade" in r["message"] for r in records), records

    env["KILLREPORT_LOG_FORMAT"] = "xml"
    done = subprocess.run(
        [sys.executable, "-m", "killreport_assets.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "KILLREPORT_LOG_FORMAT='xml' is invalid" in done.stderr
