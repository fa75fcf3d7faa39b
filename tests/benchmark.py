"""Side-by-side benchmark: direct HTTP, this connector's SSH tunnel, and a baseline tunnel opened
the way Fivetran's published key-based example opens it (sshtunnel defaults).

    python tests/benchmark.py               # everything, a few minutes
    python tests/benchmark.py --quick       # smaller data sets and fewer requests
    python tests/benchmark.py --skip-sync   # without the `fivetran debug` runs
    python tests/benchmark.py --skip-fetch  # without the fetch-only runs

Starts OpenSSH sshd, the playground and the test API (tests/fake_api.py) on 127.0.0.1, each in a
process of its own, and stops them all. Fetch-only runs and syncs run in child processes, one per
configuration, so that each peak RSS is that configuration's own. Not a test: pytest collects
nothing here and no test asserts a timing. Figures move with other load on the machine: the load
average is printed before and after.
"""

import argparse
import contextlib
import io
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers import TESTS_DIR, Playground, SshServer, have_openssh, make_key, read_first_line

_API_KEY = "benchmark-api-key-0123456789"
_PER_PAGE = 1000
_BLOB_MB = 50
_SERVER_DEADLINE = 30.0  # seconds for a server process to print its port
_CHILD_TIMEOUT = 900.0  # a hang guard for one child run, not a performance claim
_CONFIGS = ("direct", "ours", "baseline")
_UNTIMED_PER_BLOCK = 2  # requests at the start of each latency block that are not timed
_STALL_MS = 20.0  # a request this slow waited for a delayed ACK (~40 ms on Linux)


# --- Servers ---


class FakeApiProcess:
    """tests/fake_api.py in a process of its own, so its CPU and memory are not the client's."""

    def __init__(self, total: int):
        self.total = total
        self.process = None
        self.port = None

    def __enter__(self):
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(TESTS_DIR / "fake_api.py"),
                "--total",
                str(self.total),
                "--per-page",
                str(_PER_PAGE),
                "--api-key",
                _API_KEY,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.port = json.loads(read_first_line(self.process, _SERVER_DEADLINE))["port"]
        return self

    def __exit__(self, *exc_info):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process.stdout.close()


# --- The three ways to reach the API ---


def configuration(env: dict, remote_port: int, **extra) -> dict:
    """This connector's configuration for the benchmark's sshd and an API on `remote_port`."""
    values = {
        "ssh_host": "127.0.0.1",
        "ssh_port": str(env["ssh_port"]),
        "ssh_user": env["ssh_user"],
        "ssh_private_key": env["private_key"],
        "ssh_host_key": env["host_key"],
        "api_key": _API_KEY,
        "remote_port": str(remote_port),
    }
    values.update(extra)
    return values


@contextlib.contextmanager
def reach(mode: str, env: dict, remote_port: int):
    """Yields the local port that reaches the API on `remote_port` in the given mode."""
    if mode == "direct":
        yield remote_port
        return
    if mode.startswith("ours"):
        import connector

        tunnel = connector.open_tunnel(
            connector.parse_configuration(configuration(env, remote_port)), {}
        )
        try:
            yield tunnel.local_bind_port
        finally:
            connector.close_tunnel(tunnel)
        return
    forwarder = open_baseline(env, remote_port)
    try:
        yield forwarder.local_bind_port
    finally:
        forwarder.stop()


def open_baseline(env: dict, remote_port: int):
    """A tunnel opened as the published example does: an RSAKey from the text, then a plain
    SSHTunnelForwarder with its defaults (agent, ~/.ssh, all-interfaces bind, no host key)."""
    import paramiko
    import sshtunnel

    key = paramiko.RSAKey.from_private_key(io.StringIO(env["private_key"]))
    forwarder = sshtunnel.SSHTunnelForwarder(
        ("127.0.0.1", env["ssh_port"]),
        ssh_username=env["ssh_user"],
        ssh_pkey=key,
        remote_bind_address=("127.0.0.1", remote_port),
    )
    forwarder.start()
    return forwarder


