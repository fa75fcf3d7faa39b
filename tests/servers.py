"""Throw-away servers and keys for the tests, the sandbox and the benchmark, all on 127.0.0.1.

- `SshServer`: a real OpenSSH `sshd` with its own config, host keys and authorized_keys in a temp
  folder; where OpenSSH is not installed (and REQUIRE_OPENSSH is not set), an AsyncSSH server.
- `Playground`: the fivetran-api-playground Flask app in its own process (fresh data, known key).
- `make_key`: private keys of every type and format, generated on the spot.
"""

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
PROJECT_DIR = TESTS_DIR.parent
SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
SSH_KEYGEN = shutil.which("ssh-keygen")
REQUIRE_OPENSSH = os.environ.get("REQUIRE_OPENSSH") == "1"
_START_DEADLINE = 15.0  # seconds for a server to start listening


def have_openssh() -> bool:
    """Whether a real OpenSSH sshd and ssh-keygen are installed (SSH_TEST_SERVER=asyncssh
    pretends they are not, to exercise the fallback where they are)."""
    if os.environ.get("SSH_TEST_SERVER") == "asyncssh":
        return False
    return bool(SSHD and SSH_KEYGEN)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, deadline: float, process=None) -> None:
    """Wait until something accepts connections on 127.0.0.1:port, or fail at the deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {deadline} s")


# --- Keys ---

# (type, bits) for ssh-keygen; formats: "openssh", "pem" (traditional), "pkcs8"
KEY_TYPES = {
    "rsa2048": ("rsa", 2048),
    "rsa3072": ("rsa", 3072),
    "rsa4096": ("rsa", 4096),
    "ecdsa256": ("ecdsa", 256),
    "ecdsa384": ("ecdsa", 384),
    "ecdsa521": ("ecdsa", 521),
    "ed25519": ("ed25519", None),
}


def make_key(folder: Path, kind: str = "ed25519", fmt: str = "openssh", passphrase: str = ""):
    """Generate a private key; returns (private key text, public key line)."""
    key_type, bits = KEY_TYPES[kind]
    path = Path(folder) / f"id_{kind}_{fmt}_{'enc' if passphrase else 'plain'}_{time.time_ns()}"
    if SSH_KEYGEN:
        args = [SSH_KEYGEN, "-q", "-t", key_type, "-N", passphrase, "-C", "test", "-f", str(path)]
        if bits:
            args[4:4] = ["-b", str(bits)]
        if fmt == "pem":
            args += ["-m", "PEM"]
        elif fmt == "pkcs8":
            args += ["-m", "PKCS8"]
        subprocess.run(args, check=True, capture_output=True, timeout=60)
        return path.read_text(), Path(f"{path}.pub").read_text().strip()
    return _make_key_with_cryptography(key_type, bits, fmt, passphrase)


def _make_key_with_cryptography(key_type, bits, fmt, passphrase):
    """The same keys from the `cryptography` library, where ssh-keygen is not installed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif key_type == "ecdsa":
        curve = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}[bits]
        key = ec.generate_private_key(curve)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    private_format = {
        "openssh": serialization.PrivateFormat.OpenSSH,
        "pem": serialization.PrivateFormat.TraditionalOpenSSL,
        "pkcs8": serialization.PrivateFormat.PKCS8,
    }[fmt]
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    text = key.private_bytes(serialization.Encoding.PEM, private_format, encryption).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return text, public.decode()


# --- SSH server ---


