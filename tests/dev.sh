#!/usr/bin/env bash
# Developer entry point, from a fresh clone:
#   bash tests/dev.sh sandbox [--api-path PATH] [--keep]   sync through a throw-away SSH server
#   bash tests/dev.sh test [pytest args]                    run the test suite
#   bash tests/dev.sh benchmark [--quick]                   print the side-by-side benchmark
# Builds .venv (once) with the pinned test dependencies. Uses OpenSSH's sshd when installed, else
# an AsyncSSH server; REQUIRE_OPENSSH=1 makes a missing sshd a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
command="${1:-test}"
shift || true
case "$command" in
  test) exec "$VENV/bin/python" -m pytest tests -q "$@" ;;
  sandbox) exec "$VENV/bin/python" tests/sandbox.py "$@" ;;
  benchmark) exec "$VENV/bin/python" tests/benchmark.py "$@" ;;
  *) echo "usage: bash tests/dev.sh test|sandbox|benchmark [args]" >&2; exit 2 ;;
esac
