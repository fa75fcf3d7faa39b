"""Private keys of every type and format a user may paste, and a search for leaked key material.

Each key pair is made once by the real `ssh-keygen` and rewritten by it into every format it can
write (`ssh-keygen -p -m PEM|PKCS8`), so every format of one type shares one public key and one
`authorized_keys` line. Ed25519 as PKCS#8, which `ssh-keygen` writes as OpenSSH instead, comes
from the `cryptography` library; so do DSA keys, which `ssh-keygen` no longer makes, and every
key where OpenSSH is not installed.
"""

import base64
import json
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa
from servers import _make_key_with_cryptography

SSH_KEYGEN = shutil.which("ssh-keygen")  # None: every key comes from `cryptography`
# Not ASCII and with a space: the passphrase must reach the decryption byte for byte.
PASSPHRASE = "corre\u0308ct horse-7"
WRONG_PASSPHRASE = "not the passphrase 9"
_KEYGEN_TIMEOUT = 120  # seconds: a hang guard (RSA 4096 takes about a second)

# kind -> (ssh-keygen type, bits, formats); formats: openssh, pem (traditional), pkcs8
KINDS = {
    "rsa2048": ("rsa", 2048, ("openssh", "pem", "pkcs8")),
    "rsa3072": ("rsa", 3072, ("openssh", "pem", "pkcs8")),
    "rsa4096": ("rsa", 4096, ("openssh", "pem", "pkcs8")),
    "ecdsa256": ("ecdsa", 256, ("openssh", "pem", "pkcs8")),
    "ecdsa384": ("ecdsa", 384, ("openssh", "pem", "pkcs8")),
    "ecdsa521": ("ecdsa", 521, ("openssh", "pem", "pkcs8")),
    "ed25519": ("ed25519", None, ("openssh", "pkcs8")),
}
# Every cell of the matrix: (kind, format, encrypted).
MATRIX = [
    (kind, fmt, encrypted)
    for kind, (_, _, formats) in KINDS.items()
    for fmt in formats
    for encrypted in (False, True)
]


@dataclass(frozen=True)
class KeyCase:
    """One private key text; `repr` leaves the secrets out, since pytest prints failing values."""

    kind: str
    fmt: str
    encrypted: bool
    text: str = field(repr=False)
    public: str = field(repr=False)  # the authorized_keys line
    passphrase: str = field(default="", repr=False)


def expected_begin_lines(kind: str, fmt: str, encrypted: bool) -> list:
    """The first lines a key of this kind and format starts with, as the format defines them."""
    if fmt == "openssh":
        return ["-----BEGIN OPENSSH PRIVATE KEY-----"]
    if fmt == "pkcs8":
        return [f"-----BEGIN {'ENCRYPTED ' if encrypted else ''}PRIVATE KEY-----"]
    label = "RSA" if kind.startswith("rsa") else "EC"
    return [f"-----BEGIN {label} PRIVATE KEY-----"] + (
        ["Proc-Type: 4,ENCRYPTED"] if encrypted else []
    )


