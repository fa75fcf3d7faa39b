"""Host keys: every form people copy from OpenSSH's tools pins the server's key; a wrong or changed
key stops the sync before authentication and before any HTTP request; an empty ssh_host_key
trusts the first key seen (recorded in the state) and refuses any other one after."""

import base64
import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from conftest import wait_until
from fake_api import FakeApi
from key_material import new_key_pair
from servers import SshServer

import connector

_TOOL_TIMEOUT = 30  # seconds: a hang guard for ssh-keyscan and ssh-keygen


def _tool(args: list, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=_TOOL_TIMEOUT, check=True
    )


def _keygen_l(public_lines: str, hash_name: str = "sha256") -> list:
    """What `ssh-keygen -l [-E md5] -f -` prints for these public key lines."""
    return _tool(
        ["ssh-keygen", "-l", "-E", hash_name, "-f", "-"], public_lines
    ).stdout.splitlines()


def _md5(line: str) -> str:
    digest = hashlib.md5(base64.b64decode(line.split()[1])).hexdigest()
    return "MD5:" + ":".join(digest[i : i + 2] for i in range(0, 32, 2))


def _sha256(line: str) -> str:
    return connector.fingerprint(base64.b64decode(line.split()[1]))


@pytest.fixture(scope="module")
def stranger_line(tmp_path_factory) -> str:
    """The public line of an Ed25519 key that is not the server's."""
    path = new_key_pair(tmp_path_factory.mktemp("impostor"), "ed25519", "id_impostor")
    return Path(f"{path}.pub").read_text().strip()


