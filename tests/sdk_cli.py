"""Run the real `fivetran` CLI (debug, configuration --test, package) on a temporary copy of the
project, fast and offline, and read what it wrote.

Offline, every `fivetran debug` would spend ~7 s on a version check and ~14 s in `pipreqs` looking
`requests` up on a package index. Each run therefore gets its own HOME with the version check
recorded as done, DO_NOT_TRACK=1, and a `pipreqs` stub earlier on PATH that runs the real one with
`--use-local`. The developer's own configuration.json and files/ are never touched.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

from servers import PROJECT_DIR

# What a copy of the project holds: what a user deploys, plus tests (packaging keeps them).
_PROJECT_FILES = ("connector.py", "requirements.txt", "configuration.json.example", ".gitignore")
_CLI_TIMEOUT = 300  # seconds: a hang guard for one CLI run, not a performance claim


def fivetran_executable() -> str:
    """The `fivetran` command installed beside this Python."""
    candidate = Path(sys.executable).parent / "fivetran"
    return str(candidate) if candidate.exists() else (shutil.which("fivetran") or "fivetran")


def copy_project(destination: Path, with_tests: bool = False) -> Path:
    """A copy of the project's deployable files in `destination` (created)."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for name in _PROJECT_FILES:
        if (PROJECT_DIR / name).exists():
            shutil.copy2(PROJECT_DIR / name, destination / name)
    if with_tests:
        shutil.copytree(
            PROJECT_DIR / "tests",
            destination / "tests",
            ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"),
        )
    return destination


def cli_environment(home: Path, extra: dict = None) -> dict:
    """Environment for a fast offline CLI run: own HOME, version check done, pipreqs stubbed."""
    home = Path(home)
    sdk_dir = home / ".fivetran" / "connector_sdk"
    sdk_dir.mkdir(parents=True, exist_ok=True)
    (sdk_dir / "_last_version_check").write_text(str(int(time.time()) + 10 * 365 * 86400))
    bin_dir = home / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "pipreqs"
    real = Path(sys.executable).parent / "pipreqs"
    stub.write_text(f'#!/bin/sh\nexec "{real}" --use-local "$@"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSH_AUTH_SOCK", "SSH_AGENT"))}
    env.update(
        HOME=str(home),
        DO_NOT_TRACK="1",
        PATH=os.pathsep.join(
            [str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")]
        ),
        PYTHONUNBUFFERED="1",
        TZ="UTC",
    )
    env.update(extra or {})
    return env


def run_cli(project: Path, args: list, home: Path, timeout: float = _CLI_TIMEOUT, env=None):
    """Run `fivetran <args>` in `project`; the CompletedProcess has stdout and stderr merged."""
    return subprocess.run(
        [fivetran_executable(), *args],
        cwd=project,
        env=env or cli_environment(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
    )


def run_connector_script(project: Path, home: Path, timeout: float = _CLI_TIMEOUT):
    """`python connector.py` in `project` (it reads the project's configuration.json)."""
    return subprocess.run(
        [sys.executable, "connector.py"],
        cwd=project,
        env=cli_environment(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
    )


def run_debug(project: Path, configuration: dict, home: Path, extra_args=(), timeout=_CLI_TIMEOUT):
    """`fivetran debug --configuration <file>` with `configuration` written beside the project
    (not as its configuration.json)."""
    config_path = Path(project).parent / f"{Path(project).name}-configuration.json"
    config_path.write_text(json.dumps(configuration))
    return run_cli(
        project, ["debug", "--configuration", str(config_path), *extra_args], home, timeout
    )


def start_debug(project: Path, configuration: dict, home: Path, extra_args=()):
    """Start `fivetran debug` without waiting (to kill it mid-sync); stdout to a file."""
    config_path = Path(project).parent / f"{Path(project).name}-configuration.json"
    config_path.write_text(json.dumps(configuration))
    output = open(Path(project).parent / f"{Path(project).name}-debug.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [fivetran_executable(), "debug", "--configuration", str(config_path), *extra_args],
        cwd=project,
        env=cli_environment(home),
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    output.close()
    return process


def warehouse_rows(project: Path, table: str = "user") -> list:
    """Every row of `table` in the project's files/warehouse.db, as dicts."""
    import duckdb

    connection = duckdb.connect(str(Path(project) / "files" / "warehouse.db"), read_only=True)
    try:
        cursor = connection.execute(f'SELECT * FROM tester."{table}"')
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]
    finally:
        connection.close()


def primary_key_columns(project: Path, table: str = "user") -> list:
    """The primary key columns DuckDB has for `table`."""
    import duckdb

    connection = duckdb.connect(str(Path(project) / "files" / "warehouse.db"), read_only=True)
    try:
        rows = connection.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE schema_name = 'tester' AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [table],
        ).fetchall()
    finally:
        connection.close()
    return list(rows[0][0]) if rows else []


def saved_state(project: Path) -> dict:
    """The state the last run checkpointed (files/state.json)."""
    path = Path(project) / "files" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def everything_written(project: Path, output: str = "") -> str:
    """All text the connector and the SDK wrote: output, files/ (state, logs, the DuckDB file as
    bytes) and crash-reports/, to search for secrets."""
    chunks = [output]
    for folder in ("files", "crash-reports"):
        for path in sorted((Path(project) / folder).rglob("*")):
            if path.is_file():
                chunks.append(path.read_bytes().decode("latin-1"))
    return "\n".join(chunks)
