"""`dvc repro` of a tiny corpus in a temporary git repo, against a real Prefect server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.pipeline_params import ROOT, tiny_params

DVC = [sys.executable, "-m", "dvc"]


def _ran(output: str) -> set[str]:
    """Stages a `dvc repro` output says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def _repro(repo: Path, env: dict[str, str]) -> str:
    result = subprocess.run([*DVC, "repro", "features"], cwd=repo, env=env, text=True,
                            capture_output=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_repro_then_noop_then_crop_param_reruns_crop_and_features_only(tmp_path, prefect_server):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for package in ("edtalk", "pipeline"):
        shutil.copytree(ROOT / package, repo / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    (repo / ".gitignore").write_text("/data/\n.prefect/\n")
    # the stages' `python` must be this interpreter (its venv), whether or not the venv is activated
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_API_URL": prefect_server, "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    for cmd in (["git", "init", "-q"], [*DVC, "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)

    first = _repro(repo, env)
    assert _ran(first) == {"ingest", "crop", "features"}
    assert (repo / "data/features/pixels.npy").exists()

    second = _repro(repo, env)
    assert _ran(second) == set()

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["crop"]["size"] = 24
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    third = _repro(repo, env)
    assert _ran(third) == {"crop", "features"}
    import numpy as np

    assert np.load(repo / "data/features/pixels.npy", mmap_mode="r").shape[1:] == (24, 24, 3)

    # The flows reported to the server: every stage appears as a named flow run.
    request = urllib.request.Request(f"{prefect_server}/flows/filter", data=b"{}",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        names = {flow["name"] for flow in json.load(response)}
    assert {"ingest", "crop", "features"} <= names
