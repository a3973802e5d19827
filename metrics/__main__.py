"""Command line: ``python -m metrics {evaluate,sync,table,diff}``.

    python -m metrics evaluate --gt DIR --pred DIR_OR_GLOB [--name NAME] [--pred ... --name ...] \\
        --out DIR [--audio DIR] [--labels CSV] [--crop auto|none] [--sync-weights FILE] ...
    python -m metrics sync VIDEO [--audio WAV] --weights FILE --json
    python -m metrics table RESULT... --format md|csv|tex [--out FILE]
    python -m metrics diff A B
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metrics.evaluate_cli import EVALUATE_HELP, add_evaluate_args


def _evaluate(a: argparse.Namespace) -> int:
    from metrics.evaluate_cli import run

    return run(a)


def _sync(a: argparse.Namespace) -> int:
    from edtalk.data.media import read_audio, read_frames
    from edtalk.data.schema import SAMPLE_RATE
    from edtalk.experts import syncnet
    from metrics import sync

    net = syncnet.load(a.weights)
    frames, fps = read_frames(a.video)
    if abs(fps - 25) > 0.01:
        print(f"warning: {a.video} is {fps:g} fps; SyncNet expects 25", file=sys.stderr)
    audio = read_audio(a.audio or a.video, SAMPLE_RATE)
    s = sync.score(frames, audio, SAMPLE_RATE, net, jpeg_quality=a.jpeg_quality)
    out = {"video": str(a.video), "backend": net.backend, "mode": s.mode, "offset": s.offset,
           "lse_d": s.lse_d, "lse_c": s.lse_c, "windows": s.windows, "mdist": s.mdist}
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{a.video}: offset {s.offset} frames, LSE-D {s.lse_d:.4f}, LSE-C {s.lse_c:.4f} "
              f"[{net.backend}, {s.mode}]")
    return 0


def _table(a: argparse.Namespace) -> int:
    from edtalk.data import atomic
    from metrics.table import load_results, render

    text = render(load_results(a.results), a.format, a.digits)
    if a.out:
        atomic.write_text(a.out, text)
    else:
        sys.stdout.write(text)
    return 0


def _metrics_of(path: str) -> tuple[str, dict]:
    obj = json.loads(Path(path).read_text())
    if isinstance(obj, dict) and "metrics" in obj:
        return obj.get("method", path), obj["metrics"]
    if isinstance(obj, dict):
        return path, {k: v for k, v in obj.items() if isinstance(v, (int, float))}
    raise ValueError(f"{path}: expected a summary JSON object")


def _diff(a: argparse.Namespace) -> int:
    from metrics.diff import diff, format_diff

    (na, ma), (nb, mb) = _metrics_of(a.a), _metrics_of(a.b)
    print(format_diff(diff(ma, mb, a.tol), na, nb))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m metrics", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("evaluate", help="score folders of generated videos against ground truth",
                       description=EVALUATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_evaluate_args(e)
    e.set_defaults(fn=_evaluate)
    s = sub.add_parser("sync", help="LSE-C/LSE-D and offset of one clip")
    s.add_argument("video")
    s.add_argument("--audio")
    s.add_argument("--weights", required=True)
    s.add_argument("--json", action="store_true")
    s.add_argument("--jpeg-quality", type=int, help="labelled JPEG round-trip mode")
    s.set_defaults(fn=_sync)
    t = sub.add_parser("table", help="Table 1 layout from summary JSON files")
    t.add_argument("results", nargs="+")
    t.add_argument("--format", choices=("md", "csv", "tex"), default="md")
    t.add_argument("--digits", type=int, default=3)
    t.add_argument("--out")
    t.set_defaults(fn=_table)
    d = sub.add_parser("diff", help="per-metric deltas of B against A")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--tol", type=float, default=0.0)
    d.set_defaults(fn=_diff)
    a = p.parse_args(argv)
    from edtalk.data.quarantine import ClipRejected

    try:
        return a.fn(a)
    except (ValueError, FileNotFoundError, ClipRejected) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
