"""No secret anywhere: succeeding and failing `fivetran debug` runs (at the CLI's default DEBUG
level, so paramiko's and sshtunnel's routed records are included) are searched, output, files/
and crash-reports/, for the passphrases, the API keys and the private keys' material."""

import json
import secrets
from typing import NamedTuple

import pytest
from fake_api import FakeApi
from key_material import PASSPHRASE, WRONG_PASSPHRASE, key_cases, leaks
from sdk_cli import copy_project, everything_written, run_debug, warehouse_rows
from servers import Playground

import connector

# Random, so that a hit can only be a leak.
_API_KEY = "pk-" + secrets.token_hex(16)
_WRONG_API_KEY = "pk-" + secrets.token_hex(16)
_FAKE_API_KEY = "fk-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def playground():
    """The playground with a random API key (overrides conftest's, whose key is fixed)."""
    server = Playground(api_key=_API_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Encrypted keys: RSA (traditional PEM), ECDSA (PKCS#8) and Ed25519 (OpenSSH)."""
    cases = key_cases(tmp_path_factory.mktemp("secret-keys"), ("rsa2048", "ecdsa384", "ed25519"))
    return {
        "key rsa pem": cases["rsa2048", "pem", True],
        "key ecdsa pkcs8": cases["ecdsa384", "pkcs8", True],
        "key ed25519 openssh (unauthorized)": cases["ed25519", "openssh", True],
    }


@pytest.fixture(scope="module")
def keys_sshd(sshd, keys):
    """The module's sshd, authorizing the RSA and ECDSA keys (not the Ed25519 one)."""
    sshd.authorize(keys["key rsa pem"].public)
    sshd.authorize(keys["key ecdsa pkcs8"].public)
    return sshd


class _BadRecordApi(FakeApi):
    """Serves one page whose last record has a createdAt the SDK cannot parse: the SDK's upsert
    raises inside update(), after the key was loaded and the tunnel opened."""

    def page(self, page, per_page, host):
        body = super().page(page, per_page, host)
        body["data"][-1]["createdAt"] = "the day before yesterday"
        return body


@pytest.fixture(scope="module")
def bad_record_api():
    api = _BadRecordApi(total=20, per_page=20, api_key=_FAKE_API_KEY)
    api.start()
    yield api
    api.stop()


def _typed_on_one_line(key_text: str) -> str:
    """The key as `fivetran configuration` takes it, newlines typed as \\n. The connector's
    normalised copy then differs from the configured value, which the SDK masks in crash
    reports: only this form shows whether a derived copy leaks."""
    return key_text.strip().replace("\n", "\\n")


class _Run(NamedTuple):
    overrides: dict  # configuration keys that differ from a working configuration
    expected: str  # text the output must show
    succeeds: bool
    connects: bool = True  # whether it gets as far as the SSH server (and its logs)


def _scenarios(keys, bad_record_api) -> dict:
    """Every run, by name."""
    unauthorized = keys["key ed25519 openssh (unauthorized)"]
    return {
        "succeeds-encrypted-pem-as-generated": _Run(
            {"ssh_private_key": keys["key rsa pem"].text},
            "Sync finished: 20 records",
            succeeds=True,
        ),
        "succeeds-encrypted-pem-typed-on-one-line": _Run(
            {}, "Sync finished: 20 records", succeeds=True
        ),
        "succeeds-encrypted-pkcs8-with-crlf": _Run(
            {"ssh_private_key": keys["key ecdsa pkcs8"].text.replace("\n", "\r\n")},
            "Sync finished: 20 records",
            succeeds=True,
        ),
        "wrong-passphrase": _Run(
            {"ssh_key_passphrase": WRONG_PASSPHRASE},
            "'ssh_key_passphrase': the passphrase is wrong",
            succeeds=False,
            connects=False,
        ),
        "wrong-api-key": _Run({"api_key": _WRONG_API_KEY}, "HTTP 401", succeeds=False),
        "host-key-mismatch": _Run(
            {"ssh_host_key": unauthorized.public}, "HOST KEY MISMATCH", succeeds=False
        ),
        "auth-refused": _Run(
            {"ssh_private_key": _typed_on_one_line(unauthorized.text)},
            "Authentication refused",
            succeeds=False,
        ),
        "crash-in-update-after-the-key-was-used": _Run(
            {
                "remote_port": str(bad_record_api.port),
                "api_key": _FAKE_API_KEY,
                "api_path": "/records",
            },
            "parse_utc_datetime",  # the SDK's upsert raised (it elides the message)
            succeeds=False,
        ),
    }


_NAMES = [
    "succeeds-encrypted-pem-as-generated",
    "succeeds-encrypted-pem-typed-on-one-line",
    "succeeds-encrypted-pkcs8-with-crlf",
    "wrong-passphrase",
    "wrong-api-key",
    "host-key-mismatch",
    "auth-refused",
    "crash-in-update-after-the-key-was-used",
]


@pytest.mark.e2e
@pytest.mark.openssh
@pytest.mark.parametrize("name", _NAMES)
def test_no_secret_in_anything_a_run_writes(
    name, keys, keys_sshd, bad_record_api, make_config, tmp_path, fresh_home
):
    run = _scenarios(keys, bad_record_api)[name]
    configuration = make_config(
        **{
            "ssh_private_key": _typed_on_one_line(keys["key rsa pem"].text),
            "ssh_key_passphrase": PASSPHRASE,
            **run.overrides,
        }
    )
    project = copy_project(tmp_path / "project")

    result = run_debug(project, configuration, fresh_home)

    output = result.stdout
    written = everything_written(project, output)
    found = leaks(
        written,
        {
            "passphrase": PASSPHRASE,
            "wrong passphrase": WRONG_PASSPHRASE,
            "api key": _API_KEY,
            "wrong api key": _WRONG_API_KEY,
            "fake api key": _FAKE_API_KEY,
            **{label: case.text for label, case in keys.items()},
        },
    )
    assert found == [], f"secrets written by the run: {found}"
    # Only now may a failing assertion print the output: it holds no secret.
    assert run.expected in output, output[-3000:]
    if run.connects:
        assert "DEBUG" in output and "[paramiko]" in output, "third-party DEBUG logs not routed"
    crash_reports = project / "crash-reports"
    if run.succeeds:
        assert result.returncode == 0
        assert len(warehouse_rows(project)) == 20
        assert not crash_reports.exists()
    else:
        assert result.returncode != 0
        assert crash_reports.is_dir() and any(crash_reports.iterdir()), "no crash report written"


@pytest.mark.unit
def test_leak_search_finds_key_material_however_it_is_written(keys):
    """The search above is only worth its silence if it finds a key re-wrapped, escaped or
    normalised, and a passphrase escaped as JSON writes it."""
    case = keys["key ed25519 openssh (unauthorized)"]  # OpenSSH wraps at 70, PEM at 64
    normalised = connector._normalized_key_pem(
        connector.Secret(" ".join(case.text.split("\n"))), "ssh_private_key"
    ).reveal()
    rewrapped = normalised != case.text  # a bool: a failing assert must not print the key
    assert rewrapped
    lines = case.text.splitlines()
    for form, written in {
        "as generated": case.text,
        "normalised": normalised,
        "in JSON": json.dumps({"ssh_private_key": case.text}),
        "as a repr": repr(case.text),
        "without newlines": "".join(case.text.split()),
        "one line of the second half": lines[-3],
    }.items():
        found = leaks(f"before {written} after", {"key": case.text})  # names only
        assert found, form
    found = leaks(json.dumps({"p": PASSPHRASE}), {"passphrase": PASSPHRASE})
    assert found == ["passphrase"]
    found = leaks(lines[1], {"key": case.text})
    assert found == [], "the first line of an OpenSSH key is the same in every key"