def keygen(*args: str) -> subprocess.CompletedProcess:
    """Run ssh-keygen quietly, failing loudly."""
    return subprocess.run(
        [SSH_KEYGEN, "-q", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=_KEYGEN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def new_key_pair(folder: Path, kind: str, name: str) -> Path:
    """A fresh unencrypted OpenSSH private key file (and its .pub) made by ssh-keygen."""
    key_type, bits, _ = KINDS[kind]
    path = Path(folder) / name
    if not SSH_KEYGEN:
        text, public = _make_key_with_cryptography(key_type, bits, "openssh", "")
        path.write_text(text)
        path.chmod(0o600)
        Path(f"{path}.pub").write_text(f"{public} {kind}-test\n")
        return path
    args = ["-t", key_type, "-N", "", "-C", f"{kind}-test", "-f", str(path)]
    if bits:
        args[2:2] = ["-b", str(bits)]
    keygen(*args)
    return path


def key_cases(folder: Path, kinds=tuple(KINDS)) -> dict:
    """Every (kind, format, encrypted) of MATRIX for `kinds`, as KeyCase, one key pair per kind."""
    folder = Path(folder)
    cases = {}
    for kind in kinds:
        base = new_key_pair(folder, kind, f"id_{kind}")
        public = Path(f"{base}.pub").read_text().strip()
        for fmt in KINDS[kind][2]:
            for encrypted in (False, True):
                passphrase = PASSPHRASE if encrypted else ""
                text = _rewrite(base, kind, fmt, passphrase)
                cases[kind, fmt, encrypted] = KeyCase(
                    kind, fmt, encrypted, text, public, passphrase
                )
    return cases


def _rewrite(base: Path, kind: str, fmt: str, passphrase: str) -> str:
    """The key in `base` written in `fmt` with `passphrase`: by ssh-keygen where it can."""
    if (fmt == "pkcs8" and kind == "ed25519") or not SSH_KEYGEN:
        key = serialization.load_ssh_private_key(base.read_bytes(), password=None)
        return key.private_bytes(
            serialization.Encoding.PEM,
            {
                "openssh": serialization.PrivateFormat.OpenSSH,
                "pem": serialization.PrivateFormat.TraditionalOpenSSL,
                "pkcs8": serialization.PrivateFormat.PKCS8,
            }[fmt],
            serialization.BestAvailableEncryption(passphrase.encode())
            if passphrase
            else serialization.NoEncryption(),
        ).decode()
    copy = base.with_name(f"{base.name}_{fmt}_{'enc' if passphrase else 'plain'}")
    shutil.copyfile(base, copy)
    copy.chmod(0o600)
    args = ["-p", "-P", "", "-N", passphrase, "-f", str(copy)]
    if fmt != "openssh":
        args += ["-m", {"pem": "PEM", "pkcs8": "PKCS8"}[fmt]]
    keygen(*args)
    return copy.read_text()


def dsa_key_texts() -> dict:
    """DSA private keys as traditional PEM, PKCS#8 (plain and encrypted) and OpenSSH."""
    large = dsa.generate_private_key(key_size=2048)
    with warnings.catch_warnings():
        # cryptography deprecates SSH DSA; writing one is the point here
        warnings.simplefilter("ignore")
        small = dsa.generate_private_key(key_size=1024)  # OpenSSH's format allows only 1024
        openssh = small.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode()

    def pem(private_format, encryption=None):
        return large.private_bytes(
            serialization.Encoding.PEM, private_format, encryption or serialization.NoEncryption()
        ).decode()

    return {
        "pem": pem(serialization.PrivateFormat.TraditionalOpenSSL),
        "pkcs8": pem(serialization.PrivateFormat.PKCS8),
        "pkcs8-encrypted": pem(
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE.encode()),
        ),
        "openssh": openssh,
    }


def public_blob(public_line: str) -> bytes:
    """The key blob of an authorized_keys / .pub line."""
    return base64.b64decode(public_line.split()[1])


# --- Looking for leaks ---

_WINDOW = 24


def key_fragments(key_text: str) -> list:
    """Every 24-character window of the second half of the key's base64 body: the first half of
    an OpenSSH key (magic, cipher, KDF, public key) is public or the same in every key."""
    body = "".join(
        line.strip()
        for line in key_text.strip().splitlines()
        if line.strip() and not line.startswith("-----") and ":" not in line
    )
    second_half = body[len(body) // 2 :]
    return [second_half[i : i + _WINDOW] for i in range(len(second_half) - _WINDOW + 1)]


def leaks(text: str, secrets: dict) -> list:
    """Names of the `secrets` (name -> secret string, or a private key text when the name starts
    with 'key') that occur in `text`: only names, so a failing assertion prints no secret."""
    found = []
    for name, secret in secrets.items():
        if not secret:
            continue
        if name.startswith("key"):
            hits = [f for f in key_fragments(secret) if f in text]
            if hits or _escaped_body(secret) in text:
                found.append(f"{name} ({len(hits)} windows)")
        elif any(form in text for form in (secret, repr(secret)[1:-1], json.dumps(secret)[1:-1])):
            found.append(name)
    return found


def _escaped_body(key_text: str) -> str:
    """The key as it appears written with \\n escapes (in a JSON string or a repr)."""
    return key_text.strip().replace("\n", "\\n")
