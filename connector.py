"""Fivetran Connector SDK connector for an HTTP API that is only reachable through an SSH bastion.

Each sync opens an SSH tunnel (sshtunnel + paramiko, key authentication, verified host key),
GETs the API through the locally forwarded port, follows `next_page_url` pagination, upserts
every record into table `user`, and checkpoints after every page so that an interrupted sync
resumes where it stopped.
"""

import base64
import binascii
import contextlib
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

import paramiko
import sshtunnel
import urllib3
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from fivetran_connector_sdk import ConfigurationForm, Connector, Test, form_field
from fivetran_connector_sdk import Logging as log
from fivetran_connector_sdk import Operations as op

# --- Constants ---

_TABLE = "user"
# Bounds the page loop: an API that always sends a next page cannot spin forever.
_MAX_PAGES = 1_000_000
# HTTP attempts per page: connection errors, timeouts, 429 and 5xx are retried, others are not.
_HTTP_MAX_ATTEMPTS = 5
# First backoff step; doubled per attempt, with full jitter, up to _RETRY_MAX_SECONDS.
_RETRY_BASE_SECONDS = 1.0
_RETRY_MAX_SECONDS = 30.0
# A longer Retry-After is waited out only this long: a sync should not sleep for hours.
_RETRY_AFTER_CAP_SECONDS = 300.0
# Reopening the tunnel after the SSH session dropped: per sync, and attempts per reopening.
_MAX_RECONNECTS = 5
_RECONNECT_ATTEMPTS = 4
# Closing a tunnel never waits longer than this (sshtunnel's stop() can block forever).
_TEARDOWN_SECONDS = 5.0
# INFO progress lines at most this often; per-page detail goes to DEBUG.
_PROGRESS_INTERVAL_SECONDS = 5.0
# Larger SSH window and packets than paramiko's defaults (2 MiB, 32 KiB): bulk pages stream faster.
_SSH_WINDOW_SIZE = 16 * 1024 * 1024
_SSH_MAX_PACKET_SIZE = 256 * 1024
# Bytes relayed per read between the local socket and the channel. sshtunnel reads 16 KiB, and
# paramiko shifts its whole channel buffer (up to the window) on each read: bulk ran at half speed.
_RELAY_CHUNK = 256 * 1024
# Host key algorithms paramiko offers, per key type as it appears in a public key line.
_HOST_KEY_ALGORITHMS = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}
# The type names `ssh-keygen -lf` prints in parentheses, mapped to key types (ECDSA by bit size).
_KEYGEN_TYPE_NAMES = {
    "ED25519": {"": "ssh-ed25519"},
    "RSA": {"": "ssh-rsa"},
    "ECDSA": {
        "256": "ecdsa-sha2-nistp256",
        "384": "ecdsa-sha2-nistp384",
        "521": "ecdsa-sha2-nistp521",
    },
}
_PUBLIC_KEY_PREFIXES = ("ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-")
# How `fivetran configuration` marks a value it encrypted (decrypted only by the CLI's own runs).
_ENCRYPTED = "fivetran_encrypted:"


# --- Configuration ---


