"""Private keys: every type and format a user may have, each syncing through real OpenSSH; the
ways people paste them; one clear message per unusable input; and proof that a sync
authenticates with the configured key only, never with the machine's ~/.ssh or SSH agent."""

import json
import os
import subprocess
import tempfile
from pathlib import Path

import paramiko
import pytest
from conftest import wait_until
from cryptography.hazmat.primitives import serialization
from key_material import (
    KINDS,
    MATRIX,
    PASSPHRASE,
    WRONG_PASSPHRASE,
    dsa_key_texts,
    expected_begin_lines,
    key_cases,
    leaks,
    new_key_pair,
    public_blob,
)
from sdk_cli import cli_environment, copy_project, run_cli, warehouse_rows

import connector

_SETTINGS = ("ssh_private_key", "ssh_key_passphrase")
_PARAMIKO_CLASS = {
    "rsa": paramiko.RSAKey,
    "ecdsa": paramiko.ECDSAKey,
    "ed25519": paramiko.Ed25519Key,
}
_AGENT_DEADLINE = 10.0  # seconds for ssh-agent to create its socket


def _cell_id(cell) -> str:
    kind, fmt, encrypted = cell
    return f"{kind}-{fmt}-{'encrypted' if encrypted else 'plain'}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Every cell of the key matrix, generated once for the module (RSA 4096 is slow to make)."""
    return key_cases(tmp_path_factory.mktemp("matrix-keys"))


@pytest.fixture(scope="module")
def key_sshd(sshd, keys):
    """The module's sshd, also authorizing the public key of every kind in the matrix."""
    for kind in KINDS:
        sshd.authorize(keys[kind, "openssh", False].public)
    return sshd


@pytest.fixture(scope="module")
def stranger_key(tmp_path_factory):
    """An Ed25519 key that no server authorizes: (private text, public line)."""
    path = new_key_pair(tmp_path_factory.mktemp("stranger"), "ed25519", "id_stranger")
    return path.read_text(), Path(f"{path}.pub").read_text().strip()


def _refusal(make_config, **overrides) -> str:
    """The SetupError message of an in-process sync with this configuration."""
    with pytest.raises(connector.SetupError) as caught:
        connector.update(configuration=make_config(**overrides), state={})
    return str(caught.value)


def _synced_ids(recorder) -> list:
    return [data["id"] for table, data in recorder.upserts if table == "user"]


def _openssh_encrypted(text: str) -> bool:
    """Whether an OpenSSH private key is encrypted, as the cryptography library sees it."""
    try:
        serialization.load_ssh_private_key(text.encode(), password=None)
    except TypeError:  # "Key is password-protected"
        return True
    return False


# --- The matrix ---


@pytest.mark.integration
@pytest.mark.openssh
@pytest.mark.parametrize(("kind", "fmt", "encrypted"), MATRIX, ids=map(_cell_id, MATRIX))
def test_every_key_type_and_format_syncs_the_playground_through_openssh(
    kind, fmt, encrypted, keys, key_sshd, make_config, playground, recorder, no_leaks
):
    case = keys[kind, fmt, encrypted]
    begin = expected_begin_lines(kind, fmt, encrypted)
    claimed_format = case.text.splitlines()[: len(begin)] == begin  # a bool: no key printed
    assert claimed_format, "not the format the cell claims"
    if fmt == "openssh":
        assert _openssh_encrypted(case.text) == encrypted
    accepted_before = key_sshd.log_text().count("Accepted publickey")

    connector.update(
        configuration=make_config(ssh_private_key=case.text, ssh_key_passphrase=case.passphrase),
        state={},
    )

    ids = _synced_ids(recorder)
    assert len(ids) == 20
    assert set(ids) == {item["id"] for item in playground.get("/auth/api_key")["data"]}
    assert recorder.checkpoints[-1]["last_sync"]["records"] == 20
    accepted = key_sshd.log_text().split("Accepted publickey")[accepted_before + 1 :]
    fingerprint = connector.fingerprint(public_blob(case.public))
    assert any(fingerprint in entry.splitlines()[0] for entry in accepted), (
        "sshd did not log accepting this key"
    )


@pytest.mark.unit
@pytest.mark.parametrize(("kind", "fmt", "encrypted"), MATRIX, ids=map(_cell_id, MATRIX))
def test_every_key_loads_as_the_paramiko_class_of_its_type(kind, fmt, encrypted, keys):
    case = keys[kind, fmt, encrypted]
    key = connector.load_private_key(
        connector.Secret(case.text), connector.Secret(case.passphrase), _SETTINGS
    )
    assert type(key) is _PARAMIKO_CLASS[KINDS[kind][0]]
    assert key.asbytes() == public_blob(case.public)
    if kind.startswith("rsa"):
        assert isinstance(key, paramiko.RSAKey)
        assert key.get_bits() == KINDS[kind][1]


