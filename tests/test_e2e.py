"""End-to-end: the real `fivetran debug` on a temporary copy of the project, through real OpenSSH
to the real playground, writing a real DuckDB warehouse."""

from datetime import UTC, datetime

import pytest
from sdk_cli import copy_project, primary_key_columns, run_debug, saved_state, warehouse_rows

pytestmark = pytest.mark.e2e


def instant(value) -> datetime:
    """A playground timestamp string or a DuckDB timestamp, as an aware UTC datetime."""
    if isinstance(value, str):
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_fivetran_debug_writes_the_playground_rows_to_duckdb(
    tmp_path, fresh_home, make_config, playground, sshd
):
    project = copy_project(tmp_path / "project")
    result = run_debug(project, make_config(), fresh_home)
    assert result.returncode == 0, result.stdout[-3000:]
    expected = {r["id"]: r for r in playground.get("/auth/api_key")["data"]}
    rows = {r["id"]: r for r in warehouse_rows(project)}
    assert set(rows) == set(expected) and len(rows) == 20
    for record_id, record in expected.items():
        row = rows[record_id]
        for field in ("name", "email", "address", "company", "job"):
            assert row[field] == record[field]
        assert instant(row["created_at"]) == instant(record["createdAt"])
        assert instant(row["updated_at"]) == instant(record["updatedAt"])
    assert primary_key_columns(project) == ["id"]
    state = saved_state(project)
    assert state["last_sync"]["records"] == 20 and "next_page" not in state
    assert "SSH tunnel open" in result.stdout


def test_fivetran_debug_syncs_every_page_and_a_rerun_keeps_one_row_per_id(
    tmp_path, fresh_home, make_config, playground
):
    project = copy_project(tmp_path / "project")
    configuration = make_config(api_path="/pagination/next_page_url?per_page=50")
    for _ in range(2):
        result = run_debug(project, configuration, fresh_home)
        assert result.returncode == 0, result.stdout[-3000:]
    rows = warehouse_rows(project)
    assert len(rows) == 200 and len({r["id"] for r in rows}) == 200
    assert saved_state(project)["last_sync"]["records"] == 200


def test_fivetran_debug_failure_names_the_setting_and_keeps_no_tunnel(
    tmp_path, fresh_home, make_config
):
    project = copy_project(tmp_path / "project")
    result = run_debug(project, make_config(ssh_user="nobody-here"), fresh_home)
    assert result.returncode != 0
    assert "Authentication refused" in result.stdout and "ssh_user" in result.stdout
    assert "Traceback (most recent call last)" not in result.stdout.split("SetupError")[0][-200:]
