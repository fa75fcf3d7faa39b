"""The connector's main job against a local sandbox, from a fresh clone.

Starts a throw-away SSH server (OpenSSH's sshd when installed) and the playground API on
127.0.0.1, generates a key and a configuration, runs `fivetran debug` on a copy of the project
with a clean files/, then prints the synced rows from DuckDB. Nothing of the developer's own
(configuration.json, files/, ~/.ssh) is read or written. Run: bash tests/dev.sh sandbox
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdk_cli import cli_environment, copy_project, fivetran_executable, warehouse_rows
from servers import Playground, SshServer, have_openssh, make_key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--api-path",
        default="/pagination/next_page_url?per_page=50",
        help="playground endpoint to sync (default: its paginated one, 200 records)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the sandbox folder")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ssh-connector-sandbox-"))
    print(f"Sandbox folder: {root}")
    private_key, public_key = make_key(root, "ed25519")
    try:
        with SshServer(root / "sshd", [public_key]) as sshd, Playground() as playground:
            kind = "OpenSSH sshd" if have_openssh() else "AsyncSSH (OpenSSH not installed)"
            print(f"SSH server: {kind} on 127.0.0.1:{sshd.port}; playground on port ")
            print(
                f"{playground.port} (reachable only through the tunnel in this sandbox's config)"
            )
            project = copy_project(root / "project")
            configuration = {
                "ssh_host": "127.0.0.1",
                "ssh_port": str(sshd.port),
                "ssh_user": sshd.user,
                "ssh_private_key": private_key,
                "ssh_host_key": sshd.host_key_line("ed25519"),
                "api_key": playground.api_key,
                "remote_port": str(playground.port),
                "api_path": args.api_path,
            }
            config_path = root / "configuration.json"
            config_path.write_text(json.dumps(configuration, indent=2))
            home = root / "home"
            home.mkdir()
            result = subprocess.run(
                [fivetran_executable(), "debug", "--configuration", str(config_path)],
                cwd=project,
                env=cli_environment(home),
                stdin=subprocess.DEVNULL,
                timeout=600,
            )
            if result.returncode != 0:
                print(f"fivetran debug failed with exit code {result.returncode}")
                return result.returncode
            rows = warehouse_rows(project)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{len(rows)} rows in tester.user (files/warehouse.db); the first 10:")
    widths = {"id": 36, "name": 22, "email": 28, "updated_at": 25}
    print(" | ".join(name.ljust(width) for name, width in widths.items()))
    for row in sorted(rows, key=lambda r: str(r["updated_at"]))[:10]:
        print(" | ".join(str(row[name])[:width].ljust(width) for name, width in widths.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
