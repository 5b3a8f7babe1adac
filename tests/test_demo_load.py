"""The demo under load: 16 generation requests at once through `gradio_client`, twice.

The server runs as its own process (`python -m gptlab demo`), so its memory is its own to
measure: every request must come back with text, none with an error, and the second round
must not leave the server holding more memory than the first did (within a tolerance).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_demo import free_port, write_tiny_run

REQUESTS = 16
NEW_TOKENS = 16
# After round 1 the server has paid for everything a request allocates (threads, caches, the
# queue's bookkeeping); round 2 may still move the allocator a little, but a leak of a model
# call per request would add far more than this.
RSS_GROWTH_TOLERANCE_MB = 40
STARTUP_SECONDS = 120  # importing torch and gradio on two loaded cores


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads server memory from /proc (Linux only)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A demo server in its own process: (url, pid)."""
    run_dir = write_tiny_run(tmp_path_factory.mktemp("runs") / "tiny")
    port = free_port()
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "-m", "gptlab", "demo", str(run_dir), "--port", str(port)]
    command += ["--concurrency", "4", "--device", "cpu"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the demo server exited early:\n{process.stdout.read()}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the demo server did not answer within {STARTUP_SECONDS} s")
                time.sleep(0.5)
        yield url, process.pid, run_dir
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def generation_round(client, run_dir: Path) -> list[str]:
    """16 requests submitted at once; their final texts."""
    jobs = [
        client.submit(
            str(run_dir),  # model
            "To be",  # prompt
            "sample",  # strategy
            0.8,  # temperature
            40,  # top-k
            0.9,  # top-p
            1.0,  # repetition penalty
            NEW_TOKENS,  # max new tokens
            i,  # seed
            4,  # beams
            api_name="/generate",
        )
        for i in range(REQUESTS)
    ]
    with ThreadPoolExecutor(REQUESTS) as pool:
        return list(pool.map(lambda job: job.result(timeout=120), jobs))


def test_sixteen_concurrent_requests_all_finish_and_memory_settles(server, monkeypatch):
    from gradio_client import Client

    url, pid, run_dir = server
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    # httpx's default 5 s timeout is too short for 16 requests joining the queue on loaded cores.
    client = Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 60})

    first = generation_round(client, run_dir)
    after_first = rss_mb(pid)
    second = generation_round(client, run_dir)
    after_second = rss_mb(pid)

    for texts in (first, second):
        assert len(texts) == REQUESTS
        assert all(isinstance(t, str) and len(t) == NEW_TOKENS for t in texts), texts
    assert len(set(first)) > 1  # different seeds, different samples: each request ran its own
    assert first == second  # same seeds, same samples
    assert after_second - after_first < RSS_GROWTH_TOLERANCE_MB, (after_first, after_second)
