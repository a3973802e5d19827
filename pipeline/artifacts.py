"""Each flow's summary as a Prefect artifact under a stable key, so the UI's Artifacts page
shows the latest one per stage (older runs stay as earlier versions of the same key).

Data stages publish their quarantine counts, training stages a loss-curve table (read from
their DVCLive history, or handed over as a list), the other stages their summary; the
report stage keeps its own ``edtalk-table1`` key. Prefect stays here, out of the library.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import create_markdown_artifact, create_table_artifact

PREFIX = "edtalk"
MAX_ROWS = 50          # loss-curve rows: enough to see the shape, small enough to render fast
MAX_LISTED = 20        # quarantined clips listed one by one


def artifact_key(stage: str, kind: str) -> str:
    """``edtalk-<stage>-<kind>``: Prefect keys allow only lowercase letters, digits and dashes."""
    key = re.sub(r"[^a-z0-9]+", "-", f"{PREFIX}-{stage}-{kind}".lower()).strip("-")
    return re.sub(r"-{2,}", "-", key)


def _cell(value: Any) -> str:
    """A markdown table cell: pipes escaped, newlines flattened, floats shortened."""
    if isinstance(value, float):
        value = f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def quarantine_markdown(stage: str, results: Sequence[Mapping[str, Any]]) -> str:
    """Counts of a per-clip stage's outcomes (processed, resumed, quarantined by reason)."""
    rejected = [r["quarantine"] for r in results if "quarantine" in r]
    kept = sum("row" in r for r in results)
    resumed = sum(bool(r.get("resumed")) for r in results)
    parts = [f"# {stage}: {kept} of {len(results)} clips kept, {len(rejected)} quarantined",
             _table(("outcome", "clips"), [("kept", kept), ("quarantined", len(rejected)),
                                           ("resumed from an earlier run", resumed),
                                           ("processed in this run", len(results) - resumed)])]
    if rejected:
        reasons = Counter(q["reason"] for q in rejected)
        parts.append(_table(("reason", "clips"), sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))))
        listed = sorted(rejected, key=lambda q: q["clip_id"])[:MAX_LISTED]
        parts.append(_table(("clip", "reason", "detail"),
                            [(q["clip_id"], q["reason"], q.get("detail", "")) for q in listed]))
        if len(rejected) > MAX_LISTED:
            parts.append(f"... and {len(rejected) - MAX_LISTED} more in `quarantine.parquet`.")
    return "\n\n".join(parts) + "\n"


def publish_quarantine(stage: str, results: Sequence[Mapping[str, Any]]) -> UUID:
    """The quarantine summary of a per-clip stage (``fan_out`` results with ``row`` or
    ``quarantine``) under ``edtalk-<stage>-quarantine``."""
    return create_markdown_artifact(key=artifact_key(stage, "quarantine"),
                                    markdown=quarantine_markdown(stage, results),
                                    description=f"{stage}: clips kept and quarantined, by reason")


def dvclive_history(live_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every metric DVCLive logged under ``live_dir`` as ``name -> [(step, value), ...]``.

    DVCLive writes one TSV per metric under ``plots/metrics/`` (``loss/rec`` nests as
    ``loss/rec.tsv``), with ``timestamp``, ``step`` and the value's column. A missing
    folder (a stage that loaded pretrained weights instead of training) gives ``{}``.
    """
    root = Path(live_dir) / "plots" / "metrics"
    history: dict[str, list[tuple[int, float]]] = {}
    for tsv in sorted(root.rglob("*.tsv")):
        name = tsv.relative_to(root).with_suffix("").as_posix()
        with tsv.open(newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            column = next((c for c in reader.fieldnames or () if c not in ("timestamp", "step")), None)
            if column is None:
                continue
            history[name] = [(int(row["step"]), float(row[column])) for row in reader]
    return history


def _thin(steps: Sequence[int], max_rows: int) -> list[int]:
    """At most ``max_rows`` of ``steps``, evenly spread, the first and last always kept."""
    if len(steps) <= max_rows:
        return list(steps)
    picks = {round(i * (len(steps) - 1) / (max_rows - 1)) for i in range(max_rows)}
    return [steps[i] for i in sorted(picks)]


def loss_rows(curves: Mapping[str, Sequence[tuple[int, float]]], max_rows: int = MAX_ROWS
              ) -> list[dict[str, Any]]:
    """One row per (thinned) step with a column per curve; a curve without that step, or with
    a non-finite value there (a diverged loss; JSON has no NaN), is None."""
    by_step: dict[int, dict[str, Any]] = {}
    for name, points in curves.items():
        for step, value in points:
            by_step.setdefault(int(step), {})[name] = round(float(value), 6) if math.isfinite(value) else None
    steps = _thin(sorted(by_step), max_rows)
    names = sorted(curves)
    return [{"step": s, **{n: by_step[s].get(n) for n in names}} for s in steps]


def publish_loss_curve(stage: str, curves: Mapping[str, Sequence[tuple[int, float]]],
                       note: str = "") -> UUID | None:
    """A training stage's loss curves as a table under ``edtalk-<stage>-loss``; None (and no
    artifact) when nothing was logged."""
    rows = loss_rows(curves)
    if not rows:
        return None
    description = f"{stage}: loss curves ({len(curves)} terms, {len(rows)} of the logged steps)"
    return create_table_artifact(table=rows, key=artifact_key(stage, "loss"),
                                 description=description + (f"; {note}" if note else ""))


def flatten(summary: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``a.b`` keys for nested dicts; long lists are shown by their length only."""
    out: list[tuple[str, Any]] = []
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += flatten(value, f"{name}.")
        elif isinstance(value, (list, tuple)) and len(value) > 8:
            out.append((name, f"[{len(value)} items]"))
        else:
            out.append((name, value))
    return out


def publish_summary(stage: str, summary: Mapping[str, Any] | str, title: str | None = None) -> UUID:
    """A stage's summary under ``edtalk-<stage>-summary``: a dict as a key/value table under
    ``title`` (default: the stage), or ready markdown (as is, unless a title is given)."""
    if isinstance(summary, str):
        markdown = summary if title is None else f"# {title}\n\n{summary}"
    else:
        markdown = f"# {title or stage}\n\n{_table(('key', 'value'), flatten(summary))}\n"
    return create_markdown_artifact(key=artifact_key(stage, "summary"), markdown=markdown,
                                    description=f"{stage}: summary of the latest run")
