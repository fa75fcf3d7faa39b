"""Fast unit tier: update() against a mocked tunnel and a stubbed HTTP layer, plus configuration.

No server runs here: `_Forwarder` is replaced by a recorder of what sshtunnel would be given,
`open_ssh_session` by a fake session, and urllib3's pool by canned responses.
"""

import json
from pathlib import Path

import paramiko
import pytest

import connector

pytestmark = pytest.mark.unit

_PROJECT = Path(__file__).resolve().parent.parent


class FakeSession:
    def __init__(self, pkey):
        self.pkey = pkey
        self.transport = object()
        self.server_keys = {}
        self.closed = False

    def is_active(self):
        return not self.closed

    def close(self):
        self.closed = True


class FakeForwarder:
    """Records the forwarder's arguments; start/stop like sshtunnel's, without sockets."""

    instances = []

    def __init__(self, session, **kwargs):
        self._session = session
        self.kwargs = kwargs
        self.is_alive = False
        self.stopped = False
        self._server_list = []
        self.local_bind_port = 54321
        FakeForwarder.instances.append(self)

    def start(self):
        self.is_alive = True

    def stop(self, force=False):
        self.stopped = True
        self.is_alive = False

    @property
    def is_active(self):
        return self._session.is_active()


class FakeResponse:
    def __init__(self, status=200, body=None, headers=None, raw=None):
        self.status = status
        self.data = raw if raw is not None else json.dumps(body).encode()
        self.headers = headers or {"Content-Type": "application/json"}


class FakePool:
    """Serves canned responses by path; records the paths and headers it was asked for."""

    responses = {}
    requested = []
    headers_seen = []

    def __init__(self, host, port, headers=None, **kwargs):
        assert host == "127.0.0.1"
        FakePool.headers_seen.append(dict(headers or {}))
        self.port = port

    def request(self, method, path, **kwargs):
        FakePool.requested.append(path)
        answer = FakePool.responses[path]
        return answer() if callable(answer) else answer

    def close(self):
        pass


@pytest.fixture
def mocked(monkeypatch, client_key):
    """Mocked tunnel + HTTP; returns the recorder of upserts and checkpoints."""
    from conftest import Recorder

    FakeForwarder.instances = []
    FakePool.responses, FakePool.requested, FakePool.headers_seen = {}, [], []
    loaded = {}

    def fake_session(settings, known_hosts):
        key = connector.load_private_key(
            settings.target.key_text, settings.target.passphrase, ("ssh_private_key", "x")
        )
        loaded["key"] = key
        return FakeSession(key)

    monkeypatch.setattr(connector, "open_ssh_session", fake_session)
    monkeypatch.setattr(connector, "_Forwarder", FakeForwarder)
    monkeypatch.setattr(connector.urllib3, "HTTPConnectionPool", FakePool)
    monkeypatch.setattr(connector, "_RETRY_BASE_SECONDS", 0.001)
    recorder = Recorder()
    monkeypatch.setattr(connector, "op", recorder)
    recorder.loaded = loaded
    return recorder


def config(client_key, **overrides):
    base = {
        "ssh_host": "bastion.example",
        "ssh_user": "sync",
        "ssh_private_key": client_key[0],
        "api_key": "secret-api-key",
        "remote_port": "8080",
        "ssh_host_key": "SHA256:" + "A" * 43,
    }
    base.update(overrides)
    return base


def users(*ids):
    return [{"id": i, "name": f"n{i}", "updatedAt": f"2026-01-0{i}T00:00:00Z"} for i in ids]


def test_upserts_every_item_and_checkpoints_after_each_page(mocked, client_key):
    FakePool.responses = {
        "/items?per_page=2": FakeResponse(
            body={"data": users(1, 2), "next_page_url": "http://127.0.0.1:54321/items?page=2"}
        ),
        "/items?page=2": FakeResponse(body={"data": users(3)}),
    }
    connector.update(configuration=config(client_key, api_path="/items?per_page=2"), state={})
    assert [d["id"] for _, d in mocked.upserts] == [1, 2, 3]
    assert {t for t, _ in mocked.upserts} == {"user"}
    assert len(mocked.checkpoints) == 2
    assert mocked.checkpoints[0]["next_page"] == "/items?page=2"
    assert mocked.checkpoints[0]["sync_records"] == 2
    final = mocked.checkpoints[-1]
    assert "next_page" not in final and final["last_sync"]["records"] == 3
    assert final["cursor"] == "2026-01-03T00:00:00Z"
    assert FakePool.headers_seen[0]["Authorization"] == "apiKey secret-api-key"


def test_resumes_from_the_checkpointed_page(mocked, client_key):
    FakePool.responses = {"/items?page=2": FakeResponse(body={"data": users(3)})}
    state = {"next_page": "/items?page=2", "sync_records": 2}
    connector.update(configuration=config(client_key, api_path="/items"), state=state)
    assert FakePool.requested == ["/items?page=2"]
    assert mocked.checkpoints[-1]["last_sync"]["records"] == 3


