"""Jump hosts: the tunnel reaches ssh_host through a second real OpenSSH server, verified and
authenticated hop by hop.

The jump server logs at DEBUG1, so its own log shows each direct-tcpip request it serves: that is
the proof that the connection to the target went through it.
"""

import subprocess

import pytest
from conftest import wait_until
from servers import SshServer, free_port, make_key

import connector


@pytest.fixture(scope="module")
def jump(tmp_path_factory, client_key):
    """The jump host: a real OpenSSH server that authorizes `client_key` and logs channel opens."""
    server = SshServer(tmp_path_factory.mktemp("jump"), [client_key[1]], log_level="DEBUG1")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def jump_config(make_config, jump):
    """A configuration reaching the playground through `jump`, then `sshd`, both keys pinned."""

    def build(**overrides) -> dict:
        settings = {
            "ssh_jump_host": "127.0.0.1",
            "ssh_jump_port": str(jump.port),
            "ssh_jump_host_key": jump.host_key_line("ed25519"),
        }
        settings.update(overrides)
        return make_config(**settings)

    return build


def sync_error(configuration: dict) -> str:
    with pytest.raises(connector.SetupError) as raised:
        connector.update(configuration=configuration, state={})
    return str(raised.value)


def by_id(records) -> dict:
    return {r["id"]: r for r in records}


def session_processes(server: SshServer) -> list:
    """PIDs of the server's per-connection sshd processes. They call setsid(), so they are found
    as the listener's children, not by its session id."""
    output = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True, timeout=10
    ).stdout
    return output.split()


def jump_sessions_end(jump: SshServer) -> bool:
    """Whether the jump server has no connection left (the tunnel closed every hop)."""
    return wait_until(lambda: not session_processes(jump), deadline=10)


# --- A sync through the jump host ---


@pytest.mark.integration
@pytest.mark.openssh
def test_sync_through_jump_host_upserts_rows_and_goes_through_it(
    jump_config, jump, sshd, playground, recorder, no_leaks
):
    log_start = len(jump.log_text())
    connector.update(configuration=jump_config(), state={})
    expected = playground.get("/auth/api_key")["data"]
    assert by_id(data for _, data in recorder.upserts) == by_id(expected)
    assert recorder.checkpoints[-1]["last_sync"]["records"] == len(expected)
    # The jump server's own log: it was asked to connect to the target's SSH port, not the API.
    target_request = (
        "server_request_direct_tcpip: originator 127.0.0.1 port 0, "
        f"target 127.0.0.1 port {sshd.port}"
    )
    assert wait_until(lambda: target_request in jump.log_text()[log_start:], deadline=10)
    assert f"target 127.0.0.1 port {playground.port}" not in jump.log_text()[log_start:]
    assert jump_sessions_end(jump)


@pytest.mark.integration
@pytest.mark.openssh
def test_unpinned_jump_host_key_is_trusted_on_first_use_and_remembered(
    jump_config, jump, recorder, no_leaks
):
    connector.update(configuration=jump_config(ssh_jump_host_key=""), state={})
    remembered = recorder.checkpoints[0]["host_keys"]
    assert remembered == {f"127.0.0.1:{jump.port}": jump.host_key_line("ed25519")}


@pytest.mark.integration
@pytest.mark.openssh
def test_closing_the_session_ends_the_connection_on_both_servers(
    jump_config, jump, sshd, no_leaks
):
    session = connector.open_ssh_session(connector.parse_configuration(jump_config()), {})
    try:
        assert session_processes(jump) and session_processes(sshd)
        assert list(session.server_keys) == [f"127.0.0.1:{jump.port}", f"127.0.0.1:{sshd.port}"]
    finally:
        session.close()
    assert jump_sessions_end(jump)
    assert wait_until(lambda: not session_processes(sshd), deadline=10)


# --- Jump defaults ---


def _parse(**values):
    base = {
        "ssh_host": "target.internal",
        "ssh_user": "alice",
        "ssh_private_key": "MAIN KEY",
        "ssh_key_passphrase": "main passphrase",
        "api_key": "k",
        "remote_port": "8080",
    }
    base.update(values)
    return connector.parse_configuration(base)


@pytest.mark.unit
def test_no_jump_host_means_a_direct_connection():
    assert _parse(ssh_jump_user="bob", ssh_jump_private_key="JUMP KEY").jump is None


@pytest.mark.unit
def test_jump_defaults_to_main_user_port_22_and_main_key_with_its_passphrase():
    jump = _parse(ssh_jump_host="bastion.example").jump
    assert (jump.host, jump.port, jump.user) == ("bastion.example", 22, "alice")
    assert jump.key_text.reveal() == "MAIN KEY"
    assert jump.passphrase.reveal() == "main passphrase"
    assert (jump.key_setting, jump.passphrase_setting) == ("ssh_private_key", "ssh_key_passphrase")


@pytest.mark.unit
def test_own_jump_key_gets_no_passphrase_unless_its_own():
    jump = _parse(ssh_jump_host="bastion.example", ssh_jump_private_key="JUMP KEY").jump
    assert jump.key_text.reveal() == "JUMP KEY"
    assert jump.passphrase.reveal() == ""
    assert jump.key_setting == "ssh_jump_private_key"
    jump = _parse(
        ssh_jump_host="bastion.example",
        ssh_jump_private_key="JUMP KEY",
        ssh_jump_key_passphrase="jump passphrase",
        ssh_jump_user="bob",
        ssh_jump_port="2222",
    ).jump
    assert jump.passphrase.reveal() == "jump passphrase"
    assert jump.passphrase_setting == "ssh_jump_key_passphrase"
    assert (jump.user, jump.port) == ("bob", 2222)


