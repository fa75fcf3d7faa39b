#!/usr/bin/env bash
# The test command: builds .venv (once) with the pinned test dependencies, then runs pytest.
# Extra arguments go to pytest (e.g. -m unit, -k host_key). Uses OpenSSH's sshd when installed,
# else an AsyncSSH server; REQUIRE_OPENSSH=1 makes a missing sshd a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
exec "$VENV/bin/python" -m pytest tests -q "$@"