@pytest.fixture(scope="module")
def host_key_forms(sshd, tmp_path_factory, stranger_line) -> dict:
    """Every way to write the server's host key(s), made by OpenSSH's own tools where they can."""
    folder = tmp_path_factory.mktemp("host-key-forms")
    ed25519, rsa, ecdsa = (sshd.host_keys[t] for t in ("ed25519", "rsa", "ecdsa"))
    keyscan = subprocess.run(
        ["ssh-keyscan", "-p", str(sshd.port), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=_TOOL_TIMEOUT,
        check=True,
    )
    assert len(keyscan.stdout.splitlines()) == 3, "ssh-keyscan found not all three keys"
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(keyscan.stdout)
    _tool(["ssh-keygen", "-H", "-f", str(known_hosts)])
    hashed = known_hosts.read_text().splitlines()
    assert all(line.startswith("|1|") for line in hashed)
    lf_ed25519 = _keygen_l(ed25519)[0]
    lf_rsa = _keygen_l(rsa)[0]
    assert lf_ed25519.endswith("(ED25519)") and lf_rsa.endswith("(RSA)")
    return {
        "pub-line-with-comment": ed25519,
        "pub-line-rsa": rsa,
        "pub-line-ecdsa": ecdsa,
        "pub-line-quoted": f'"{ed25519}"',
        "known-hosts-plain-host": f"127.0.0.1 {sshd.host_key_line('ed25519')}",
        "known-hosts-bracketed-port": f"[127.0.0.1]:{sshd.port} {sshd.host_key_line('ed25519')}",
        "known-hosts-other-host-name": f"bastion.example.com,10.0.0.5 {sshd.host_key_line('rsa')}",
        "known-hosts-hashed": next(line for line in hashed if " ssh-ed25519 " in line),
        "known-hosts-hashed-rsa-only": next(line for line in hashed if " ssh-rsa " in line),
        "ssh-keyscan-output-with-comments": keyscan.stderr + keyscan.stdout,
        "ssh-keyscan-output-escaped-newlines": "\\n".join(keyscan.stdout.splitlines()),
        "sha256-bare": _sha256(ed25519),
        "sha256-bare-with-padding": _sha256(ed25519) + "=",
        "sha256-bare-of-rsa-not-preferred": _sha256(rsa),
        "sha256-bare-of-ecdsa": _sha256(ecdsa),
        "ssh-keygen-lf-line": lf_ed25519,
        "ssh-keygen-lf-line-rsa": lf_rsa,
        "ssh-keygen-lf-of-keyscan": "\n".join(_keygen_l(keyscan.stdout)),
        "md5-bare": _md5(ed25519),
        "md5-bare-of-rsa": _md5(rsa),
        "md5-ssh-keygen-line": _keygen_l(ed25519, "md5")[0],
        "rotation-wrong-key-then-right-key": f"{stranger_line}\n{ed25519}",
        "rotation-wrong-fingerprint-then-right-rsa-fingerprint": (
            f"{_sha256(stranger_line)}\n{_sha256(rsa)}"
        ),
        "rotation-wrong-key-then-right-fingerprint": f"{stranger_line}\n{_sha256(ecdsa)}",
    }


_FORMS = [
    "pub-line-with-comment",
    "pub-line-rsa",
    "pub-line-ecdsa",
    "pub-line-quoted",
    "known-hosts-plain-host",
    "known-hosts-bracketed-port",
    "known-hosts-other-host-name",
    "known-hosts-hashed",
    "known-hosts-hashed-rsa-only",
    "ssh-keyscan-output-with-comments",
    "ssh-keyscan-output-escaped-newlines",
    "sha256-bare",
    "sha256-bare-with-padding",
    "sha256-bare-of-rsa-not-preferred",
    "sha256-bare-of-ecdsa",
    "ssh-keygen-lf-line",
    "ssh-keygen-lf-line-rsa",
    "ssh-keygen-lf-of-keyscan",
    "md5-bare",
    "md5-bare-of-rsa",
    "md5-ssh-keygen-line",
    "rotation-wrong-key-then-right-key",
    "rotation-wrong-fingerprint-then-right-rsa-fingerprint",
    "rotation-wrong-key-then-right-fingerprint",
]


@pytest.mark.integration
@pytest.mark.openssh
@pytest.mark.parametrize("form", _FORMS)
def test_host_key_form_pins_the_server_and_syncs(form, host_key_forms, make_config, recorder):
    connector.update(configuration=make_config(ssh_host_key=host_key_forms[form]), state={})

    assert len([d for t, d in recorder.upserts if t == "user"]) == 20
    assert "host_keys" not in recorder.checkpoints[-1], "a pinned key is not trusted on first use"


# --- Mismatch: refused before authentication and before any request ---


@pytest.fixture(scope="module")
def module_fake_api():
    api = FakeApi(total=20, per_page=20)
    api.start()
    yield api
    api.stop()


@pytest.fixture
def fake_api(module_fake_api):
    """A playground-shaped API whose requests are recorded, to prove none was sent."""
    module_fake_api.requests.clear()
    return module_fake_api


@pytest.fixture
def api_config(make_config, fake_api):
    def build(**overrides):
        return make_config(
            remote_port=str(fake_api.port),
            api_key=fake_api.api_key,
            api_path="/records",
            **overrides,
        )

    return build


def _refusal(configuration: dict, state=None) -> str:
    with pytest.raises(connector.SetupError) as caught:
        connector.update(configuration=configuration, state=state or {})
    return str(caught.value)


@pytest.mark.integration
@pytest.mark.openssh
def test_right_host_key_reaches_the_api(sshd, api_config, fake_api, recorder):
    """The control for the mismatch tests: with the right key the same set-up sends requests."""
    connector.update(configuration=api_config(), state={})
    assert fake_api.requests == ["/records"]
    assert len(recorder.upserts) == 20


@pytest.mark.integration
@pytest.mark.openssh
def test_host_key_mismatch_fails_before_any_request(
    sshd, api_config, fake_api, recorder, stranger_line
):
    log_before = len(sshd.log_text())

    message = _refusal(api_config(ssh_host_key=stranger_line))

    assert "HOST KEY MISMATCH" in message
    assert "ssh_host_key" in message
    assert f"Expected: ssh-ed25519 {_sha256(stranger_line)}" in message
    assert f"Presented: ssh-ed25519 {_sha256(sshd.host_keys['ed25519'])}" in message
    assert fake_api.requests == []
    assert recorder.upserts == [] and recorder.checkpoints == []
    # sshd logs the end of the refused connection once it notices; until then it may be quiet.
    assert wait_until(lambda: "[preauth]" in sshd.log_text()[log_before:], deadline=10)
    server_log = sshd.log_text()[log_before:]
    assert "publickey" not in server_log, "authentication was attempted"
    assert "authenticating user" not in server_log, "authentication was attempted"


@pytest.mark.integration
@pytest.mark.openssh
def test_fingerprint_mismatch_lists_every_key_the_server_presented(
    sshd, api_config, fake_api, recorder, stranger_line
):
    message = _refusal(api_config(ssh_host_key=_sha256(stranger_line)))

    assert "ssh_host_key" in message
    assert _sha256(stranger_line) in message
    for key_type in ("ed25519", "ecdsa", "rsa"):
        assert _sha256(sshd.host_keys[key_type]) in message, key_type
    assert fake_api.requests == []
    assert recorder.upserts == []


@pytest.mark.integration
@pytest.mark.openssh
def test_md5_fingerprint_mismatch_names_ssh_host_key(api_config, fake_api, stranger_line):
    message = _refusal(api_config(ssh_host_key=_md5(stranger_line)))
    assert "HOST KEY MISMATCH" in message and "ssh_host_key" in message
    assert _md5(stranger_line) in message
    assert fake_api.requests == []


@pytest.mark.integration
@pytest.mark.openssh
def test_pinned_type_the_server_lacks_is_a_mismatch(
    tmp_path, client_key, api_config, fake_api, stranger_line
):
    with SshServer(tmp_path / "rsa-only", [client_key[1]], host_key_types=("rsa",)) as server:
        message = _refusal(api_config(ssh_port=str(server.port), ssh_host_key=stranger_line))
    assert "HOST KEY MISMATCH" in message and "ssh_host_key" in message
    assert "no key of the pinned types" in message
    assert fake_api.requests == []


_GARBAGE_HOST_KEYS = {
    "words": "the bastion's key",
    "type-without-key": "ssh-ed25519",
    "broken-base64": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI",
    "type-and-blob-disagree": "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIJFGg5f0oKwuUT6WrtAlD4qlVMkT8"
    + "joxVDRWobS5GBCo",
    "short-fingerprint": "SHA256:2dW4+ChTLW7LMXcS65iENtk9",
    "sha1-fingerprint": "SHA1:2dW4+ChTLW7LMXcS65iENtk9PGRr",
    "private-key": "-----BEGIN OPENSSH PRIVATE KEY-----",
    "unsupported-type": "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
}


@pytest.mark.integration
@pytest.mark.parametrize("name", _GARBAGE_HOST_KEYS)
def test_garbage_host_key_names_ssh_host_key(name, api_config, fake_api, recorder):
    message = _refusal(api_config(ssh_host_key=_GARBAGE_HOST_KEYS[name]))
    assert "Configuration key 'ssh_host_key'" in message, message
    assert fake_api.requests == []
    assert recorder.upserts == []


@pytest.mark.integration
@pytest.mark.openssh
@pytest.mark.parametrize(
    "value",
    [
        "# the bastion's key, see the wiki",
        "@revoked * {stranger}",
        "@cert-authority *.example.com {stranger}",
        "\\n# escaped newline then a comment",
    ],
    ids=["comment-only", "revoked-only", "cert-authority", "escaped-comment"],
)
def test_host_key_setting_without_a_usable_key_is_refused_not_ignored(
    value, api_config, fake_api, recorder, stranger_line
):
    """A set ssh_host_key that pins nothing must not silently accept any server."""
    message = _refusal(api_config(ssh_host_key=value.format(stranger=stranger_line)))
    assert "Configuration key 'ssh_host_key'" in message, message
    assert fake_api.requests == []
    assert recorder.upserts == [] and recorder.checkpoints == []


@pytest.mark.integration
@pytest.mark.openssh
def test_a_revoked_server_key_is_refused_even_when_also_pinned(
    sshd, api_config, fake_api, recorder
):
    key = sshd.host_key_line("ed25519")
    message = _refusal(api_config(ssh_host_key=f"* {key}\n@revoked * {key}"))
    assert "is marked @revoked in ssh_host_key" in message
    assert fake_api.requests == [] and recorder.upserts == []


@pytest.mark.integration
@pytest.mark.openssh
def test_a_revoked_line_for_another_key_does_not_stop_the_pinned_one(
    sshd, api_config, fake_api, recorder, stranger_line
):
    pins = f"@revoked * {stranger_line}\n127.0.0.1 {sshd.host_key_line('ed25519')}"
    connector.update(configuration=api_config(ssh_host_key=pins), state={})
    assert fake_api.requests and recorder.upserts


# --- Trust on first use ---


def _sync(configuration: dict, state: dict, recorder) -> dict:
    """Run one in-process sync; returns the state it last checkpointed."""
    before = len(recorder.upserts)
    connector.update(configuration=configuration, state=state)
    assert len(recorder.upserts) - before == 20
    return recorder.checkpoints[-1]


@pytest.mark.integration
@pytest.mark.openssh
def test_first_use_records_the_key_and_a_changed_key_is_refused(
    tmp_path, client_key, make_config, recorder, capsys
):
    original = SshServer(tmp_path / "original", [client_key[1]])
    impostor = None
    try:
        original.start()
        address = f"127.0.0.1:{original.port}"
        config = make_config(ssh_port=str(original.port), ssh_host_key="")

        state = _sync(config, {}, recorder)

        line = original.host_key_line("ed25519")
        assert recorder.checkpoints[0]["host_keys"] == {address: line}, "recorded before syncing"
        assert state["host_keys"] == {address: line}
        out = capsys.readouterr().out
        warning = next(entry for entry in out.splitlines() if "trusting it on first use" in entry)
        assert "WARNING" in warning
        assert _sha256(line) in warning
        pasted = re.search(r"set ssh_host_key to: (ssh-[^\"\\]+)", warning).group(1).strip()
        assert pasted == line

        # The logged line pins the key as it is; the recorded state is trusted without a warning.
        _sync(make_config(ssh_port=str(original.port), ssh_host_key=pasted), {}, recorder)
        state = _sync(config, state, recorder)
        assert "trusting it on first use" not in capsys.readouterr().out

        original.stop()
        impostor = SshServer(tmp_path / "impostor", [client_key[1]], port=original.port).start()
        upserts_before = len(recorder.upserts)

        message = _refusal(config, state)

        new_line = impostor.host_key_line("ed25519")
        assert "HOST KEY MISMATCH" in message
        assert "recorded at the first sync" in message
        assert _sha256(line) in message and _sha256(new_line) in message
        assert f"set ssh_host_key to the new key (e.g. '{new_line}')" in message
        assert "reset the connector's state" in message
        assert len(recorder.upserts) == upserts_before
        # Both ways out the message names work: pin the new key, or forget the old one.
        _sync(make_config(ssh_port=str(original.port), ssh_host_key=new_line), state, recorder)
        _sync(config, {}, recorder)

        impostor.stop()
        original.start()
        _sync(config, state, recorder)
    finally:
        for server in (impostor, original):
            if server is not None:
                server.stop()
