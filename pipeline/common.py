"""Shared orchestration helpers: the params command line, the configurable task runner,
per-clip fan-out."""

from __future__ import annotations

import argparse
import inspect
import os
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from prefect import get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from tqdm.auto import tqdm

from edtalk.params import PARAMS, load_params, section


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


def check_prefect_api(timeout: float = 10.0) -> None:
    """Fail fast when PREFECT_API_URL names a server that does not answer: a server that
    accepts connections but never replies would otherwise hang the flow indefinitely."""
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        return                          # Prefect starts a temporary local server itself
    try:
        urllib.request.urlopen(f"{api.rstrip('/')}/health", timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise SystemExit(f"Prefect API at {api} did not answer within {timeout:g} s ({exc}); start the "
                         "server (make ui) or unset PREFECT_API_URL to run with a temporary local one") from exc


def main_with_params(stage_flow: Any, description: str | None, task_runner: bool = False) -> None:
    """Command line of a flow: ``--params``, and one option per keyword argument of the flow.

    A flow's keyword arguments are the paths it reads and writes (``features_dir`` becomes
    ``--features-dir``); left out, they take the flow's defaults (for runs by hand). dvc.yaml
    passes every one, so a `dvc repro` takes all its paths from there. ``task_runner``: run
    the flow's tasks on the runner ``runner.*`` configures (the per-clip stages).
    """
    parser = argparse.ArgumentParser(description=description.splitlines()[0] if description else None)
    parser.add_argument("--params", default=str(PARAMS))
    for arg in inspect.signature(stage_flow.fn).parameters.values():
        if arg.name == "params":
            continue
        required = arg.default is inspect.Parameter.empty
        parser.add_argument(f"--{arg.name.replace('_', '-')}", dest=arg.name, required=required,
                            default=None if required else arg.default, metavar="PATH",
                            help=None if required else f"default: {arg.default}")
    args = vars(parser.parse_args())
    check_prefect_api()
    params = load_params(args.pop("params"))
    if task_runner:
        stage_flow = stage_flow.with_options(task_runner=make_task_runner(section(params, "runner")))
    stage_flow(params, **args)
