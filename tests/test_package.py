"""`fivetran package` on a copy of the project cluttered the way a developer's folder gets: the zip
holds the connector and its requirements, and no configuration, key, local output or cache."""

import secrets
import zipfile

import pytest
from sdk_cli import copy_project, run_cli

# Files that must never ship; the test writes a random secret into each (random, so that this file,
# which ships with the tests, cannot contain it).
_CLUTTER = (
    "configuration.json",
    "prod-configuration.json",
    "id_ed25519",
    "bastion.pem",
    "deploy.key",
    ".env",
    "files/state.json",
    "files/warehouse.db",
    "crash-reports/crash_20260101-000000.log",
    "__pycache__/connector.cpython-311.pyc",
    "tests/__pycache__/conftest.cpython-311-pytest-9.2.0.pyc",
    ".pytest_cache/v/cache/lastfailed",
    ".ruff_cache/content",
    ".venv/lib/python3.11/site-packages/requests/__init__.py",
    ".venv/bin/python",
    "venv/lib/python3.11/site-packages/paramiko/__init__.py",
    "sandbox/keys/id_ed25519",
)
_EXCLUDED_FOLDERS = (
    "files/",
    "crash-reports/",
    "__pycache__/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".venv/",
    "venv/",
    "sandbox/",
)


@pytest.mark.e2e
def test_package_holds_connector_and_requirements_but_no_secrets_or_clutter(tmp_path):
    project = copy_project(tmp_path / "project", with_tests=True)
    assert (project / ".gitignore").exists()  # `fivetran package` honours it
    secret = secrets.token_hex(16)
    for name in _CLUTTER:
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n")
    home = tmp_path / "home"
    home.mkdir()

    result = run_cli(project, ["package", "--non-interactive"], home, timeout=120)

    assert result.returncode == 0, result.stdout
    archives = list((project / "files").glob("*.zip"))
    assert len(archives) == 1, result.stdout
    with zipfile.ZipFile(archives[0]) as archive:
        names = set(archive.namelist())
        contents = b"".join(archive.read(name) for name in names)
    assert {"connector.py", "requirements.txt"} <= names
    assert "configuration_form.pb" in names  # the setup form and its tests ship with the code
    assert "tests/test_package.py" in names  # tests may ship; they hold no secrets
    leaked = sorted(
        name
        for name in names
        if name in _CLUTTER
        or name.startswith(_EXCLUDED_FOLDERS)
        or "__pycache__/" in name
        or name.endswith(".pyc")
    )
    assert not leaked
    assert secret.encode() not in contents
