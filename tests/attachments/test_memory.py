"""A 200 MB direct upload streams through a real server in bounded memory.

The app runs under uvicorn in a process of its own, so its resident memory can
be measured alone: the peak (`VmHWM`, reset just before the upload, and sampled
`VmRSS` as a fallback) may not grow by more than 32 MiB over what it was before.
A bound on memory, not a timing test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests._s3_server import S3Endpoint

pytestmark = pytest.mark.uvicorn

UPLOAD_SIZE = 200 * 1024 * 1024
MAX_GROWTH = 32 * 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
BOUNDARY = "chatkit-memory-test-boundary"


class MemoryWatch:
    """Resident memory of another process, from /proc (Linux)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sampled_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise LookupError(field)

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        return self._status("VmRSS")

    def __enter__(self) -> MemoryWatch:
        try:  # reset the kernel's high-water mark, so VmHWM is the peak from here on
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self.baseline = self.rss()
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.sampled_peak = max(self.sampled_peak, self.rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.sampled_peak, self._status("VmHWM") if self._hwm_reset else 0)

    @property
    def growth(self) -> int:
        """How far the peak rose above the baseline, in bytes."""
        return self.peak - self.baseline


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server_env(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    backend: str = request.param
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CHATKIT_TEST_BACKEND": backend}
    if backend == "filesystem":
        env["CHATKIT_TEST_DIR"] = str(tmp_path / "attachments")
    else:
        endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
        env.update(endpoint.env(), CHATKIT_TEST_BUCKET=request.getfixturevalue("s3_bucket"))
    return backend, env


@pytest.fixture
def server(server_env: tuple[str, dict[str, str]], tmp_path: Path) -> Iterator[tuple[str, int]]:
    """`(url, pid)` of the upload app under uvicorn in its own process."""
    _, env = server_env
    port = _free_port()
    log = (tmp_path / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.attachments._upload_server:app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--no-access-log"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail((tmp_path / "uvicorn.log").read_text(errors="replace"))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("uvicorn did not start")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def multipart_upload(size: int) -> tuple[dict[str, str], AsyncIterator[bytes]]:
    """Headers and a streamed body of a one-file form, as a browser sends it."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = os.urandom(1024 * 1024)

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(size // len(block)):
            yield block
        yield block[: size % len(block)]
        yield tail

    headers = {
        "content-type": f"multipart/form-data; boundary={BOUNDARY}",
        "content-length": str(len(head) + size + len(tail)),
    }
    return headers, body()


@pytest.mark.parametrize("server_env", ["filesystem", "s3"], indirect=True)
async def test_a_200_mb_direct_upload_keeps_the_servers_memory_flat(
    server: tuple[str, int],
    server_env: tuple[str, dict[str, str]],
    request: pytest.FixtureRequest,
) -> None:
    url, pid = server
    backend, env = server_env
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        # Warm up: imports, the S3 client, the first buffers.
        warm = await http.post("/upload", files={"file": ("a.pdf", b"%PDF-1.7", "application/pdf")})
        assert warm.status_code == 200, warm.text

        headers, body = multipart_upload(UPLOAD_SIZE)
        with MemoryWatch(pid) as memory:
            response = await http.post("/upload", content=body, headers=headers)
        assert response.status_code == 200, response.text
        attachment = response.json()

    if backend == "filesystem":
        stored = Path(env["CHATKIT_TEST_DIR"], "files", "~shared", attachment["id"])
        assert (await anyio.Path(stored).stat()).st_size == UPLOAD_SIZE
    else:
        endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
        client = endpoint.boto3_client()
        key = f"memory-test/~shared/{attachment['id']}"
        assert client.head_object(Bucket=env["CHATKIT_TEST_BUCKET"], Key=key)["ContentLength"] == (
            UPLOAD_SIZE
        )
        client.delete_object(Bucket=env["CHATKIT_TEST_BUCKET"], Key=key)
    assert memory.growth < MAX_GROWTH, (
        f"server memory grew by {memory.growth / 2**20:.1f} MiB during a "
        f"{UPLOAD_SIZE / 2**20:.0f} MiB upload"
    )
