"""An SSH server from AsyncSSH, for machines without OpenSSH's sshd: key authentication against
the same authorized_keys file and direct-tcpip forwarding, on 127.0.0.1, in a thread of its own.

It stands in for `sshd` only so that the README's test command passes on a fresh laptop; CI sets
REQUIRE_OPENSSH=1 and always runs real OpenSSH.
"""

import asyncio
import threading

import asyncssh


class AsyncSshServer:
    """Serves `config` (an SshServer) until stop()."""

    def __init__(self, config):
        self.config = config
        self._loop = None
        self._server = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="asyncssh-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the AsyncSSH server did not start within 15 s")
        if self._error:
            raise self._error

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._listen())
        except Exception as error:  # reported to start()
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _listen(self) -> None:
        config = self.config
        forwarding = config.allow_tcp_forwarding
        host_keys = [str(config.folder / f"ssh_host_{t}_key") for t in config.host_key_types]

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username):
                return True

            def public_key_auth_supported(self):
                return True

            def validate_public_key(self, username, key):
                # Like sshd: only the server's own user, and only keys in authorized_keys (read
                # at each login, as tests add keys while it runs).
                lines = config.authorized_keys_path.read_text().split("\n")
                allowed = {line.split()[1] for line in lines if len(line.split()) >= 2}
                blob = key.export_public_key("openssh").split()[1].decode()
                return username == config.user and blob in allowed

            def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
                return forwarding

        self._server = await asyncssh.listen(
            "127.0.0.1",
            config.port,
            server_factory=Server,
            server_host_keys=host_keys,
            password_auth=False,
            kbdint_auth=False,
        )

    def stop(self) -> None:
        if self._loop is None:
            return

        async def close():
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
