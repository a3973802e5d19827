"""Each ingest-level quarantine reason, triggered by a crafted bad file.

The path is ingest's own: the folder source lists and materialises the file, then
``validate_clip`` checks it, with ``require_audio=True`` and ``min_seconds=1.0`` as in
params.yaml. Every bad file must end as ``ClipRejected`` with the expected reason, and
nothing broken may be left under a final clip name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.sources.base import validate_clip
from edtalk.data.sources.folder import FolderSource
from media_fixtures import (make_audio_only, make_clip, make_clip_pcm, make_faststart_clip,
                            write_random_bytes, write_truncated)


def _ingest_one(root: Path, out: Path) -> dict:
    """Run the folder source + validate_clip on the single file under ``root``."""
    (spec,) = FolderSource(root).list_clips()
    written = FolderSource(root).materialise(spec, out / "clips")
    return validate_clip(spec, written, out, "train", min_seconds=1.0, require_audio=True)


def _truncated_mp4(path: Path) -> None:
    # The default mp4 keeps its index (moov) at the end: half the file cannot be opened.
    full = make_clip(path.with_name("full.bin"), seconds=2.0)
    write_truncated(full, path)
    full.unlink()


def _truncated_faststart(path: Path) -> None:
    # Index first: the header still promises every frame, half the packets are missing.
    full = make_faststart_clip(path.with_name("full.bin"), seconds=2.0)
    write_truncated(full, path)
    full.unlink()


CASES: dict[str, tuple[str, Callable[[Path], object], Reason]] = {
    "random_bytes": ("noise.mp4", write_random_bytes, Reason.CORRUPT),
    "truncated_moov_at_end": ("cut.mp4", _truncated_mp4, Reason.CORRUPT),
    "truncated_faststart": ("cut.mp4", _truncated_faststart, Reason.TRUNCATED),
    "audio_only": ("speech.mp4", make_audio_only, Reason.NO_VIDEO),
    "no_audio": ("silent.mp4", lambda p: make_clip(p, with_audio=False), Reason.NO_AUDIO),
    "too_short": ("short.mp4", lambda p: make_clip(p, seconds=0.4), Reason.TOO_SHORT),
    "5_fps": ("slow.mp4", lambda p: make_clip(p, seconds=2.0, fps=5), Reason.BAD_FPS),
    "240_fps": ("fast.mp4", lambda p: make_clip(p, seconds=1.2, fps=240, size=16), Reason.BAD_FPS),
    "4_khz_audio": ("lofi.mkv", lambda p: make_clip_pcm(p, sample_rate=4_000),
                    Reason.BAD_SAMPLE_RATE),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_quarantined_with_its_reason(case: str, tmp_path: Path) -> None:
    name, craft, reason = CASES[case]
    root = tmp_path / "videos"
    root.mkdir()
    craft(root / name)
    with pytest.raises(ClipRejected) as caught:
        _ingest_one(root, tmp_path / "ingest")
    assert caught.value.reason is reason, caught.value
    assert caught.value.detail  # a human-readable explanation goes to the table
    clips = tmp_path / "ingest" / "clips"
    # nothing half-written is visible (files rejected before the copy never reach clips/)
    leftovers = [p.name for p in clips.iterdir()] if clips.exists() else []
    assert not [n for n in leftovers if n.startswith(".")], leftovers
    if reason in (Reason.CORRUPT, Reason.TRUNCATED, Reason.NO_VIDEO):
        assert leftovers == []


def test_a_good_clip_passes_the_same_path(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    make_clip(root / "ok.mp4", seconds=1.2)
    row = _ingest_one(root, tmp_path / "ingest")
    assert (row["clip_id"], row["fps"], row["frames"]) == ("folder_ok", 25.0, 30)
    assert row["duration"] == pytest.approx(1.2)


def test_audio_is_optional_when_not_required(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    make_clip(root / "silent.mp4", seconds=1.2, with_audio=False)
    (spec,) = FolderSource(root).list_clips()
    written = FolderSource(root).materialise(spec, tmp_path / "ingest" / "clips")
    row = validate_clip(spec, written, tmp_path / "ingest", "train", 1.0, require_audio=False)
    assert row["frames"] == 30 and row["audio_path"] == ""


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    make_clip(root / "a" / "good.mp4", seconds=1.2)
    write_random_bytes(root / "b" / "bad.mp4")
    source, out = FolderSource(root), tmp_path / "ingest"
    outcome = {}
    for spec in source.list_clips():
        try:
            validate_clip(spec, source.materialise(spec, out / "clips"), out, "train", 1.0, True)
            outcome[spec.clip_id] = "ok"
        except ClipRejected as error:
            outcome[spec.clip_id] = error.reason.value
    assert outcome == {"folder_a_good": "ok", "folder_b_bad": "corrupt"}
