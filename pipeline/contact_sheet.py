"""DVC stage `contact_sheet`: GT / Still / EDTalk-V / EDTalk-A frames of held-out clips in one PNG.

Takes the first ``report.contact_sheet.clips`` clips of the ``evaluate.split`` split, one
per identity, and draws ``report.contact_sheet.frames`` instants of each as every method
renders it, with the driving audio's loudness under them
(``edtalk.evaluation.contact_sheet``). Writes ``reports/plots/contact_sheet.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow

from edtalk.evaluation import contact_sheet as cs
from edtalk.params import section
from pipeline.artifacts import publish_summary
from pipeline.common import main_with_params

METHODS = (("GT", "evaluate"), ("Still", "evaluate"), ("EDTalk-V", "generate"), ("EDTalk-A", "generate"))


@flow(name="contact_sheet")
def contact_sheet(params: dict[str, Any], features_dir: str = "data/features", evaluate_dir: str = "data/evaluate",
                  generate_dir: str = "data/generate", out: str = "reports/plots/contact_sheet.png") -> str:
    split = section(params, "evaluate")["split"]
    sheet = section(params, "report")["contact_sheet"]
    manifest = pd.read_parquet(Path(features_dir) / "clips.parquet")
    held = manifest[manifest["split"] == split].sort_values("clip_id")
    clip_ids = list(held.drop_duplicates("identity")["clip_id"][: int(sheet["clips"])])
    if not clip_ids:
        raise ValueError(f"no {split} clips in {features_dir}/clips.parquet")
    roots = {"evaluate": Path(evaluate_dir), "generate": Path(generate_dir)}
    blocks = []
    for clip_id in clip_ids:
        rows = [cs.SheetRow(label, roots[where] / label / f"{clip_id}.mp4") for label, where in METHODS]
        audio = roots["evaluate"] / "GT" / f"{clip_id}.wav"
        blocks.append(cs.clip_block(clip_id, rows, audio, frames=int(sheet["frames"])))
    path = cs.write_png(cs.contact_sheet(blocks), out)
    print(f"contact sheet of {len(clip_ids)} {split} clips: {path}")
    publish_summary("contact_sheet", {"clips": ", ".join(clip_ids), "frames": int(sheet["frames"]), "png": str(path)})
    return str(path)


def main() -> None:
    main_with_params(contact_sheet, __doc__)


if __name__ == "__main__":
    main()
