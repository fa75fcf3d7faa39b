"""Fault injection against real servers on 127.0.0.1: every fault ends in time, in its own named
message or in a resumed sync that has every record exactly once, and leaves nothing behind.

Each test runs `update()` in a thread and fails (instead of hanging the suite) if it outlives a
generous multiple of the bound the configuration sets: a hang guard, not a performance claim.
"""

import socket
import threading
import time

import paramiko
import psutil
import pytest
from conftest import tunnel_config, wait_until
from fake_api import FakeApi, record
from servers import Playground, SshServer, free_port, make_key

import connector

pytestmark = pytest.mark.integration

# A test fails, rather than hangs, when update() outlives this many times its configured bound.
_HANG_FACTOR = 5
_SSH_TIMEOUT = 2.0
_HTTP_TIMEOUT = 1.0
_BANNER = b"SSH-2.0-OpenSSH_9.2\r\n"


# --- Helpers ---


class _LogCapture:
    """Stands in for the SDK's `log`: keeps every message (level, text) and passes it on."""

    def __init__(self, real):
        self._real = real
        self.lines = []

    def __getattr__(self, name):
        target = getattr(self._real, name)
        if name not in ("debug", "fine", "info", "warning", "severe", "error", "critical"):
            return target

        def capture(message, *args, **kwargs):
            self.lines.append((name, str(message)))
            return target(message, *args, **kwargs)

        return capture

    def text(self, level: str = "") -> str:
        return "\n".join(m for lvl, m in self.lines if not level or lvl == level)


class _Listener:
    """A TCP server on 127.0.0.1 that accepts every connection, sends `greeting`, and then either
    stays silent (holding the connection open) or closes it."""

    def __init__(self, greeting: bytes = b"", close_after: bool = False):
        self.greeting = greeting
        self.close_after = close_after
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self._open = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-listener", daemon=True)

    @property
    def port(self) -> int:
        return self._server.getsockname()[1]

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.greeting:
                conn.sendall(self.greeting)
            if self.close_after:
                conn.close()
            else:
                self._open.append(conn)

    def start(self) -> "_Listener":
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self._server.close()
        for conn in self._open:
            conn.close()


def _listening_sockets() -> set:
    """(ip, port) of every TCP socket this process listens on."""
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process().net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


def _open_sockets() -> set:
    """(status, local address, remote address) of every TCP socket this process holds."""
    return {
        (c.status, tuple(c.laddr), tuple(c.raddr))
        for c in psutil.Process().net_connections(kind="inet")
    }


def _start_sync(configuration: dict, outcome: dict) -> threading.Thread:
    """update() in a thread of its own; the exception it raises, if any, lands in outcome."""

    def target():
        try:
            connector.update(configuration=configuration, state={})
        except BaseException as error:  # op.error raises a BaseException: the test asserts on it
            outcome["error"] = error

    thread = threading.Thread(target=target, name="sync-under-test", daemon=True)
    thread.start()
    return thread


def _finish(thread: threading.Thread, bound: float, started: float) -> None:
    """Wait for the sync; fail the test if it outlives _HANG_FACTOR times its bound."""
    thread.join(max(0.0, started + _HANG_FACTOR * bound - time.monotonic()))
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"update() hung: still running after {elapsed:.0f} s"


def _run_sync(configuration: dict, bound: float):
    """Run a sync to its end (bounded: see _finish); returns the exception it raised, or None."""
    outcome = {}
    started = time.monotonic()
    _finish(_start_sync(configuration, outcome), bound, started)
    return outcome.get("error")


def _setup_error(configuration: dict, bound: float) -> str:
    """Run a sync that must fail with a SetupError; returns its message."""
    error = _run_sync(configuration, bound)
    assert isinstance(error, connector.SetupError), repr(error)
    return str(error)


def _page_requests(api: FakeApi, page: int) -> int:
    return sum(1 for path in list(api.requests) if f"page={page}&" in path)


def _active_transports() -> list:
    return [t for t in threading.enumerate() if isinstance(t, paramiko.Transport) and t.active]


def _source_ids(total: int) -> set:
    return {record(i)["id"] for i in range(total)}