def test_key_object_and_isolation_options_reach_the_forwarder(mocked, client_key):
    FakePool.responses = {"/auth/api_key": FakeResponse(body={"data": users(1)})}
    connector.update(configuration=config(client_key), state={})
    (forwarder,) = FakeForwarder.instances
    kwargs = forwarder.kwargs
    assert isinstance(kwargs["ssh_pkey"], paramiko.PKey)
    assert kwargs["ssh_pkey"] is mocked.loaded["key"]
    assert kwargs["allow_agent"] is False
    assert kwargs["host_pkey_directories"] == []
    assert kwargs["ssh_config_file"] is None
    assert kwargs["local_bind_address"] == ("127.0.0.1", 0)
    assert kwargs["remote_bind_address"] == ("127.0.0.1", 8080)
    assert "ssh_password" not in kwargs
    assert forwarder.stopped and forwarder._session.closed


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example/items?page=2",
        "http://127.0.0.1:9999/items?page=2",
        "https://localhost:54321.evil.example/x",
        "ftp://127.0.0.1:54321/items",
        "http://user@evil.example:54321/items",
    ],
)
def test_foreign_next_page_url_is_refused_and_the_tunnel_closed(mocked, client_key, url):
    FakePool.responses = {"/items": FakeResponse(body={"data": users(1), "next_page_url": url})}
    with pytest.raises(connector.SetupError, match="Refusing to follow next_page_url"):
        connector.update(configuration=config(client_key, api_path="/items"), state={})
    assert FakePool.requested == ["/items"]
    assert mocked.upserts == [] and mocked.checkpoints == []
    assert FakeForwarder.instances[0].stopped


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://127.0.0.1:54321/items?page=2", "/items?page=2"),
        ("http://localhost:54321/items?page=2", "/items?page=2"),
        ("http://127.0.0.1:8080/items?page=2", "/items?page=2"),  # remote_host:remote_port
        ("/items?page=2", "/items?page=2"),
        (None, None),
        ("", None),
    ],
)
def test_next_page_url_on_the_tunnel_or_the_api_is_rebased(client_key, url, expected):
    settings = connector.parse_configuration(config(client_key))
    assert connector.next_page_path(url, settings, 54321) == expected


@pytest.mark.parametrize(
    "response, message",
    [
        (FakeResponse(raw=b"<html>x</html>", headers={"Content-Type": "text/html"}), "not JSON"),
        (FakeResponse(body={"items": []}), "no 'data' list"),
        (FakeResponse(body={"data": [{"name": "no id"}]}), "has no 'id'"),
        (FakeResponse(status=401, raw=b"<html>401</html>"), "check api_key"),
        (FakeResponse(status=404, raw=b"{}"), "check api_path"),
    ],
)
def test_bad_answers_end_the_sync_clearly_and_close_the_tunnel(
    mocked, client_key, response, message
):
    FakePool.responses = {
        "/items": FakeResponse(
            body={"data": users(1), "next_page_url": "http://127.0.0.1:54321/items2"}
        ),
        "/items2": response,
    }
    with pytest.raises(connector.SetupError, match=message):
        connector.update(configuration=config(client_key, api_path="/items"), state={})
    assert FakeForwarder.instances[0].stopped
    # the first page stays synced and checkpointed
    assert mocked.checkpoints[-1]["next_page"] == "/items2"


def test_server_errors_are_retried_then_succeed(mocked, client_key):
    answers = iter([FakeResponse(status=503, raw=b""), FakeResponse(body={"data": users(1)})])
    FakePool.responses = {"/auth/api_key": lambda: next(answers)}
    connector.update(configuration=config(client_key), state={})
    assert FakePool.requested == ["/auth/api_key", "/auth/api_key"]
    assert len(mocked.upserts) == 1


