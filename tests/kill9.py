"""Crash a training run with SIGKILL once it has written a given checkpoint (resume tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edtalk.train.resumable import checkpoints


def newest_step(ckpt_dir: Path) -> int:
    """Step of the newest checkpoint in ``ckpt_dir`` (0 when there is none)."""
    found = checkpoints(ckpt_dir) if ckpt_dir.is_dir() else []
    return found[-1][0] if found else 0


def run_and_kill(script: str, ckpt_dir: Path, min_step: int, cwd: Path, timeout: float = 300) -> int:
    """Run ``python -c script``; ``kill -9`` it as soon as ``ckpt_dir`` holds a checkpoint of
    step ``min_step`` or later (or at ``timeout``). Returns the newest step on disk then."""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=cwd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and newest_step(ckpt_dir) < min_step and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    proc.wait()
    return newest_step(ckpt_dir)