def _assert_each_record_once(recorder, expected_ids: set):
    ids = [data["id"] for table, data in recorder.upserts if table == "user"]
    assert len(ids) == len(set(ids)), "a record was upserted twice"
    assert set(ids) == expected_ids
    assert "next_page" not in recorder.checkpoints[-1]


# --- Fixtures ---


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    """Short backoff and few attempts, so that retries and reconnects take seconds, not minutes."""
    monkeypatch.setattr(connector, "_RETRY_BASE_SECONDS", 0.05)
    monkeypatch.setattr(connector, "_HTTP_MAX_ATTEMPTS", 3)
    monkeypatch.setattr(connector, "_RECONNECT_ATTEMPTS", 3)
    monkeypatch.setattr(connector, "_MAX_RECONNECTS", 2)


@pytest.fixture
def logs(monkeypatch):
    capture = _LogCapture(connector.log)
    monkeypatch.setattr(connector, "log", capture)
    return capture


@pytest.fixture
def leak_check(no_leaks, sshd):
    """After the test: no socket of ours (listening or connected), no session on the module's SSH
    server, and (through `no_leaks`) no tunnel thread. In-process servers depend on this fixture,
    so they are stopped before it checks."""
    before = _open_sockets()
    yield
    assert wait_until(lambda: _open_sockets() <= before, deadline=5), _open_sockets() - before
    assert wait_until(lambda: not sshd.session_pids(), deadline=10), "an SSH session stayed open"


@pytest.fixture
def api(leak_check):
    """A paginated API: 300 records, 50 a page (6 pages)."""
    server = FakeApi(total=300, per_page=50).start()
    yield server
    server.stop()


@pytest.fixture
def config(sshd, client_key, api):
    """A configuration reaching `api` through `sshd` with small timeouts; keywords override."""

    defaults = {
        "api_path": "/records?per_page=50",
        "ssh_timeout": f"{_SSH_TIMEOUT:g}",
        "http_timeout": f"{_HTTP_TIMEOUT:g}",
    }
    return lambda **overrides: tunnel_config(sshd, client_key, api, **{**defaults, **overrides})


@pytest.fixture
def listener(leak_check):
    """Start a `_Listener` with the given behaviour; stopped after the test."""
    started = []

    def start(**kwargs) -> _Listener:
        started.append(_Listener(**kwargs).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def own_sshd(tmp_path, client_key, leak_check):
    """An OpenSSH server of this test's own, to stop, restart or configure differently; checked
    to have no session left at the end."""
    servers = []

    def start(**kwargs) -> SshServer:
        servers.append(SshServer(tmp_path / f"sshd{len(servers)}", [client_key[1]], **kwargs))
        return servers[-1].start()

    yield start
    try:
        for server in servers:
            assert wait_until(lambda s=server: not s.session_pids(), deadline=10), (
                "an SSH session stayed open"
            )
    finally:
        for server in servers:
            server.stop()


# --- Reaching the SSH server ---


def test_unresolvable_host_names_dns_and_ssh_host(config, recorder, monkeypatch, api):
    # No query may leave the machine: the one name fails as a resolver would say it, and any
    # other name that is not an IP literal fails too (and is reported below).
    real_getaddrinfo = socket.getaddrinfo
    looked_up = []

    def local_getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in str(host) else socket.AF_INET, host)
        except (OSError, TypeError):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_getaddrinfo)
    message = _setup_error(config(ssh_host="bastion.invalid"), _SSH_TIMEOUT)
    assert "Could not resolve ssh_host 'bastion.invalid'" in message
    assert "Name or service not known" in message
    assert set(looked_up) == {"bastion.invalid"}
    assert api.requests == []


def test_refused_port_names_host_port_and_setting(config, recorder):
    port = free_port()
    message = _setup_error(config(ssh_port=str(port)), _SSH_TIMEOUT)
    assert f"Connection refused by 127.0.0.1:{port}" in message
    assert "ssh_port" in message


def test_silent_listener_fails_within_ssh_timeout_as_no_banner(config, recorder, listener):
    server = listener()
    message = _setup_error(config(ssh_port=str(server.port)), _SSH_TIMEOUT)
    assert server.accepted >= 1
    assert f"127.0.0.1:{server.port} accepted the connection but sent no SSH banner" in message
    assert "within 2 s" in message
    assert "ssh_port" in message


