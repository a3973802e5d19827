"""Shared orchestration helpers: params, the configurable task runner, per-clip fan-out."""

from __future__ import annotations

import argparse

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from prefect import get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from tqdm.auto import tqdm

PARAMS = Path("params.yaml")


def load_params(path: str | Path = PARAMS) -> dict[str, Any]:
    """Read params.yaml (the single source of every tunable)."""
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def make_task_runner(runner: dict[str, Any]) -> TaskRunner:
    """Threads by default; Dask (a local cluster, or an existing scheduler) when asked."""
    kind = runner.get("kind", "threads")
    workers = int(runner.get("workers") or 2)
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner  # optional engine, imported only when chosen

        if runner.get("dask_address"):
            return DaskTaskRunner(address=runner["dask_address"])
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    raise ValueError(f"runner.kind must be 'threads' or 'dask', got {kind!r}")


def fan_out(task: Callable[..., Any], items: Sequence[dict[str, Any]], desc: str,
            **shared: Any) -> list[Any]:
    """Submit ``task(**item, **shared)`` for every item; return the results in input order.

    Progress is shown as tasks complete. A task that raises fails the flow: per-clip
    bad input is expected to come back as a quarantine record, not as an exception.
    """
    futures = [task.submit(**item, **shared) for item in items]
    index = {id(f): i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    with tqdm(total=len(futures), desc=desc, unit="clip") as bar:
        for future in as_completed(futures):
            results[index[id(future)]] = future.result()
            bar.update()
    return results


def announce(message: str) -> None:
    """One line in Prefect's log and on stdout (which is what `dvc repro` shows)."""
    get_run_logger().info(message)
    print(message)


def announce_summary(stage: str, summary: dict[str, Any]) -> None:
    """``announce`` a stage's summary as ``stage: key=value, ...``."""
    announce(f"{stage}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))


def log_summary(stage: str, done: int, skipped: int, quarantined: int) -> None:
    """The line every per-clip stage ends with."""
    announce(f"{stage}: {done} clips processed, {skipped} already done (resumed), "
             f"{quarantined} quarantined")


def main_with_params(stage_flow: Callable[[dict[str, Any]], Any], description: str | None) -> None:
    """Command line of a flow that needs nothing but params.yaml (``--params`` to override)."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0] if description else None)
    parser.add_argument("--params", default=str(PARAMS))
    stage_flow(load_params(parser.parse_args().params))
