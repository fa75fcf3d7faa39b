"""The tunnel's fast path: TCP_QUICKACK re-armed on the SSH socket, large relay reads, and one
forwarded connection at a time on the listener's thread. Behaviour only: timings are measured by
tests/benchmark.py, never asserted here.
"""

import contextlib
import socket

import pytest
import urllib3
from fake_api import FakeApi

import connector


@pytest.fixture
def connected_pair():
    """(a _QuickAckSocket client, the server's end) on 127.0.0.1."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = connector._QuickAckSocket(socket.AF_INET, socket.SOCK_STREAM)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    yield client, server
    client.close()
    server.close()


@pytest.fixture
def setsockopt_calls(monkeypatch):
    """The (level, option, value) of every setsockopt on a _QuickAckSocket."""
    calls = []

    def spy(self, level, option, value):
        calls.append((level, option, value))
        return socket.socket.setsockopt(self, level, option, value)

    monkeypatch.setattr(connector._QuickAckSocket, "setsockopt", spy)
    return calls


@pytest.mark.unit
@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux-only")
def test_ssh_socket_rearms_quickack_after_every_receive(connected_pair, setsockopt_calls):
    client, server = connected_pair
    for chunk in (b"headers", b"body"):
        server.sendall(chunk)
        assert client.recv(100) == chunk
    quickack = (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    assert setsockopt_calls == [quickack, quickack]


@pytest.mark.unit
def test_ssh_socket_is_a_plain_socket_where_quickack_does_not_exist(
    monkeypatch, connected_pair, setsockopt_calls
):
    monkeypatch.setattr(connector._QuickAckSocket, "_QUICKACK", None)
    client, server = connected_pair
    server.sendall(b"data")
    assert client.recv(100) == b"data"
    assert setsockopt_calls == []


@pytest.fixture
def fake_api():
    api = FakeApi(total=3_000, api_key="relay-key").start()
    yield api
    api.stop()


@pytest.fixture
def tunnel(make_config, fake_api):
    """Our tunnel to the in-process fake API."""
    settings = connector.parse_configuration(
        make_config(remote_port=str(fake_api.port), api_key=fake_api.api_key)
    )
    opened = connector.open_tunnel(settings, {})
    yield opened
    connector.close_tunnel(opened)


def _pool(tunnel, fake_api):
    return urllib3.HTTPConnectionPool(
        "127.0.0.1",
        tunnel.local_bind_port,
        headers={"Authorization": f"apiKey {fake_api.api_key}"},
        retries=False,
        maxsize=1,
        timeout=urllib3.Timeout(connect=10, read=60),
    )


@pytest.mark.integration
@pytest.mark.openssh
def test_response_larger_than_the_ssh_window_arrives_whole(no_leaks, fake_api, tunnel):
    pool = _pool(tunnel, fake_api)
    response = pool.request("GET", "/blob?mb=20")
    pool.close()
    assert response.status == 200
    assert len(response.data) == 20_000_000 > connector._SSH_WINDOW_SIZE
    assert response.data.count(b"x") == len(response.data)


@pytest.mark.integration
@pytest.mark.openssh
def test_pages_requested_one_after_another_each_get_their_own_answer(no_leaks, fake_api, tunnel):
    pool = _pool(tunnel, fake_api)
    for page in (3, 1, 2):
        response = pool.request("GET", f"/records?page={page}&per_page=1000")
        first = response.json()["data"][0]
        assert first["name"] == f"User {(page - 1) * 1000}"
    pool.close()


@pytest.mark.integration
@pytest.mark.openssh
def test_close_does_not_wait_for_connections_left_open(
    no_leaks, monkeypatch, fake_api, make_config
):
    warnings = []
    monkeypatch.setattr(connector.log, "warning", warnings.append)
    settings = connector.parse_configuration(
        make_config(remote_port=str(fake_api.port), api_key=fake_api.api_key)
    )
    opened = connector.open_tunnel(settings, {})
    # Connections are served one at a time on the listener's thread: one that its client never
    # closes must end with the tunnel, and the one queued behind it must be refused, not hang.
    held = socket.create_connection(("127.0.0.1", opened.local_bind_port), timeout=10)
    queued = socket.create_connection(("127.0.0.1", opened.local_bind_port), timeout=10)
    try:
        connector.close_tunnel(opened)
        for client in (held, queued):
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(100) == b""
    finally:
        held.close()
        queued.close()
    assert not [w for w in warnings if "did not stop" in w]
