"""Everyday use: `python connector.py` (as Fivetran's examples run it), and INFO progress at a
bounded rate on long syncs with the per-page detail at DEBUG."""

import json
import re
import subprocess
import time

import pytest
from fake_api import FakeApi
from sdk_cli import copy_project, run_connector_script, warehouse_rows

import connector

_RUN_TIMEOUT = 120  # a hang guard for one run, not a performance claim


def run_connector_py(project, home) -> subprocess.CompletedProcess:
    """`python connector.py` in `project`, offline, with stdout and stderr merged."""
    return run_connector_script(project, home, _RUN_TIMEOUT)


@pytest.fixture
def project_and_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return copy_project(tmp_path / "project"), home


@pytest.mark.e2e
def test_python_connector_py_without_configuration_json_exits_with_a_clear_message(
    project_and_home,
):
    project, home = project_and_home
    result = run_connector_py(project, home)
    assert result.returncode != 0
    assert f"No configuration.json at {project / 'configuration.json'}" in result.stdout
    assert "configuration.json.example" in result.stdout
    assert "Traceback" not in result.stdout
    assert not (project / "files").exists()


@pytest.mark.e2e
@pytest.mark.openssh
def test_python_connector_py_runs_a_debug_sync_from_configuration_json(
    project_and_home, make_config, playground
):
    project, home = project_and_home
    (project / "configuration.json").write_text(json.dumps(make_config()))
    result = run_connector_py(project, home)
    assert result.returncode == 0, result.stdout[-3000:]
    expected = {r["id"] for r in playground.get("/auth/api_key")["data"]}
    assert {row["id"] for row in warehouse_rows(project)} == expected


class LogRecorder:
    """Stands in for the SDK's Logging: keeps (level, monotonic time, message) of every line."""

    LOG_LEVEL = "DEBUG"  # the log bridge only forwards while a level is set

    def __init__(self):
        self.lines = []

    def _record(self, level: str, message: str) -> None:
        self.lines.append((level, time.monotonic(), message))

    def debug(self, message):
        self._record("DEBUG", message)

    def info(self, message):
        self._record("INFO", message)

    def warning(self, message):
        self._record("WARNING", message)

    def severe(self, message):
        self._record("SEVERE", message)

    def messages(self, level: str, pattern: str) -> list:
        return [(at, m) for lvl, at, m in self.lines if lvl == level and re.search(pattern, m)]


@pytest.fixture
def many_pages():
    """A fake API of 200 one-record pages on 127.0.0.1."""
    api = FakeApi(total=200, per_page=1)
    api.start()
    yield api
    api.stop()


@pytest.mark.integration
@pytest.mark.openssh
def test_progress_at_info_is_rate_limited_and_page_detail_is_debug(
    no_leaks, make_config, many_pages, recorder, monkeypatch
):
    # no_leaks first, so it checks after FakeApi's (unnamed) server thread has stopped.
    interval = 0.05
    monkeypatch.setattr(connector, "_PROGRESS_INTERVAL_SECONDS", interval)
    logs = LogRecorder()
    monkeypatch.setattr(connector, "log", logs)
    configuration = make_config(
        api_key=many_pages.api_key,
        remote_port=str(many_pages.port),
        api_path="/records?page=1&per_page=1",
    )
    started = time.monotonic()
    connector.update(configuration=configuration, state={})
    elapsed = time.monotonic() - started

    assert len(recorder.upserts) == 200
    assert len(logs.messages("DEBUG", r"^page \d+: checkpointed")) == 200
    progress = logs.messages("INFO", r"^Progress: \d+ pages, \d+ records, \d+ s$")
    # 200 round trips through SSH take well over one interval, so there is some progress...
    assert progress
    # ...but never more than one line per interval, however fast or slow the pages came.
    assert len(progress) <= elapsed / interval + 1
    gaps = [later[0] - earlier[0] for earlier, later in zip(progress, progress[1:], strict=False)]
    # (a line is logged a few microseconds after the instant the interval is measured from)
    assert all(gap >= interval * 0.9 for gap in gaps)
    assert len(progress) < 200
    counts = [int(re.search(r"(\d+) records", m).group(1)) for _, m in progress]
    assert counts == sorted(counts) and counts[-1] < 200
    assert len(logs.messages("INFO", r"^Sync finished: 200 records in 200 pages")) == 1
