"""Evaluation summaries -> ``metrics.json`` for ``dvc metrics``, plot data and a PNG.

``metrics.json`` is nested ``{method: {metric: value}}`` (``dvc metrics show`` prints
``EDTalk-V.psnr``). Keys keep the backend family but drop the weights hash
(``lse_c[syncnet:trained-here:w0.125-s64-d64]``), so retraining an evaluator does not
rename the key and ``dvc metrics diff`` compares like with like; the full labels stay
in the summaries and the table footnote. Values that are not finite (PSNR of GT vs
itself is inf) are left out: JSON has no infinity and DVC would refuse the file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from metrics import base_name, higher_is_better

ORDER_FIRST = ("GT", "Still")
PLOT_METRICS = ("psnr", "ssim", "m_lmd", "f_lmd", "fid", "fd", "lse_c", "lse_d", "acc_emo")


def order_records(records: list[dict]) -> list[dict]:
    """GT first, then Still, then every other method alphabetically."""
    def key(r: dict) -> tuple[int, str]:
        m = r["method"]
        return (ORDER_FIRST.index(m), m) if m in ORDER_FIRST else (len(ORDER_FIRST), m)
    return sorted(records, key=key)


def stable_key(key: str) -> str:
    """Metric key without the ``@hash`` of its backend.

    >>> stable_key("lse_c[syncnet:trained-here:w0.125-s64-d64@ab12cd34]"), stable_key("psnr")
    ('lse_c[syncnet:trained-here:w0.125-s64-d64]', 'psnr')
    """
    return re.sub(r"@[0-9a-fA-F]+\]$", "]", key)


def metrics_json(records: list[dict]) -> dict[str, dict[str, float]]:
    """``{method: {stable key: value}}`` with finite values only."""
    out: dict[str, dict[str, float]] = {}
    for r in records:
        out[r["method"]] = {stable_key(k): float(v) for k, v in r["metrics"].items()
                            if isinstance(v, (int, float)) and math.isfinite(v)}
    return out


def plot_rows(records: list[dict]) -> tuple[list[str], list[dict]]:
    """(columns, rows) for the per-method bar charts: one row per method, one column per
    metric base name (``fd`` and ``fid`` both as ``fd``), blank where absent or infinite."""
    cols: list[str] = []
    rows = []
    for r in records:
        row: dict = {"method": r["method"]}
        for k, v in r["metrics"].items():
            name = "fd" if base_name(k) in ("fid", "fd") else base_name(k)
            if name not in PLOT_METRICS or not isinstance(v, (int, float)):
                continue
            row[name] = float(v) if math.isfinite(v) else None
            if name not in cols:
                cols.append(name)
        rows.append(row)
    cols = [c for c in PLOT_METRICS if c in cols]
    return ["method", *cols], rows


def render_png(records: list[dict], path: str | Path, title: str = "") -> Path:
    """One horizontal bar chart per metric (arrow = better direction), Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols, rows = plot_rows(records)
    metrics = cols[1:]
    if not metrics:
        raise ValueError("no metric to plot")
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 0.5 + 0.35 * len(rows) * nrows + nrows),
                             squeeze=False)
    methods = [r["method"] for r in rows]
    for ax, name in zip(axes.flat, metrics):
        vals = [r.get(name) for r in rows]
        ax.barh(methods, [v if v is not None else 0.0 for v in vals], color="#4c72b0")
        for y, v in enumerate(vals):
            ax.text(0, y, " inf/–" if v is None else f" {v:.3g}", va="center", fontsize=7)
        ax.set_title(f"{name} {'↑' if higher_is_better(name) else '↓'}", fontsize=9)
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
