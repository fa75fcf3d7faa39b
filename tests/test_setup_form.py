"""The setup form and its setup tests, as the SDK and `fivetran configuration --test` see them.

The CLI reads `configuration.json` from the project folder, so every CLI run here works on a
temporary copy of the project; the developer's own configuration.json is never touched.
"""

import base64
import json
import os
import re
import subprocess

import pytest
from fivetran_connector_sdk import form_field
from fivetran_connector_sdk_cli.configuration_decryption import encrypt_value
from sdk_cli import copy_project, run_cli, run_connector_script
from servers import PROJECT_DIR, SSH_KEYGEN, free_port

import connector

_SECRETS = {
    "ssh_private_key",
    "ssh_key_passphrase",
    "api_key",
    "ssh_jump_private_key",
    "ssh_jump_key_passphrase",
}
_CLI_TIMEOUT = 120  # a hang guard for one run, not a performance claim
_SSH_TEST = "[check_ssh_connection - SSH connection]"
_API_TEST = "[check_api_through_tunnel - API through the tunnel]"


def _form_fields() -> list:
    return connector.configuration_form().to_response().fields


# --- The form ---


@pytest.mark.unit
def test_form_example_and_fields_list_the_same_keys():
    example = json.loads((PROJECT_DIR / "configuration.json.example").read_text())
    names = [f.name for f in _form_fields()]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(f.key for f in connector.FIELDS) == sorted(example)
    assert all(isinstance(value, str) for value in example.values())


@pytest.mark.unit
def test_secrets_and_only_secrets_are_password_fields():
    password = {f.name for f in _form_fields() if f.text_field == form_field.TextField.password}
    plain = {f.name for f in _form_fields() if f.text_field == form_field.TextField.plain_text}
    assert password == _SECRETS
    assert plain == {f.key for f in connector.FIELDS} - _SECRETS


@pytest.mark.unit
def test_every_field_has_a_label_and_help_that_states_its_default():
    by_key = {f.key: f for f in connector.FIELDS}
    for field in _form_fields():
        assert field.label.strip() and field.description.strip(), field.name
        assert field.required == (by_key[field.name].default is None), field.name
        if not field.required:
            # The SDK's fields take no default value, so the help text must say it.
            assert "Default" in field.description, field.name


@pytest.mark.unit
def test_form_declares_the_ssh_and_api_setup_tests():
    tests = connector.configuration_form().to_response().tests
    assert [(t.label, t.name) for t in tests] == [
        ("SSH connection", "check_ssh_connection"),
        ("API through the tunnel", "check_api_through_tunnel"),
    ]


# --- `fivetran configuration --test` against real servers ---


@pytest.fixture(scope="module")
def cli_project(tmp_path_factory):
    """(project copy, HOME) for this module's CLI runs; each run rewrites configuration.json."""
    root = tmp_path_factory.mktemp("setup-cli")
    home = root / "home"
    home.mkdir()
    return copy_project(root / "project"), home


def run_setup_tests(cli_project, configuration: dict, home=None) -> subprocess.CompletedProcess:
    project, default_home = cli_project
    (project / "configuration.json").write_text(json.dumps(configuration))
    return run_cli(project, ["configuration", "--test"], home or default_home, _CLI_TIMEOUT)


def sync_error(configuration: dict) -> str:
    """The message an in-process sync fails with for `configuration`."""
    with pytest.raises(connector.SetupError) as raised:
        connector.update(configuration=configuration, state={})
    return str(raised.value)