# --- Paste forms ---

_PASTE_FORMS = {
    "literal-backslash-n": lambda text: text.replace("\n", "\\n"),
    "literal-backslash-r-n": lambda text: text.replace("\n", "\\r\\n"),
    "crlf": lambda text: text.replace("\n", "\r\n"),
    "whitespace-and-double-quotes": lambda text: f' \t"{text}"\n\n ',
    "single-quotes": lambda text: f"'{text.strip()}'",
    "json-string-with-its-quotes": lambda text: json.dumps(text),
    "blank-lines": lambda text: "\n\n" + text.replace("\n", "\n\n") + "\n\n",
    "indented": lambda text: "".join(f"    {line}\n" for line in text.splitlines()),
    "one-line-spaces-for-newlines": lambda text: " ".join(text.strip().split("\n")),
}
_PASTED_KEYS = [
    ("ed25519", "openssh", False),
    ("ed25519", "openssh", True),
    ("rsa2048", "pem", True),  # Proc-Type and DEK-Info headers must survive
    ("ecdsa256", "pem", True),
    ("ecdsa384", "pkcs8", True),
]


@pytest.mark.unit
@pytest.mark.parametrize("cell", _PASTED_KEYS, ids=map(_cell_id, _PASTED_KEYS))
@pytest.mark.parametrize("form", _PASTE_FORMS)
def test_pasted_key_forms_load_the_same_key(form, cell, keys):
    case = keys[cell]
    pasted = _PASTE_FORMS[form](case.text)
    changed = pasted != case.text  # a bool: a failing assert must not print the key
    assert changed
    key = connector.load_private_key(
        connector.Secret(pasted), connector.Secret(case.passphrase), _SETTINGS
    )
    assert key.asbytes() == public_blob(case.public)


@pytest.mark.integration
@pytest.mark.openssh
def test_encrypted_pem_collapsed_onto_one_line_with_escapes_syncs(
    keys, key_sshd, make_config, recorder
):
    case = keys["rsa4096", "pem", True]
    pasted = "\\n".join(case.text.strip().splitlines()).replace("\\nProc-Type", " Proc-Type")
    connector.update(
        configuration=make_config(ssh_private_key=pasted, ssh_key_passphrase=case.passphrase),
        state={},
    )
    assert len(_synced_ids(recorder)) == 20


# --- Unusable inputs: one clear message each, never echoing a secret ---


def _assert_names_and_keeps_secret(message: str, setting: str, key_text: str, passphrase=""):
    found = leaks(message, {"key": key_text, "passphrase": passphrase})  # names only
    assert found == [], "secret in message"
    assert f"'{setting}'" in message, message


@pytest.mark.integration
@pytest.mark.parametrize(
    "cell",
    [("ed25519", "openssh", True), ("rsa2048", "pem", True), ("ecdsa256", "pkcs8", True)],
    ids=_cell_id,
)
def test_encrypted_key_without_passphrase_names_ssh_key_passphrase(
    cell, keys, make_config, recorder
):
    case = keys[cell]
    message = _refusal(make_config, ssh_private_key=case.text, ssh_key_passphrase="")
    _assert_names_and_keeps_secret(message, "ssh_key_passphrase", case.text)
    assert "encrypted" in message
    assert recorder.upserts == []


@pytest.mark.integration
@pytest.mark.parametrize(
    "cell",
    [
        ("rsa2048", "pem", True),
        ("ecdsa384", "pem", True),
        ("rsa2048", "openssh", True),
        ("ecdsa256", "openssh", True),
        ("ed25519", "openssh", True),
        ("rsa3072", "pkcs8", True),
        ("ed25519", "pkcs8", True),
    ],
    ids=_cell_id,
)
def test_wrong_passphrase_names_ssh_key_passphrase(cell, keys, make_config, recorder):
    case = keys[cell]
    message = _refusal(make_config, ssh_private_key=case.text, ssh_key_passphrase=WRONG_PASSPHRASE)
    _assert_names_and_keeps_secret(message, "ssh_key_passphrase", case.text, WRONG_PASSPHRASE)
    assert "passphrase is wrong" in message
    assert PASSPHRASE not in message
    assert recorder.upserts == []


@pytest.mark.integration
def test_public_key_line_pasted_as_private_key_names_ssh_private_key(keys, make_config):
    public = keys["ed25519", "openssh", False].public
    message = _refusal(make_config, ssh_private_key=public)
    _assert_names_and_keeps_secret(message, "ssh_private_key", "")
    assert "public key" in message
    assert public.split()[1] not in message