def http_pool(port: int):
    """The same HTTP client for every mode: one connection at a time, no retries."""
    import urllib3

    return urllib3.HTTPConnectionPool(
        "127.0.0.1",
        port,
        headers={"Authorization": f"apiKey {_API_KEY}"},
        retries=False,
        maxsize=1,
        timeout=urllib3.Timeout(connect=10, read=120),
    )


# --- Measurements in this process ---


def measure_setup(env: dict, remote_port: int, repeats: int) -> dict:
    """Median ms to open (key load included) and to close each tunnel, alternating."""
    import connector

    times = {mode: {"setup": [], "teardown": []} for mode in ("ours", "baseline")}
    for _ in range(repeats):
        started = time.perf_counter()
        tunnel = connector.open_tunnel(
            connector.parse_configuration(configuration(env, remote_port)), {}
        )
        opened = time.perf_counter()
        connector.close_tunnel(tunnel)
        times["ours"]["setup"].append((opened - started) * 1000)
        times["ours"]["teardown"].append((time.perf_counter() - opened) * 1000)

        started = time.perf_counter()
        forwarder = open_baseline(env, remote_port)
        opened = time.perf_counter()
        forwarder.stop()
        times["baseline"]["setup"].append((opened - started) * 1000)
        times["baseline"]["teardown"].append((time.perf_counter() - opened) * 1000)
    return {
        mode: {kind: statistics.median(values) for kind, values in kinds.items()}
        for mode, kinds in times.items()
    }


def measure_latency(env: dict, playground, rounds: int, per_round: dict) -> dict:
    """ms per GET /auth/api_key in each mode: blocks of requests, the order rotating per round
    so that drift in the machine's load spreads over all modes. `ours-no-quickack` is our tunnel
    with the TCP_QUICKACK re-arm switched off whenever it is in use: what the fix is worth."""
    modes = (*_CONFIGS, "ours-no-quickack")
    samples = {mode: [] for mode in modes}
    with contextlib.ExitStack() as stack:
        pools = {}
        for mode in modes:
            with quickack_switched_off(mode == "ours-no-quickack"):
                pools[mode] = http_pool(stack.enter_context(reach(mode, env, playground.port)))
                for _ in range(3):  # warm up: first connections, imports, caches
                    _get_ok(pools[mode], "/auth/api_key")
        for round_number in range(rounds):
            shift = round_number % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                with quickack_switched_off(mode == "ours-no-quickack"):
                    # Untimed first: after an idle spell the kernel acknowledges at once for a
                    # while by itself, which would hide what a back-to-back sync sees.
                    for _ in range(_UNTIMED_PER_BLOCK):
                        _get_ok(pools[mode], "/auth/api_key")
                    for _ in range(per_round[mode]):
                        started = time.perf_counter()
                        _get_ok(pools[mode], "/auth/api_key")
                        samples[mode].append((time.perf_counter() - started) * 1000)
        for pool in pools.values():
            pool.close()
    return {
        mode: {
            "median": statistics.median(values),
            "p95": statistics.quantiles(values, n=20, method="inclusive")[-1],
            "mean": statistics.fmean(values),
            "stalled": sum(value > _STALL_MS for value in values),
            "count": len(values),
        }
        for mode, values in samples.items()
    }


@contextlib.contextmanager
def quickack_switched_off(switched_off: bool):
    """Our SSH sockets stop re-arming TCP_QUICKACK meanwhile (requests run one at a time, so only
    the tunnel in use is affected)."""
    import connector

    saved = connector._QuickAckSocket._QUICKACK
    if switched_off:
        connector._QuickAckSocket._QUICKACK = None
    try:
        yield
    finally:
        connector._QuickAckSocket._QUICKACK = saved


def _get_ok(pool, path: str) -> bytes:
    response = pool.request("GET", path)
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}")
    return response.data


