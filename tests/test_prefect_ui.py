"""The Prefect UI as a user sees it: a loopback server, a tiny pipeline, headless Chromium.

The slow test runs scripts/prefect_ui_screenshot.py's steps and writes the README's
screenshot, reports/plots/prefect-ui.png.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOT = ROOT / "reports" / "plots" / "prefect-ui.png"


def _script():
    spec = importlib.util.spec_from_file_location("prefect_ui_screenshot",
                                                  ROOT / "scripts" / "prefect_ui_screenshot.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                     # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_page_text_keeps_what_is_shown_and_cells_match_rendered_tables():
    ui = _script()
    dom = ("<html><head><style>.a{}</style><script>var crop = 1;</script></head><body>"
           "<div>crop&nbsp;&gt;</div>\n<span>ingest  syn_1</span></body></html>")
    assert ui.page_text(dom) == "crop > ingest syn_1"
    assert re.search(ui._cell("th", "Method"), '<th align="left"><span> Method </span></th>')
    assert not re.search(ui._cell("th", "Method"), "<th>Methods</th>")
    assert not re.search(ui._cell("td", "Still"), "<p>| Still |</p>")     # raw markdown is not a table


@pytest.mark.slow
def test_ui_shows_each_stage_its_per_clip_task_runs_and_table1(tmp_path):
    ui = _script()
    chromium, why = ui.find_chromium(install=True)
    if chromium is None:
        pytest.skip(f"no headless Chromium: {why}")
    home, work = tmp_path / "prefect-home", tmp_path / "work"
    with ui.prefect_server(home) as api:
        ui.run_tiny_pipeline(api, work, home)
        pages = {p.name: p for p in ui.check_ui(chromium, api, work, SHOT)}
        # the checks can fail: a name no run has is reported missing
        absent = ui.render(chromium, ui.Page("absent", api.removesuffix("/api") + "/runs",
                                             ["no-such-stage-xyz"]), work / "chromium-profile",
                           budgets=(5000,))
    assert absent.missing == ["no-such-stage-xyz"]
    for page in pages.values():
        assert not page.missing, f"{page.name}: {page.missing} not on {page.url} (DOM under {work})"
    runs, tasks, table = pages["flow runs"], pages["task runs"], pages["Table 1 artifact"]
    assert set(ui.STAGES) <= set(runs.needles) and len(runs.needles) == 2 * len(ui.STAGES)
    # 4 clips, each an `ingest <clip>` and a `crop <clip>` task run, by name
    assert len(tasks.needles) == 8 and sum(n.startswith("crop syn_") for n in tasks.needles) == 4
    assert "Table 1" in ui.page_text(table.dom) and table.patterns
    assert "edtalk-crop-quarantine" in pages["artifact keys"].needles
    import numpy as np
    from PIL import Image

    with Image.open(SHOT) as im:
        assert im.width == 1200 and im.height > 2000           # three pages, stacked
        assert np.asarray(im.convert("L")).std() > 10          # not a blank page
