"""A `fivetran debug` sync killed with SIGKILL at a chosen point, then run again with its state,
ends with exactly the source's rows: none lost, none twice.

The three kill points: while a page's response is held by the API (the connector waits on it),
right after a page's checkpoint (between pages), and after a page's upserts but before its
checkpoint (in the middle of a page). The last two are reached deterministically by a
`sitecustomize` hook in the CLI's process that pauses `Operations.checkpoint` at the chosen page
and writes a marker file; the test waits on that file (or on the API's request log), never on
time.
"""

import contextlib
import json
import os
import signal
import subprocess

import pytest
from conftest import tunnel_config, wait_until
from fake_api import FakeApi, record
from sdk_cli import copy_project, run_debug, saved_state, start_debug, warehouse_rows

pytestmark = pytest.mark.e2e

_TOTAL = 300
_PER_PAGE = 50
_START_DEADLINE = 60  # seconds for the CLI to reach the kill point: a hang guard

# Imported by the CLI's Python at start (PYTHONPATH): pauses the checkpoint whose state names
# page KILL_RERUN_PAGE as the next one, before or after committing it, until the test kills it.
_HOOK = """
import contextlib
import json
import os
import time

if os.environ.get("KILL_RERUN_PAGE"):
    from fivetran_connector_sdk import Operations

    _checkpoint = Operations.checkpoint
    _pause_at = "page=" + os.environ["KILL_RERUN_PAGE"] + "&"

    def _pausing_checkpoint(state):
        pause = _pause_at in (state.get("next_page") or "")
        if pause and os.environ["KILL_RERUN_WHEN"] == "after":
            _checkpoint(state)
        if pause:
            with open(os.environ["KILL_RERUN_MARKER"], "w") as marker:
                marker.write(json.dumps(state))
            for _ in range(1200):  # bounded: 2 minutes, should the test not kill us
                time.sleep(0.1)
            os._exit(3)
        _checkpoint(state)

    Operations.checkpoint = staticmethod(_pausing_checkpoint)
"""


@pytest.fixture
def api():
    server = FakeApi(total=_TOTAL, per_page=_PER_PAGE).start()
    yield server
    server.stop()


@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path / "project")


@pytest.fixture
def configuration(sshd, client_key, api) -> dict:
    return tunnel_config(sshd, client_key, api, api_path=f"/records?per_page={_PER_PAGE}")


@pytest.fixture
def checkpoint_pause(tmp_path, monkeypatch):
    """Arm the hook: the next CLI run pauses at the checkpoint naming `page` as the next page,
    `when` "before" or "after" committing it. Returns the marker file it writes when paused."""

    def arm(page: int, when: str):
        hook_dir = tmp_path / "hook"
        hook_dir.mkdir(exist_ok=True)
        (hook_dir / "sitecustomize.py").write_text(_HOOK)
        marker = tmp_path / "paused.json"
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook_dir), original])))
        monkeypatch.setenv("KILL_RERUN_PAGE", str(page))
        monkeypatch.setenv("KILL_RERUN_WHEN", when)
        monkeypatch.setenv("KILL_RERUN_MARKER", str(marker))
        return marker

    def disarm():
        for name in ("KILL_RERUN_PAGE", "KILL_RERUN_WHEN", "KILL_RERUN_MARKER"):
            monkeypatch.delenv(name, raising=False)
        if original:
            monkeypatch.setenv("PYTHONPATH", original)
        else:
            monkeypatch.delenv("PYTHONPATH", raising=False)

    original = os.environ.get("PYTHONPATH", "")

    arm.disarm = disarm
    return arm


@pytest.fixture
def debug_process():
    """Holds the started `fivetran debug` process; its group is killed after the test anyway."""
    started = []
    yield started
    for process in started:
        _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the CLI and everything it started (it runs in a session of its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _page_requests(api: FakeApi, page: int) -> list:
    return [path for path in list(api.requests) if f"page={page}&" in path]


def _debug_log(project) -> str:
    path = project.parent / f"{project.name}-debug.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _rerun_and_check(project, configuration, home, api, resume_page: int) -> None:
    """Run the sync again with the saved state; it must resume at `resume_page` and end with
    every source id exactly once and no unfinished page in its state."""
    already = len(api.requests)
    result = run_debug(project, configuration, home, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Resuming an unfinished sync" in result.stdout
    assert api.requests[already].startswith(f"/records?page={resume_page}&"), api.requests
    ids = [row["id"] for row in warehouse_rows(project)]
    assert len(ids) == len(set(ids)), "a record was written twice"
    assert set(ids) == {record(i)["id"] for i in range(_TOTAL)}
    state = saved_state(project)
    assert "next_page" not in state
    # The count spans both runs and counts the re-fetched page once.
    assert state["last_sync"]["records"] == _TOTAL


def test_killed_while_a_page_is_held_then_rerun_loses_and_duplicates_nothing(
    project, configuration, fresh_home, api, debug_process
):
    held = api.hold_page(4)
    debug_process.append(start_debug(project, configuration, fresh_home))
    assert wait_until(lambda: _page_requests(api, 4), deadline=_START_DEADLINE), _debug_log(
        project
    )
    # Pages 1-3 are committed; page 4 is on its way when the process dies.
    assert "page=4&" in saved_state(project)["next_page"]
    _kill_group(debug_process[0])
    held.set()
    assert "page=4&" in saved_state(project)["next_page"]
    _rerun_and_check(project, configuration, fresh_home, api, resume_page=4)


def test_killed_between_pages_then_rerun_loses_and_duplicates_nothing(
    project, configuration, fresh_home, api, debug_process, checkpoint_pause
):
    marker = checkpoint_pause(page=4, when="after")
    debug_process.append(start_debug(project, configuration, fresh_home))
    assert wait_until(marker.exists, deadline=_START_DEADLINE), _debug_log(project)
    _kill_group(debug_process[0])
    checkpoint_pause.disarm()
    # Page 3's checkpoint was committed and page 4 never asked for.
    assert "page=4&" in saved_state(project)["next_page"]
    assert not _page_requests(api, 4)
    _rerun_and_check(project, configuration, fresh_home, api, resume_page=4)


def test_killed_after_upserts_before_the_checkpoint_then_rerun_loses_and_duplicates_nothing(
    project, configuration, fresh_home, api, debug_process, checkpoint_pause
):
    marker = checkpoint_pause(page=5, when="before")
    debug_process.append(start_debug(project, configuration, fresh_home))
    assert wait_until(marker.exists, deadline=_START_DEADLINE), _debug_log(project)
    _kill_group(debug_process[0])
    checkpoint_pause.disarm()
    # Page 4 was fetched and upserted, but its checkpoint never happened: the state still
    # points at page 4, whose rows the rerun writes again over the same primary keys.
    assert json.loads(marker.read_text())["next_page"].startswith("/records?page=5&")
    assert len(_page_requests(api, 4)) == 1
    assert "page=4&" in saved_state(project)["next_page"]
    _rerun_and_check(project, configuration, fresh_home, api, resume_page=4)
