"""scripts/prefect_session.sh: one local Prefect server for a whole `make repro`."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "prefect_session.sh"
FLOW = """
import os
from prefect import flow
from prefect.client.orchestration import get_client

@flow
def hello() -> int:
    return 41

assert hello() == 41
with get_client(sync_client=True) as client:
    runs = client.read_flow_runs()
print("API", os.environ["PREFECT_API_URL"])
print("RUNS", sum(r.state.is_completed() for r in runs))
"""


@pytest.mark.slow
def test_flows_of_one_session_report_to_one_server_that_stops_afterwards(tmp_path) -> None:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHON": sys.executable,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PREFECT_API_URL", None)
    cmd = [str(SCRIPT), "bash", "-c", f"{sys.executable} -c '{FLOW}' && {sys.executable} -c '{FLOW}'"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    apis = {ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("API")}
    runs = [int(ln.split()[1]) for ln in out.stdout.splitlines() if ln.startswith("RUNS")]
    assert len(apis) == 1 and apis.pop().startswith("http://127.0.0.1:")
    assert runs == [1, 2]          # the second process sees the first one's run: one server
    url = next(ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("API"))
    with pytest.raises(OSError):   # and it is gone once the command ended
        urllib.request.urlopen(f"{url}/health", timeout=2)


def test_an_existing_server_is_used_as_is(tmp_path) -> None:
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    out = subprocess.run([str(SCRIPT), "bash", "-c", "echo $PREFECT_API_URL"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "http://127.0.0.1:9/api"
