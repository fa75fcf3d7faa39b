"""A paginated test API shaped like the playground's, with faults on demand, on 127.0.0.1.

Records look like the playground's users (id, name, email, address, company, job, createdAt,
updatedAt) and are generated from their index, so any page of any size can be served without
holding the data set. Like the playground's server it answers `Connection: close` and writes the
headers and the body in separate writes.

In-process: `FakeApi(total=...).start()`, then steer faults with `fail_next`, `stall_next`,
`rate_limit_next` and `hold_page`. As a process (for the benchmark, so that its CPU and memory
are not the connector's): `python tests/fake_api.py --total N --api-key K` prints {"port": N}.

Endpoints: GET /records?page=P&per_page=M (next_page_url while pages remain), GET /blob?mb=N
(N MB of bytes), GET /health (no key needed).
"""

import argparse
import json
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
_NAMESPACE = uuid.UUID("6f1c9a2e-51d4-4b8e-9a57-0b5b7f0c2d11")


def record(index: int) -> dict:
    """The record at `index`: deterministic, playground-shaped, updatedAt increasing."""
    created = _EPOCH + timedelta(seconds=index * 7)
    return {
        "id": str(uuid.uuid5(_NAMESPACE, str(index))),
        "name": f"User {index}",
        "email": f"user{index}@example.com",
        "address": f"{index} Main Street, Springfield, ST {10000 + index % 90000}",
        "company": f"Company {index % 1000}",
        "job": "Engineer",
        "createdAt": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "updatedAt": (created + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class FakeApi:
    """The server and its fault controls. Every fault is consumed by the requests it affects."""

    def __init__(self, total: int = 200, api_key: str = "fake-api-key", per_page: int = 50):
        self.total = total
        self.api_key = api_key
        self.per_page = per_page
        self.requests = []  # paths requested, in order
        self._lock = threading.Lock()
        self._faults = []  # (kind, argument) consumed one per request
        self._held_pages = {}  # page -> threading.Event released by release_page
        self.server = None
        self._thread = None

    # --- faults ---

    def fail_next(self, count: int, status: int = 500) -> None:
        """The next `count` requests answer `status`."""
        with self._lock:
            self._faults += [("status", status)] * count

    def stall_next(self, count: int, seconds: float) -> None:
        """The next `count` requests wait `seconds` before answering."""
        with self._lock:
            self._faults += [("stall", seconds)] * count

    def rate_limit_next(self, count: int, retry_after: int = 1) -> None:
        """The next `count` requests answer 429 with Retry-After."""
        with self._lock:
            self._faults += [("429", retry_after)] * count

    def hold_page(self, page: int) -> threading.Event:
        """Requests for `page` block (headers unsent) until the returned event is set."""
        event = threading.Event()
        self._held_pages[page] = event
        return event

    def _next_fault(self):
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    # --- serving ---

    def page(self, page: int, per_page: int, host: str) -> dict:
        start = (page - 1) * per_page
        end = min(start + per_page, self.total)
        body = {"data": [record(i) for i in range(start, end)]}
        if end < self.total:
            body["next_page_url"] = f"http://{host}/records?page={page + 1}&per_page={per_page}"
        return body

    def start(self, port: int = 0) -> "FakeApi":
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                api._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="fake-api", daemon=True
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        for event in self._held_pages.values():
            event.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self._thread.join(10)
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append(handler.path)
        if parts.path == "/health":
            return _send(handler, 200, b'{"ok": true}')
        if handler.headers.get("Authorization") != f"apiKey {self.api_key}":
            return _send(handler, 401, b"<html>Unauthorized</html>", "text/html")
        fault = self._next_fault()
        if fault and fault[0] == "stall":
            time.sleep(fault[1])
        elif fault and fault[0] == "status":
            return _send(handler, fault[1], b'{"error": "injected"}')
        elif fault and fault[0] == "429":
            return _send(
                handler, 429, b'{"error": "rate limited"}', headers={"Retry-After": str(fault[1])}
            )
        if parts.path == "/blob":
            size = int(float(query.get("mb", "1")) * 1_000_000)
            return _send(handler, 200, b"x" * size, "application/octet-stream")
        if parts.path != "/records":
            return _send(handler, 404, b'{"error": "not found"}')
        page = int(query.get("page", "1"))
        held = self._held_pages.get(page)
        if held is not None:
            held.wait(60)
        per_page = int(query.get("per_page", str(self.per_page)))
        host = handler.headers.get("Host", f"127.0.0.1:{self.port}")
        _send(handler, 200, json.dumps(self.page(page, per_page, host)).encode())


def _send(handler, status: int, body: bytes, content_type="application/json", headers=None):
    """Headers, then the body in a separate write; the connection closes after."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    try:
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up (a test killed it): nothing to answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=200)
    parser.add_argument("--per-page", type=int, default=1000)
    parser.add_argument("--api-key", default="fake-api-key")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    api = FakeApi(total=args.total, api_key=args.api_key, per_page=args.per_page).start(args.port)
    print(json.dumps({"port": api.port}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
