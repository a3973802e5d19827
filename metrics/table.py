"""Table 1 layout: methods x (PSNR↑, SSIM↑, M-LMD↓, F-LMD↓, FID↓, Sync_conf↑, Acc_emo↑)
per dataset, best in bold (direction-aware, reference rows such as GT excluded), arrows
in headers, backends in a footnote. Markdown, CSV and LaTeX.

Input: summary records as the suite writes them, ``{"method", "dataset", "metrics":
{key: value}}`` where keys carry backends (``lse_c[syncnet_v2]``, ``fd[rgb-pool8]``).
A FID column whose backend is not pytorch-fid's Inception is headed ``FD[<backend>]``,
never bare "FID".
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from metrics import base_name

# (column id, header, higher is better, metric base names it takes)
COLUMNS: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = (
    ("psnr", "PSNR", True, ("psnr",)),
    ("ssim", "SSIM", True, ("ssim",)),
    ("m_lmd", "M-LMD", False, ("m_lmd",)),
    ("f_lmd", "F-LMD", False, ("f_lmd",)),
    ("fid", "FID", False, ("fid", "fd")),
    ("lse_c", "Sync_conf", True, ("lse_c",)),
    ("acc_emo", "Acc_emo", True, ("acc_emo",)),
)
EXTRA_COLUMNS: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = (
    ("lse_d", "Sync_dist", False, ("lse_d",)),
    ("csim", "CSIM", True, ("csim",)),
    ("lpips", "LPIPS", False, ("lpips",)),
    ("cpbd", "CPBD", True, ("cpbd",)),
    ("head_motion_diversity", "Diversity", True, ("head_motion_diversity",)),
    ("beat_align", "BeatAlign", True, ("beat_align",)),
)
"""Columns ``python -m metrics evaluate`` adds after Table 1's (metrics beyond the paper's)."""
REFERENCE_ROWS = ("GT", "ground truth", "ground_truth")


@dataclass
class Cell:
    value: float | None
    key: str | None
    bold: bool = False


def load_results(paths: list[str | os.PathLike]) -> list[dict]:
    """Read summary JSON files (each one record or a list of records)."""
    out: list[dict] = []
    for p in paths:
        with open(p) as f:
            obj = json.load(f)
        for rec in obj if isinstance(obj, list) else [obj]:
            if not isinstance(rec, dict) or "method" not in rec or "metrics" not in rec:
                raise ValueError(f"{p}: not a metrics summary (needs 'method' and 'metrics')")
            out.append(rec)
    if not out:
        raise ValueError("no results given")
    return out


def _pick(metrics: dict, bases: tuple[str, ...]) -> tuple[float | None, str | None]:
    for key, val in metrics.items():
        if base_name(key) in bases and val is not None and not (isinstance(val, float) and math.isnan(val)):
            return float(val), key
    return None, None


def _backend(key: str) -> str:
    return key[key.index("[") + 1:-1] if "[" in key else ("pytorch-fid inception" if key == "fid" else "")


def build(records: list[dict], reference_rows: tuple[str, ...] = REFERENCE_ROWS,
          columns: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = COLUMNS) -> tuple[list[str], list[tuple[str, str, str]], dict[str, list[Cell]], list[str]]:
    """(datasets, columns [(dataset, col id, header)], rows {method: cells}, footnotes)."""
    datasets = sorted({r.get("dataset", "test") for r in records})
    methods = list(dict.fromkeys(r["method"] for r in records))
    by = {(r["method"], r.get("dataset", "test")): r["metrics"] for r in records}
    lb = {(r["method"], r.get("dataset", "test")): (r.get("backends") or {}).get("lmd") for r in records}
    cols: list[tuple[str, str, str]] = []
    rows: dict[str, list[Cell]] = {m: [] for m in methods}
    notes: list[str] = []
    for ds in datasets:
        for cid, header, higher, bases in columns:
            cells = [Cell(*_pick(by.get((m, ds), {}), bases)) for m in methods]
            keys = sorted({c.key for c in cells if c.key})
            if not keys:
                continue
            if cid == "fid" and any(base_name(k) != "fid" for k in keys):
                fds = sorted({_backend(k) for k in keys if base_name(k) == "fd"})
                header = "FD[" + ",".join(fds) + "]" + ("/FID" if "fid" in keys else "")
            arrow = "↑" if higher else "↓"
            label = f"{header}{arrow}" if len(datasets) == 1 else f"{ds} {header}{arrow}"
            backends = sorted({_backend(k) for k in keys} - {""})
            if cid in ("m_lmd", "f_lmd") and not backends:      # landmark backend: summary["backends"]["lmd"]
                lmd = {m: lb.get((m, ds)) for m, c in zip(methods, cells) if c.key}
                if any(lmd.values()):
                    notes.append(f"{label}: " + "; ".join(
                        f"{b} ({', '.join(m for m, v in lmd.items() if v == b)})"
                        for b in sorted({v for v in lmd.values() if v})))
            if backends:
                notes.append(f"{label}: " + "; ".join(
                    f"{b} ({', '.join(m for m, c in zip(methods, cells) if c.key and _backend(c.key) == b)})"
                    for b in backends))
            ranked = [c.value for m, c in zip(methods, cells)
                      if c.value is not None and m not in reference_rows and math.isfinite(c.value)]
            if ranked:
                best = max(ranked) if higher else min(ranked)
                for m, c in zip(methods, cells):
                    c.bold = m not in reference_rows and c.value is not None and c.value == best
            cols.append((ds, cid, label))
            for m, c in zip(methods, cells):
                rows[m].append(c)
    return datasets, cols, rows, notes


def _fmt(c: Cell, digits: int) -> str:
    if c.value is None:
        return "–"
    if math.isinf(c.value):
        return "inf"
    text = f"{c.value:.{digits}f}"
    # float noise below zero (GT's Fréchet distance to itself) is shown as the zero it rounds to
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def render(records: list[dict], fmt: str = "md", digits: int = 3,
           columns: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = COLUMNS,
           csv_backends: bool = False) -> str:
    """Table 1 as ``md``, ``csv`` or ``tex`` text.

    ``columns``: ``COLUMNS`` (the paper's) or ``COLUMNS + EXTRA_COLUMNS``.
    ``csv_backends``: end the CSV with ``# Backends: ...`` comment lines (read back with
    ``pandas.read_csv(..., comment="#")``).

    >>> recs = [{"method": "A", "metrics": {"psnr": 30.0, "lse_c[syncnet_v2]": 5.0}},
    ...         {"method": "B", "metrics": {"psnr": 31.0, "lse_c[syncnet_v2]": 4.0}}]
    >>> print(render(recs, "md", 1), end="")
    | Method | PSNR↑ | Sync_conf↑ |
    | --- | --- | --- |
    | A | 30.0 | **5.0** |
    | B | **31.0** | 4.0 |
    <BLANKLINE>
    Backends: Sync_conf↑: syncnet_v2 (A, B)
    """
    if fmt not in ("md", "csv", "tex"):
        raise ValueError(f"format must be md, csv or tex, got {fmt!r}")
    _, cols, rows, notes = build(records, columns=columns)
    headers = ["Method"] + [c[2] for c in cols]
    if fmt == "csv":
        lines = [",".join(_csv(h) for h in headers)]
        lines += [",".join([_csv(m)] + ["" if c.value is None else repr(c.value) for c in cells])
                  for m, cells in rows.items()]
        if csv_backends:
            lines += [f"# Backends: {n}" for n in notes]
        return "\n".join(lines) + "\n"
    if fmt == "md":
        lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
        for m, cells in rows.items():
            vals = [f"**{_fmt(c, digits)}**" if c.bold else _fmt(c, digits) for c in cells]
            lines.append("| " + " | ".join([m] + vals) + " |")
        return "\n".join(lines) + ("\n\nBackends: " + "; ".join(notes) if notes else "") + "\n"
    tex_h = [h.replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$").replace("_", r"\_")
             for h in headers]
    lines = [r"\begin{tabular}{l" + "c" * len(cols) + "}", r"\toprule",
             " & ".join(tex_h) + r" \\", r"\midrule"]
    for m, cells in rows.items():
        vals = [rf"\textbf{{{_fmt(c, digits)}}}" if c.bold else _fmt(c, digits) for c in cells]
        lines.append(" & ".join([m.replace("_", r"\_")] + vals) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if notes:
        lines.append(r"% Backends: " + "; ".join(notes))
        lines.append(r"\par\footnotesize Backends: " + "; ".join(notes).replace("_", r"\_")
                     .replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$"))
    return "\n".join(lines) + "\n"


def _csv(s: str) -> str:
    return f'"{s}"' if ("," in s or '"' in s) else s
