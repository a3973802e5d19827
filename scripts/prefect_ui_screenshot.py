"""Check the Prefect UI as a user sees it, in headless Chromium, and save a screenshot.

Starts a loopback Prefect server (UI included), runs a tiny pipeline through the stages'
own command lines (``python -m pipeline.<stage>``, as ``dvc repro`` does: ingest, crop,
features, evaluate without trained evaluators, report), then renders four UI pages in
headless Chromium and reads the rendered DOM:

* ``/runs``: one flow run per stage, under the stage's name;
* ``/runs?tab=task-runs``: the per-clip task runs (``ingest <clip>``, ``crop <clip>``);
* ``/artifacts/artifact/<id>``: the ``edtalk-table1`` markdown artifact rendered as a table;
* ``/artifacts``: each stage's artifact under its stable key (``pipeline/artifacts.py``).

The first three pages, stacked, go to ``--out`` (default ``reports/plots/prefect-ui.png``).
Needs Debian's ``chromium``; ``--install`` runs ``apt-get install chromium`` when it is
missing (root only). Exit status 0 when every check passed.

    python scripts/prefect_ui_screenshot.py [--install] [--out reports/plots/prefect-ui.png]
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:            # run as a file: the tiny corpus lives in tests/
    sys.path.insert(0, str(ROOT))

from edtalk.data import atomic  # noqa: E402
from tests.pipeline_params import tiny_params  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
STAGES = ("ingest", "crop", "features", "evaluate", "report")
TABLE1_KEY = "edtalk-table1"


def find_chromium(install: bool = False) -> tuple[str | None, str]:
    """The Chromium binary, installed from Debian when asked and possible; else (None, why)."""
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name), "found"
    if not install:
        return None, "chromium is not installed (apt-get install chromium, or pass --install)"
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return None, "chromium is missing and cannot be installed here (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return None, f"{' '.join(cmd)} timed out"
        if done.returncode:
            return None, f"{' '.join(cmd)} failed: {done.stderr.strip()[-300:]}"
    path = shutil.which("chromium")
    return (path, "installed") if path else (None, "apt-get ran but no chromium binary appeared")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def prefect_server(home: Path, timeout: float = 300) -> Iterator[str]:
    """A loopback ``prefect server start`` with its UI; yields the API URL, stops it after."""
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    home.mkdir(parents=True, exist_ok=True)
    # the UI asks its own API URL of the settings: without this it calls 127.0.0.1:4200
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_API_URL": api}
    env.pop("PREFECT_API_URL", None)
    with open(home / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not _healthy(api):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"prefect server did not start; see {home / 'server.log'}")
                time.sleep(0.5)
            yield api
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_tiny_pipeline(api: str, work: Path, home: Path) -> None:
    """The five stages on a 4-clip synthetic corpus, each by its command line, against ``api``."""
    params = tiny_params()
    # no trained evaluators here: the networks-free metrics (PSNR, SSIM, FD on pooled pixels)
    params["evaluate"].update(landmarks="dlib68", fid="rgb-pool8")
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    d = {k: str(work / k) for k in ("ingest", "crop", "features", "models", "generate", "evaluate", "reports")}
    args = {"ingest": ["--out-dir", d["ingest"]],
            "crop": ["--in-dir", d["ingest"], "--out-dir", d["crop"]],
            "features": ["--crop-dir", d["crop"], "--ingest-dir", d["ingest"], "--out-dir", d["features"]],
            "evaluate": ["--features-dir", d["features"], "--crop-dir", d["crop"], "--models-dir", d["models"],
                         "--generate-dir", d["generate"], "--work-dir", d["evaluate"],
                         "--out-dir", f"{d['reports']}/eval"],
            "report": ["--eval-dir", f"{d['reports']}/eval", "--out-dir", d["reports"]]}
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(home),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for stage in STAGES:
        cmd = [sys.executable, "-m", f"pipeline.{stage}", "--params", str(work / "params.yaml"), *args[stage]]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-3000:]}")


def _api(api: str, path: str, body: dict) -> list[dict]:
    request = urllib.request.Request(f"{api}/{path}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def expected(api: str) -> dict:
    """What the pages must show, from the API: flow runs by stage, task run names, Table 1's id."""
    flows = {f["id"]: f["name"] for f in _api(api, "flows/filter", {})}
    runs: dict[str, dict] = {}
    for run in _api(api, "flow_runs/filter", {"sort": "START_TIME_DESC"}):
        runs.setdefault(flows[run["flow_id"]], run)        # the newest run of each stage
    task_runs = [t["name"] for t in _api(api, "task_runs/filter", {"limit": 200})]
    table1 = _api(api, "artifacts/filter", {"artifacts": {"key": {"any_": [TABLE1_KEY]}},
                                            "sort": "CREATED_DESC", "limit": 1})
    return {"runs": {stage: runs[stage]["name"] for stage in STAGES if stage in runs},
            "task_runs": sorted(n for n in task_runs if n.startswith(("ingest ", "crop "))),
            "table1": table1[0]["id"] if table1 else None}


def _chromium_args(chromium: str, profile: Path, budget_ms: int, size: str) -> list[str]:
    # --no-sandbox: Chromium refuses to run as root otherwise; it only loads our loopback UI
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}", f"--window-size={size}"]