class SetupError(Exception):
    """A problem the user must fix; its message names the configuration key and what to do.

    `retryable` marks conditions that may clear by themselves (a server restarting), which a
    reconnect may wait out; everything else fails the sync at once.
    """

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class Secret:
    """A secret string whose repr never shows it: crash reports print failing frames' locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The secret itself: use it inside an expression, never bind it to a local."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class Field:
    """One configuration key: its default (None = required), form label and help text."""

    key: str
    label: str
    default: str | None
    help: str
    secret: bool = False


# Every configuration key, its default and its help, in one place: parsing, the setup form and the
# README's table all follow this list. An empty value always means "use the default".
FIELDS = (
    Field("ssh_host", "SSH host", None, "Host name or IP address of the SSH server (bastion)."),
    Field("ssh_port", "SSH port", "22", "Port of the SSH server. Default: 22."),
    Field("ssh_user", "SSH user", None, "User name on the SSH server."),
    Field(
        "ssh_private_key",
        "SSH private key",
        None,
        "The private key text (OpenSSH, PEM or PKCS#8; RSA, ECDSA or Ed25519), including the "
        "BEGIN and END lines. Newlines may be typed as \\n.",
        secret=True,
    ),
    Field(
        "ssh_key_passphrase",
        "SSH key passphrase",
        "",
        "Passphrase of the private key, if it is encrypted. Default: none.",
        secret=True,
    ),
    Field(
        "ssh_host_key",
        "SSH host key",
        "",
        "The server's public host key (a .pub, known_hosts or ssh-keyscan line) or its SHA256 "
        "fingerprint; several lines pin a set. Default: trust on first use and remember it.",
    ),
    Field(
        "remote_host",
        "API host (as seen from the SSH server)",
        "127.0.0.1",
        "Address the SSH server forwards to. Default: 127.0.0.1 (the SSH server itself).",
    ),
    Field("remote_port", "API port (as seen from the SSH server)", None, "Port of the API."),
    Field(
        "local_port",
        "Local port",
        "",
        "Local port of the tunnel on 127.0.0.1. Default: a free port picked at each sync.",
    ),
    Field("api_key", "API key", None, "Sent as 'Authorization: apiKey <api_key>'.", secret=True),
    Field(
        "api_path",
        "API path",
        "/auth/api_key",
        "Path (and query) of the first page. Default: /auth/api_key.",
    ),
    Field(
        "api_cursor_param",
        "Incremental cursor parameter",
        "",
        "Query parameter that asks for records updated since a time (e.g. since, updated_since); "
        "the newest synced updatedAt is sent. Default: none (full sync every time).",
    ),
    Field(
        "api_scheme",
        "API scheme",
        "http",
        "http or https. Default: http.",
    ),
    Field(
        "api_hostname",
        "API host name (TLS and Host header)",
        "",
        "Name the API's certificate and virtual host expect (TLS name and Host header). "
        "Default: remote_host over HTTPS; over HTTP, the tunnel's own address as Host.",
    ),
    Field(
        "api_ca_certificate",
        "API CA certificate",
        "",
        "PEM text of a private CA that signed the API's certificate. Default: the system's "
        "trust store.",
    ),
    Field(
        "ssh_timeout",
        "SSH timeout (seconds)",
        "30",
        "Bound on each SSH step: connect, banner, key exchange, authentication, opening a "
        "channel. Default: 30.",
    ),
    Field(
        "http_timeout",
        "HTTP timeout (seconds)",
        "60",
        "Bound on each HTTP read; failed requests are retried with backoff. Default: 60.",
    ),
    Field(
        "ssh_jump_host",
        "Jump host",
        "",
        "Optional SSH jump host in front of ssh_host. Default: none (connect directly).",
    ),
    Field("ssh_jump_port", "Jump host port", "22", "Port of the jump host. Default: 22."),
    Field("ssh_jump_user", "Jump host user", "", "User on the jump host. Default: ssh_user."),
    Field(
        "ssh_jump_private_key",
        "Jump host private key",
        "",
        "Private key for the jump host. Default: ssh_private_key.",
        secret=True,
    ),
    Field(
        "ssh_jump_key_passphrase",
        "Jump host key passphrase",
        "",
        "Passphrase of ssh_jump_private_key. Default: ssh_key_passphrase when the main key is "
        "used, none otherwise.",
        secret=True,
    ),
    Field(
        "ssh_jump_host_key",
        "Jump host key",
        "",
        "Host key or fingerprint of the jump host, as for ssh_host_key. Default: trust on first "
        "use.",
    ),
)
_FIELDS_BY_KEY = {f.key: f for f in FIELDS}


@dataclass(frozen=True)
class Hop:
    """One SSH server on the way to the API: where, who logs in, which host keys to accept."""

    prefix: str  # "ssh" or "ssh_jump": configuration keys are named f"{prefix}_host" and so on
    host: str
    port: int
    user: str
    key_text: Secret = field(repr=False)
    passphrase: Secret = field(repr=False)
    key_setting: str  # the configuration key the private key came from, for messages
    passphrase_setting: str
    host_key: str

    @property
    def address(self) -> str:
        """host:port as people write it (IPv6 in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """The whole configuration, parsed and validated once, defaults applied."""

    target: Hop
    jump: Hop | None
    remote_host: str
    remote_port: int
    local_port: int  # 0: pick a free port
    api_key: Secret = field(repr=False)
    api_path: str
    api_cursor_param: str
    api_scheme: str
    api_hostname: str  # empty: no Host override over plain HTTP, remote_host for TLS
    api_ca_certificate: str = field(repr=False)
    ssh_timeout: float
    http_timeout: float


def _value(configuration: dict, key: str) -> str:
    """The configured text of `key`, or its default when missing or empty ('' when optional)."""
    raw = configuration.get(key)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        default = _FIELDS_BY_KEY[key].default
        if default is None:
            raise SetupError(
                f"Configuration key '{key}' is required but empty: {_FIELDS_BY_KEY[key].help}"
            )
        return default
    if not isinstance(raw, str):
        raise SetupError(
            f"Configuration key '{key}' must be a string (all values in configuration.json are "
            f'strings): write it in quotes, e.g. "{key}": "...".'
        )
    return raw if _FIELDS_BY_KEY[key].secret else raw.strip()


def _port(configuration: dict, key: str, allow_zero: bool = False) -> int:
    """A TCP port number from `key`, checked to be an integer in range."""
    text = _value(configuration, key)
    if text == "" and allow_zero:
        return 0
    if not re.fullmatch(r"\d{1,5}", text) or not 1 <= int(text) <= 65535:
        raise SetupError(
            f"Configuration key '{key}' must be a port number from 1 to 65535, not {text!r}."
        )
    return int(text)


def _seconds(configuration: dict, key: str) -> float:
    """A positive number of seconds from `key`."""
    text = _value(configuration, key)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise SetupError(
            f"Configuration key '{key}' must be a number of seconds above 0 and at most 3600, "
            f"not {text!r}."
        )
    return seconds


def _host(configuration: dict, key: str) -> str:
    """A host name or IP address from `key`: no scheme, user, port or spaces."""
    text = _value(configuration, key)
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if not bare or re.search(r"[\s/@]", bare) or (bare.count(":") == 1):
        raise SetupError(
            f"Configuration key '{key}' must be a bare host name or IP address (no scheme, user "
            f"or port; ports have their own keys), not {text!r}."
        )
    return bare


def _user(configuration: dict, key: str, fallback: str = "") -> str:
    """A login name from `key` (or `fallback` when empty), without spaces."""
    text = _value(configuration, key) or fallback
    if not text or re.search(r"\s", text):
        raise SetupError(f"Configuration key '{key}' must be a user name without spaces.")
    return text


def _jump_hop(configuration: dict, target: Hop) -> Hop:
    """The jump host in front of `target`. Its user and key default to the target's; its
    passphrase defaults to the target's only when the target's key is used."""
    own_key = bool(_value(configuration, "ssh_jump_private_key").strip())
    own_passphrase = own_key or bool(_value(configuration, "ssh_jump_key_passphrase"))
    return Hop(
        prefix="ssh_jump",
        host=_host(configuration, "ssh_jump_host"),
        port=_port(configuration, "ssh_jump_port"),
        user=_user(configuration, "ssh_jump_user", fallback=target.user),
        key_text=Secret(_value(configuration, "ssh_jump_private_key"))
        if own_key
        else target.key_text,
        passphrase=Secret(_value(configuration, "ssh_jump_key_passphrase"))
        if own_passphrase
        else target.passphrase,
        key_setting="ssh_jump_private_key" if own_key else target.key_setting,
        passphrase_setting="ssh_jump_key_passphrase"
        if own_passphrase
        else target.passphrase_setting,
        host_key=_value(configuration, "ssh_jump_host_key"),
    )


def parse_configuration(configuration: dict) -> Settings:
    """Validate the raw configuration and return it as Settings, defaults applied."""
    if not isinstance(configuration, dict):
        raise SetupError("The configuration must be a JSON object of string values.")
    unknown = sorted(set(configuration) - set(_FIELDS_BY_KEY))
    if unknown:
        log.warning(f"Ignoring unknown configuration keys: {', '.join(unknown)} (check spelling).")
    # `fivetran configuration` saves password fields encrypted; `fivetran debug` and the setup
    # tests decrypt them, but `python connector.py` (connector.debug) hands them over as they are.
    encrypted = sorted(
        k for k, v in configuration.items() if isinstance(v, str) and v.startswith(_ENCRYPTED)
    )
    if encrypted:
        raise SetupError(
            f"These configuration values are still encrypted ({_ENCRYPTED}...): "
            f"{', '.join(encrypted)}. Run `fivetran debug`, which decrypts them, or put the plain "
            f"values in the configuration."
        )
    target = Hop(
        prefix="ssh",
        host=_host(configuration, "ssh_host"),
        port=_port(configuration, "ssh_port"),
        user=_user(configuration, "ssh_user"),
        key_text=Secret(_value(configuration, "ssh_private_key")),
        passphrase=Secret(_value(configuration, "ssh_key_passphrase")),
        key_setting="ssh_private_key",
        passphrase_setting="ssh_key_passphrase",
        host_key=_value(configuration, "ssh_host_key"),
    )
    jump = _jump_hop(configuration, target) if _value(configuration, "ssh_jump_host") else None
    api_path = _value(configuration, "api_path")
    if not api_path.startswith("/") or re.search(r"\s", api_path) or api_path.startswith("//"):
        raise SetupError(
            f"Configuration key 'api_path' must be a path starting with '/' (e.g. /auth/api_key), "
            f"not {api_path!r}."
        )
    scheme = _value(configuration, "api_scheme").lower()
    if scheme not in ("http", "https"):
        raise SetupError(
            f"Configuration key 'api_scheme' must be 'http' or 'https', not {scheme!r}."
        )
    cursor_param = _value(configuration, "api_cursor_param")
    if cursor_param and not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+", cursor_param):
        raise SetupError(
            f"Configuration key 'api_cursor_param' must be a query parameter name such as "
            f"'since' or 'updated_since', not {cursor_param!r}."
        )
    ca_pem = _value(configuration, "api_ca_certificate").replace("\\n", "\n")
    if ca_pem and "-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise SetupError(
            "Configuration key 'api_ca_certificate' must be PEM text starting with "
            "'-----BEGIN CERTIFICATE-----'."
        )
    if ca_pem and scheme != "https":
        log.warning("api_ca_certificate is set but api_scheme is 'http': it is not used.")
    return Settings(
        target=target,
        jump=jump,
        remote_host=_host(configuration, "remote_host"),
        remote_port=_port(configuration, "remote_port"),
        local_port=_port(configuration, "local_port", allow_zero=True),
        api_key=Secret(_value(configuration, "api_key").strip()),
        api_path=api_path,
        api_cursor_param=cursor_param,
        api_scheme=scheme,
        api_hostname=_host(configuration, "api_hostname")
        if _value(configuration, "api_hostname")
        else "",
        api_ca_certificate=ca_pem,
        ssh_timeout=_seconds(configuration, "ssh_timeout"),
        http_timeout=_seconds(configuration, "http_timeout"),
    )


# --- Private key ---

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_PEM_HEADER = re.compile(r"(Proc-Type|DEK-Info)\s*:\s*([^\s]+)")


def _normalized_key_pem(key_text: Secret, setting: str) -> Secret:
    """The key text as canonical PEM, whatever way it was pasted (\\n escapes, CRLF, quotes,
    indentation, one line). Raises SetupError for a public key, a PuTTY key or no key at all."""
    if "PuTTY-User-Key-File" in key_text.reveal():
        raise SetupError(
            f"Configuration key '{setting}' holds a PuTTY (.ppk) key: export it in OpenSSH "
            f"format (PuTTYgen: Conversions > Export OpenSSH key) and paste that."
        )
    match = _PEM_BLOCK.search(
        key_text.reveal()
        .replace("\\r", "")
        .replace("\\n", "\n")
        .replace("\r", "")
        .replace('"', "")
        .replace("'", "")
    )
    if match is None:
        if key_text.reveal().strip().strip("'\"").startswith(_PUBLIC_KEY_PREFIXES):
            raise SetupError(
                f"Configuration key '{setting}' holds a public key (it starts with "
                f"'{key_text.reveal().strip().strip(chr(39) + chr(34)).split()[0]}'): paste the "
                f"private key instead, the file without .pub, starting with '-----BEGIN'."
            )
        if "-----BEGIN" in key_text.reveal() and "PUBLIC KEY" in key_text.reveal():
            raise SetupError(
                f"Configuration key '{setting}' holds a public key (BEGIN PUBLIC KEY): paste the "
                f"private key instead."
            )
        raise SetupError(
            f"Configuration key '{setting}' does not hold a private key: paste the whole key "
            f"file, from its '-----BEGIN ... PRIVATE KEY-----' line to its '-----END' line "
            f"(the text may be truncated)."
        )
    label = match.group(1)
    if "PRIVATE KEY" not in label:
        raise SetupError(
            f"Configuration key '{setting}' holds a '{label}' block, not a private key: paste the "
            f"private key (a .pub file or certificate will not do)."
        )
    headers = "".join(f"{name}: {value}\n" for name, value in _PEM_HEADER.findall(match.group(2)))
    return Secret(
        f"-----BEGIN {label}-----\n"
        + (headers + "\n" if headers else "")
        + "\n".join(re.findall(".{1,64}", re.sub(r"\s+", "", _PEM_HEADER.sub("", match.group(2)))))
        + f"\n-----END {label}-----\n"
    )