def test_banner_then_silence_fails_within_ssh_timeout_naming_key_exchange(
    config, recorder, listener
):
    server = listener(greeting=_BANNER)
    message = _setup_error(config(ssh_port=str(server.port)), _SSH_TIMEOUT)
    assert f"127.0.0.1:{server.port} sent an SSH banner and then stopped answering" in message
    assert "timed out after 2 s" in message
    assert "ssh_timeout" in message


def test_a_server_that_is_not_ssh_is_named_as_such(config, recorder, listener):
    server = listener(greeting=b"HTTP/1.1 400 Bad Request\r\n\r\n", close_after=True)
    message = _setup_error(config(ssh_port=str(server.port)), _SSH_TIMEOUT)
    assert f"127.0.0.1:{server.port} is not an SSH server" in message
    assert "ssh_port" in message


def test_wrong_user_names_ssh_user(config, recorder, api, sshd):
    message = _setup_error(config(ssh_user="nosuchuser"), _SSH_TIMEOUT)
    assert f"Authentication refused by 127.0.0.1:{sshd.port}" in message
    assert "user 'nosuchuser'" in message
    assert "ssh_user" in message
    assert api.requests == []


def test_wrong_key_names_ssh_private_key(config, recorder, api, sshd, tmp_path):
    other_key = make_key(tmp_path, "ed25519")
    message = _setup_error(config(ssh_private_key=other_key[0]), _SSH_TIMEOUT)
    assert f"Authentication refused by 127.0.0.1:{sshd.port}" in message
    assert "the key in 'ssh_private_key'" in message
    assert "authorized_keys" in message
    assert other_key[0].strip().splitlines()[1] not in message
    assert api.requests == []


def test_host_key_mismatch_fails_before_any_request(config, recorder, api, sshd, tmp_path):
    impostor = " ".join(make_key(tmp_path, "ed25519")[1].split()[:2])
    log_before = len(sshd.log_text())
    message = _setup_error(config(ssh_host_key=impostor), _SSH_TIMEOUT)
    assert f"HOST KEY MISMATCH for 127.0.0.1:{sshd.port}" in message
    assert "does not match ssh_host_key" in message
    assert "No credentials or requests were sent" in message
    assert api.requests == []
    # The server never saw a login attempt.
    assert "publickey" not in sshd.log_text()[log_before:]


# --- Reaching the API through the SSH server ---


@pytest.mark.openssh
def test_forwarding_disabled_is_named_before_any_request(config, recorder, api, own_sshd):
    server = own_sshd(allow_tcp_forwarding=False)
    configuration = config(ssh_port=str(server.port), ssh_host_key=server.host_key_line())
    message = _setup_error(configuration, _SSH_TIMEOUT)
    assert f"127.0.0.1:{server.port} refuses port forwarding" in message
    assert "AllowTcpForwarding" in message
    assert api.requests == []


def test_remote_port_closed_is_named_before_any_request(config, recorder, api):
    port = free_port()
    message = _setup_error(config(remote_port=str(port)), _SSH_TIMEOUT)
    assert f"could not connect to the API (remote_host, remote_port) at 127.0.0.1:{port}" in (
        message
    )
    assert "nothing listens there" in message
    assert api.requests == []


# --- HTTP faults ---


@pytest.fixture
def rate_limited_playground():
    # 5 requests at once, then 5 a second: the 20 pages below run into 429 (Retry-After 1)
    # several times and still finish within a few seconds.
    server = Playground(rate_limit=(5, 5)).start()
    yield server
    server.stop()


def test_rate_limited_playground_honours_retry_after_and_completes(
    config, recorder, logs, rate_limited_playground
):
    configuration = config(
        api_key=rate_limited_playground.api_key,
        remote_port=str(rate_limited_playground.port),
        api_path="/pagination/next_page_url?per_page=10",
    )
    error = _run_sync(configuration, bound=20)
    assert error is None, error
    ids = [data["id"] for _, data in recorder.upserts]
    assert len(ids) == len(set(ids)) == 200
    assert "rate limited, Retry-After 1 s" in logs.text("warning")
    assert "next_page" not in recorder.checkpoints[-1]


