"""Integration tier: update() in-process through a real OpenSSH sshd to the real playground app."""

import socket

import psutil
import pytest

import connector

pytestmark = pytest.mark.integration


def direct_pages(playground, path: str) -> list:
    """Every record of a paginated playground endpoint, fetched directly (no tunnel)."""
    records, url = [], playground.url(path)
    for _ in range(1000):
        import requests

        page = requests.get(
            url, headers={"Authorization": f"apiKey {playground.api_key}"}, timeout=30
        ).json()
        records += page["data"]
        url = page.get("next_page_url")
        if not url:
            return records
    raise AssertionError("more than 1000 pages")


def listening_ports() -> set:
    """TCP ports this process listens on."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


def test_syncs_exactly_the_records_the_api_key_endpoint_serves(
    make_config, playground, recorder, no_leaks
):
    connector.update(configuration=make_config(), state={})
    expected = playground.get("/auth/api_key")["data"]
    assert len(expected) == 20
    assert [data for _, data in recorder.upserts] == expected
    assert recorder.checkpoints[-1]["last_sync"]["records"] == 20
    assert "next_page" not in recorder.checkpoints[-1]


def test_follows_next_page_url_through_all_200_records(
    make_config, playground, recorder, no_leaks
):
    path = "/pagination/next_page_url?per_page=50"
    connector.update(configuration=make_config(api_path=path), state={})
    synced = {data["id"]: data for _, data in recorder.upserts}
    expected = {r["id"]: r for r in direct_pages(playground, path)}
    assert len(recorder.upserts) == 200
    assert synced == expected
    pages = [c for c in recorder.checkpoints if "next_page" in c]
    assert [c["next_page"].split("&")[0] for c in pages] == [
        "/pagination/next_page_url?page=2",
        "/pagination/next_page_url?page=3",
        "/pagination/next_page_url?page=4",
    ]
    assert all(c["next_page"].startswith("/") for c in pages)


def test_tunnel_listens_on_loopback_only_and_is_gone_after_the_sync(make_config, playground):
    settings = connector.parse_configuration(make_config())
    before = listening_ports()
    tunnel = connector.open_tunnel(settings, {})
    try:
        assert tunnel.local_bind_address[0] == "127.0.0.1"
        assert tunnel.local_bind_port in listening_ports() - before
    finally:
        connector.close_tunnel(tunnel)
    assert listening_ports() == before


def test_fixed_local_port_is_used(make_config, recorder, no_leaks):
    from servers import free_port

    port = free_port()
    seen = []
    original = connector.open_tunnel

    def spy(settings, known_hosts):
        tunnel = original(settings, known_hosts)
        seen.append(tunnel.local_bind_port)
        return tunnel

    connector.open_tunnel, saved = spy, connector.open_tunnel
    try:
        connector.update(configuration=make_config(local_port=str(port)), state={})
    finally:
        connector.open_tunnel = saved
    assert seen == [port] and len(recorder.upserts) == 20


def test_local_port_in_use_names_local_port_and_leaves_nothing_open(make_config, no_leaks):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = listening_ports()
        with pytest.raises(connector.SetupError, match="local_port"):
            connector.update(configuration=make_config(local_port=str(port)), state={})
        assert listening_ports() == before


def test_wrong_api_key_fails_with_401_naming_api_key(make_config, recorder, no_leaks):
    with pytest.raises(connector.SetupError) as caught:
        connector.update(configuration=make_config(api_key="wrong-key-123"), state={})
    assert "HTTP 401" in str(caught.value) and "api_key" in str(caught.value)
    assert "wrong-key-123" not in str(caught.value)
    assert recorder.upserts == []


def test_trust_on_first_use_records_the_host_key_then_syncs_again(
    make_config, sshd, recorder, no_leaks
):
    configuration = make_config(ssh_host_key="")
    connector.update(configuration=configuration, state={})
    state = recorder.checkpoints[-1]
    assert state["host_keys"] == {f"127.0.0.1:{sshd.port}": sshd.host_key_line("ed25519")}
    connector.update(configuration=configuration, state=state)
    assert len(recorder.upserts) == 40
