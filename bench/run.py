"""The benchmark runner: every server, every workload, ratios pair by pair in one run.

    python -m bench.run                      # everything, about 4 minutes
    python -m bench.run --duration 3 --rounds 1 --only a,b

Each server runs under uvicorn with one worker in its own process (pinned to CPU 0
when there are two or more); the load comes from `wrk` (or the clients in
`bench.clients`) in another process, pinned to CPU 1. Results are printed as a
table and written to `bench/results/latest.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from . import workload as wl

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
HOST = "127.0.0.1"

SERVERS: dict[str, tuple[str, str, bool]] = {
    # name: (uvicorn target, endpoint family, is a factory)
    "ours-memory": ("bench.servers.ours:memory_app", "ours", True),
    "ours-sqlite": ("bench.servers.ours:sqlite_app", "ours", True),
    # SQLAlchemyStore on PostgreSQL (asyncpg): `BENCH_POSTGRES_URL`, else a throwaway
    # cluster started for the run (as the tests do, tests/_postgres_server.py).
    "ours-postgres": ("bench.servers.ours:postgres_app", "ours", True),
    "reference": ("bench.servers.reference:app", "reference", False),
    "floor": ("bench.servers.floor:app", "floor", False),
}
OURS = ("ours-memory", "ours-sqlite", "ours-postgres")
# The targets are the embedded stores'; the PostgreSQL row is there to compare with.
TARGETED = ("ours-memory", "ours-sqlite")
SEED_THREADS = 20
SEED_ITEMS = 50


@dataclass
class Options:
    duration: float
    warmup: float
    connections: int
    rounds: int
    streams: int
    ttfb_samples: int
    only: set[str]
    loop: str
    http: str
    pin: bool
    output: Path
    nice: int = 0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chatkit-bench-")))


# -- processes ----------------------------------------------------------------------------


def _pinned(command: list[str], cpu: int, options: Options) -> list[str]:
    if options.nice:
        command = ["nice", "-n", str(options.nice), *command]
    if options.pin and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *command]
    return command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _proc_run_delay_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (other load)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """One server under uvicorn, one worker, in its own process."""

    def __init__(self, name: str, options: Options, floor_file: Path | None) -> None:
        self.name = name
        target, self.family, factory = SERVERS[name]
        self.path = wl.ENDPOINT_PATH[self.family]
        self.port = free_port()
        env = dict(os.environ)
        env["BENCH_DB"] = str(options.workdir / f"{name}-{self.port}.db")
        env["BENCH_TABLE_PREFIX"] = f"bench_{self.port}_"  # fresh tables per server
        if floor_file is not None:
            env["BENCH_FLOOR_FRAMES"] = str(floor_file)
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--loop",
            options.loop,
            "--http",
            options.http,
        ]
        if factory:
            command.append("--factory")
        # Server logs go to a file: a load generator that stops mid-stream makes asyncio
        # log every failed write. They are shown if the server fails.
        self.log = options.workdir / f"{name}-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                _pinned(command, 0, options), cwd=ROOT, env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                log_text = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {self.process.returncode}:\n{log_text}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        return _proc_rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return _proc_cpu_seconds(self.pid)

    def run_delay_seconds(self) -> float:
        return _proc_run_delay_seconds(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def running(name: str, options: Options, floor_file: Path | None) -> Iterator[Server]:
    server = Server(name, options, floor_file)
    try:
        yield server
    finally:
        server.stop()


# -- a tiny HTTP client for seeding and samples --------------------------------------------


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked body, as far as complete chunks go."""
    out = bytearray()
    while True:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return bytes(out)
        size = int(line.split(b";")[0] or b"0", 16)
        if size == 0 or len(rest) < size:
            if len(rest) < size:
                out += rest
            return bytes(out)
        out += rest[:size]
        data = rest[size + 2 :]