def test_server_error_then_success_is_retried(config, recorder, logs, api):
    api.fail_next(2, status=500)
    error = _run_sync(config(), bound=10)
    assert error is None, error
    _assert_each_record_once(recorder, _source_ids(api.total))
    assert "HTTP 500; retry 1 of 2" in logs.text("warning")
    assert "HTTP 500; retry 2 of 2" in logs.text("warning")
    assert api.requests[:3] == ["/records?per_page=50"] * 3


def test_a_stall_past_http_timeout_is_retried_and_recovers(config, recorder, logs, api):
    api.stall_next(1, seconds=_HTTP_TIMEOUT * 2)
    error = _run_sync(config(), bound=10)
    assert error is None, error
    _assert_each_record_once(recorder, _source_ids(api.total))
    assert "the API sent no answer within http_timeout (1 s); retry 1 of 2" in logs.text("warning")


def test_an_api_that_keeps_stalling_fails_after_all_attempts_naming_http_timeout(
    config, recorder, api
):
    api.stall_next(10, seconds=_HTTP_TIMEOUT * 2)
    bound = connector._HTTP_MAX_ATTEMPTS * (_HTTP_TIMEOUT + 0.2) + _SSH_TIMEOUT
    message = _setup_error(config(), bound)
    assert "failed 3 times; last: the API sent no answer within http_timeout (1 s)" in message
    assert "raise http_timeout" in message
    assert len(api.requests) == 3
    assert recorder.upserts == []


def test_unauthorized_names_api_key_and_is_not_retried(config, recorder, api):
    message = _setup_error(config(api_key="not-the-key"), _SSH_TIMEOUT)
    assert "HTTP 401" in message
    assert "check api_key" in message
    assert "not-the-key" not in message
    assert len(api.requests) == 1


def test_not_found_names_api_path_and_is_not_retried(config, recorder, api):
    message = _setup_error(config(api_path="/no/such/path"), _SSH_TIMEOUT)
    assert "The API has no /no/such/path (HTTP 404): check api_path." in message
    assert len(api.requests) == 1


# --- The SSH session dropping mid-sync ---


@pytest.mark.openssh
def test_session_killed_mid_sync_reconnects_and_every_record_arrives_once(
    config, recorder, logs, api, sshd
):
    held = api.hold_page(3)
    outcome = {}
    started = time.monotonic()
    # The held page must not time out on its own: the session's death is what ends it.
    thread = _start_sync(config(http_timeout="10"), outcome)
    assert wait_until(lambda: _page_requests(api, 3) == 1, deadline=10)
    assert sshd.kill_sessions() >= 1
    # The page is asked again only through a new tunnel: then let it through.
    assert wait_until(lambda: _page_requests(api, 3) == 2, deadline=10), api.requests
    held.set()
    _finish(thread, bound=10, started=started)
    assert "error" not in outcome, outcome.get("error")
    _assert_each_record_once(recorder, _source_ids(api.total))
    assert "dropped: reopening the tunnel (reconnect 1 of at most 2)" in logs.text("warning")
    assert "1 reconnects" in logs.text("info")


@pytest.mark.openssh
def test_session_killed_while_records_are_upserted_reconnects_and_finishes(
    config, recorder, logs, api, sshd
):
    # Most of a real sync's time is spent upserting, so that is where a drop usually lands.
    upsert, killed = recorder.upsert, []

    def upsert_then_kill(table, data):
        upsert(table, data)
        if not killed:
            killed.append(sshd.kill_sessions())
            # Let the client notice before the sync goes on: the drop is then seen mid-upserts.
            assert wait_until(lambda: not _active_transports(), deadline=10)

    recorder.upsert = upsert_then_kill
    error = _run_sync(config(), bound=10)
    assert error is None, error
    assert killed and killed[0] >= 1
    _assert_each_record_once(recorder, _source_ids(api.total))
    assert "dropped: reopening the tunnel (reconnect 1 of" in logs.text("warning")