def _openssh_key_info(pem: Secret) -> tuple:
    """(key type, encrypted) read from the header of an OpenSSH private key, or (None, None)."""
    try:
        # Decoded key material stays wrapped: a crash report prints the locals of this frame.
        blob = Secret(base64.b64decode("".join(pem.reveal().splitlines()[1:-1]), validate=True))
    except (binascii.Error, ValueError):
        return None, None
    magic = b"openssh-key-v1\0"
    if not blob.reveal().startswith(magic):
        return None, None
    try:
        offset = len(magic)
        fields = []
        for _ in range(3):  # cipher name, kdf name, kdf options
            (length,) = struct.unpack(">I", blob.reveal()[offset : offset + 4])
            fields.append(blob.reveal()[offset + 4 : offset + 4 + length])
            offset += 4 + length
        offset += 4  # number of keys
        offset += 4  # length of the public key blob
        (type_length,) = struct.unpack(">I", blob.reveal()[offset : offset + 4])
        key_type = blob.reveal()[offset + 4 : offset + 4 + type_length].decode("ascii", "replace")
    except struct.error:
        return None, None
    return key_type, fields[0] != b"none"


def _pem_is_encrypted(pem: Secret) -> bool:
    """Whether a PEM or PKCS#8 key block is encrypted."""
    return (
        "ENCRYPTED" in pem.reveal().split("\n", 2)[0] or "Proc-Type: 4,ENCRYPTED" in pem.reveal()
    )


def _decrypted_private_key(pem: Secret, passphrase: Secret, hop_settings: tuple):
    """The `cryptography` private key object of `pem`, decrypted with `passphrase` when needed."""
    key_setting, passphrase_setting = hop_settings
    openssh = pem.reveal().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    if openssh:
        key_type, encrypted = _openssh_key_info(pem)
        if key_type is None:
            raise SetupError(
                f"Configuration key '{key_setting}' holds a damaged or truncated OpenSSH key: "
                f"paste the whole file again."
            )
        if key_type == "ssh-dss":
            encrypted = None
    else:
        key_type = "ssh-dss" if "BEGIN DSA PRIVATE KEY" in pem.reveal() else None
        encrypted = _pem_is_encrypted(pem)
    if key_type == "ssh-dss":
        raise SetupError(
            f"Configuration key '{key_setting}' holds a DSA key, which OpenSSH and paramiko no "
            f"longer support: create an Ed25519 key (ssh-keygen -t ed25519) and authorize it "
            f"on the server."
        )
    if encrypted and not passphrase:
        raise SetupError(
            f"Configuration key '{key_setting}' holds an encrypted private key: set "
            f"'{passphrase_setting}' to its passphrase."
        )
    if not encrypted and passphrase:
        log.warning(
            f"'{passphrase_setting}' is set but '{key_setting}' is not encrypted: the "
            f"passphrase is ignored."
        )
    problem = None
    try:
        if openssh:
            key = serialization.load_ssh_private_key(
                pem.reveal().encode(),
                password=passphrase.reveal().encode() if encrypted else None,
            )
        else:
            key = serialization.load_pem_private_key(
                pem.reveal().encode(),
                password=passphrase.reveal().encode() if encrypted else None,
            )
    except (ValueError, TypeError) as error:
        problem = (
            f"Could not decrypt '{key_setting}' with '{passphrase_setting}': the passphrase is "
            f"wrong (or the key text is damaged). Check both."
            if encrypted
            else f"Configuration key '{key_setting}' could not be read as a private key "
            f"({type(error).__name__}): the text is damaged or truncated; paste the whole file."
        )
    except UnsupportedAlgorithm:
        problem = (
            f"Configuration key '{key_setting}' holds a key of a type or cipher this connector "
            f"cannot use: use an RSA, ECDSA or Ed25519 key."
        )
    if problem:
        raise SetupError(problem)
    return key


