"""Per-metric deltas between two results, with direction-aware better/worse."""

from __future__ import annotations

import math
from dataclasses import dataclass

from metrics import HIGHER_IS_BETTER, base_name


@dataclass(frozen=True)
class Delta:
    metric: str
    a: float | None
    b: float | None
    delta: float | None       # b - a
    verdict: str              # "better" | "worse" | "same" | "n/a" (B relative to A)


def diff(a: dict[str, float], b: dict[str, float], tol: float = 0.0) -> list[Delta]:
    """Compare metric dicts ``a`` (baseline) and ``b``; verdicts say whether B is better.

    >>> [(d.metric, d.verdict) for d in diff({"psnr": 30.0, "m_lmd": 2.0}, {"psnr": 31.0, "m_lmd": 2.5})]
    [('m_lmd', 'worse'), ('psnr', 'better')]
    """
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        known = base_name(key) in HIGHER_IS_BETTER
        if va is None or vb is None or not all(map(math.isfinite, (va, vb))):
            out.append(Delta(key, va, vb, None, "n/a"))
            continue
        d = float(vb) - float(va)
        if abs(d) <= tol:
            verdict = "same"
        elif not known:
            verdict = "n/a"
        else:
            verdict = "better" if (d > 0) == HIGHER_IS_BETTER[base_name(key)] else "worse"
        out.append(Delta(key, float(va), float(vb), d, verdict))
    return out


def format_diff(deltas: list[Delta], name_a: str = "A", name_b: str = "B") -> str:
    """Plain-text table of deltas."""
    def f(x: float | None) -> str:
        return "–" if x is None else f"{x:.4f}"
    w = max([len(d.metric) for d in deltas] + [6])
    lines = [f"{'metric':<{w}}  {name_a:>10}  {name_b:>10}  {'delta':>10}  verdict"]
    lines += [f"{d.metric:<{w}}  {f(d.a):>10}  {f(d.b):>10}  {f(d.delta):>10}  {d.verdict}"
              for d in deltas]
    return "\n".join(lines)
