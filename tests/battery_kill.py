"""``kill -9`` of a running ``dvc repro`` at a chosen point inside a chosen stage.

The whole process group goes (dvc and the stage's flow process): what a crash, an OOM
kill or a pulled plug does. ``dvc repro`` is run with unbuffered output so the
"Running stage" lines arrive as they are printed.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DVC = [sys.executable, "-m", "dvc"]


@dataclass
class Kill:
    """Where a kill landed: the stage then running and seconds since it started."""

    target: str
    stage_running: str
    after_s: float
    finished_before_kill: bool = False


def _reader(stream, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put(None)


def repro_and_kill(repo: Path, env: dict[str, str], target: str, stage: str, delay: float,
                   timeout: float = 600, when: Callable[[], bool] | None = None) -> Kill:
    """Start ``dvc repro target``; SIGKILL its process group ``delay`` s after ``stage`` starts
    (and, given ``when``, once ``when()`` is true: e.g. a chosen checkpoint is on disk)."""
    proc = subprocess.Popen([*DVC, "repro", target], cwd=repo, env={**env, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    running, started, deadline = "", 0.0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running == stage and time.monotonic() - started >= delay and (when is None or when()):
            break
        try:
            line = lines.get(timeout=0.05)
        except queue.Empty:
            continue
        if line is None:  # dvc finished before the kill point
            proc.wait()
            return Kill(target, running, time.monotonic() - started, finished_before_kill=True)
        if line.startswith("Running stage '"):
            running, started = line.split("'")[1], time.monotonic()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return Kill(target, running, time.monotonic() - started)


def timed_repro(repo: Path, env: dict[str, str], target: str, timeout: float = 900
                ) -> dict[str, float]:
    """A ``dvc repro`` that must succeed; seconds each stage it ran took (from its output)."""
    proc = subprocess.Popen([*DVC, "repro", target], cwd=repo, env={**env, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    starts: dict[str, float] = {}
    log: list[str] = []
    while (line := lines.get(timeout=timeout)) is not None:
        log.append(line)
        if line.startswith("Running stage '"):
            starts[line.split("'")[1]] = time.monotonic()
    end = time.monotonic()
    if proc.wait() != 0:
        raise AssertionError("".join(log)[-4000:])
    order = sorted(starts, key=starts.get)
    ends = [starts[s] for s in order[1:]] + [end]
    return {s: e - starts[s] for s, e in zip(order, ends)}


def tree_digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """{relative path: bytes} of every file under ``root`` (paths containing ``skip`` parts left out)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not any(part in skip for part in rel.split("/")):
            out[rel] = path.read_bytes()
    return out