def test_tunnel_is_closed_when_a_later_step_fails(mocked, client_key, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    FakePool.responses = {"/auth/api_key": explode}
    with pytest.raises(RuntimeError):
        connector.update(configuration=config(client_key), state={})
    assert FakeForwarder.instances[0].stopped


def test_tunnel_is_closed_when_start_fails(mocked, client_key, monkeypatch):
    def failing_start(self):
        raise connector.sshtunnel.BaseSSHTunnelForwarderError("cannot bind")

    monkeypatch.setattr(FakeForwarder, "start", failing_start)
    with pytest.raises(connector.SetupError, match="local listening port"):
        connector.update(configuration=config(client_key), state={})
    assert FakeForwarder.instances[0]._session.closed


# --- Configuration ---


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"ssh_host": ""}, "ssh_host"),
        ({"ssh_user": "  "}, "ssh_user"),
        ({"ssh_private_key": ""}, "ssh_private_key"),
        ({"api_key": ""}, "api_key"),
        ({"remote_port": ""}, "remote_port"),
        ({"remote_port": "http"}, "remote_port"),
        ({"remote_port": "70000"}, "remote_port"),
        ({"ssh_port": "0"}, "ssh_port"),
        ({"local_port": "-1"}, "local_port"),
        ({"api_path": "auth/api_key"}, "api_path"),
        ({"ssh_host": "user@host"}, "ssh_host"),
        ({"ssh_host": "host:22"}, "ssh_host"),
        ({"ssh_timeout": "soon"}, "ssh_timeout"),
        ({"http_timeout": "0"}, "http_timeout"),
        ({"api_scheme": "ftp"}, "api_scheme"),
        ({"api_cursor_param": "a b"}, "api_cursor_param"),
        ({"ssh_port": 22}, "ssh_port"),
    ],
)
def test_invalid_values_name_their_key(client_key, overrides, key):
    with pytest.raises(connector.SetupError) as caught:
        connector.parse_configuration(config(client_key, **overrides))
    assert f"'{key}'" in str(caught.value)
    assert "secret-api-key" not in str(caught.value)


def test_empty_optional_values_mean_the_defaults(client_key):
    empty = {f.key: "" for f in connector.FIELDS if f.default is not None}
    settings = connector.parse_configuration(config(client_key, **empty))
    assert settings.target.port == 22
    assert settings.remote_host == "127.0.0.1"
    assert settings.local_port == 0
    assert settings.api_path == "/auth/api_key"
    assert settings.ssh_timeout == 30 and settings.http_timeout == 60
    assert settings.jump is None and settings.api_scheme == "http"


def test_settings_repr_hides_every_secret(client_key):
    settings = connector.parse_configuration(
        config(client_key, ssh_key_passphrase="pass-phrase-1", ssh_jump_host="jump.example")
    )
    text = repr(settings)
    assert "secret-api-key" not in text and "pass-phrase-1" not in text
    assert client_key[0].splitlines()[1][:20] not in text


def test_example_configuration_holds_exactly_the_keys_the_code_reads():
    example = json.loads((_PROJECT / "configuration.json.example").read_text())
    assert list(example) == [f.key for f in connector.FIELDS]
    for f in connector.FIELDS:  # optional: empty, so that FIELDS alone holds the defaults
        assert example[f.key] == "" if f.default is not None else example[f.key].startswith("<")


def test_schema_declares_user_with_id_key_and_utc_timestamps():
    (table,) = connector.schema({})
    assert table["table"] == "user" and table["primary_key"] == ["id"]
    assert table["columns"]["createdAt"] == "UTC_DATETIME"
    assert table["columns"]["updatedAt"] == "UTC_DATETIME"


# --- Causes told apart ---


class _LoginTransport:
    """A transport whose login raises `error`; `active` says whether the connection survived."""

    auth_timeout = 2.0

    def __init__(self, error, active):
        self.error, self.active = error, active
        self.packetizer = type("P", (), {"complete_handshake": lambda self: None})()

    def auth_publickey(self, user, key):
        raise self.error

    def is_active(self):
        return self.active

    def close(self):
        self.active = False

    def is_alive(self):
        return False


@pytest.mark.parametrize(
    "error, active, expected, retryable",
    [
        (paramiko.AuthenticationException("Authentication failed."), True, "refused", False),
        (paramiko.AuthenticationException("Authentication timeout."), True, "did not", True),
        (paramiko.AuthenticationException("saw EOF"), False, "did not complete", True),
        (EOFError(), False, "did not complete", True),
    ],
)
def test_a_login_that_times_out_or_drops_is_not_called_refused(
    client_key, error, active, expected, retryable
):
    settings = connector.parse_configuration(config(client_key))
    key = connector.load_private_key(
        settings.target.key_text, settings.target.passphrase, ("a", "b")
    )
    with pytest.raises(connector.SetupError) as caught:
        connector._authenticate(settings.target, _LoginTransport(error, active), key)
    assert expected in str(caught.value)
    assert caught.value.retryable is retryable


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "soon"])
def test_a_retry_after_that_is_not_a_number_falls_back_to_backoff(value):
    assert connector._retry_after_seconds(value) is None


def test_retry_after_is_capped():
    assert connector._retry_after_seconds("86400") == connector._RETRY_AFTER_CAP_SECONDS


def test_a_host_name_that_cannot_be_encoded_is_named_without_a_lookup(client_key):
    settings = connector.parse_configuration(config(client_key, ssh_host="bastion..example.com"))
    with pytest.raises(connector.SetupError, match="Could not resolve ssh_host"):
        connector._tcp_connect(settings.target, 1.0)
