"""Test-wide setup: offline Prefect with a project-local home, and shared fixtures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DVC_NO_ANALYTICS"] = "1"
(ROOT / ".prefect").mkdir(exist_ok=True)
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="test-", dir=ROOT / ".prefect")
os.environ.pop("PREFECT_API_URL", None)  # tests never talk to a user's server
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread (bit-reproducible and fast on a shared CPU), restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """An in-process temporary Prefect server for flows called from tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server start --host 127.0.0.1` for subprocess flows; yields its API URL."""
    port = _free_port()
    home = tmp_path_factory.mktemp("prefect-server-home")
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port), "--no-ui"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError(f"prefect server did not start; see {home / 'server.log'}")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
