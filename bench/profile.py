"""Where a server spends its time under one workload: py-spy samples, summarized.

    python -m bench.profile a                 # ours-memory under (a), 8 s
    python -m bench.profile b --server ours-sqlite --seconds 10

Needs `py-spy` (pip install py-spy) and wrk. Prints the top functions by own time
(samples in the function itself) and by total time (the function or anything it
calls), as percentages of all samples; writes the raw collapsed stacks next to a
speedscope file under the work directory for a closer look.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .run import LOAD_WORKLOADS, Options, _pinned, capture_floor, running, seed

ROOT = Path(__file__).resolve().parent.parent


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarize(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    packages: collections.Counter[str] = collections.Counter()
    for name, n in own.items():
        path = name.rsplit(" (", 1)[1]
        packages[path.split("/", 1)[0] if "/" in path else path] += n
    lines = [f"{samples} samples", "", "own time by package:"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in packages.most_common(12)]
    lines += ["", "own time:"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "total time (function and its callees):"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in total.most_common(top)]
    ours = [(name, n) for name, n in total.most_common() if "chatkit_asgi/" in name]
    lines += ["", "total time of chatkit_asgi functions:"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in ours[:top]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workload", choices=[w.key for w in LOAD_WORKLOADS])
    parser.add_argument("--server", default="ours-memory")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", default=None, help="directory for the raw/speedscope files")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    options = Options(
        duration=args.seconds,
        warmup=1.0,
        connections=32,
        rounds=1,
        streams=0,
        ttfb_samples=0,
        only={args.workload},
        loop="auto",
        http="auto",
        pin=True,
        output=Path("/dev/null"),
    )
    out = Path(args.out) if args.out else options.workdir
    out.mkdir(parents=True, exist_ok=True)
    workload = next(w for w in LOAD_WORKLOADS if w.key == args.workload)
    floor_file = capture_floor(options) if args.server == "floor" else None
    with running(args.server, options, floor_file) as server:
        thread_id = seed(server) if workload.seeded else None
        body_file = options.workdir / "body.json"
        body_file.write_bytes(workload.body(thread_id))
        load = subprocess.Popen(
            _pinned(
                [
                    "wrk",
                    "-t1",
                    "-c32",
                    f"-d{round(args.seconds) + 3}s",
                    "-s",
                    str(ROOT / "bench" / "post.lua"),
                    f"http://127.0.0.1:{server.port}{server.path}",
                ],
                1,
                options,
            ),
            stdout=subprocess.DEVNULL,
            env={"BENCH_BODY_FILE": str(body_file), "PATH": "/usr/bin:/bin"},
        )
        time.sleep(1.5)
        raw = out / f"{args.server}-{args.workload}.txt"
        for fmt, path in (("raw", raw),):
            subprocess.run(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(round(args.seconds)),
                    "--rate",
                    str(args.rate),
                    "--format",
                    fmt,
                    "--output",
                    str(path),
                ],
                check=True,
                capture_output=True,
            )
        load.wait()
    print(summarize(raw, args.top))
    print(f"\nraw stacks: {raw}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