def measure_bulk(env: dict, api_port: int, repeats: int) -> dict:
    """Median MB/s for one response of _BLOB_MB MB, streamed (not held) by the client."""
    results = {}
    for mode in _CONFIGS:
        rates = []
        with reach(mode, env, api_port) as port:
            pool = http_pool(port)
            for _ in range(repeats):
                started = time.perf_counter()
                response = pool.request("GET", f"/blob?mb={_BLOB_MB}", preload_content=False)
                received = sum(len(chunk) for chunk in response.stream(1 << 20))
                response.release_conn()
                if received != _BLOB_MB * 1_000_000:
                    raise RuntimeError(f"{mode}: got {received} bytes of the blob")
                rates.append(received / 1e6 / (time.perf_counter() - started))
            pool.close()
        results[mode] = statistics.median(rates)
    return results


# --- Measurements in child processes ---


def run_child(kind: str, spec: dict, folder: Path) -> dict:
    """Run this script as a child (`--child kind spec.json`) and return the JSON it prints."""
    spec_path = folder / f"child-{kind}-{time.time_ns()}.json"
    spec_path.write_text(json.dumps(spec))
    spec_path.chmod(0o600)
    try:
        completed = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(spec_path)],
            capture_output=True,
            text=True,
            timeout=_CHILD_TIMEOUT,
        )
    finally:
        spec_path.unlink()
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"child {kind} {spec.get('mode', '')} failed ({completed.returncode}):\n"
            f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


def child_fetch(spec: dict) -> dict:
    """Fetch every page (records counted, then dropped) in one mode; rate and peak RSS."""
    # Every mode imports the connector (and with it the SDK): the same footing for peak RSS.
    from fivetran_connector_sdk import Logging

    import connector

    Logging.LOG_LEVEL = Logging.Level.WARNING
    env, mode, total = spec["env"], spec["mode"], spec["total"]
    first = f"/records?page=1&per_page={_PER_PAGE}"
    records = pages = 0
    if mode == "ours":
        settings = connector.parse_configuration(
            configuration(env, spec["api_port"], api_path=first)
        )
        with connector.ApiClient(settings, {}) as client:
            started = time.perf_counter()
            path = settings.api_path
            while path and pages <= total // _PER_PAGE:
                page = client.get_json(path)
                records += len(page["data"])
                pages += 1
                path = connector.next_page_path(
                    page.get("next_page_url"), settings, client.local_port
                )
                del page
            seconds = time.perf_counter() - started
    else:
        with reach(mode, env, spec["api_port"]) as port:
            pool = http_pool(port)
            started = time.perf_counter()
            path = first
            while path and pages <= total // _PER_PAGE:
                page = json.loads(_get_ok(pool, path))
                records += len(page["data"])
                pages += 1
                url = page.get("next_page_url")
                path = f"{urlsplit(url).path}?{urlsplit(url).query}" if url else None
                del page
            seconds = time.perf_counter() - started
            pool.close()
    if records != total:
        raise RuntimeError(f"{mode}: fetched {records} records, expected {total}")
    return {
        "records": records,
        "seconds": seconds,
        "peak_rss_mb": own_peak_rss_mb(),
    }


def own_peak_rss_mb() -> float:
    """This process's own peak RSS. Not getrusage: on Linux its ru_maxrss keeps the parent's
    peak across fork and exec, which would give every child the benchmark's own footprint."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_RUNNER_ALONE = '''\
"""The local runner fed fake_api's records with no tunnel and no HTTP (benchmark baseline)."""

import sys

sys.path.insert(0, {tests_dir!r})

from fake_api import record
from fivetran_connector_sdk import Connector
from fivetran_connector_sdk import Operations as op


def schema(configuration: dict):
    return [
        {{
            "table": "user",
            "primary_key": ["id"],
            "columns": {{
                "id": "STRING",
                "createdAt": "UTC_DATETIME",
                "updatedAt": "UTC_DATETIME",
            }},
        }}
    ]


def update(configuration: dict, state: dict):
    total = int(configuration["total"])
    for index in range(total):
        op.upsert(table="user", data=record(index))
        if (index + 1) % {per_page} == 0:
            op.checkpoint({{"records": index + 1}})
    op.checkpoint({{"records": total}})


