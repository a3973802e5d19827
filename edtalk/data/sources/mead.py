"""The ``mead`` source: the user's downloaded MEAD, as folders and/or archives.

Under ``data.mead.root`` each actor is one of

- a folder ``<actor>/`` holding ``video/`` and ``audio/`` trees, or MEAD's split
  archives ``video.tar`` / ``audio.tar`` (any archive kind) in place of those trees;
- an archive ``<actor>.tar`` / ``.tar.gz`` / ``.tgz`` / ``.zip`` holding the same trees
  (with or without a leading ``<actor>/`` folder).

Layout inside an actor: ``video/<camera>/<emotion>/level_<n>/<nnn>.mp4`` and
``audio/<emotion>/level_<n>/<nnn>.m4a``. Each clip's camera video is muxed with its
audio (stream copy, no re-encoding) into ``<clip_id>.mp4``. Archives are listed from
their headers; they are extracted (safely, once) only when a clip needs them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.schema import EMOTIONS
from edtalk.data.sources import clipio, safe_extract
from edtalk.data.sources.base import ClipSpec, Materialised
from edtalk.data.sources.folder import clip_id_for

log = logging.getLogger(__name__)

# MEAD's folder names are the EMOTIONS themselves; a few spellings seen in re-packaged
# copies are accepted too.
EMOTION_ALIASES = {e: e for e in EMOTIONS} | {
    "anger": "angry", "disgust": "disgusted", "fearful": "fear", "happiness": "happy",
    "sadness": "sad", "surprise": "surprised",
}

_VIDEO = re.compile(r"video/(?P<camera>[^/]+)/(?P<emotion>[^/]+)/level_(?P<level>\d+)/"
                    r"(?P<num>[^/]+)\.mp4", re.IGNORECASE)
_AUDIO = re.compile(r"audio/(?P<emotion>[^/]+)/level_(?P<level>\d+)/(?P<num>[^/]+)\.m4a",
                    re.IGNORECASE)

# Where one file lives: {"path": file} or {"archive": file, "member": name}, plus
# {"reject": {...}} for an archive refused at listing. Plain JSON so ingest can fingerprint it.
Locator = dict[str, Any]


def layout_name(name: str) -> str | None:
    """The part of ``name`` from its ``video/`` or ``audio/`` component on, or None."""
    parts = name.split("/")
    for i, part in enumerate(parts):
        if part.lower() in ("video", "audio"):
            return "/".join(parts[i:])
    return None


class MeadSource:
    """MEAD clips of one camera (``front`` in the paper) with their audio."""

    name = "mead"

    def __init__(self, root: str | Path, camera: str = "front",
                 work_dir: str | Path | None = None) -> None:
        self.root = Path(root).expanduser()
        self.camera = camera
        # Where archives are extracted; None = ``<clips_dir>/../cache/mead``.
        self.work_dir = Path(work_dir) if work_dir is not None else None

    # --- listing --------------------------------------------------------------

    def list_clips(self) -> list[ClipSpec]:
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data.mead.root {str(self.root)!r} is not a directory; point it at the folder "
                "holding MEAD's actor folders or <actor>.tar/.zip archives")
        specs: list[ClipSpec] = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                specs += self._actor_specs(entry.name, self._scan_folder(entry))
            elif safe_extract.is_archive(entry):
                specs += self._actor_specs(safe_extract.archive_stem(entry),
                                           self._scan_archive(entry))
        if not specs:
            log.warning("no MEAD clip found under %s (camera %r)", self.root, self.camera)
        return specs

    def _scan_folder(self, actor_dir: Path) -> list[tuple[str, Locator]]:
        """(layout name, locator) for loose files and for files inside nested archives."""
        found: list[tuple[str, Locator]] = []
        for path in sorted(actor_dir.rglob("*")):
            rel = path.relative_to(actor_dir).as_posix()
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            if safe_extract.is_archive(path):
                found += self._scan_archive(path)
            elif path.is_file() and (name := layout_name(rel)) is not None:
                found.append((name, {"path": str(path)}))
        return found

    def _scan_archive(self, archive: Path) -> list[tuple[str, Locator]]:
        """Entries of an archive; an unreadable or unsafe one yields one rejection marker."""
        members: list[safe_extract.Member] = []
        reject: dict[str, str] | None = None
        try:
            members = safe_extract.read_members(archive)
            safe_extract.check_members(archive, members)
        except ClipRejected as error:  # refused at materialise time, clip by clip
            reject = {"reason": error.reason.value, "detail": error.detail}
        found: list[tuple[str, Locator]] = []
        for member in safe_extract.file_names(members):
            if (name := layout_name(member)) is not None:
                locator: Locator = {"archive": str(archive), "member": member}
                if reject:
                    locator["reject"] = reject
                found.append((name, locator))
        if reject and not any(_VIDEO.fullmatch(n) for n, _ in found):
            # Nothing listable, yet the user should see why this archive gave no clip.
            found.append(("", {"archive": str(archive), "reject": reject}))
        return found

    def _actor_specs(self, actor: str, found: list[tuple[str, Locator]]) -> list[ClipSpec]:
        audio = {}
        for name, locator in found:
            if m := _AUDIO.fullmatch(name):
                key = (m["emotion"].lower(), int(m["level"]), m["num"])
                if key not in audio or "path" in locator:  # loose files win over archives
                    audio[key] = locator
        specs: dict[str, ClipSpec] = {}
        for name, locator in found:
            if name == "" and "reject" in locator:
                stem = safe_extract.archive_stem(Path(locator["archive"]))
                clip_id = clip_id_for("mead", actor, stem, "archive")
                specs[clip_id] = ClipSpec(clip_id=clip_id, identity=actor, source=self.name,
                                          origin={"actor": actor, "video": locator})
                continue
            m = _VIDEO.fullmatch(name)
            if m is None or m["camera"].lower() != self.camera.lower():
                continue
            emotion = EMOTION_ALIASES.get(m["emotion"].lower())
            if emotion is None:
                log.warning("skipping %s: unknown MEAD emotion folder %r", name, m["emotion"])
                continue
            level = int(m["level"])
            clip_id = clip_id_for("mead", actor, emotion, f"l{level}", m["num"])
            if clip_id in specs and "path" in specs[clip_id].origin["video"]:
                continue  # already extracted by the user: prefer the loose file to its archive
            specs[clip_id] = ClipSpec(
                clip_id=clip_id, identity=actor, emotion=emotion, intensity=level,
                source=self.name,
                origin={"actor": actor, "camera": self.camera, "video": locator,
                        "audio": audio.get((m["emotion"].lower(), level, m["num"]))},
            )
        return list(specs.values())

    # --- materialising --------------------------------------------------------

    def materialise(self, spec: ClipSpec, clips_dir: Path) -> Materialised:
        clips_dir = Path(clips_dir)
        video = self._resolve(spec.origin["video"], clips_dir)
        audio = self._resolve(spec.origin["audio"], clips_dir) if spec.origin.get("audio") else None
        clipio.check_integrity(video)
        dst = clips_dir / f"{spec.clip_id}.mp4"
        clipio.mux_video_audio(video, audio, dst)
        return Materialised(video=dst)

    def _resolve(self, locator: Locator, clips_dir: Path) -> Path:
        """A readable file for a locator, extracting its archive first if needed."""
        if reject := locator.get("reject"):
            raise ClipRejected(Reason(reject["reason"]), reject["detail"])
        if "path" in locator:
            path = Path(locator["path"])
            if not path.is_file():
                raise ClipRejected(Reason.CORRUPT, f"{path} disappeared after listing")
            return path
        archive = Path(locator["archive"])
        root = safe_extract.safe_extract(archive, self._extraction_dir(archive, clips_dir))
        path = (root / locator["member"]).resolve()
        # Internal links are allowed by the checks; the resolved file must still be inside.
        if root.resolve() not in path.parents or not path.is_file():
            raise safe_extract.unsafe(archive, f"{locator['member']!r} does not resolve inside it")
        return path

    def _extraction_dir(self, archive: Path, clips_dir: Path) -> Path:
        base = self.work_dir or clips_dir.parent / "cache" / "mead"
        # Many actors ship archives with the same name (video.tar): tell them apart.
        tag = hashlib.sha256(str(archive.resolve()).encode()).hexdigest()[:10]
        return base / f"{archive.parent.name}_{safe_extract.archive_stem(archive)}_{tag}"
