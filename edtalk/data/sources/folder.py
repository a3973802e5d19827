"""The ``folder`` source: any directory of videos, e.g. a researcher's own recordings.

Videos are found recursively; the identity is the first sub-folder under the root
(``root/<identity>/.../clip.mp4``), or the file's stem when it sits at the root.
Audio is optional here; ``validate_clip`` applies ``data.require_audio``.
"""

from __future__ import annotations

from pathlib import Path

from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.sources import clipio
from edtalk.data.sources.base import ClipSpec, Materialised, safe_clip_id

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm"})


def clip_id_for(*parts: str) -> str:
    """A clip id without dots: ingest treats the text before the first dot as the id."""
    return safe_clip_id(*parts).replace(".", "-")


class FolderSource:
    """Every video file under ``root``, copied as-is into the clips directory."""

    name = "folder"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def list_clips(self) -> list[ClipSpec]:
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data.folder.root {str(self.root)!r} is not a directory; point it at a "
                f"folder of videos ({', '.join(sorted(VIDEO_SUFFIXES))})")
        files = sorted(
            p.relative_to(self.root) for p in self.root.rglob("*")
            if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(self.root).parts)
        )
        ids = [clip_id_for("folder", *rel.with_suffix("").parts) for rel in files]
        clashes = {i for i in ids if ids.count(i) > 1}
        specs = []
        for rel, clip_id in zip(files, ids, strict=True):
            if clip_id in clashes:  # a.mp4 next to a.mov: keep both, told apart by extension
                clip_id = clip_id_for(clip_id, rel.suffix.lstrip(".").lower())
            identity = rel.parts[0] if len(rel.parts) > 1 else rel.stem
            specs.append(ClipSpec(clip_id=clip_id, identity=identity, source=self.name,
                                  origin={"path": rel.as_posix()}))
        return specs

    def materialise(self, spec: ClipSpec, clips_dir: Path) -> Materialised:
        src = self.root / spec.origin["path"]
        if not src.is_file():
            raise ClipRejected(Reason.CORRUPT, f"{src} disappeared after listing")
        # Checking before copying keeps broken files out of the clips directory.
        clipio.check_integrity(src)
        dst = Path(clips_dir) / f"{spec.clip_id}{src.suffix.lower()}"
        clipio.copy_clip(src, dst)
        return Materialised(video=dst)