@pytest.mark.integration
def test_pem_public_key_pasted_as_private_key_names_ssh_private_key(keys, make_config):
    private = serialization.load_ssh_private_key(
        keys["ecdsa256", "openssh", False].text.encode(), password=None
    )
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    message = _refusal(make_config, ssh_private_key=public_pem)
    _assert_names_and_keeps_secret(message, "ssh_private_key", "")
    assert "public key" in message.lower()


@pytest.fixture(scope="module")
def dsa_keys():
    return dsa_key_texts()


@pytest.mark.integration
@pytest.mark.parametrize("form", ["pem", "pkcs8", "pkcs8-encrypted", "openssh"])
def test_dsa_key_is_refused_as_no_longer_supported(form, dsa_keys, make_config):
    text = dsa_keys[form]
    passphrase = PASSPHRASE if form.endswith("encrypted") else ""
    message = _refusal(make_config, ssh_private_key=text, ssh_key_passphrase=passphrase)
    _assert_names_and_keeps_secret(message, "ssh_private_key", text, passphrase)
    assert "DSA" in message
    assert "no longer support" in message


def _truncations(keys) -> dict:
    openssh = keys["ed25519", "openssh", False].text
    pem_lines = keys["rsa2048", "pem", False].text.splitlines()
    pkcs8_lines = keys["ecdsa521", "pkcs8", False].text.splitlines()
    return {
        "openssh-first-half": openssh[: len(openssh) // 2],
        "pem-end-line-lost": "\n".join(pem_lines[:-3]),
        "pkcs8-middle-line-lost": "\n".join(pkcs8_lines[:2] + pkcs8_lines[3:]),
        "openssh-middle-lines-lost": "\n".join(
            openssh.splitlines()[:2] + openssh.splitlines()[-2:]
        ),
    }


@pytest.mark.integration
@pytest.mark.parametrize(
    "name",
    [
        "openssh-first-half",
        "pem-end-line-lost",
        "pkcs8-middle-line-lost",
        "openssh-middle-lines-lost",
    ],
)
def test_truncated_key_names_ssh_private_key(name, keys, make_config):
    text = _truncations(keys)[name]
    message = _refusal(make_config, ssh_private_key=text)
    _assert_names_and_keeps_secret(message, "ssh_private_key", text)
    assert any(word in message for word in ("truncated", "damaged")), message


_GARBAGE = {
    "words": "please see the key in our vault",
    "openssh-armour-around-noise": "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    + "QUJD" * 40
    + "\n-----END OPENSSH PRIVATE KEY-----\n",
    "rsa-armour-around-noise": "-----BEGIN RSA PRIVATE KEY-----\nbm9pc2Ugbm9pc2Ugbm9pc2Ugbm9p\n"
    "-----END RSA PRIVATE KEY-----\n",
    "a-path-not-a-key": "~/.ssh/id_ed25519",
    "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "putty-ppk": "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: me\n"
    "Public-Lines: 2\nAAAAC3NzaC1lZDI1NTE5AAAAIJFGg5f0oKwuUT6WrtAlD4qlVMkT8joxVDRWobS5\n",
}


@pytest.mark.integration
@pytest.mark.parametrize("name", _GARBAGE)
def test_garbage_key_names_ssh_private_key(name, make_config):
    message = _refusal(make_config, ssh_private_key=_GARBAGE[name])
    _assert_names_and_keeps_secret(message, "ssh_private_key", "")


@pytest.mark.integration
@pytest.mark.parametrize("value", ["", "   \n  "], ids=["empty", "whitespace"])
def test_empty_key_names_ssh_private_key(value, make_config):
    message = _refusal(make_config, ssh_private_key=value)
    assert "'ssh_private_key'" in message
    assert "required" in message


@pytest.mark.integration
@pytest.mark.openssh
def test_passphrase_for_unencrypted_key_is_ignored_with_a_warning(
    keys, key_sshd, make_config, recorder, capsys
):
    case = keys["ecdsa256", "pem", False]
    connector.update(
        configuration=make_config(ssh_private_key=case.text, ssh_key_passphrase=PASSPHRASE),
        state={},
    )
    assert len(_synced_ids(recorder)) == 20
    out = capsys.readouterr().out
    found = leaks(out, {"key": case.text, "passphrase": PASSPHRASE})  # names only
    assert found == [], "secret in output"
    warnings = [line for line in out.splitlines() if "WARNING" in line]
    assert any("ssh_key_passphrase" in line and "ignored" in line for line in warnings), out


# --- Isolation: only the configured key ---


@pytest.fixture
def home_with_authorized_key(tmp_path, client_key, key_sshd):
    """A HOME whose ~/.ssh holds the key the server authorizes, and a config that points at it."""
    home = tmp_path / "home"
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True)
    ssh_dir.chmod(0o700)
    (ssh_dir / "id_ed25519").write_text(client_key[0])
    (ssh_dir / "id_ed25519").chmod(0o600)
    (ssh_dir / "id_ed25519.pub").write_text(client_key[1] + "\n")
    (ssh_dir / "config").write_text(
        f"Host 127.0.0.1\n  User {key_sshd.user}\n  IdentityFile ~/.ssh/id_ed25519\n"
    )
    return home