class SshServer:
    """An SSH server on 127.0.0.1 for the current user, with keys and config in `folder`.

    Real OpenSSH when installed; else (unless REQUIRE_OPENSSH=1) AsyncSSH, which covers key
    authentication and port forwarding but none of OpenSSH's own behaviour."""

    def __init__(
        self,
        folder: Path,
        authorized_keys=(),
        allow_tcp_forwarding: bool = True,
        log_level: str = "VERBOSE",
        host_key_types=("ed25519", "ecdsa", "rsa"),
        port: int = 0,
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.port = port or free_port()
        self.allow_tcp_forwarding = allow_tcp_forwarding
        self.log_level = log_level
        self.host_key_types = host_key_types
        self.authorized_keys_path = self.folder / "authorized_keys"
        self.authorized_keys_path.write_text("".join(f"{k}\n" for k in authorized_keys))
        os.chmod(self.authorized_keys_path, 0o644)
        self.log_path = self.folder / "sshd.log"
        self.process = None
        self._asyncssh = None
        self.openssh = have_openssh()
        if not self.openssh and REQUIRE_OPENSSH:
            raise RuntimeError("REQUIRE_OPENSSH=1 but OpenSSH sshd is not installed")
        self.host_keys = {}  # type -> public key line
        self._make_host_keys()

    def _make_host_keys(self):
        for key_type in self.host_key_types:
            kind = {"ed25519": "ed25519", "ecdsa": "ecdsa256", "rsa": "rsa2048"}[key_type]
            private, public = make_key(self.folder, kind)
            path = self.folder / f"ssh_host_{key_type}_key"
            path.write_text(private)
            os.chmod(path, 0o600)
            self.host_keys[key_type] = public

    def host_key_line(self, key_type: str = "ed25519") -> str:
        """The public key line ('ssh-ed25519 AAAA...') of one of the server's host keys."""
        return " ".join(self.host_keys[key_type].split()[:2])

    def authorize(self, public_key_line: str) -> None:
        """Add a public key to the user's authorized keys (read at each login)."""
        with open(self.authorized_keys_path, "a") as handle:
            handle.write(public_key_line.strip() + "\n")

    def _config(self) -> str:
        host_keys = "".join(
            f"HostKey {self.folder / f'ssh_host_{t}_key'}\n" for t in self.host_key_types
        )
        return (
            f"ListenAddress 127.0.0.1\nPort {self.port}\n{host_keys}PidFile none\n"
            f"AuthorizedKeysFile {self.authorized_keys_path}\nStrictModes no\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            f"AllowTcpForwarding {'yes' if self.allow_tcp_forwarding else 'no'}\n"
            "ClientAliveInterval 5\nClientAliveCountMax 2\nMaxStartups 100:30:200\n"
            f"LogLevel {self.log_level}\n"
        )

    def start(self) -> "SshServer":
        if not self.openssh:
            from asyncssh_server import AsyncSshServer

            self._asyncssh = AsyncSshServer(self)
            self._asyncssh.start()
            return self
        Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
        config = self.folder / "sshd_config"
        config.write_text(self._config())
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's lifetime
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for_port(self.port, _START_DEADLINE, self.process)
        return self

    def stop(self) -> None:
        """Stop the listener and every session it started (they run in their own processes)."""
        if self._asyncssh is not None:
            self._asyncssh.stop()
            self._asyncssh = None
        if self.process is None:
            return
        sessions = self.session_pids()  # before the listener dies: they are its children
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process = None

    def session_pids(self) -> list:
        """PIDs of the sshd processes serving this server's sessions (the listener's children)."""
        if self.process is None:
            return []
        try:
            # sshd's per-connection processes call setsid(): they are children, not session peers
            output = subprocess.run(
                ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, timeout=10
            ).stdout
        except FileNotFoundError:
            output = ""
        return [int(p) for p in output.split() if int(p) != self.process.pid]

    def kill_sessions(self, sig=signal.SIGKILL) -> int:
        """Kill every session process of this server (the listener stays); returns how many."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return len(pids)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


# --- Playground ---


class Playground:
    """The fivetran-api-playground app served by werkzeug in its own process, with TZ=UTC.

    A process of its own gives fresh records and a known API key, and can be stopped at will."""

    def __init__(self, api_key: str = "test-api-key-0123456789", rate_limit: tuple = ()):
        self.api_key = api_key
        self.rate_limit = rate_limit  # (capacity, requests per second) to turn rate limiting on
        self.process = None
        self.port = None

    def start(self) -> "Playground":
        env = dict(os.environ, TZ="UTC", PYTHONUNBUFFERED="1")
        args = [sys.executable, str(TESTS_DIR / "playground_server.py"), "--api-key", self.api_key]
        if self.rate_limit:
            args += ["--rate-limit", str(self.rate_limit[0]), str(self.rate_limit[1])]
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
        )
        line = read_first_line(self.process, _START_DEADLINE * 2)
        self.port = json.loads(line)["port"]
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> dict:
        """A direct request (no tunnel), to compare the sync against."""
        import requests

        response = requests.get(
            self.url(path), headers={"Authorization": f"apiKey {self.api_key}"}, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process.stdout.close()
            self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def read_first_line(process, deadline: float) -> str:
    """The first line a child prints, or an error if it prints none within the deadline."""
    result = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(deadline)
    if not result or not result[0]:
        process.kill()
        raise RuntimeError(f"server printed nothing within {deadline} s")
    return result[0]


def temp_folder(prefix: str = "sshtest-") -> Path:
    """A fresh temporary folder (removed by whoever made it)."""
    return Path(tempfile.mkdtemp(prefix=prefix))