def post(server: Server, body: bytes, *, until: bytes | None = None) -> tuple[int, bytes]:
    """POST `body`; the status and the decoded body (read until `until` when given)."""
    request = (
        f"POST {server.path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    received = b""
    with socket.create_connection((HOST, server.port), 30) as sock:
        sock.sendall(request)
        while until is None or until not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        payload = dechunk(payload)
    return status, payload


def frames_of(payload: bytes) -> list[bytes]:
    return [frame + b"\n\n" for frame in payload.split(b"\n\n") if frame.startswith(b"data: ")]


def thread_id_of(payload: bytes) -> str:
    for frame in frames_of(payload):
        event = json.loads(frame[len(b"data: ") :])
        if event["type"] == "thread.created":
            return str(event["thread"]["id"])
    raise RuntimeError(f"no thread.created in {payload[:300]!r}")


def seed(server: Server) -> str:
    """One thread of `SEED_ITEMS` items among `SEED_THREADS` threads; its id."""
    status, payload = post(server, wl.create_body("echo"))
    assert status == 200, payload
    thread_id = thread_id_of(payload)
    for _ in range((SEED_ITEMS - 2) // 2):
        status, payload = post(server, wl.add_message_body(thread_id, "echo"))
        assert status == 200, payload
    for _ in range(SEED_THREADS - 1):
        status, payload = post(server, wl.create_body("echo"))
        assert status == 200, payload
    return thread_id


# -- workloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    streaming: bool
    seeded: bool

    def body(self, thread_id: str | None) -> bytes:
        if self.key == "a":
            return wl.create_body("echo")
        if self.key == "b":
            return wl.create_body("deltas")
        if self.key == "c-get":
            assert thread_id is not None
            return wl.get_by_id_body(thread_id)
        return wl.list_body()


LOAD_WORKLOADS = [
    Workload("a", "(a) threads.create, echo reply", True, False),
    Workload("b", f"(b) threads.create, {wl.DELTAS} text deltas", True, False),
    Workload("c-get", f"(c) threads.get_by_id, thread of {SEED_ITEMS} items", False, True),
    Workload("c-list", f"(c) threads.list, {SEED_THREADS} threads", False, True),
]


def wrk_command(url: str, connections: int, seconds: float) -> list[str]:
    """wrk POSTing the file named by `BENCH_BODY_FILE` to `url` (one thread)."""
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "post.lua"),
        url,
    ]


def wrk_summary(out: str) -> dict[str, Any] | None:
    """The JSON summary `post.lua` prints, or None when wrk printed none."""
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    return None if line is None else dict(json.loads(line.removeprefix("BENCH_JSON ")))


def _wrk(server: Server, body_file: Path, seconds: float, options: Options) -> dict[str, Any]:
    command = wrk_command(f"http://{HOST}:{server.port}{server.path}", options.connections, seconds)
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file))
    cpu_before = server.cpu_seconds()
    delay_before = server.run_delay_seconds()
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            _pinned(command, 1, options), stdout=subprocess.PIPE, stderr=errors, env=env
        )
        assert process.stdout is not None
        out = process.stdout.read().decode()
        process.stdout.close()
        # wait4 rather than wait: wrk's own CPU time shows whether the load generator
        # was the bottleneck.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        err = errors.read().decode()
    wall = time.perf_counter() - started
    server_cpu = server.cpu_seconds() - cpu_before
    server_delay = server.run_delay_seconds() - delay_before
    result = wrk_summary(out)
    if process.returncode != 0 or result is None:
        raise RuntimeError(f"wrk failed: {out} {err}")
    result["wall_s"] = wall
    result["server_cpu_pct"] = 100 * server_cpu / wall
    # Runnable but not running: the CPU was busy with something else (a noisy machine).
    result["server_cpu_wait_pct"] = 100 * server_delay / wall
    result["client_cpu_pct"] = 100 * (usage.ru_utime + usage.ru_stime) / wall
    result["server_cpu_s"] = server_cpu
    return result