@pytest.fixture
def agent_with_authorized_key(client_key, tmp_path):
    """A real ssh-agent holding the key the server authorizes: yields its socket path."""
    folder = Path(tempfile.mkdtemp(prefix="agent-"))  # short: socket paths max out at 108
    socket_path = folder / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(socket_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until(socket_path.exists, deadline=_AGENT_DEADLINE), "ssh-agent did not start"
        key_file = tmp_path / "agent_key"
        key_file.write_text(client_key[0])
        key_file.chmod(0o600)
        subprocess.run(
            ["ssh-add", str(key_file)],
            check=True,
            capture_output=True,
            timeout=30,
            env=dict(os.environ, SSH_AUTH_SOCK=str(socket_path)),
        )
        key_file.unlink()
        yield str(socket_path)
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(timeout=10)
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()


def _naive_client_gets_in(sshd, wrong_key_text: str) -> bool:
    """Whether paramiko's SSHClient, left at its defaults (agent and ~/.ssh keys on), logs in
    although the key it is given is wrong: the trap the connector must not fall into."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    wrong = connector.load_private_key(
        connector.Secret(wrong_key_text), connector.Secret(""), _SETTINGS
    )
    try:
        client.connect("127.0.0.1", sshd.port, username=sshd.user, pkey=wrong, timeout=10)
    except paramiko.AuthenticationException:
        return False
    finally:
        client.close()
    return True


def _assert_refused_with_auth_message(message: str, key_text: str):
    found = leaks(message, {"key": key_text})  # names only
    assert found == [], "secret in message"
    assert "Authentication refused" in message, message
    assert "'ssh_private_key'" in message


@pytest.mark.integration
@pytest.mark.openssh
def test_keys_in_home_ssh_are_never_used(
    home_with_authorized_key, stranger_key, key_sshd, make_config, recorder, monkeypatch, no_leaks
):
    monkeypatch.setenv("HOME", str(home_with_authorized_key))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    assert _naive_client_gets_in(key_sshd, stranger_key[0]), "the HOME key is not usable"

    message = _refusal(make_config, ssh_private_key=stranger_key[0])

    _assert_refused_with_auth_message(message, stranger_key[0])
    assert recorder.upserts == []


@pytest.mark.integration
@pytest.mark.openssh
def test_keys_in_the_ssh_agent_are_never_used(
    agent_with_authorized_key, stranger_key, key_sshd, make_config, recorder, monkeypatch, no_leaks
):
    monkeypatch.setenv("SSH_AUTH_SOCK", agent_with_authorized_key)
    monkeypatch.setenv("HOME", str(Path(agent_with_authorized_key).parent))
    assert len(paramiko.Agent().get_keys()) == 1
    assert _naive_client_gets_in(key_sshd, stranger_key[0]), "the agent key is not usable"

    message = _refusal(make_config, ssh_private_key=stranger_key[0])

    _assert_refused_with_auth_message(message, stranger_key[0])
    assert recorder.upserts == []


@pytest.mark.e2e
@pytest.mark.openssh
def test_fivetran_debug_ignores_home_keys_and_agent(
    home_with_authorized_key, agent_with_authorized_key, stranger_key, make_config, tmp_path
):
    project = copy_project(tmp_path / "project")
    config_path = tmp_path / "configuration.json"
    config_path.write_text(json.dumps(make_config(ssh_private_key=stranger_key[0])))
    env = cli_environment(home_with_authorized_key, {"SSH_AUTH_SOCK": agent_with_authorized_key})

    result = run_cli(
        project,
        ["debug", "--configuration", str(config_path)],
        home_with_authorized_key,
        env=env,
    )

    assert result.returncode != 0
    _assert_refused_with_auth_message(result.stdout, stranger_key[0])
    assert _rows_written(project) == 0


def _rows_written(project: Path) -> int:
    """Rows in table `user` of the project's warehouse (0 when the run created none)."""
    import duckdb

    if not (project / "files" / "warehouse.db").exists():
        return 0
    try:
        return len(warehouse_rows(project))
    except duckdb.CatalogException:  # the table is only created with its first row
        return 0