@pytest.mark.openssh
def test_sshd_restarted_mid_sync_on_the_same_port_resumes(
    config, recorder, logs, api, own_sshd, monkeypatch
):
    # Backoff long enough that the later reconnect attempts span the server's restart.
    monkeypatch.setattr(connector, "_RETRY_BASE_SECONDS", 0.5)
    monkeypatch.setattr(connector, "_RECONNECT_ATTEMPTS", 5)
    server = own_sshd()
    held = api.hold_page(3)
    outcome = {}
    configuration = config(
        ssh_port=str(server.port), ssh_host_key=server.host_key_line(), http_timeout="10"
    )
    started = time.monotonic()
    thread = _start_sync(configuration, outcome)
    assert wait_until(lambda: _page_requests(api, 3) == 1, deadline=10)
    server.stop()  # the listener, then every open session: as a crash or reboot would
    give_up = threading.Event()

    def restart_once_a_reconnect_failed():
        # Same object: same folder, port and host keys, as after a reboot.
        failed = "Reconnect attempt 1 failed"
        wait_until(lambda: give_up.is_set() or failed in logs.text("warning"), deadline=20)
        if not give_up.is_set():
            server.start()

    restarter = threading.Thread(target=restart_once_a_reconnect_failed, name="sshd-restarter")
    restarter.start()
    try:
        assert wait_until(lambda: _page_requests(api, 3) == 2, deadline=30), logs.text("warning")
    finally:
        give_up.set()
        restarter.join(30)  # never start the server after the fixture has stopped it
    held.set()
    _finish(thread, bound=10, started=started)
    assert "error" not in outcome, outcome.get("error")
    _assert_each_record_once(recorder, _source_ids(api.total))
    assert f"Connection refused by 127.0.0.1:{server.port}" in logs.text("warning")
    assert "dropped: reopening the tunnel (reconnect 1 of at most 2)" in logs.text("warning")


@pytest.mark.openssh
def test_sshd_staying_away_fails_clearly_after_bounded_reconnects(
    config, recorder, logs, api, own_sshd
):
    server = own_sshd()
    api.hold_page(3)
    outcome = {}
    configuration = config(
        ssh_port=str(server.port), ssh_host_key=server.host_key_line(), http_timeout="10"
    )
    started = time.monotonic()
    thread = _start_sync(configuration, outcome)
    assert wait_until(lambda: _page_requests(api, 3) == 1, deadline=10)
    server.stop()
    _finish(thread, bound=connector._RECONNECT_ATTEMPTS * (_SSH_TIMEOUT + 1), started=started)
    error = outcome.get("error")
    assert isinstance(error, connector.SetupError), repr(error)
    assert f"The SSH session to 127.0.0.1:{server.port} dropped mid-sync" in str(error)
    assert "could not be reopened in 3 attempts" in str(error)
    assert f"Connection refused by 127.0.0.1:{server.port}" in str(error)
    # Pages 1 and 2 were checkpointed: the next sync resumes at page 3.
    assert recorder.checkpoints[-1]["next_page"].startswith("/records?page=3&")
    assert len(recorder.upserts) == 100


# --- Teardown ---


def test_close_tunnel_is_bounded_after_a_failed_start(config, recorder, monkeypatch):
    # The session is lost between authentication and the tunnel's start: start() has bound its
    # listening socket and then fails, the state in which sshtunnel's own stop() waits forever
    # for a server loop that never ran.
    real_open_session, real_close_tunnel = connector.open_ssh_session, connector.close_tunnel
    closes = []

    def open_then_lose(settings, known_hosts):
        session = real_open_session(settings, known_hosts)
        session.close()
        return session

    def timed_close(tunnel):
        bound = [server.server_address for server in tunnel._server_list]
        serving = [t.name for t in threading.enumerate() if t.name.startswith("Srv-")]
        started = time.monotonic()
        real_close_tunnel(tunnel)
        closes.append((bound, serving, time.monotonic() - started))

    monkeypatch.setattr(connector, "open_ssh_session", open_then_lose)
    monkeypatch.setattr(connector, "close_tunnel", timed_close)
    message = _setup_error(config(), connector._TEARDOWN_SECONDS)
    assert "closed right after it was opened, before the tunnel started" in message
    [(bound, serving, seconds)] = closes
    assert bound and not serving, "the failed start did not leave a bound, idle listener"
    assert seconds < connector._TEARDOWN_SECONDS
    assert not set(bound) & _listening_sockets()


def test_local_port_in_use_fails_fast_and_leaves_nothing(config, recorder, listener):
    busy = listener()
    message = _setup_error(config(local_port=str(busy.port)), _SSH_TIMEOUT)
    assert f"Could not listen on 127.0.0.1:{busy.port} for the tunnel" in message
    assert "local_port" in message