def measure_load(
    workload: Workload, name: str, options: Options, floor_file: Path
) -> dict[str, Any]:
    with running(name, options, floor_file) as server:
        thread_id = seed(server) if workload.seeded else None
        body = workload.body(thread_id)
        body_file = options.workdir / f"body-{workload.key}.json"
        body_file.write_bytes(body)
        status, sample = post(server, body)
        if status != 200:
            raise RuntimeError(f"{name} answered {status} to {workload.key}: {sample[:300]!r}")
        events = len(frames_of(sample)) if workload.streaming else 0
        if options.warmup > 0:
            _wrk(server, body_file, options.warmup, options)
        result = _wrk(server, body_file, options.duration, options)
        rps = result["requests"] / (result["duration_us"] / 1e6)
        return {
            "requests_per_s": rps,
            "events_per_response": events,
            "events_per_s": rps * events,
            "response_bytes": len(sample),
            "p50_ms": result["latency_us"]["p50"] / 1e3,
            "p99_ms": result["latency_us"]["p99"] / 1e3,
            "errors": result["errors"],
            "requests": result["requests"],
            "rss_mib": server.rss_kib() / 1024,
            "server_cpu_pct": result["server_cpu_pct"],
            "server_cpu_wait_pct": result["server_cpu_wait_pct"],
            # Robust to a noisy machine: the server's CPU time per request.
            "cpu_ms_per_request": 1e3 * result["server_cpu_s"] / max(result["requests"], 1),
            "client_cpu_pct": result.get("client_cpu_pct"),
        }


def measure_latency_and_memory(name: str, options: Options, floor_file: Path) -> dict[str, Any]:
    """(e) time to first byte, then (d) memory per idle open stream, on one fresh server."""
    out: dict[str, Any] = {}
    with running(name, options, floor_file) as server:
        base = [
            sys.executable,
            "-m",
            "bench.clients",
            "--port",
            str(server.port),
            "--path",
            server.path,
        ]
        if "e" in options.only:
            body_file = options.workdir / "body-e.json"
            body_file.write_bytes(wl.create_body("echo"))
            command = [
                *base,
                "ttfb",
                "--body-file",
                str(body_file),
                "--count",
                str(options.ttfb_samples),
                "--warmup",
                "30",
            ]
            done = subprocess.run(
                _pinned(command, 1, options), cwd=ROOT, capture_output=True, check=True
            )
            out["ttfb"] = json.loads(done.stdout)
        if "d" in options.only:
            out["streams"] = _open_streams(server, base, options)
    return out


