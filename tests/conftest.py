"""Fixtures: keys, a real OpenSSH server, the playground, and configurations that join them.

Every server a fixture starts, it stops, also when the test fails. Keys are generated here.
"""

import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fivetran_connector_sdk import Logging
from servers import Playground, SshServer, have_openssh, make_key

# `log.info` raises TypeError outside a run unless a level is set (see the field notes).
Logging.LOG_LEVEL = Logging.Level.DEBUG


def pytest_configure(config):
    config.addinivalue_line("markers", "unit: fast tests against a mocked tunnel")
    config.addinivalue_line("markers", "integration: real sshd and playground on 127.0.0.1")
    config.addinivalue_line("markers", "e2e: runs of the real `fivetran` CLI")
    config.addinivalue_line("markers", "openssh: needs OpenSSH's own behaviour")


def pytest_collection_modifyitems(config, items):
    """Tests marked `openssh` skip without OpenSSH, unless REQUIRE_OPENSSH=1 makes that fail."""
    from servers import REQUIRE_OPENSSH

    if have_openssh() or REQUIRE_OPENSSH:
        return
    skip = pytest.mark.skip(reason="OpenSSH sshd is not installed (AsyncSSH fallback in use)")
    for item in items:
        if "openssh" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def key_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def client_key(key_folder):
    """(private key text, public key line) of an Ed25519 key the test SSH server authorizes."""
    return make_key(key_folder, "ed25519")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory, client_key):
    """A real OpenSSH server on 127.0.0.1 that authorizes `client_key`, one per test module."""
    server = SshServer(tmp_path_factory.mktemp("sshd"), [client_key[1]])
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def playground():
    """The playground app in its own process (fresh records), one per test module."""
    server = Playground()
    server.start()
    yield server
    server.stop()


def tunnel_config(sshd, client_key, api, **overrides) -> dict:
    """A configuration reaching `api` (anything with `port` and `api_key`) through `sshd` as
    `client_key`, with the host key pinned; keywords override or add keys (None removes one)."""
    configuration = {
        "ssh_host": "127.0.0.1",
        "ssh_port": str(sshd.port),
        "ssh_user": sshd.user,
        "ssh_private_key": client_key[0],
        "ssh_host_key": sshd.host_key_line("ed25519"),
        "api_key": api.api_key,
        "remote_port": str(api.port),
    }
    configuration.update(overrides)
    return {k: v for k, v in configuration.items() if v is not None}


@pytest.fixture
def make_config(sshd, playground, client_key):
    """tunnel_config for `playground` through `sshd`, as a builder taking overrides."""
    return lambda **overrides: tunnel_config(sshd, client_key, playground, **overrides)


@pytest.fixture(scope="module")
def no_forwarding_sshd(tmp_path_factory, client_key):
    """An OpenSSH server that authorizes `client_key` but refuses port forwarding."""
    server = SshServer(
        tmp_path_factory.mktemp("sshd-no-forwarding"), [client_key[1]], allow_tcp_forwarding=False
    )
    server.start()
    yield server
    server.stop()


class Recorder:
    """Stands in for the SDK's Operations: records upserts and checkpoints (deep copies)."""

    def __init__(self):
        self.upserts = []
        self.checkpoints = []

    def upsert(self, table, data):
        self.upserts.append((table, dict(data)))

    def checkpoint(self, state):
        import json

        self.checkpoints.append(json.loads(json.dumps(state)))


@pytest.fixture
def recorder(monkeypatch):
    """Replace connector.op with a Recorder for an in-process update()."""
    import connector

    rec = Recorder()
    monkeypatch.setattr(connector, "op", rec)
    return rec


def wait_until(condition, deadline: float = 10.0, interval: float = 0.05) -> bool:
    """Poll `condition` until it is true or `deadline` seconds pass; returns its last value."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value or time.monotonic() >= end:
            return value
        time.sleep(interval)


def connector_threads() -> list:
    """Threads a tunnel leaves behind if it is not closed: paramiko transports, forward servers."""
    return [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread()
        and ("Transport" in type(t).__name__ or t.name.startswith(("Srv-", "Thread-")))
        and t.is_alive()
    ]


@pytest.fixture
def no_leaks():
    """Asserts after the test that no tunnel thread is left (waiting a bounded time)."""
    yield
    assert wait_until(lambda: not connector_threads(), deadline=10), connector_threads()


@pytest.fixture
def fresh_home(tmp_path):
    """An empty HOME (no ~/.ssh, no agent) for CLI runs."""
    home = tmp_path / "home"
    home.mkdir()
    yield home
    shutil.rmtree(home, ignore_errors=True)