@pytest.mark.integration
@pytest.mark.openssh
def test_jump_uses_the_encrypted_main_key_and_its_passphrase_by_default(
    jump_config, jump, sshd, key_folder, recorder, no_leaks
):
    private, public = make_key(key_folder, "ed25519", passphrase="correct horse")
    jump.authorize(public)
    sshd.authorize(public)
    connector.update(
        configuration=jump_config(ssh_private_key=private, ssh_key_passphrase="correct horse"),
        state={},
    )
    assert recorder.upserts


@pytest.mark.integration
@pytest.mark.openssh
def test_own_plain_jump_key_works_beside_an_encrypted_main_key(
    jump_config, sshd, client_key, key_folder, recorder, no_leaks
):
    # The jump server knows only client_key; the target also knows the encrypted main key.
    private, public = make_key(key_folder, "ecdsa256", fmt="pem", passphrase="main secret")
    sshd.authorize(public)
    connector.update(
        configuration=jump_config(
            ssh_private_key=private,
            ssh_key_passphrase="main secret",
            ssh_jump_private_key=client_key[0],
        ),
        state={},
    )
    assert recorder.upserts


# --- One failure per hop ---


@pytest.mark.integration
@pytest.mark.openssh
def test_jump_host_key_mismatch_names_ssh_jump_host_key_and_sends_nothing(
    jump_config, jump, sshd, recorder, no_leaks
):
    log_start = len(jump.log_text())
    message = sync_error(jump_config(ssh_jump_host_key=sshd.host_key_line("ed25519")))
    assert f"HOST KEY MISMATCH for 127.0.0.1:{jump.port}" in message
    assert "ssh_jump_host_key" in message and "No credentials" in message
    assert "Accepted publickey" not in jump.log_text()[log_start:]
    assert not recorder.upserts


@pytest.mark.integration
@pytest.mark.openssh
def test_target_host_key_mismatch_behind_the_jump_names_ssh_host_key(
    jump_config, jump, sshd, recorder, no_leaks
):
    message = sync_error(jump_config(ssh_host_key=jump.host_key_line("ed25519")))
    assert f"HOST KEY MISMATCH for 127.0.0.1:{sshd.port}" in message
    assert "does not match ssh_host_key" in message
    assert jump_sessions_end(jump)


@pytest.mark.integration
@pytest.mark.openssh
def test_jump_auth_refused_names_ssh_jump_user_and_ssh_jump_private_key(
    jump_config, jump, key_folder, recorder, no_leaks
):
    stranger, _ = make_key(key_folder, "ed25519")
    message = sync_error(jump_config(ssh_jump_private_key=stranger))
    assert f"Authentication refused by 127.0.0.1:{jump.port}" in message
    assert "ssh_jump_user" in message and "'ssh_jump_private_key'" in message
    assert stranger.splitlines()[1] not in message


@pytest.mark.integration
@pytest.mark.openssh
def test_target_auth_refused_names_ssh_user_and_ssh_private_key(
    jump_config, jump, sshd, client_key, key_folder, recorder, no_leaks
):
    # The jump host accepts its own key; the target does not know the main key.
    stranger, _ = make_key(key_folder, "ed25519")
    message = sync_error(jump_config(ssh_private_key=stranger, ssh_jump_private_key=client_key[0]))
    assert f"Authentication refused by 127.0.0.1:{sshd.port}" in message
    assert "check ssh_user" in message and "'ssh_private_key'" in message
    assert jump_sessions_end(jump)


@pytest.mark.integration
@pytest.mark.openssh
def test_jump_host_refusing_forwarding_is_named(
    jump_config, no_forwarding_sshd, recorder, no_leaks
):
    message = sync_error(
        jump_config(
            ssh_jump_port=str(no_forwarding_sshd.port),
            ssh_jump_host_key=no_forwarding_sshd.host_key_line("ed25519"),
        )
    )
    assert f"127.0.0.1:{no_forwarding_sshd.port} refuses port forwarding" in message
    assert "AllowTcpForwarding" in message and "ssh_host" in message


@pytest.mark.integration
@pytest.mark.openssh
def test_target_unreachable_from_the_jump_host_names_ssh_host_and_ssh_port(
    jump_config, jump, recorder, no_leaks
):
    closed_port = free_port()
    message = sync_error(jump_config(ssh_port=str(closed_port)))
    assert f"127.0.0.1:{jump.port} could not connect to" in message
    assert f"127.0.0.1:{closed_port}" in message
    assert "ssh_host" in message and "ssh_port" in message
    assert jump_sessions_end(jump)


@pytest.mark.integration
def test_jump_host_not_listening_names_ssh_jump_host_and_port(jump_config, recorder, no_leaks):
    message = sync_error(jump_config(ssh_jump_port=str(free_port())))
    assert "Connection refused" in message
    assert "ssh_jump_host" in message and "ssh_jump_port" in message
