"""DVC stage `report`: Table 1 and the DVC metrics/plots from the evaluation summaries.

Reads ``reports/eval/<method>/summary.json`` and writes ``reports/metrics.json``
(``dvc metrics show/diff``), ``reports/table1.{md,csv,tex}`` (Table 1's layout, arrows,
best in bold, backends in a footnote), ``reports/methods.csv`` (per-method bar
charts for ``dvc plots``; at ``reports/`` so git can track it while
``reports/plots/`` stays ignored) and ``reports/plots/methods.png``; publishes the table as a
Prefect markdown artifact and prints it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from edtalk.data import atomic
from edtalk.params import section
from metrics import reporting
from metrics.table import load_results, render
from pipeline.common import main_with_params


@flow(name="report")
def report(params: dict[str, Any], eval_dir: str = "reports/eval", out_dir: str = "reports") -> str:
    paths = sorted(Path(eval_dir).glob("*/summary.json"))
    if not paths:
        raise ValueError(f"no evaluation summaries under {eval_dir}; run the evaluate stage first")
    records = reporting.order_records(load_results(paths))
    out = Path(out_dir)
    atomic.write_json(out / "metrics.json", reporting.metrics_json(records))
    digits = int(section(params, "report")["digits"])
    tables = {fmt: render(records, fmt, digits) for fmt in ("md", "csv", "tex")}
    for fmt, text in tables.items():
        atomic.write_text(out / f"table1.{fmt}", text)
    cols, rows = reporting.plot_rows(records)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(out / "methods.csv", buf.getvalue())
    reporting.render_png(records, out / "plots" / "methods.png",
                         title=f"{section(params, 'data')['source']} {section(params, 'evaluate')['split']} split")
    create_markdown_artifact(key="edtalk-table1", markdown="# Table 1\n\n" + tables["md"],
                             description="EDTalk Table 1 layout over every evaluated method")
    get_run_logger().info("report: %d methods -> %s/table1.md", len(records), out)
    print(tables["md"], end="")
    return tables["md"]


def main() -> None:
    main_with_params(report, __doc__)


if __name__ == "__main__":
    main()