def _open_streams(server: Server, base: list[str], options: Options) -> dict[str, Any]:
    body_file = options.workdir / "body-d.json"
    body_file.write_bytes(wl.create_body("wait"))
    command = [
        *base,
        "streams",
        "--body-file",
        str(body_file),
        "--count",
        str(options.streams),
        "--warmup",
        str(max(50, options.streams // 5)),
    ]
    client = subprocess.Popen(
        _pinned(command, 1, options),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        warm = client.stdout.readline().split()
        time.sleep(1.0)
        before = server.rss_kib()
        client.stdin.write("go\n")
        client.stdin.flush()
        opened_line = client.stdout.readline().split()
        time.sleep(1.0)
        after = server.rss_kib()
        client.stdin.write("close\n")
        client.stdin.flush()
        client.stdout.readline()
    finally:
        client.wait(30)
    opened = int(opened_line[1])
    return {
        "warmup_opened": int(warm[1]),
        "opened": opened,
        "open_seconds": float(opened_line[2]),
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "kib_per_stream": (after - before) / max(opened, 1),
    }


def capture_floor(options: Options) -> Path:
    """Record chatkit-asgi's answers so the floor sends frames of the same count and size."""
    captured: dict[str, Any] = {"streams": {}, "json": {}}
    with running("ours-memory", options, None) as server:
        for mode in ("echo", "deltas"):
            status, payload = post(server, wl.create_body(mode))
            assert status == 200, payload
            captured["streams"][mode] = [f.decode() for f in frames_of(payload)]
        status, payload = post(server, wl.create_body("wait"), until=b'"thread.item.added"')
        captured["streams"]["wait"] = [f.decode() for f in frames_of(payload)]
        thread_id = seed(server)
        captured["json"]["threads.get_by_id"] = post(server, wl.get_by_id_body(thread_id))[
            1
        ].decode()
        captured["json"]["threads.list"] = post(server, wl.list_body())[1].decode()
    path = options.workdir / "floor-frames.json"
    path.write_text(json.dumps(captured))
    return path


# -- results -----------------------------------------------------------------------------


def _median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-metric median over rounds (numbers), the first round's value otherwise."""
    merged: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = statistics.median(run[key] for run in runs)
        else:
            merged[key] = value
    if len(runs) > 1:
        merged["rounds"] = [
            {"requests_per_s": run.get("requests_per_s"), "p99_ms": run.get("p99_ms")}
            for run in runs
        ]
    return merged


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b in (None, 0):
        return None
    return a / b


def ratios(servers: dict[str, dict[str, Any]], metric: str) -> dict[str, float | None]:
    out = {}
    for ours in OURS:
        if ours not in servers:
            continue
        for other in ("reference", "floor"):
            if other in servers:
                out[f"{ours}/{other}"] = _ratio(
                    servers[ours].get(metric), servers[other].get(metric)
                )
    return out


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def check(
        name: str,
        value: float | None,
        bound: float,
        at_least: bool,
        per_cpu: float | None = None,
    ) -> None:
        if value is None:
            return
        met = value >= bound if at_least else value <= bound
        sign = ">=" if at_least else "<="
        target = {"target": f"{name} {sign} {bound:g}", "value": value, "met": met}
        if per_cpu is not None:
            # The same ratio per server CPU-second: what a quiet machine would show.
            target["value_per_cpu"] = per_cpu
            target["met_per_cpu"] = per_cpu >= bound if at_least else per_cpu <= bound
        targets.append(target)

    load = results["load"]
    for ours in TARGETED:
        vs_ref = f"{ours}/reference"
        vs_floor = f"{ours}/floor"

        def rps(key: str, pair: str, bound: float) -> None:
            if key in load:
                entry = load[key]
                check(
                    f"({key}) {pair} req/s",
                    entry["ratios_rps"].get(pair),
                    bound,
                    True,
                    entry["ratios_cpu_efficiency"].get(pair),
                )

        rps("a", vs_ref, 3)
        rps("b", vs_ref, 2)
        rps("b", vs_floor, 0.6)
        rps("c-get", vs_ref, 2)
        rps("c-list", vs_ref, 2)
        streams = results.get("streams", {})
        if ours in streams:
            check(f"(d) {ours} KiB per idle stream", streams[ours]["kib_per_stream"], 50, False)
        for key, entry in load.items():
            check(f"({key}) {vs_ref} p99", entry["ratios_p99"].get(vs_ref), 1, False)
        ttfb = results.get("ttfb", {})
        if ours in ttfb and "reference" in ttfb:
            check(
                f"(e) {vs_ref} first-event p99",
                _ratio(
                    ttfb[ours]["first_event"]["p99_ms"], ttfb["reference"]["first_event"]["p99_ms"]
                ),
                1,
                False,
            )
    return targets


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(results: dict[str, Any]) -> str:
    lines = []
    load = results["load"]
    if load:
        lines += [
            "| workload | server | req/s | events/s | p50 ms | p99 ms | RSS MiB "
            "| req/s vs ref | req/s vs floor | p99 vs ref |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for entry in load.values():
            for name, m in entry["servers"].items():
                rr = entry["ratios_rps"]
                rp = entry["ratios_p99"]
                lines.append(
                    f"| {entry['title']} | {name} | {_fmt(m['requests_per_s'])} | "
                    f"{_fmt(m['events_per_s']) if m['events_per_response'] else '-'} | "
                    f"{_fmt(m['p50_ms'], 1)} | {_fmt(m['p99_ms'], 1)} | {_fmt(m['rss_mib'])} | "
                    f"{_fmt(rr.get(f'{name}/reference'), 2)} | "
                    f"{_fmt(rr.get(f'{name}/floor'), 2)} | "
                    f"{_fmt(rp.get(f'{name}/reference'), 2)} |"
                )
    if "streams" in results:
        lines += [
            "",
            f"| (d) {results['options']['streams']} idle open streams | server | opened "
            "| RSS before MiB | RSS after MiB | KiB/stream |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, m in results["streams"].items():
            lines.append(
                f"| | {name} | {m['opened']} | {_fmt(m['rss_before_mib'], 1)} | "
                f"{_fmt(m['rss_after_mib'], 1)} | {_fmt(m['kib_per_stream'], 1)} |"
            )
    if "ttfb" in results:
        lines += [
            "",
            "| (e) threads.create, sequential | server | first byte p50/p99 ms "
            "| first event p50/p99 ms | complete p50/p99 ms |",
            "|---|---|---:|---:|---:|",
        ]
        for name, m in results["ttfb"].items():
            cells = [
                f"{_fmt(m[k]['p50_ms'], 2)} / {_fmt(m[k]['p99_ms'], 2)}"
                for k in ("first_byte", "first_event", "complete")
            ]
            lines.append(f"| | {name} | " + " | ".join(cells) + " |")
    if results.get("targets"):
        lines += [
            "",
            "| target | value | met | per CPU-second | met |",
            "|---|---:|---|---:|---|",
        ]
        for t in results["targets"]:
            per_cpu = t.get("value_per_cpu")
            lines.append(
                f"| {t['target']} | {t['value']:.2f} | {'yes' if t['met'] else 'NO'} | "
                + (
                    f"{per_cpu:.2f} | {'yes' if t['met_per_cpu'] else 'NO'} |"
                    if per_cpu is not None
                    else "- | - |"
                )
            )
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """The table with a line saying where and how it was measured."""
    m = results["machine"]
    o = results["options"]
    v = m["versions"]
    return (
        f"Measured {results['date']} on {m['cpu']} ({m['cpus']} CPUs), Python {m['python']}, "
        f"uvicorn {v['uvicorn']} (loop {o['uvicorn_loop']}, http {o['uvicorn_http']}), "
        f"openai-chatkit {v['openai-chatkit']}, chatkit-asgi at {m['git_commit']}; "
        f"{o['connections']} connections, {o['duration_s']:g} s per measurement after "
        f"{o['warmup_s']:g} s of warm-up, median of {o['rounds']} rounds.\n\n" + table(results)
    )


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = None
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "chatkit_asgi"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if dirty:
            commit += "+uncommitted"
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
        "versions": {
            p: _version(p)
            for p in (
                "chatkit-asgi",
                "openai-chatkit",
                "uvicorn",
                "starlette",
                "pydantic",
                "pydantic-core",
                "uvloop",
                "httptools",
            )
        },
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        if shutil.which("wrk")
        else None,
    }


@contextlib.contextmanager
def _postgres(names: list[str]) -> Iterator[None]:
    """`BENCH_POSTGRES_URL` for the `ours-postgres` server: as given, or a throwaway
    cluster for the run (stopped at the end)."""
    if "ours-postgres" not in names or os.environ.get("BENCH_POSTGRES_URL"):
        yield
        return
    sys.path.insert(0, str(ROOT))
    from tests._postgres_server import start_local_server, stop_local_server

    os.environ["BENCH_POSTGRES_URL"] = start_local_server()
    try:
        yield
    finally:
        del os.environ["BENCH_POSTGRES_URL"]
        stop_local_server()


def _measure(
    results: dict[str, Any], names: list[str], load_workloads: list[Any], options: Options
) -> None:
    floor_file = capture_floor(options)
    for workload in load_workloads:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for round_index in range(options.rounds):
            # Rotate the order each round so slow drift does not favour one server.
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                runs[name].append(measure_load(workload, name, options, floor_file))
                m = runs[name][-1]
                print(
                    f"  {workload.key:6} {name:12} {m['requests_per_s']:9.0f} req/s  "
                    f"{m['cpu_ms_per_request']:6.2f} cpu-ms/req  "
                    f"p99 {m['p99_ms']:7.1f} ms  server cpu {m['server_cpu_pct']:4.0f}% "
                    f"(waiting {m['server_cpu_wait_pct']:3.0f}%)  "
                    f"wrk cpu {m['client_cpu_pct'] or 0:4.0f}%",
                    flush=True,
                )
        servers = {name: _median_runs(r) for name, r in runs.items()}
        results["load"][workload.key] = {
            "title": workload.title,
            "servers": servers,
            "ratios_rps": ratios(servers, "requests_per_s"),
            "ratios_p99": ratios(servers, "p99_ms"),
            # cpu-ms per request, inverted: how many more requests per CPU-second.
            "ratios_cpu_efficiency": {
                k: (1 / v if v else None) for k, v in ratios(servers, "cpu_ms_per_request").items()
            },
        }
    if options.only & {"d", "e"}:
        for name in names:
            measured = measure_latency_and_memory(name, options, floor_file)
            for key in ("ttfb", "streams"):
                if key in measured:
                    results.setdefault(key, {})[name] = measured[key]
            print(f"  d/e    {name:12} {json.dumps(measured)[:160]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up load")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every load workload")
    parser.add_argument("--streams", type=int, default=1000, help="open streams for (d)")
    parser.add_argument("--ttfb-samples", type=int, default=1000)
    parser.add_argument("--only", default="a,b,c,d,e", help="workloads: a,b,c,d,e")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--loop", default="auto", help="uvicorn --loop (auto, asyncio, uvloop)")
    parser.add_argument("--http", default="auto", help="uvicorn --http (auto, h11, httptools)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPUs")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run servers and load generators at this niceness (e.g. -10 as root on a "
        "shared machine, so other work disturbs the measurements less)",
    )
    parser.add_argument("--output", default=str(BENCH / "results" / "latest.json"))
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    if "c" in only:
        only |= {"c-get", "c-list"}
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        rounds=args.rounds,
        streams=args.streams,
        ttfb_samples=args.ttfb_samples,
        only=only,
        loop=args.loop,
        http=args.http,
        pin=not args.no_pin and (os.cpu_count() or 1) >= 2,
        output=Path(args.output),
        nice=args.nice,
    )
    names = [n for n in args.servers.split(",") if n in SERVERS]
    load_workloads = [w for w in LOAD_WORKLOADS if w.key in only]
    if load_workloads and not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "options": {
            "duration_s": options.duration,
            "warmup_s": options.warmup,
            "connections": options.connections,
            "rounds": options.rounds,
            "streams": options.streams,
            "ttfb_samples": options.ttfb_samples,
            "uvicorn_loop": options.loop,
            "uvicorn_http": options.http,
            "pinned": options.pin,
            "nice": options.nice,
        },
        "load": {},
    }
    with _postgres(names):
        _measure(results, names, load_workloads, options)
    results["targets"] = evaluate_targets(results)
    results["elapsed_s"] = time.perf_counter() - started
    print()
    print(table(results))
    busy = [
        f"{key}/{name}"
        for key, entry in results["load"].items()
        for name, m in entry["servers"].items()
        # A saturated server uses its whole core; the SQLite store's worker thread waits
        # for the core it shares with the event loop, which is not other load.
        if m["server_cpu_pct"] < 90 and m["server_cpu_wait_pct"] > 10
    ]
    if busy:
        print(
            f"\nWARNING: the machine was busy ({', '.join(busy)} got less than 90 % of a "
            "CPU and waited for one): req/s ratios are unreliable, trust the per-CPU-second "
            "ratios."
        )
    print(f"\n{results['elapsed_s']:.0f} s; written to {options.output} (and .md)")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(results, indent=2) + "\n")
    options.output.with_suffix(".md").write_text(markdown(results) + "\n")
    shutil.rmtree(options.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
