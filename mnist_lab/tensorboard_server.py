"""A TensorBoard server for a moment: the tests and `make screenshots` read what a user would see in it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_tensorboard(logdir: Path, timeout: float = 60.0) -> Iterator[str]:
    """TensorBoard serving `logdir` on a free local port, for tests and screenshots: yields its URL once
    it answers and has read the runs, and always stops it (the process group, after 10 s a kill)."""
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port)]
    command += ["--host", "127.0.0.1", "--reload_interval", "0", "--load_fast", "false"]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"tensorboard exited {server.returncode}: {server.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as answer:
                    if json.load(answer):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"tensorboard did not list the runs of {logdir} within {timeout:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        server.stderr.close()
