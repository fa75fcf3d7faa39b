"""Incremental syncs (`api_cursor_param`) against the real playground through real OpenSSH.

The cursor is the newest `updatedAt` of the last finished sync, sent as an inclusive bound: the
second sync gets exactly what the API returns for that bound (the boundary records), and an
interrupted sync resumes at its page without moving the cursor until it finishes.
"""

from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import Recorder

import connector

_NEXT_PAGE_URL = "/pagination/next_page_url?per_page=50"
_TIMESTAMP = "/incremental/timestamp"
# conftest's `playground` is per module: this module's sorting endpoints touch no other module.


class _Crash(Exception):
    """Stands in for the process dying right after a checkpoint."""


class _CrashAfterCheckpoints(Recorder):
    """A Recorder that lets `count` checkpoints through, then dies at the next upsert."""

    def __init__(self, count: int):
        super().__init__()
        self.count = count

    def upsert(self, table, data):
        if len(self.checkpoints) >= self.count:
            raise _Crash
        super().upsert(table, data)


def _sync(monkeypatch, configuration: dict, state: dict, recorder=None) -> Recorder:
    """One in-process update() with its operations recorded."""
    recorder = recorder or Recorder()
    monkeypatch.setattr(connector, "op", recorder)
    connector.update(configuration=configuration, state=state)
    return recorder


def _all_pages(playground, path: str) -> list:
    """Every record of `path` and the pages after it, fetched directly (no tunnel)."""
    records = []
    for _ in range(100):
        page = playground.get(path)
        records += page["data"]
        url = page.get("next_page_url")
        if not url:
            return records
        parts = urlsplit(url)
        path = f"{parts.path}?{parts.query}"
    raise AssertionError("the playground kept sending pages")


def _ids(records) -> set:
    return {r["id"] for r in records}


def _upserted(recorder: Recorder) -> list:
    return [data for _, data in recorder.upserts]


# --- unit ---


def _settings(api_path: str, cursor_param: str) -> connector.Settings:
    return connector.parse_configuration(
        {
            "ssh_host": "127.0.0.1",
            "ssh_user": "u",
            "ssh_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
            "-----END OPENSSH PRIVATE KEY-----",
            "api_key": "k",
            "remote_port": "8000",
            "api_path": api_path,
            "api_cursor_param": cursor_param,
        }
    )


@pytest.mark.unit
def test_first_page_path_is_api_path_without_a_cursor_or_a_cursor_param():
    assert connector.first_page_path(_settings("/a?x=1", "since"), None) == "/a?x=1"
    assert connector.first_page_path(_settings("/a?x=1", ""), "2026-01-01T00:00:00Z") == "/a?x=1"


@pytest.mark.unit
def test_first_page_path_appends_the_cursor_with_the_right_separator_and_encoding():
    cursor = "2026-01-01T00:00:00Z"
    assert (
        connector.first_page_path(_settings("/incremental/timestamp", "since"), cursor)
        == "/incremental/timestamp?since=2026-01-01T00:00:00Z"
    )
    assert (
        connector.first_page_path(_settings(_NEXT_PAGE_URL, "updated_since"), cursor)
        == f"{_NEXT_PAGE_URL}&updated_since=2026-01-01T00:00:00Z"
    )
    # An offset's '+' would read as a space in a query string: it must be escaped.
    assert connector.first_page_path(_settings("/a", "since"), "2026-01-01T00:00:00+02:00") == (
        "/a?since=2026-01-01T00:00:00%2B02:00"
    )


@pytest.mark.unit
def test_newest_compares_instants_not_strings_and_keeps_the_original_text():
    items = [
        {"updatedAt": "2026-01-01T10:00:00+02:00"},  # 08:00 UTC: sorts last as text
        {"updatedAt": "2026-01-01T09:00:00Z"},
        {"updatedAt": "not a time"},
        {"updatedAt": None},
        {},
    ]
    assert connector._newest(None, items) == "2026-01-01T09:00:00Z"
    assert connector._newest("2026-01-01T09:30:00Z", items) == "2026-01-01T09:30:00Z"
    assert connector._newest(None, [{}]) is None


# --- integration: real OpenSSH, real playground ---


@pytest.mark.integration
@pytest.mark.openssh
@pytest.mark.parametrize(
    ("api_path", "cursor_param"),
    [(_NEXT_PAGE_URL, "updated_since"), (_TIMESTAMP, "since")],
    ids=["next_page_url-updated_since", "incremental_timestamp-since"],
)
def test_second_sync_fetches_only_the_records_at_the_newest_updated_at(
    monkeypatch, make_config, playground, no_leaks, api_path, cursor_param
):
    configuration = make_config(api_path=api_path, api_cursor_param=cursor_param)
    everything = playground.get(_TIMESTAMP)["data"]

    first = _sync(monkeypatch, configuration, {})
    state = first.checkpoints[-1]
    assert len(first.upserts) == 200
    assert _ids(_upserted(first)) == _ids(everything)
    assert state["cursor"] == max(r["updatedAt"] for r in everything)
    assert state["last_sync"]["records"] == 200
    assert "next_page" not in state

    second = _sync(monkeypatch, configuration, state)
    separator = "&" if "?" in api_path else "?"
    expected = _all_pages(playground, f"{api_path}{separator}{cursor_param}={state['cursor']}")
    boundary = [r for r in everything if r["updatedAt"] == state["cursor"]]
    assert 1 <= len(second.upserts) < 200
    assert _ids(_upserted(second)) == _ids(expected) == _ids(boundary)
    assert second.checkpoints[-1]["cursor"] == state["cursor"]
    assert second.checkpoints[-1]["last_sync"]["records"] == len(boundary)


@pytest.mark.integration
@pytest.mark.openssh
def test_interrupted_incremental_sync_resumes_at_its_page_and_keeps_the_old_cursor(
    monkeypatch, make_config, playground, no_leaks
):
    configuration = make_config(api_path=_NEXT_PAGE_URL, api_cursor_param="updated_since")
    everything = sorted(playground.get(_TIMESTAMP)["data"], key=lambda r: r["updatedAt"])
    # A cursor that leaves about 140 records: three pages of 50, so there is a page to resume at.
    old_cursor = everything[60]["updatedAt"]
    query = f"{_NEXT_PAGE_URL}&updated_since={old_cursor}"
    expected = _all_pages(playground, query)
    assert 100 < len(expected) <= 150

    crashed = _CrashAfterCheckpoints(count=1)
    with pytest.raises(_Crash):
        _sync(monkeypatch, configuration, {"cursor": old_cursor}, crashed)
    state = crashed.checkpoints[-1]
    next_page = parse_qs(urlsplit(state["next_page"]).query)
    assert next_page["page"] == ["2"]
    assert next_page["updated_since"] == [old_cursor]
    assert state["cursor"] == old_cursor
    assert _ids(_upserted(crashed)) == _ids(expected[:50])

    resumed = _sync(monkeypatch, configuration, state)
    assert _ids(_upserted(resumed)) == _ids(expected[50:])
    assert all(c["cursor"] == old_cursor for c in resumed.checkpoints[:-1])
    final = resumed.checkpoints[-1]
    assert final["cursor"] == max(r["updatedAt"] for r in expected)
    assert final["last_sync"]["records"] == len(expected)
    assert not {"next_page", "sync_newest", "sync_records"} & set(final)