def load_private_key(key_text: Secret, passphrase: Secret, hop_settings: tuple) -> paramiko.PKey:
    """Load an RSA, ECDSA or Ed25519 private key (OpenSSH, PEM or PKCS#8 text) as a paramiko key.

    `hop_settings` is (key setting, passphrase setting): the configuration keys messages name."""
    key = _decrypted_private_key(
        _normalized_key_pem(key_text, hop_settings[0]), passphrase, hop_settings
    )
    if isinstance(key, rsa.RSAPrivateKey):
        return paramiko.RSAKey(key=key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise SetupError(
                f"Configuration key '{hop_settings[0]}' holds an ECDSA key on curve "
                f"{key.curve.name}, which SSH does not use: use P-256, P-384 or P-521."
            )
        return paramiko.ECDSAKey(vals=(key, key.public_key()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return paramiko.Ed25519Key(
            file_obj=io.StringIO(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.OpenSSH,
                    serialization.NoEncryption(),
                ).decode()
            )
        )
    if isinstance(key, dsa.DSAPrivateKey):
        raise SetupError(
            f"Configuration key '{hop_settings[0]}' holds a DSA key, which OpenSSH and paramiko "
            f"no longer support: create an Ed25519 key (ssh-keygen -t ed25519)."
        )
    raise SetupError(
        f"Configuration key '{hop_settings[0]}' holds a key of an unsupported type "
        f"({type(key).__name__}): use an RSA, ECDSA or Ed25519 key."
    )


# --- Host key ---


def fingerprint(key_blob: bytes) -> str:
    """The SHA256 fingerprint of a public key blob, as OpenSSH prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")


def _md5_fingerprint(key_blob: bytes) -> str:
    """The legacy MD5 fingerprint of a public key blob, as OpenSSH prints it."""
    digest = hashlib.md5(key_blob).hexdigest()
    return "MD5:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True)
class HostKeyPin:
    """One accepted host key: a whole key (type and blob) or a fingerprint (type maybe unknown)."""

    key_type: str | None  # None: a fingerprint that does not say its key type
    blob: bytes | None = None
    fingerprint: str | None = None
    revoked: bool = False  # a known_hosts @revoked line: this key is refused, whatever else

    def matches(self, key: paramiko.PKey) -> bool:
        """Whether the server's key is this one."""
        blob = key.asbytes()
        if self.blob is not None:
            return blob == self.blob
        if self.fingerprint.startswith("MD5:"):
            return self.fingerprint.lower() == _md5_fingerprint(blob).lower()
        return self.fingerprint == fingerprint(blob)

    def describe(self) -> str:
        """The pin as its SHA256 fingerprint (or the fingerprint given)."""
        if self.blob is not None:
            return f"{self.key_type} {fingerprint(self.blob)}"
        return f"{self.key_type or 'any type'} {self.fingerprint}"


def _key_type_of_blob(blob: bytes) -> str | None:
    """The key type named at the start of a public key blob, or None if it is not one."""
    try:
        (length,) = struct.unpack(">I", blob[:4])
        return blob[4 : 4 + length].decode("ascii")
    except (struct.error, UnicodeDecodeError):
        return None


def parse_host_keys(text: str, setting: str) -> tuple:
    """The pins in `text`: public key, known_hosts or ssh-keyscan lines, or SHA256/MD5 fingerprints
    (bare or as `ssh-keygen -lf` prints them), one per line. Empty text: no pins."""
    pins = []
    for number, raw_line in enumerate(text.replace("\\n", "\n").splitlines(), start=1):
        line = raw_line.strip().strip("'\"").strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if tokens[0] == "@revoked":
            revoked = _pin_from_key_tokens(tokens[1:])
            if revoked is None:
                raise SetupError(
                    f"Configuration key '{setting}', line {number}: an @revoked line must carry "
                    f"the revoked public key ('@revoked <host> ssh-ed25519 AAAA...')."
                )
            pins.append(HostKeyPin(revoked.key_type, blob=revoked.blob, revoked=True))
            continue
        if tokens[0] == "@cert-authority":
            raise SetupError(
                f"Configuration key '{setting}', line {number}: @cert-authority (host "
                f"certificates) is not supported: pin the host's own key."
            )
        pin = _pin_from_key_tokens(tokens) or _pin_from_fingerprint_tokens(tokens)
        if pin is None:
            raise SetupError(
                f"Configuration key '{setting}', line {number} is not a host key: give a public "
                f"key line ('ssh-ed25519 AAAA...'), a known_hosts or ssh-keyscan line, or a "
                f"fingerprint ('SHA256:...'), one per line."
            )
        if pin.key_type is not None and pin.key_type not in _HOST_KEY_ALGORITHMS:
            raise SetupError(
                f"Configuration key '{setting}', line {number}: host key type {pin.key_type} is "
                f"not supported: pin the server's Ed25519, ECDSA or RSA key."
            )
        pins.append(pin)
    if text.strip() and all(pin.revoked for pin in pins):
        # Set but pinning nothing: accepting any server here would be a silent hole.
        raise SetupError(
            f"Configuration key '{setting}' holds no host key to pin (only comments or @revoked "
            f"lines): give the server's public key line or fingerprint, or leave it empty to "
            f"trust the first key seen."
        )
    return tuple(pins)


def _pin_from_key_tokens(tokens: list) -> HostKeyPin | None:
    """A whole-key pin from a line's tokens: `type base64`, with an optional host field before."""
    for index, token in enumerate(tokens[:-1]):
        if token.startswith(_PUBLIC_KEY_PREFIXES) and tokens[index + 1].startswith("AAAA"):
            try:
                blob = base64.b64decode(tokens[index + 1], validate=True)
            except (binascii.Error, ValueError):
                return None
            if _key_type_of_blob(blob) != token:
                return None
            return HostKeyPin(key_type=token, blob=blob)
    return None


def _pin_from_fingerprint_tokens(tokens: list) -> HostKeyPin | None:
    """A fingerprint pin: `SHA256:...` or `MD5:..`, alone or in an `ssh-keygen -lf` line."""
    for token in tokens:
        sha = re.fullmatch(r"SHA256:([A-Za-z0-9+/]{43})=?", token)
        md5 = re.fullmatch(r"MD5:((?:[0-9a-fA-F]{2}:){15}[0-9a-fA-F]{2})", token)
        if sha or md5:
            key_type = None
            hint = re.fullmatch(r"\(([A-Z0-9\-]+)\)", tokens[-1]) if len(tokens) > 1 else None
            if hint and hint.group(1) in _KEYGEN_TYPE_NAMES:
                sizes = _KEYGEN_TYPE_NAMES[hint.group(1)]
                key_type = sizes.get(tokens[0] if tokens[0].isdigit() else "", sizes.get(""))
            return HostKeyPin(
                key_type=key_type, fingerprint=f"SHA256:{sha.group(1)}" if sha else token
            )
    return None


def host_key_line(key: paramiko.PKey) -> str:
    """The public key line of a server key, as `ssh_host_key` takes it."""
    return f"{key.get_name()} {key.get_base64()}"


def _host_key_type(key: paramiko.PKey) -> str:
    """The key type of a server key ('ssh-rsa' also for rsa-sha2-* negotiations)."""
    return _key_type_of_blob(key.asbytes())


# --- SSH connection ---


class _QuickAckSocket(socket.socket):
    """A TCP socket that re-arms TCP_QUICKACK after every receive (Linux).

    OpenSSH does not set TCP_NODELAY on forwarding-only sessions, so a response written in two
    pieces waits for our ACK of the first, which the kernel delays ~40 ms. Acknowledging at once
    removes that stall; elsewhere the option does not exist and this is a plain socket."""

    _QUICKACK = getattr(socket, "TCP_QUICKACK", None)

    def recv(self, bufsize, flags=0):
        data = super().recv(bufsize, flags)
        if self._QUICKACK is not None:
            with contextlib.suppress(OSError):
                self.setsockopt(socket.IPPROTO_TCP, self._QUICKACK, 1)
        return data


def _tcp_connect(hop: Hop, timeout: float) -> socket.socket:
    """A TCP connection to the hop, bounded by `timeout`, with the DNS, refused and timeout cases
    told apart."""
    try:
        addresses = socket.getaddrinfo(hop.host, hop.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise SetupError(
            f"Could not resolve {hop.prefix}_host '{hop.host}' "
            f"({getattr(error, 'strerror', None) or error}): check the host name.",
            retryable=True,
        ) from None
    problem = None
    for family, socktype, proto, _, sockaddr in addresses:
        sock = _QuickAckSocket(family, socktype, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except TimeoutError:
            problem = SetupError(
                f"Timed out after {timeout:g} s connecting to {hop.address} "
                f"({hop.prefix}_host, {hop.prefix}_port): no answer, as when a firewall drops the "
                f"packets or the address is wrong. Check both, or raise ssh_timeout.",
                retryable=True,
            )
        except ConnectionRefusedError:
            problem = SetupError(
                f"Connection refused by {hop.address}: nothing listens on that port. Check "
                f"{hop.prefix}_host and {hop.prefix}_port.",
                retryable=True,
            )
        except OSError as error:
            problem = SetupError(
                f"Could not connect to {hop.address} ({error.strerror or error}): check "
                f"{hop.prefix}_host and {hop.prefix}_port.",
                retryable=True,
            )
        else:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                # A dead server is noticed when sent data stays unacknowledged this long.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout * 1000))
            return sock
        sock.close()
    raise problem


def _close_transport(transport: paramiko.Transport) -> None:
    """Close a transport and cancel its handshake timer, which otherwise outlives a failed
    handshake as a thread for handshake_timeout seconds."""
    transport.close()
    transport.packetizer.complete_handshake()
    if transport.is_alive() and transport is not threading.current_thread():
        transport.join(_TEARDOWN_SECONDS)


def _start_session(hop: Hop, sock, key_types: tuple, timeout: float) -> paramiko.Transport:
    """An SSH transport over `sock` after key exchange (server key known, not yet checked)."""
    transport = paramiko.Transport(
        sock,
        default_window_size=_SSH_WINDOW_SIZE,
        default_max_packet_size=_SSH_MAX_PACKET_SIZE,
    )
    transport.set_log_channel(_library_logger("paramiko").name)
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    transport.auth_timeout = timeout
    transport.get_security_options().key_types = key_types
    problem = None
    try:
        transport.start_client(timeout=timeout)
    except paramiko.SSHException as error:
        # A banner read that timed out and one that hit EOF carry the same text; the cause differs.
        timed_out = isinstance(error.__context__, TimeoutError)
        problem = _describe_handshake_failure(
            hop, str(error) + (" (timed out)" if timed_out else ""), timeout, key_types
        )
    except EOFError:
        if transport.packetizer.handshake_timed_out():  # paramiko's handshake timer ends as EOF
            problem = _describe_handshake_failure(
                hop, "key exchange timed out", timeout, key_types
            )
        else:
            problem = SetupError(
                f"{hop.address} closed the connection during the SSH handshake: is "
                f"{hop.prefix}_port the SSH server's port?",
                retryable=True,
            )
    except OSError as error:
        problem = SetupError(
            f"The connection to {hop.address} failed during the SSH handshake "
            f"({error.strerror or error}).",
            retryable=True,
        )
    except Exception as error:  # paramiko re-raises whatever its transport thread hit
        problem = SetupError(
            f"The SSH handshake with {hop.address} failed ({type(error).__name__}: {error}): "
            f"check {hop.prefix}_host and {hop.prefix}_port.",
            retryable=True,
        )
    else:
        if not transport.initial_kex_done:
            # start_client returns quietly, without a session, when its own timeout runs out
            # before paramiko's banner or handshake timer does.
            problem = _describe_handshake_failure(
                hop,
                "key exchange timed out"
                if transport.remote_version
                else "no SSH protocol banner (timed out)",
                timeout,
                key_types,
            )
    if problem:
        _close_transport(transport)
        raise problem
    return transport


def _describe_handshake_failure(hop: Hop, text: str, timeout: float, key_types: tuple):
    """A SetupError for a failed banner exchange or key exchange, from paramiko's message."""
    if "banner" in text.lower():
        if "timeout" in text.lower() or "timed out" in text.lower():
            return SetupError(
                f"{hop.address} accepted the connection but sent no SSH banner within "
                f"{timeout:g} s: it is not an SSH server, or it is stuck. Check "
                f"{hop.prefix}_port.",
                retryable=True,
            )
        return SetupError(
            f"{hop.address} is not an SSH server, or it turned the connection away: it closed "
            f"the connection without an SSH banner (a busy server does that past MaxStartups). "
            f"Check {hop.prefix}_host and {hop.prefix}_port.",
            retryable=True,
        )
    if "incompatible" in text.lower() or "no acceptable" in text.lower():
        return _IncompatibleHostKeyTypes(
            f"{hop.address} offers no host key of the types {', '.join(key_types)}."
        )
    if "timed out" in text.lower() or "timeout" in text.lower():
        return SetupError(
            f"{hop.address} sent an SSH banner and then stopped answering: the key exchange "
            f"timed out after {timeout:g} s. Check the server, or raise ssh_timeout.",
            retryable=True,
        )
    return SetupError(
        f"The SSH handshake with {hop.address} failed ({text}): check {hop.prefix}_host and "
        f"{hop.prefix}_port.",
        retryable=True,
    )


class _IncompatibleHostKeyTypes(SetupError):
    """The server has no host key of the types we asked for (a step in host key negotiation)."""


def _candidate_key_types(pins: tuple, tried: set) -> tuple:
    """Host key algorithms to offer next: the pinned types (else all) minus those tried."""
    types = (
        {pin.key_type for pin in pins}
        if pins and all(pin.key_type for pin in pins)
        else set(_HOST_KEY_ALGORITHMS)
    )
    return tuple(
        algorithm
        for key_type, algorithms in _HOST_KEY_ALGORITHMS.items()
        if key_type in types and key_type not in tried
        for algorithm in algorithms
    )


def _verified_session(
    hop: Hop, open_socket: Callable, pins: tuple, pin_origin: str, timeout: float
):
    """An SSH transport whose server key matches one of `pins` (any key when there are none).

    A fingerprint does not say its key type, so the key types are offered one family at a time
    until the server presents a key that matches or has no other type: a server that also holds
    the pinned key is never reported as a mismatch."""
    revoked = [pin for pin in pins if pin.revoked]
    pins = tuple(pin for pin in pins if not pin.revoked)
    tried, presented = set(), []
    for _ in range(len(_HOST_KEY_ALGORITHMS)):
        key_types = _candidate_key_types(pins, tried)
        if not key_types:
            break
        try:
            transport = _start_session(hop, open_socket(), key_types, timeout)
        except _IncompatibleHostKeyTypes:
            break
        server_key = transport.get_remote_server_key()
        if any(pin.matches(server_key) for pin in revoked):
            _close_transport(transport)
            raise SetupError(
                f"The SSH host key of {hop.address} ({_host_key_type(server_key)} "
                f"{fingerprint(server_key.asbytes())}) is marked @revoked in "
                f"{hop.prefix}_host_key: it is not trusted. No credentials or requests were "
                f"sent. The server needs a new host key (then pin that one)."
            )
        if not pins or any(pin.matches(server_key) for pin in pins):
            return transport, server_key
        _close_transport(transport)
        presented.append(server_key)
        tried.add(_host_key_type(server_key))
    raise _host_key_mismatch(hop, pins, presented, pin_origin)


def _host_key_mismatch(hop: Hop, pins: tuple, presented: list, pin_origin: str) -> SetupError:
    """The error for a server whose key is not among the accepted ones."""
    expected = "; ".join(pin.describe() for pin in pins)
    got = (
        "; ".join(f"{_host_key_type(k)} {fingerprint(k.asbytes())}" for k in presented)
        or "no key of the pinned types"
    )
    if pin_origin == "state":
        fix = (
            f"If the server's key was changed on purpose, set {hop.prefix}_host_key to the new "
            f"key (e.g. '{host_key_line(presented[0]) if presented else '...'}'), or reset the "
            f"connector's state to trust the new key; otherwise someone may be intercepting the "
            f"connection."
        )
        what = "differs from the one recorded at the first sync"
    else:
        fix = (
            f"Check {hop.prefix}_host_key (ssh-keyscan -p {hop.port} {hop.host} prints the "
            f"server's keys); if they do not match, someone may be intercepting the connection."
        )
        what = f"does not match {hop.prefix}_host_key"
    return SetupError(
        f"HOST KEY MISMATCH for {hop.address}: the server's host key {what}. "
        f"Expected: {expected}. Presented: {got}. No credentials or requests were sent. {fix}"
    )


def _authenticate(hop: Hop, transport: paramiko.Transport, pkey: paramiko.PKey) -> None:
    """Log in with the configured key only; a refusal names the user and the key setting."""
    problem = None
    try:
        transport.auth_publickey(hop.user, pkey)
    except paramiko.BadAuthenticationType as error:
        problem = SetupError(
            f"{hop.address} does not accept key authentication for user '{hop.user}' (it "
            f"allows: {', '.join(error.allowed_types) or 'nothing'}): enable "
            f"PubkeyAuthentication or check {hop.prefix}_user."
        )
    except paramiko.AuthenticationException as error:
        # paramiko raises this type also for a timeout or a connection that died mid-login.
        refused = transport.is_active() and "timeout" not in str(error).lower()
        problem = (
            SetupError(
                f"Authentication refused by {hop.address} for user '{hop.user}' with the key in "
                f"'{hop.key_setting}' (fingerprint {fingerprint(pkey.asbytes())}): check "
                f"{hop.prefix}_user, and that the key's public half is in that user's "
                f"~/.ssh/authorized_keys on the server."
            )
            if refused
            else _login_interrupted(hop, transport, error)
        )
    except Exception as error:  # SSHException, EOFError, OSError: the login did not finish
        problem = _login_interrupted(hop, transport, error)
    if problem:
        _close_transport(transport)
        raise problem


def _login_interrupted(hop: Hop, transport: paramiko.Transport, error: Exception) -> SetupError:
    """The error for a login that timed out or whose connection died (not a refusal)."""
    return SetupError(
        f"{hop.address} did not complete authentication for user '{hop.user}' within "
        f"{transport.auth_timeout:g} s: it stopped answering or closed the connection "
        f"({error or type(error).__name__}).",
        retryable=True,
    )


def _open_channel(transport, hop: Hop, destination: tuple, what: str, timeout: float):
    """A direct-tcpip channel from `hop` to `destination`; refusal and failure are told apart."""
    problem = None
    try:
        return transport.open_channel(
            "direct-tcpip", destination, ("127.0.0.1", 0), timeout=timeout
        )
    except paramiko.ChannelException as error:
        if error.code == 1:
            problem = SetupError(
                f"{hop.address} refuses port forwarding for user '{hop.user}' "
                f"('administratively prohibited'): allow it in the server's sshd_config "
                f"(AllowTcpForwarding yes, PermitOpen) to reach {what}."
            )
        elif error.code == 2:
            problem = SetupError(
                f"{hop.address} could not connect to {what} at "
                f"{destination[0]}:{destination[1]}: nothing listens there, as seen from "
                f"{hop.address}. Check the settings named above: they are resolved on "
                f"{hop.address}, not here.",
                retryable=True,
            )
        else:
            problem = SetupError(
                f"{hop.address} refused to open a channel to {what} ({error.text}).",
                retryable=True,
            )
    except (paramiko.SSHException, EOFError, OSError) as error:
        problem = SetupError(
            f"Opening a forwarded channel through {hop.address} to {what} failed or timed out "
            f"after {timeout:g} s ({error or type(error).__name__}).",
            retryable=True,
        )
    raise problem


@dataclass
class SshSession:
    """Authenticated SSH transports, outermost first; the last one reaches the API."""

    transports: list
    server_keys: dict  # hop address -> the host key it presented
    pkey: paramiko.PKey | None = None  # the key the last hop accepted

    @property
    def transport(self) -> paramiko.Transport:
        return self.transports[-1]

    def is_active(self) -> bool:
        """Whether every hop's transport is still up."""
        return all(t.is_active() for t in self.transports)

    def close(self) -> None:
        """Close every transport, innermost first."""
        for transport in reversed(self.transports):
            _close_transport(transport)


def _tofu_pins(hop: Hop, known_hosts: dict) -> tuple:
    """Pins for `hop`: from its setting, else the key recorded at the first sync, else none."""
    if hop.host_key:
        return parse_host_keys(hop.host_key, f"{hop.prefix}_host_key"), "setting"
    recorded = known_hosts.get(hop.address)
    if recorded:
        return parse_host_keys(recorded, "state"), "state"
    return (), "none"


def _socket_opener(hop: Hop, outer, outer_hop: Hop, timeout: float) -> Callable:
    """How to reach `hop`: a TCP connection, or (behind a jump host) a channel through the
    outer hop's transport. Called once per connection attempt."""
    if outer is None:
        return lambda: _tcp_connect(hop, timeout)
    return lambda: _open_channel(
        outer, outer_hop, (hop.host, hop.port), "the SSH server (ssh_host, ssh_port)", timeout
    )


def open_ssh_session(settings: Settings, known_hosts: dict) -> SshSession:
    """Connect, verify and authenticate hop by hop (jump host first), then check that the last hop
    forwards to the API. `known_hosts` (address -> key line) is read for and updated with keys
    trusted on first use."""
    hops = [h for h in (settings.jump, settings.target) if h is not None]
    keys = {
        h.prefix: load_private_key(h.key_text, h.passphrase, (h.key_setting, h.passphrase_setting))
        for h in hops
    }
    session = SshSession(transports=[], server_keys={}, pkey=keys["ssh"])
    timeout = settings.ssh_timeout
    try:
        for hop in hops:
            outer = session.transport if session.transports else None
            open_socket = _socket_opener(hop, outer, hops[0], timeout)
            pins, origin = _tofu_pins(hop, known_hosts)
            transport, server_key = _verified_session(hop, open_socket, pins, origin, timeout)
            session.transports.append(transport)
            session.server_keys[hop.address] = server_key
            if origin == "none":
                known_hosts[hop.address] = host_key_line(server_key)
                log.warning(
                    f"The SSH host key of {hop.address} is not pinned: trusting it on first use "
                    f"({_host_key_type(server_key)} {fingerprint(server_key.asbytes())}); a sync "
                    f"records it and refuses any other key from then on. To pin it, set "
                    f"{hop.prefix}_host_key to: {host_key_line(server_key)}"
                )
            _authenticate(hop, transport, keys[hop.prefix])
            transport.set_keepalive(max(1, int(timeout / 3)))
            log.debug(f"SSH session to {hop.address} as '{hop.user}' authenticated")
        _open_channel(
            session.transport,
            settings.target,
            (settings.remote_host, settings.remote_port),
            "the API (remote_host, remote_port)",
            timeout,
        ).close()
    except BaseException:
        session.close()
        raise
    return session


# --- SSH tunnel ---


class _LogBridge(logging.Handler):
    """Routes sshtunnel's and paramiko's log records into the SDK log: details at DEBUG, warnings
    at WARNING. paramiko's errors (tracebacks of a failed handshake) go to DEBUG: the sync's own
    error names their cause and what to do."""

    def emit(self, record: logging.LogRecord) -> None:
        if log.LOG_LEVEL is None:
            return
        try:
            message = f"[{record.name.rsplit('.', 1)[-1]}] {record.getMessage()}"
        except Exception:  # a library's malformed log call must never break a sync
            return
        if record.levelno >= logging.WARNING and not (
            record.name.endswith("paramiko") and record.levelno >= logging.ERROR
        ):
            log.warning(message)
        else:
            log.debug(message)


def _library_logger(name: str) -> logging.Logger:
    """A logger for a third-party library, routed into the SDK log only, never to the console."""
    logger = logging.getLogger(f"{__name__}.{name}")
    if not any(isinstance(h, _LogBridge) for h in logger.handlers):
        logger.addHandler(_LogBridge())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


class _ForwardHandler(sshtunnel._ForwardHandler):
    """sshtunnel's handler of one forwarded connection, relaying _RELAY_CHUNK bytes per read."""

    def _redirect(self, chan):
        while chan.active:
            readable, _, _ = select.select([self.request, chan], [], [], 5)
            if self.request in readable:
                data = self.request.recv(_RELAY_CHUNK)
                if not data:
                    break
                chan.sendall(data)
            if chan in readable:
                if not chan.recv_ready():
                    break  # the channel closed
                self.request.sendall(chan.recv(_RELAY_CHUNK))


class _Forwarder(sshtunnel.SSHTunnelForwarder):
    """sshtunnel's forwarder, whose gateway session is one we opened ourselves: bounded in time,
    host key verified, causes named. sshtunnel is pinned exactly: its private hooks are stable."""

    def __init__(self, session: SshSession, **kwargs):
        self._session = session
        super().__init__(**kwargs)
        self._transport = session.transport  # start() then skips its own gateway connection

    def _connect_to_gateway(self):
        """Never log in on sshtunnel's own terms (agent, ~/.ssh, no timeouts): the gateway
        session is always the one open_ssh_session verified."""
        self._transport = self._session.transport

    def _check_is_started(self):
        # sshtunnel also demands a live transport here, so after a dropped session the local port
        # became unreadable and teardown warned "not started": started means the listener serves.
        if not self.is_alive:
            raise sshtunnel.HandlerSSHTunnelForwarderError("The tunnel is not started.")

    def _make_ssh_forward_handler_class(self, remote_address_):
        handler = super()._make_ssh_forward_handler_class(remote_address_)
        return type("Handler", (_ForwardHandler, handler), {})

    @property
    def is_active(self):
        return self._session.is_active()


def _new_forwarder(session: SshSession, settings: Settings) -> _Forwarder:
    """An sshtunnel forwarder on 127.0.0.1 over `session`, blind to this machine's SSH setup."""
    return _Forwarder(
        session,
        ssh_address_or_host=(settings.target.host, settings.target.port),
        ssh_username=settings.target.user,
        ssh_pkey=session.pkey,  # a key object: given as text, sshtunnel would log it
        # Defence in depth: the session is already authenticated with the configured key only,
        # and these keep sshtunnel from ever loading the agent's or ~/.ssh's keys or config.
        allow_agent=False,
        host_pkey_directories=[],
        ssh_config_file=None,
        remote_bind_address=(settings.remote_host, settings.remote_port),
        local_bind_address=("127.0.0.1", settings.local_port),
        logger=_library_logger("sshtunnel"),
        # One connection at a time, served on the listener's own thread: ApiClient makes its
        # requests one after another, and a thread per connection cost ~0.4 ms of CPU per request
        # (the playground answers in ~1 ms).
        threaded=False,
    )


def open_tunnel(settings: Settings, known_hosts: dict):
    """An open tunnel from 127.0.0.1:<local port> to the API; always closed with close_tunnel()."""
    started = time.monotonic()
    session = open_ssh_session(settings, known_hosts)
    try:
        tunnel = _new_forwarder(session, settings)
    except BaseException:
        session.close()
        raise
    try:
        tunnel.start()
    except sshtunnel.BaseSSHTunnelForwarderError:
        session_lost = not session.is_active()  # start() reports that as a failed start too
        close_tunnel(tunnel)
        if session_lost:
            raise SetupError(
                f"The SSH session to {settings.target.address} closed right after it was "
                f"opened, before the tunnel started: the server may be restarting or limiting "
                f"sessions (MaxStartups, MaxSessions).",
                retryable=True,
            ) from None
        raise SetupError(
            f"Could not listen on 127.0.0.1:{settings.local_port} for the tunnel: the port is in "
            f"use. Free it, or leave local_port empty to pick a free port."
            if settings.local_port
            else "Could not open a local listening port for the tunnel."
        ) from None
    except BaseException:
        close_tunnel(tunnel)
        raise
    log.info(
        f"SSH tunnel open: 127.0.0.1:{tunnel.local_bind_port} -> "
        f"{' -> '.join(h.address for h in (settings.jump, settings.target) if h)} -> "
        f"{settings.remote_host}:{settings.remote_port} "
        f"({(time.monotonic() - started) * 1000:.0f} ms)"
    )
    return tunnel


def close_tunnel(tunnel: _Forwarder) -> None:
    """Stop the tunnel and its SSH session, never blocking longer than _TEARDOWN_SECONDS, whatever
    state start() left it in (sshtunnel's own stop() blocks forever after a failed start)."""
    servers = list(getattr(tunnel, "_server_list", []))
    if tunnel.is_alive:
        # force: the transport closes first, so forwarding threads see their channels die
        stopper = threading.Thread(target=tunnel.stop, kwargs={"force": True}, daemon=True)
        stopper.start()
        stopper.join(_TEARDOWN_SECONDS)
        if stopper.is_alive():
            log.warning("The tunnel did not stop in time; its listening socket is closed anyway.")
    for server in servers:
        server.server_close()  # idempotent; the only cleanup for a server that never served
    tunnel._session.close()


# --- HTTP client ---


class ApiClient:
    """GETs API paths through the tunnel with timeouts, retries with backoff, and reopening of the
    tunnel when the SSH session drops. Use as a context manager: the tunnel is always closed."""

    def __init__(self, settings: Settings, known_hosts: dict):
        self.settings = settings
        self.known_hosts = known_hosts
        self.reconnects = 0
        self.local_port = None  # of the current tunnel: read once, as it opens
        self._tunnel = None
        self._pool = None

    def __enter__(self):
        self._open()
        return self

    def __exit__(self, *exc_info):
        self._close()

    @property
    def host_header(self) -> str | None:
        """The Host the API expects, or None to send the tunnel's own address."""
        s = self.settings
        name = s.api_hostname or (s.remote_host if s.api_scheme == "https" else "")
        if not name:
            return None
        default_port = 443 if s.api_scheme == "https" else 80
        name = f"[{name}]" if ":" in name else name
        return name if s.remote_port == default_port else f"{name}:{s.remote_port}"

    def _open(self) -> None:
        """Open the tunnel and an HTTP connection pool on its local port; on failure, nothing
        stays open."""
        # Before the tunnel: a bad api_ca_certificate must not leave an open tunnel behind.
        tls_context = (
            _tls_context(self.settings.api_ca_certificate)
            if self.settings.api_scheme == "https"
            else None
        )
        self._tunnel = open_tunnel(self.settings, self.known_hosts)
        try:
            self.local_port = self._tunnel.local_bind_port
            self._pool = self._new_pool(tls_context)
        except BaseException:
            self._close()
            raise

    def _new_pool(self, tls_context: ssl.SSLContext | None):
        """A urllib3 pool of one connection to the tunnel's local port; over HTTPS, TLS checks
        the name the API's certificate is for (api_hostname, else remote_host)."""
        s = self.settings
        tls_name = s.api_hostname or s.remote_host
        tls = (
            {"server_hostname": tls_name, "assert_hostname": tls_name, "ssl_context": tls_context}
            if s.api_scheme == "https"
            else {}
        )
        pool_class = urllib3.HTTPSConnectionPool if tls else urllib3.HTTPConnectionPool
        return pool_class(
            "127.0.0.1",
            self.local_port,
            headers=self._headers(),
            timeout=urllib3.Timeout(connect=s.ssh_timeout, read=s.http_timeout),
            retries=False,
            maxsize=1,
            **tls,
        )

    def _headers(self) -> dict:
        """Headers of every request; built in its own frame so no local of a frame that can raise
        holds the API key."""
        headers = {"Authorization": "apiKey " + self.settings.api_key.reveal()}
        headers["Accept"] = "application/json"
        if self.host_header:
            headers["Host"] = self.host_header
        return headers

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._tunnel is not None:
            close_tunnel(self._tunnel)
            self._tunnel = None

    def _reconnect(self) -> None:
        """Reopen the tunnel after the SSH session dropped, waiting out a restarting server."""
        self._close()
        if self.reconnects >= _MAX_RECONNECTS:
            raise SetupError(
                f"The SSH session to {self.settings.target.address} dropped {self.reconnects + 1} "
                f"times in this sync: giving up. Check the server's stability."
            )
        self.reconnects += 1
        log.warning(
            f"The SSH session to {self.settings.target.address} dropped: reopening the tunnel "
            f"(reconnect {self.reconnects} of at most {_MAX_RECONNECTS})."
        )
        for attempt in range(1, _RECONNECT_ATTEMPTS + 1):
            try:
                self._open()
                return
            except SetupError as error:
                if not error.retryable:
                    raise
                if attempt == _RECONNECT_ATTEMPTS:
                    raise SetupError(
                        f"The SSH session to {self.settings.target.address} dropped mid-sync and "
                        f"could not be reopened in {_RECONNECT_ATTEMPTS} attempts; last: {error} "
                        f"The next sync resumes at the page this one stopped on.",
                        retryable=True,
                    ) from None
                delay = _backoff(attempt)
                log.warning(
                    f"Reconnect attempt {attempt} failed ({error}); retrying in {delay:.1f} s."
                )
                time.sleep(delay)

    def get_json(self, path: str) -> dict:
        """GET `path` through the tunnel and return its JSON object, retrying what may pass:
        dropped connections, timeouts, 429 (after its Retry-After) and 5xx."""
        problem = ""
        for attempt in range(1, _HTTP_MAX_ATTEMPTS + 1):
            if not self._tunnel.is_active:
                self._reconnect()
            page, problem, wait = self._try_get(path)
            if page is not None:
                return page
            if attempt < _HTTP_MAX_ATTEMPTS:
                delay = _backoff(attempt) if wait is None else wait
                log.warning(
                    f"GET {path} failed: {problem}; retry {attempt} of {_HTTP_MAX_ATTEMPTS - 1} "
                    f"in {delay:.1f} s."
                )
                time.sleep(delay)
        raise SetupError(
            f"GET {path} through the tunnel failed {_HTTP_MAX_ATTEMPTS} times; last: {problem}. "
            f"Check that the API at {self.settings.remote_host}:{self.settings.remote_port} is up "
            f"(remote_host, remote_port), or raise http_timeout.",
            retryable=True,
        )

    def _try_get(self, path: str) -> tuple:
        """One GET: (page, None, None), or (None, what failed, seconds to wait or None for the
        backoff) when a retry may help; raises SetupError when it cannot."""
        started = time.monotonic()
        try:
            response = self._pool.request("GET", path, redirect=False, preload_content=True)
        except urllib3.exceptions.SSLError as error:
            cause = _root_cause(error)
            if not re.search(r"EOF|reset|timed out", cause, re.IGNORECASE):
                raise SetupError(_tls_problem(self.settings, cause)) from None
            return None, f"the TLS connection through the tunnel failed ({cause})", None
        except urllib3.exceptions.ReadTimeoutError:
            timeout = self.settings.http_timeout
            return None, f"the API sent no answer within http_timeout ({timeout:g} s)", None
        except urllib3.exceptions.HTTPError as error:
            problem = f"the connection through the tunnel failed ({_root_cause(error)})"
            if self._tunnel.is_active:
                problem += self._diagnose_forwarding()
            return None, problem, None
        log.debug(
            f"GET {path}: {response.status}, {len(response.data)} bytes, "
            f"{(time.monotonic() - started) * 1000:.1f} ms"
        )
        if response.status == 200:
            return _parse_page(response, path), None, None
        if response.status == 429:
            wait = _retry_after_seconds(response.headers.get("Retry-After"))
            note = f" (rate limited, Retry-After {wait:g} s)" if wait is not None else ""
            return None, f"HTTP 429{note}", wait
        if response.status >= 500:
            return None, f"HTTP {response.status}", None
        raise SetupError(_http_status_problem(response.status, path))

    def _diagnose_forwarding(self) -> str:
        """Why a forwarded connection failed while the SSH session is up, if the server says."""
        try:
            _open_channel(
                self._tunnel._session.transport,
                self.settings.target,
                (self.settings.remote_host, self.settings.remote_port),
                "the API (remote_host, remote_port)",
                self.settings.ssh_timeout,
            ).close()
        except SetupError as error:
            return f"; {error}"
        return ""


def _tls_context(ca_pem: str) -> ssl.SSLContext:
    """A verifying TLS context: the private CA when given, else the system's trust store."""
    if not ca_pem:
        return ssl.create_default_context()
    problem = None
    try:
        return ssl.create_default_context(cadata=ca_pem)
    except ssl.SSLError as error:
        problem = (
            f"Configuration key 'api_ca_certificate' is not a valid PEM certificate "
            f"({error.reason or error})."
        )
    raise SetupError(problem)


def _tls_problem(settings: Settings, cause: str) -> str:
    """The message for a TLS handshake with the API that a retry cannot fix."""
    name = settings.api_hostname or settings.remote_host
    if "hostname" in cause.lower() or "match" in cause.lower():
        fix = f"set api_hostname to a name the certificate is issued for (now '{name}')"
    elif "certificate verify failed" in cause.lower():
        fix = "set api_ca_certificate to the PEM of the CA that signed the API's certificate"
    else:
        fix = "check api_scheme (is the API really HTTPS?), api_hostname and api_ca_certificate"
    return f"TLS to the API as '{name}' failed ({cause}): {fix}. Verification is never turned off."


def _root_cause(error: BaseException) -> str:
    """The innermost reason of a urllib3 error, in one short line."""
    reason = getattr(error, "reason", None) or error
    while getattr(reason, "reason", None) not in (None, reason):
        reason = reason.reason
    text = str(reason)
    return re.sub(r"<urllib3[^>]*>: ", "", text)[:300]


def _http_status_problem(status: int, path: str) -> str:
    """The message for an HTTP status that is not retried."""
    if status in (401, 403):
        return (
            f"The API refused the request (HTTP {status}) for {path}: check api_key (sent as "
            f"'Authorization: apiKey <api_key>')."
        )
    if status == 404:
        return f"The API has no {path} (HTTP 404): check api_path."
    if status == 400:
        return (
            f"The API rejected {path} as a bad request (HTTP 400): check api_path and its query, "
            f"and api_cursor_param."
        )
    return f"The API answered HTTP {status} for {path}: check api_path and api_key."


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or HTTP date), capped; None if absent."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime

            seconds = (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), _RETRY_AFTER_CAP_SECONDS)


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: about _RETRY_BASE_SECONDS * 2^(attempt-1), capped."""
    ceiling = min(_RETRY_MAX_SECONDS, _RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _parse_page(response, path: str) -> dict:
    """The page's JSON object, checked to hold a `data` list of records with an `id`."""
    try:
        page = json.loads(response.data)
    except ValueError:
        page = None
        problem = (
            f"The API answered {path} with a body that is not JSON (Content-Type "
            f"{response.headers.get('Content-Type', 'unknown')}, {len(response.data)} bytes): "
            f"check api_path and api_scheme."
        )
    else:
        problem = None
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            keys = ", ".join(sorted(page)) if isinstance(page, dict) else type(page).__name__
            problem = (
                f"The API's answer to {path} has no 'data' list (it has: {keys}): check api_path."
            )
        else:
            for index, item in enumerate(page["data"]):
                if not isinstance(item, dict) or item.get("id") in (None, ""):
                    problem = (
                        f"Record {index} of the API's answer to {path} has no 'id' (the primary "
                        f"key): the API returned an unexpected record; check api_path."
                    )
                    break
    if problem:
        raise SetupError(problem)
    return page


# --- Sync ---


def next_page_path(url: str | None, settings: Settings, local_port: int) -> str | None:
    """The path and query of the next page named by `next_page_url`, or None on the last page.

    Only a URL that points at the tunnel itself or at the API behind it is followed; anything else
    is refused, so the API key never leaves the tunnel."""
    if url in (None, ""):
        return None
    if not isinstance(url, str):
        raise SetupError(f"The API's next_page_url is not a string ({type(url).__name__}).")
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc and parts.path.startswith("/"):
        return parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    host = (parts.hostname or "").lower()
    allowed = {("127.0.0.1", local_port), ("localhost", local_port), ("::1", local_port)}
    allowed.add((settings.remote_host.lower(), settings.remote_port))
    if settings.api_hostname:
        allowed.add((settings.api_hostname.lower(), settings.remote_port))
    if parts.scheme not in ("http", "https") or (host, port) not in allowed:
        raise SetupError(
            f"Refusing to follow next_page_url to {parts.scheme}://{parts.netloc}: it points "
            f"neither at the tunnel nor at remote_host:remote_port "
            f"({settings.remote_host}:{settings.remote_port}), and the API key must not go "
            f"elsewhere. If the API names itself differently, set api_hostname."
        )
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def first_page_path(settings: Settings, cursor: str | None) -> str:
    """api_path, with the incremental cursor parameter when a previous sync left one."""
    if not (settings.api_cursor_param and cursor):
        return settings.api_path
    separator = "&" if "?" in settings.api_path else "?"
    return f"{settings.api_path}{separator}{settings.api_cursor_param}={quote(cursor, safe=':')}"


def _newest(current: str | None, items: list) -> str | None:
    """The newest `updatedAt` of `current` and the records, compared as instants."""
    newest, newest_at = current, _instant(current)
    for item in items:
        at = _instant(item.get("updatedAt"))
        if at is not None and (newest_at is None or at > newest_at):
            newest, newest_at = item["updatedAt"], at
    return newest


def _instant(value) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime, or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def sync_pages(client: ApiClient, settings: Settings, state: dict) -> dict:
    """Fetch every page from where `state` says, upsert its records, checkpoint after each page.

    State: `next_page` (path and query to resume at, only while a sync is unfinished), `cursor`
    (newest updatedAt of the last finished sync), `sync_newest` and `sync_records` (this sync so
    far), `host_keys` (trusted on first use), `last_sync` (totals of the last finished sync)."""
    path = state.get("next_page") or first_page_path(settings, state.get("cursor"))
    if state.get("next_page"):
        log.info(f"Resuming an unfinished sync at {path}")
    started = last_progress = time.monotonic()
    pages = 0
    for pages in range(1, _MAX_PAGES + 1):
        page = client.get_json(path)
        # Checked before the upserts: a foreign next_page_url fails the sync before it writes.
        path = next_page_path(page.get("next_page_url"), settings, client.local_port)
        for item in page["data"]:
            op.upsert(table=_TABLE, data=item)
        state["sync_records"] = state.get("sync_records", 0) + len(page["data"])
        state["sync_newest"] = _newest(state.get("sync_newest"), page["data"])
        if path:
            state["next_page"] = path
        else:
            state.pop("next_page", None)
            state["cursor"] = state.pop("sync_newest", None) or state.get("cursor")
            state["last_sync"] = {
                "records": state.pop("sync_records"),
                "finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        op.checkpoint(state)
        del page  # hold at most one page
        log.debug(f"page {pages}: checkpointed; next: {path or 'none (last page)'}")
        if time.monotonic() - last_progress >= _PROGRESS_INTERVAL_SECONDS and path:
            last_progress = time.monotonic()
            log.info(
                f"Progress: {pages} pages, {state['sync_records']} records, "
                f"{last_progress - started:.0f} s"
            )
        if not path:
            break
    else:
        raise SetupError(f"The API sent more than {_MAX_PAGES} pages: stopping (check api_path).")
    log.info(
        f"Sync finished: {state['last_sync']['records']} records in {pages} pages, "
        f"{time.monotonic() - started:.1f} s"
        + (f", {client.reconnects} reconnects" if client.reconnects else "")
    )
    return state


# --- Connector entry points ---


def schema(configuration: dict):
    """Table `user`, keyed by `id`, with its timestamps as UTC instants; other columns inferred."""
    return [
        {
            "table": _TABLE,
            "primary_key": ["id"],
            "columns": {
                "id": "STRING",
                "createdAt": "UTC_DATETIME",
                "updatedAt": "UTC_DATETIME",
            },
        }
    ]


def update(configuration: dict, state: dict):
    """Validate, open the tunnel, fetch pages, upsert, checkpoint; the tunnel is always closed."""
    settings = parse_configuration(configuration)
    state = dict(state or {})
    known_hosts = dict(state.get("host_keys") or {})
    log.info(
        f"Syncing {settings.api_scheme}://{settings.remote_host}:{settings.remote_port}"
        f"{settings.api_path} through {settings.target.user}@{settings.target.address}"
        + (f" via jump host {settings.jump.address}" if settings.jump else "")
    )
    with ApiClient(settings, known_hosts) as client:
        if known_hosts != state.get("host_keys", {}):
            state["host_keys"] = known_hosts
            op.checkpoint(state)  # remember a first-used host key even if the sync then fails
        sync_pages(client, settings, state)


# --- Setup form and setup tests ---


def check_ssh_connection(configuration: dict):
    """Setup test: reach the SSH server(s), verify host keys, authenticate, check forwarding."""
    try:
        settings = parse_configuration(configuration)
        session = open_ssh_session(settings, {})
    except SetupError as error:
        return Test.failure(str(error))
    except Exception as error:  # the dashboard shows a failure, never a traceback
        return Test.failure(f"Unexpected error: {type(error).__name__}: {error}")
    session.close()
    for address, key in session.server_keys.items():
        log.info(
            f"SSH connection OK: {address} host key {_host_key_type(key)} "
            f"{fingerprint(key.asbytes())}"
        )
    log.info(
        f"Forwarding to {settings.remote_host}:{settings.remote_port} is allowed and something "
        f"listens there."
    )
    return Test.success()


def check_api_through_tunnel(configuration: dict):
    """Setup test: one authenticated request to api_path through the tunnel."""
    try:
        settings = parse_configuration(configuration)
        with ApiClient(settings, {}) as client:
            page = client.get_json(settings.api_path)
    except SetupError as error:
        return Test.failure(str(error))
    except Exception as error:  # the dashboard shows a failure, never a traceback
        return Test.failure(f"Unexpected error: {type(error).__name__}: {error}")
    log.info(
        f"API OK: GET {settings.api_path} answered 200 with {len(page['data'])} records"
        + (" and a next page" if page.get("next_page_url") else "")
    )
    return Test.success()


def configuration_form():
    """The setup form: every configuration key with its help; secrets as masked fields."""
    form = ConfigurationForm()
    for f in FIELDS:
        form.add_field(
            form_field.TextField(
                name=f.key,
                label=f.label,
                field_type=form_field.TextField.password
                if f.secret
                else form_field.TextField.plain_text,
                description=f.help,
                required=f.default is None,
            )
        )
    form.add_test(label="SSH connection", func=check_ssh_connection)
    form.add_test(label="API through the tunnel", func=check_api_through_tunnel)
    return form


connector = Connector(update=update, schema=schema, configuration_form=configuration_form)


if __name__ == "__main__":
    # `python connector.py`: a local debug sync with configuration.json, as Fivetran's examples do.
    _config_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configuration.json")
    if not os.path.exists(_config_path):
        raise SystemExit(
            f"No configuration.json at {_config_path}: copy configuration.json.example to "
            f"configuration.json and fill in your values (see README.md)."
        )
    with open(_config_path, encoding="utf-8") as _file:
        connector.debug(configuration=json.load(_file))