def keygen_fingerprint(public_key_line: str, folder) -> str:
    """The SHA256 fingerprint OpenSSH's own ssh-keygen prints for a public key."""
    path = folder / "host_key.pub"
    path.write_text(public_key_line + "\n")
    output = subprocess.run(
        [SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return output.split()[1]


@pytest.mark.e2e
@pytest.mark.openssh
def test_setup_tests_pass_and_report_host_key_fingerprint_and_records(
    cli_project, make_config, sshd, playground, client_key, tmp_path
):
    result = run_setup_tests(cli_project, make_config())
    out = result.stdout
    assert result.returncode == 0, out
    assert f"{_SSH_TEST}: PASSED" in out and f"{_API_TEST}: PASSED" in out
    assert "All tests passed" in out
    fingerprint = keygen_fingerprint(sshd.host_keys["ed25519"], tmp_path)
    assert f"127.0.0.1:{sshd.port} host key ssh-ed25519 {fingerprint}" in out
    expected = len(playground.get("/auth/api_key")["data"])
    assert f"answered 200 with {expected} records" in out
    assert client_key[0].splitlines()[1] not in out, "the private key leaked into the output"
    assert playground.api_key not in out, "the API key leaked into the output"


_SSH_FAILURES = {
    # case: (configuration overrides, text the message must contain)
    "wrong host key": (
        lambda sshd, other: {"ssh_host_key": other.host_key_line("ed25519")},
        ("HOST KEY MISMATCH", "ssh_host_key", "No credentials or requests were sent"),
    ),
    "forwarding refused": (
        lambda sshd, other: {
            "ssh_port": str(other.port),
            "ssh_host_key": other.host_key_line("ed25519"),
        },
        ("refuses port forwarding", "AllowTcpForwarding"),
    ),
    "nothing listening at remote_port": (
        lambda sshd, other: {"remote_port": str(free_port())},
        ("nothing listens there", "remote_port"),
    ),
}


@pytest.mark.e2e
@pytest.mark.openssh
@pytest.mark.parametrize("case", list(_SSH_FAILURES))
def test_ssh_setup_test_fails_with_the_message_a_sync_gives(
    case, cli_project, make_config, sshd, no_forwarding_sshd, recorder
):
    overrides, expected_parts = _SSH_FAILURES[case]
    configuration = make_config(**overrides(sshd, no_forwarding_sshd))
    message = sync_error(configuration)
    for part in expected_parts:
        assert part in message
    result = run_setup_tests(cli_project, configuration)
    assert result.returncode == 1, result.stdout
    assert f"{_SSH_TEST}: {message}\n" in result.stdout
    assert "check_api_through_tunnel" not in result.stdout  # the API test is skipped


@pytest.mark.e2e
@pytest.mark.openssh
def test_api_setup_test_fails_for_a_wrong_api_key(cli_project, make_config, recorder):
    configuration = make_config(api_key="not-the-key")
    message = sync_error(configuration)
    assert "HTTP 401" in message and "api_key" in message
    result = run_setup_tests(cli_project, configuration)
    assert result.returncode == 1, result.stdout
    assert f"{_SSH_TEST}: PASSED" in result.stdout
    assert f"{_API_TEST}: {message}\n" in result.stdout


def _encrypted(configuration: dict, home) -> dict:
    """`configuration` with its secrets encrypted as `fivetran configuration` saves them, and the
    key the CLI decrypts them with written into `home`."""
    key = os.urandom(32)
    key_dir = home / ".fivetran" / "connector_sdk"
    key_dir.mkdir(parents=True, exist_ok=True)
    (key_dir / "config_encryption_key").write_text(base64.b64encode(key).decode())
    return {
        name: encrypt_value(value, name, key) if name in _SECRETS and value else value
        for name, value in configuration.items()
    }


@pytest.mark.e2e
@pytest.mark.openssh
def test_setup_tests_accept_secrets_saved_encrypted(cli_project, make_config, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    configuration = _encrypted(make_config(), home)
    assert configuration["ssh_private_key"].startswith("fivetran_encrypted:")
    result = run_setup_tests(cli_project, configuration, home=home)
    assert result.returncode == 0, result.stdout
    assert "All tests passed" in result.stdout
    assert "plain-text password" not in result.stdout


@pytest.mark.e2e
def test_python_connector_py_names_values_it_cannot_decrypt(make_config, tmp_path):
    # `python connector.py` gets no decryption from the SDK: say so instead of "not a private key".
    home = tmp_path / "home"
    home.mkdir()
    project = copy_project(tmp_path / "project")
    (project / "configuration.json").write_text(json.dumps(_encrypted(make_config(), home)))
    result = run_connector_script(project, home, _CLI_TIMEOUT)
    assert result.returncode != 0
    assert "still encrypted" in result.stdout
    assert "api_key, ssh_private_key" in result.stdout
    assert "fivetran debug" in result.stdout


@pytest.mark.e2e
@pytest.mark.openssh
def test_ssh_setup_test_without_a_pinned_host_key_passes_and_shows_the_line_to_pin(
    cli_project, make_config, sshd
):
    result = run_setup_tests(cli_project, make_config(ssh_host_key=""))
    assert result.returncode == 0, result.stdout
    assert f"{_SSH_TEST}: PASSED" in result.stdout
    pinned = re.search(r"set ssh_host_key to: (\S+ \S+)", result.stdout)
    assert pinned, result.stdout
    assert pinned.group(1) in {sshd.host_key_line(t) for t in sshd.host_keys}
