"""Measuring clients that wrk cannot be: time to first byte and many idle open streams.

Run as a separate process (`python -m bench.clients ttfb|streams ...`), pinned to
another core than the server; prints one JSON line with the measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time


def _request(host: str, port: int, path: str, body: bytes, *, close: bool) -> bytes:
    connection = "close" if close else "keep-alive"
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {connection}\r\n\r\n"
    ).encode() + body


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def ttfb(
    host: str, port: int, path: str, body: bytes, count: int, warmup: int
) -> dict[str, object]:
    """Sequential requests, one connection each: time to the first response byte,
    to the first SSE event, and to the end of the response."""
    first_byte: list[float] = []
    first_event: list[float] = []
    total: list[float] = []
    request = _request(host, port, path, body, close=True)
    for index in range(warmup + count):
        with socket.create_connection((host, port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            start = time.perf_counter()
            sock.sendall(request)
            received = b""
            t_byte = t_event = None
            while True:
                chunk = sock.recv(65536)
                now = time.perf_counter()
                if not chunk:
                    break
                if t_byte is None:
                    t_byte = now
                received += chunk
                if t_event is None and b"\r\n\r\n" in received:
                    _, _, rest = received.partition(b"\r\n\r\n")
                    if b"data: " in rest:
                        t_event = now
            end = time.perf_counter()
        if not received.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"unexpected response: {received[:200]!r}")
        if index >= warmup:
            first_byte.append((t_byte or end) - start)
            first_event.append((t_event or end) - start)
            total.append(end - start)

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": statistics.median(values) * 1e3,
            "p99_ms": _percentile(values, 99) * 1e3,
            "mean_ms": statistics.fmean(values) * 1e3,
        }

    return {
        "samples": count,
        "first_byte": summary(first_byte),
        "first_event": summary(first_event),
        "complete": summary(total),
    }


async def _open_stream(
    host: str, port: int, path: str, body: bytes, marker: bytes, timeout: float
) -> asyncio.StreamWriter | None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(_request(host, port, path, body, close=False))
    received = b""
    deadline = asyncio.get_running_loop().time() + timeout
    while marker not in received:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            chunk = await asyncio.wait_for(reader.read(65536), max(remaining, 0.001))
        except asyncio.TimeoutError:
            chunk = b""
        if not chunk:
            writer.close()
            return None
        received += chunk
    return writer


async def _open_many(
    host: str, port: int, path: str, body: bytes, count: int, marker: bytes, parallel: int
) -> list[asyncio.StreamWriter | None]:
    gate = asyncio.Semaphore(parallel)

    async def one() -> asyncio.StreamWriter | None:
        async with gate:
            try:
                return await _open_stream(host, port, path, body, marker, 60.0)
            except OSError:
                return None

    return await asyncio.gather(*(one() for _ in range(count)))


async def _close_all(writers: list[asyncio.StreamWriter | None]) -> None:
    for writer in writers:
        if writer is not None:
            writer.close()
    await asyncio.sleep(0.5)


async def streams(
    host: str, port: int, path: str, body: bytes, count: int, warmup: int, marker: bytes
) -> None:
    """Open `count` streams and keep them open until told to close (a line on stdin).

    Protocol with the runner: prints `ready <opened>` after the warm-up streams were
    opened and closed, waits for a line, opens the streams, prints `open <opened>`,
    waits for a line, closes them and prints `closed`.
    """
    loop = asyncio.get_running_loop()
    warm = await _open_many(host, port, path, body, warmup, marker, 50)
    await _close_all(warm)
    print(f"ready {sum(w is not None for w in warm)}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    start = time.perf_counter()
    writers = await _open_many(host, port, path, body, count, marker, 100)
    elapsed = time.perf_counter() - start
    print(f"open {sum(w is not None for w in writers)} {elapsed:.3f}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    await _close_all(writers)
    print("closed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["ttfb", "streams"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--marker", default='"thread.item.added"')
    args = parser.parse_args()
    with open(args.body_file, "rb") as file:
        body = file.read()
    if args.command == "ttfb":
        result = ttfb(args.host, args.port, args.path, body, args.count, args.warmup)
        print(json.dumps(result), flush=True)
    else:
        asyncio.run(
            streams(
                args.host,
                args.port,
                args.path,
                body,
                args.count,
                args.warmup,
                args.marker.encode(),
            )
        )


if __name__ == "__main__":
    main()