connector = Connector(update=update, schema=schema)
'''


def child_sync(spec: dict) -> dict:
    """One `fivetran debug` run; the runner's elapsed time and its peak RSS: the largest of this
    wrapper's children (the CLI process, and pipreqs), which start from this small process."""
    from sdk_cli import run_debug

    started = time.perf_counter()
    completed = run_debug(Path(spec["project"]), spec["configuration"], Path(spec["home"]))
    wall = time.perf_counter() - started
    elapsed = re.search(
        r"SYNC SUCCEEDED.*?total elapsed (\d+):(\d+):(\d+(?:\.\d+)?)", completed.stdout
    )
    upserts = re.search(r"Upserts\s*\|\s*(\d+)", completed.stdout)
    if completed.returncode != 0 or not elapsed or not upserts:
        raise RuntimeError(f"fivetran debug failed:\n{completed.stdout[-4000:]}")
    hours, minutes, seconds = elapsed.groups()
    return {
        "records": int(upserts.group(1)),
        "seconds": int(hours) * 3600 + int(minutes) * 60 + float(seconds),
        "wall": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def measure_fetch(env: dict, sizes: tuple, folder: Path, report) -> dict:
    """Fetch-only records/s and peak RSS per mode and size, each in its own child process."""
    results = {}
    for total in sizes:
        with FakeApiProcess(total) as api:
            for mode in _CONFIGS:
                report(f"fetch-only {total:,} records, {mode}")
                spec = {"env": env, "mode": mode, "total": total, "api_port": api.port}
                results[(mode, total)] = run_child("fetch", spec, folder)
    return results


def measure_sync(env: dict, sizes: tuple, folder: Path, report) -> dict:
    """Whole syncs through `fivetran debug`: this connector through the tunnel against the test
    API, and the runner alone fed the same records in-process."""
    from sdk_cli import copy_project

    alone = folder / "runner-alone"
    alone.mkdir()
    (alone / "connector.py").write_text(
        _RUNNER_ALONE.format(tests_dir=str(TESTS_DIR), per_page=_PER_PAGE)
    )
    (alone / "requirements.txt").write_text("")
    results = {}
    for total in sizes:
        report(f"whole sync {total:,} records, runner alone")
        shutil.rmtree(alone / "files", ignore_errors=True)
        spec = {
            "project": str(alone),
            "configuration": {"total": str(total)},
            "home": str(folder / "home"),
        }
        results[("alone", total)] = run_child("sync", spec, folder)
        with FakeApiProcess(total) as api:
            report(f"whole sync {total:,} records, ours")
            project = copy_project(folder / f"ours-{total}")
            spec = {
                "project": str(project),
                "configuration": configuration(
                    env, api.port, api_path=f"/records?page=1&per_page={_PER_PAGE}"
                ),
                "home": str(folder / "home"),
            }
            results[("ours", total)] = run_child("sync", spec, folder)
    return results


# --- Report ---


class Table:
    """Sections of rows: a label, three figures, a target and its verdict, in aligned columns."""

    _WIDTHS = (40, 12, 12, 12)

    def __init__(self):
        self.lines = []

    def section(self, title: str, columns=_CONFIGS):
        self.lines.append("")
        self.lines.append(title)
        self.lines.append(self._format(("", *columns), "target", ""))

    def row(self, label: str, figures: dict, target: str = "", passed=None, columns=_CONFIGS):
        verdict = "" if passed is None else ("PASS" if passed else "MISS")
        cells = (label, *(figures.get(column, "") for column in columns))
        self.lines.append(self._format(cells, target, verdict))

    def _format(self, cells, target: str, verdict: str) -> str:
        text = cells[0].ljust(self._WIDTHS[0])
        for cell, width in zip(cells[1:], self._WIDTHS[1 : len(cells)], strict=True):
            text += str(cell).rjust(width + 2)
        return f"{text}    {target.ljust(30)} {verdict}".rstrip()

    def print(self):
        print("\n".join(self.lines))


def _ms(value: float) -> str:
    return f"{value:.2f} ms"


def build_table(results: dict, args) -> Table:
    table = Table()
    latency = results["latency"]
    direct_median = latency["direct"]["median"]
    table.section(
        f"Per request, GET /auth/api_key on the playground "
        f"({latency['ours']['count']} direct/ours, {latency['baseline']['count']} baseline)"
    )
    table.row("median", {m: _ms(latency[m]["median"]) for m in _CONFIGS})
    table.row("p95", {m: _ms(latency[m]["p95"]) for m in _CONFIGS})
    table.row("mean", {m: _ms(latency[m]["mean"]) for m in _CONFIGS})
    table.row(
        f"requests over {_STALL_MS:.0f} ms",
        {m: f"{latency[m]['stalled']} of {latency[m]['count']}" for m in _CONFIGS},
    )
    ratios = {m: latency[m]["median"] / direct_median for m in _CONFIGS}
    table.row(
        "median / direct median",
        {m: f"{ratios[m]:.2f}x" for m in _CONFIGS},
        "ours <= 2x",
        ratios["ours"] <= 2.0,
    )
    ablation = latency["ours-no-quickack"]
    table.section(
        f"The latency fix switched off: our tunnel without the TCP_QUICKACK re-arm "
        f"({ablation['count']} requests)"
    )
    for figure in ("median", "p95", "mean"):
        table.row(figure, {"ours": _ms(ablation[figure])})
    table.row(
        f"requests over {_STALL_MS:.0f} ms",
        {"ours": f"{ablation['stalled']} of {ablation['count']}"},
    )

    setup = results["setup"]
    table.section(f"Tunnel, median of {args.setup_repeats} opens and closes")
    table.row(
        "setup, key load included",
        {m: _ms(setup[m]["setup"]) for m in ("ours", "baseline")},
        "ours < 150 ms",
        setup["ours"]["setup"] < 150,
    )
    table.row("teardown", {m: _ms(setup[m]["teardown"]) for m in ("ours", "baseline")})

    bulk = results["bulk"]
    table.section(
        f"Bulk: one {_BLOB_MB} MB response (fake_api /blob), median of {args.bulk_repeats}"
    )
    table.row(
        "MB/s",
        {m: f"{bulk[m]:.0f}" for m in _CONFIGS},
        "ours >= baseline",
        bulk["ours"] >= bulk["baseline"],
    )

    if results.get("fetch"):
        fetch = results["fetch"]
        small, large = args.fetch_sizes
        table.section(
            f"Fetch only ({_PER_PAGE} records a page, pages parsed and dropped; a child process "
            f"per run)"
        )
        for total in args.fetch_sizes:
            rates = {
                m: fetch[(m, total)]["records"] / fetch[(m, total)]["seconds"] for m in _CONFIGS
            }
            table.row(
                f"{total:,} records: records/s",
                {m: f"{rates[m]:,.0f}" for m in _CONFIGS},
                "ours >= 0.5 x direct",
                rates["ours"] >= 0.5 * rates["direct"],
            )
            table.row(
                f"{total:,} records: peak RSS",
                {m: f"{fetch[(m, total)]['peak_rss_mb']:.0f} MB" for m in _CONFIGS},
                "ours < 100 MB",
                fetch[("ours", total)]["peak_rss_mb"] < 100,
            )
        growth = {
            m: fetch[(m, large)]["peak_rss_mb"] / fetch[(m, small)]["peak_rss_mb"] - 1
            for m in _CONFIGS
        }
        table.row(
            f"peak RSS, {large:,} vs {small:,}",
            {m: f"{growth[m] * 100:+.1f}%" for m in _CONFIGS},
            "ours within 10%",
            abs(growth["ours"]) <= 0.10,
        )

    if results.get("sync"):
        sync = results["sync"]
        columns = ("runner alone", "ours")
        table.section(
            "Whole sync through `fivetran debug` (DuckDB); records/s from the SDK's own elapsed "
            "time. Runner alone: the same records upserted in-process, no tunnel, no HTTP",
            columns,
        )
        for total in args.sync_sizes:
            figures = {"runner alone": sync[("alone", total)], "ours": sync[("ours", total)]}
            rates = {c: f["records"] / f["seconds"] for c, f in figures.items()}
            table.row(
                f"{total:,} records: records/s",
                {c: f"{rate:,.0f}" for c, rate in rates.items()},
                "ours >= 0.9 x runner alone",
                rates["ours"] >= 0.9 * rates["runner alone"],
                columns,
            )
            table.row(
                f"{total:,} records: peak RSS",
                {c: f"{f['peak_rss_mb']:.0f} MB" for c, f in figures.items()},
                "ours <= runner alone + 50 MB",
                figures["ours"]["peak_rss_mb"] <= figures["runner alone"]["peak_rss_mb"] + 50,
                columns,
            )
            table.row(
                f"{total:,} records: wall s of the CLI run",
                {c: f"{f['wall']:.1f} s" for c, f in figures.items()},
                columns=columns,
            )
    return table


# --- Main ---


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N, fewer requests")
    parser.add_argument("--skip-sync", action="store_true", help="no `fivetran debug` runs")
    parser.add_argument("--skip-fetch", action="store_true", help="no fetch-only runs")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.setup_repeats, args.bulk_repeats = 4, 3, 1
        args.fetch_sizes, args.sync_sizes = (10_000, 100_000), (2_000, 20_000)
    else:
        args.rounds, args.setup_repeats, args.bulk_repeats = 10, 7, 3
        args.fetch_sizes, args.sync_sizes = (100_000, 1_000_000), (20_000, 200_000)
    args.per_round = {"direct": 30, "ours": 30, "baseline": 5, "ours-no-quickack": 10}
    return args


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if args.child:
        kind, spec_path = args.child
        spec = json.loads(Path(spec_path).read_text())
        result = child_fetch(spec) if kind == "fetch" else child_sync(spec)
        print(json.dumps(result), flush=True)
        return 0
    if not have_openssh():
        sys.exit(
            "The benchmark needs OpenSSH's sshd and ssh-keygen (apt-get install openssh-server)."
        )

    from fivetran_connector_sdk import Logging

    Logging.LOG_LEVEL = Logging.Level.WARNING  # the tunnel's INFO lines would interleave
    began = time.perf_counter()
    load_before = os.getloadavg()

    def report(step: str):
        print(f"[{time.perf_counter() - began:6.1f} s] {step}", file=sys.stderr, flush=True)

    folder = Path(tempfile.mkdtemp(prefix="benchmark-"))
    results = {}
    try:
        # RSA in PEM: the published example reads its key with paramiko.RSAKey.
        private_key, public_key = make_key(folder, "rsa2048", "pem")
        with (
            SshServer(folder / "sshd", [public_key], log_level="ERROR") as sshd,
            Playground(api_key=_API_KEY) as playground,
        ):
            env = {
                "ssh_port": sshd.port,
                "ssh_user": sshd.user,
                "private_key": private_key,
                "host_key": sshd.host_key_line("ed25519"),
            }
            report("tunnel setup and teardown")
            results["setup"] = measure_setup(env, playground.port, args.setup_repeats)
            report("per-request latency")
            results["latency"] = measure_latency(env, playground, args.rounds, args.per_round)
            with FakeApiProcess(_PER_PAGE) as blob_api:
                report(f"bulk transfer, {_BLOB_MB} MB")
                results["bulk"] = measure_bulk(env, blob_api.port, args.bulk_repeats)
            if not args.skip_fetch:
                results["fetch"] = measure_fetch(env, args.fetch_sizes, folder, report)
            if not args.skip_sync:
                results["sync"] = measure_sync(env, args.sync_sizes, folder, report)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report("done")

    import paramiko
    import sshtunnel

    openssh = ""
    with contextlib.suppress(OSError):
        openssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    print(f"\nCommand: python tests/benchmark.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"Machine: {os.cpu_count()} cores; load average {load_before[0]:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after. Python {sys.version.split()[0]}, paramiko "
        f"{paramiko.__version__}, sshtunnel {sshtunnel.__version__}, {openssh or 'OpenSSH'}."
    )
    print(
        textwrap.fill(
            "direct: no tunnel. ours: connector.open_tunnel. baseline: SSHTunnelForwarder with "
            "defaults and an RSAKey, as in Fivetran's key-based example. Same HTTP client "
            "(urllib3, one connection at a time) for all three; everything on 127.0.0.1.",
            99,
        )
        + "\n"
    )
    build_table(results, args).print()
    print(f"\nTotal {time.perf_counter() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