def _cell(tag: str, text: str) -> str:
    """A regex for a table cell ``<tag>`` holding ``text`` (possibly inside inline elements)."""
    return rf"<{tag}\b[^>]*>(?:\s|<[^>]+>)*{re.escape(text)}(?:\s|<[^>]+>)*</{tag}>"


def page_text(dom: str) -> str:
    """The visible text of a dumped DOM, whitespace collapsed."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


@dataclass
class Page:
    """One UI page: where, what its rendered text must contain, what it did contain."""

    name: str
    url: str
    needles: list[str]
    patterns: list[str] = field(default_factory=list)      # regexes the DOM itself must match
    height: int = 1500                                      # of the screenshot, px; 0: none
    dom: str = ""
    missing: list[str] = field(default_factory=list)


def render(chromium: str, page: Page, profile: Path, budgets: tuple[int, ...] = (15000, 40000, 90000)
           ) -> Page:
    """Dump the page's DOM after the UI's requests settle; a longer virtual-time budget is
    tried when something is still missing (a loaded machine renders lists late)."""
    for budget in budgets:
        done = subprocess.run([*_chromium_args(chromium, profile, budget, "1440,1000"), "--dump-dom",
                               page.url], capture_output=True, text=True, timeout=300)
        page.dom = done.stdout
        text = page_text(page.dom)
        page.missing = [n for n in page.needles if n not in text]
        page.missing += [p for p in page.patterns if not re.search(p, page.dom)]
        if not page.missing:
            break
    return page


def screenshot(chromium: str, page: Page, path: Path, profile: Path, budget_ms: int = 40000) -> None:
    subprocess.run([*_chromium_args(chromium, profile, budget_ms, f"1440,{page.height}"),
                    f"--screenshot={path}", page.url], capture_output=True, timeout=300, check=True)


def stack(images: list[Path], out: Path, width: int = 1200) -> None:
    """The screenshots one under another at ``width`` px, written atomically as PNG."""
    from PIL import Image

    parts = []
    for p in images:
        with Image.open(p) as im:
            im = im.convert("RGB")
            parts.append(im.resize((width, round(im.height * width / im.width)), Image.LANCZOS))
    canvas = Image.new("RGB", (width, sum(p.height for p in parts) + 8 * (len(parts) - 1)), "#d0d0d0")
    y = 0
    for part in parts:
        canvas.paste(part, (0, y))
        y += part.height + 8
    with atomic.atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG", optimize=True)


def check_ui(chromium: str, api: str, work: Path, out: Path) -> list[Page]:
    """Render the three pages, check them, save the stacked screenshot; returns the pages."""
    ui = api.removesuffix("/api")
    want = expected(api)
    if want["table1"] is None:
        raise RuntimeError(f"no {TABLE1_KEY} artifact on the server: the report stage did not publish it")
    pages = [Page("flow runs", f"{ui}/runs", [*STAGES, *want["runs"].values()], height=1200),
             Page("task runs", f"{ui}/runs?tab=task-runs", want["task_runs"]),
             Page("Table 1 artifact", f"{ui}/artifacts/artifact/{want['table1']}",
                  [TABLE1_KEY, "Table 1", "Method", "PSNR", "GT", "Still", "Backends"],
                  # the markdown is rendered: a real table whose header cell is "Method"
                  [_cell("th", "Method"), _cell("td", "Still")], height=800),
             # one artifact per stage under its stable key (the latest run's)
             Page("artifact keys", f"{ui}/artifacts",
                  [TABLE1_KEY, "edtalk-evaluate-summary",
                   *(f"edtalk-{s}-quarantine" for s in ("ingest", "crop", "features"))], height=0)]
    profile = work / "chromium-profile"
    shots = []
    for i, page in enumerate(pages):
        render(chromium, page, profile)
        (work / f"page{i}.html").write_text(page.dom)         # kept for a failed check's post-mortem
        if page.height:
            shots.append(work / f"page{i}.png")
            screenshot(chromium, page, shots[-1], profile)
    stack(shots, out)
    return pages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "plots" / "prefect-ui.png")
    ap.add_argument("--work", type=Path, default=None,
                    help="work folder, kept (default: a temporary one, removed unless a check failed)")
    ap.add_argument("--install", action="store_true", help="apt-get install chromium when missing")
    args = ap.parse_args(argv)
    chromium, why = find_chromium(args.install)
    if chromium is None:
        print(why, file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="prefect-ui-"))
    home = work / "prefect-home"
    with prefect_server(home) as api:
        t0 = time.perf_counter()
        run_tiny_pipeline(api, work, home)
        print(f"pipeline: {len(STAGES)} stages in {time.perf_counter() - t0:.0f} s against {api}")
        pages = check_ui(chromium, api, work, args.out)
    for page in pages:
        status = "ok" if not page.missing else f"MISSING {page.missing}"
        print(f"{page.name:18s} {page.url}: {len(page.needles)} checks, {status}")
    print(f"screenshot: {args.out}")
    passed = all(not p.missing for p in pages)
    if args.work is None and passed:
        shutil.rmtree(work, ignore_errors=True)
    elif not passed:
        print(f"rendered pages (page*.html) and the server log are under {work}", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
