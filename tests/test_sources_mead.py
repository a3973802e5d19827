"""The MEAD source on a small fake MEAD (folders, actor archives, split archives) and
the safe extraction of hostile archives."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from edtalk.data import media
from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.sources import safe_extract
from edtalk.data.sources.base import validate_clip
from edtalk.data.sources.mead import MeadSource
from media_fixtures import make_audio_only, make_clip

# (emotion, level, number, has audio)
CLIPS = [("angry", 1, "001", True), ("angry", 3, "002", False), ("neutral", 1, "001", True)]


def build_actor(actor_dir: Path) -> Path:
    """``<actor>/video/<camera>/<emotion>/level_<n>/<nnn>.mp4`` + ``audio/...m4a`` as MEAD ships."""
    for i, (emotion, level, num, has_audio) in enumerate(CLIPS):
        make_clip(actor_dir / "video" / "front" / emotion / f"level_{level}" / f"{num}.mp4",
                  seconds=1.2, with_audio=False, seed=i)
        if has_audio:
            make_audio_only(actor_dir / "audio" / emotion / f"level_{level}" / f"{num}.m4a")
    # another camera: must be ignored when camera=front
    make_clip(actor_dir / "video" / "left_30" / "angry" / "level_1" / "001.mp4",
              seconds=1.2, with_audio=False)
    return actor_dir


def _tar(archive: Path, tree: Path, arc_prefix: str = "", mode: str = "w") -> Path:
    with tarfile.open(archive, mode) as tf:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                tf.add(path, arcname=arc_prefix + path.relative_to(tree).as_posix())
    return archive


def _expected_ids(actor: str) -> set[str]:
    return {f"mead_{actor}_{e}_l{lv}_{n}" for e, lv, n, _ in CLIPS}


def test_folder_layout_lists_emotion_level_actor(tmp_path: Path) -> None:
    build_actor(tmp_path / "mead" / "M003")
    specs = MeadSource(tmp_path / "mead").list_clips()
    assert {s.clip_id for s in specs} == _expected_ids("M003")
    by_id = {s.clip_id: s for s in specs}
    angry3 = by_id["mead_M003_angry_l3_002"]
    assert (angry3.identity, angry3.emotion, angry3.intensity, angry3.source) == (
        "M003", "angry", 3, "mead")
    assert angry3.origin["audio"] is None
    assert by_id["mead_M003_angry_l1_001"].origin["audio"] is not None


def test_other_camera_is_selectable(tmp_path: Path) -> None:
    build_actor(tmp_path / "mead" / "M003")
    specs = MeadSource(tmp_path / "mead", camera="left_30").list_clips()
    assert [s.clip_id for s in specs] == ["mead_M003_angry_l1_001"]


def test_materialise_muxes_video_with_its_audio(tmp_path: Path) -> None:
    build_actor(tmp_path / "mead" / "M003")
    source, out = MeadSource(tmp_path / "mead"), tmp_path / "ingest"
    rows = {}
    for spec in source.list_clips():
        written = source.materialise(spec, out / "clips")
        assert written.video == out / "clips" / f"{spec.clip_id}.mp4"
        rows[spec.clip_id] = (media.probe(written.video),
                              validate_clip(spec, written, out, "train", 1.0, require_audio=False))
    info, row = rows["mead_M003_angry_l1_001"]
    assert info.has_audio and info.frames == 30
    assert media.read_audio(written.video.with_name("mead_M003_angry_l1_001.mp4")).size > 16_000
    assert (row["emotion"], row["intensity"], row["identity"]) == ("angry", 1, "M003")
    # the video stream is copied, not re-encoded: frames decode to the source's pixels
    src = tmp_path / "mead/M003/video/front/angry/level_1/001.mp4"
    assert (media.read_frames(src)[0] == media.read_frames(
        out / "clips" / "mead_M003_angry_l1_001.mp4")[0]).all()
    assert not rows["mead_M003_angry_l3_002"][0].has_audio  # no m4a for it: video only
    with pytest.raises(ClipRejected) as caught:  # ...which require_audio then quarantines
        spec = next(s for s in source.list_clips() if s.clip_id == "mead_M003_angry_l3_002")
        validate_clip(spec, source.materialise(spec, out / "clips"), out, "train", 1.0, True)
    assert caught.value.reason is Reason.NO_AUDIO


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip", "split"])
def test_archived_actors(kind: str, tmp_path: Path) -> None:
    tree = build_actor(tmp_path / "tree" / "M005")
    root = tmp_path / "mead"
    root.mkdir()
    if kind == "tar":
        _tar(root / "M005.tar", tree, arc_prefix="M005/")       # with a leading actor folder
    elif kind == "tar.gz":
        _tar(root / "M005.tar.gz", tree, mode="w:gz")            # without one
    elif kind == "zip":
        with zipfile.ZipFile(root / "M005.zip", "w") as zf:
            for path in sorted(tree.rglob("*")):
                if path.is_file():
                    zf.write(path, "M005/" + path.relative_to(tree).as_posix())
    else:  # MEAD's own packaging: <actor>/video.tar and <actor>/audio.tar
        (root / "M005").mkdir()
        _tar(root / "M005" / "video.tar", tree / "video", arc_prefix="video/")
        _tar(root / "M005" / "audio.tar", tree / "audio", arc_prefix="audio/")
    work = tmp_path / "work"
    source = MeadSource(root, work_dir=work)
    specs = source.list_clips()
    assert {s.clip_id for s in specs} == _expected_ids("M005")
    assert not work.exists()  # listing reads headers only
    written = {s.clip_id: source.materialise(s, tmp_path / "clips") for s in specs}
    assert media.probe(written["mead_M005_angry_l1_001"].video).has_audio
    assert not media.probe(written["mead_M005_angry_l3_002"].video).has_audio
    extracted = sorted(p.name for p in work.iterdir() if p.is_dir())
    assert len(extracted) == (2 if kind == "split" else 1)  # each archive extracted once
    # a second pass reuses the extraction
    stamp = {p: p.stat().st_mtime_ns for p in work.iterdir()}
    source.materialise(specs[0], tmp_path / "clips")
    assert {p: p.stat().st_mtime_ns for p in work.iterdir()} == stamp


def test_default_work_dir_is_beside_clips(tmp_path: Path) -> None:
    tree = build_actor(tmp_path / "tree" / "W009")
    root = tmp_path / "mead"
    root.mkdir()
    _tar(root / "W009.tar", tree)
    source = MeadSource(root)
    spec = source.list_clips()[0]
    source.materialise(spec, tmp_path / "ingest" / "clips")
    assert any((tmp_path / "ingest" / "cache" / "mead").iterdir())


# --- hostile archives ------------------------------------------------------------

def _evil_tar(path: Path, clip: Path, bad: str) -> Path:
    """A tar with one genuine MEAD clip and one hostile entry of the kind ``bad``."""
    with tarfile.open(path, "w") as tf:
        tf.add(clip, arcname="video/front/angry/level_1/001.mp4")
        payload = b"owned\n"
        if bad == "dotdot":
            info = tarfile.TarInfo("video/../../evil.txt")
        elif bad == "absolute":
            info = tarfile.TarInfo(str(path.parent / "abs_evil.txt"))
        elif bad == "symlink":
            info = tarfile.TarInfo("video/etc")
            info.type, info.linkname, payload = tarfile.SYMTYPE, "/etc", b""
        elif bad == "symlink_relative":
            info = tarfile.TarInfo("video/up")
            info.type, info.linkname, payload = tarfile.SYMTYPE, "../../..", b""
        elif bad == "hardlink":
            info = tarfile.TarInfo("video/passwd")
            info.type, info.linkname, payload = tarfile.LNKTYPE, "/etc/passwd", b""
        elif bad == "device":
            info = tarfile.TarInfo("video/null")
            info.type, info.devmajor, info.devminor, payload = tarfile.CHRTYPE, 1, 3, b""
        else:
            raise ValueError(bad)
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload) if payload else None)
    return path


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("bad", ["dotdot", "absolute", "symlink", "symlink_relative", "hardlink",
                                 "device"])
def test_hostile_archive_is_refused_whole(bad: str, tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    root = sandbox / "mead" / "M666"
    root.mkdir(parents=True)
    clip = make_clip(tmp_path / "clip.mp4", seconds=1.2, with_audio=False)
    archive = _evil_tar(root / "video.tar", clip, bad)
    before = _files_under(tmp_path)
    work = sandbox / "work"
    source = MeadSource(sandbox / "mead", work_dir=work)
    specs = source.list_clips()
    assert [s.clip_id for s in specs] == ["mead_M666_angry_l1_001"]  # the genuine clip is listed...
    with pytest.raises(ClipRejected) as caught:                      # ...and refused with it
        source.materialise(specs[0], sandbox / "clips")
    assert caught.value.reason is Reason.UNSAFE_ARCHIVE
    assert archive.name in caught.value.detail
    # extracting directly is refused before anything is written
    with pytest.raises(ClipRejected) as direct:
        safe_extract.safe_extract(archive, work / "direct")
    assert direct.value.reason is Reason.UNSAFE_ARCHIVE
    created = _files_under(tmp_path) - before
    assert created == set(), created
    assert not list(tmp_path.parent.glob("*evil*")) and not list(tmp_path.rglob("*evil*"))


def test_symlink_inside_the_archive_is_allowed(tmp_path: Path) -> None:
    archive = tmp_path / "ok.tar"
    with tarfile.open(archive, "w") as tf:
        data = tarfile.TarInfo("audio/readme.txt")
        data.size = 2
        tf.addfile(data, io.BytesIO(b"hi"))
        link = tarfile.TarInfo("audio/alias.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "readme.txt"
        tf.addfile(link)
    out = safe_extract.safe_extract(archive, tmp_path / "x")
    assert (out / "audio" / "alias.txt").read_text() == "hi"


def test_zip_with_dotdot_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "M001.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("M001/video/front/angry/level_1/001.mp4", b"x")
        zf.writestr("../../evil.txt", b"owned")
    with pytest.raises(ClipRejected) as caught:
        safe_extract.safe_extract(archive, tmp_path / "out")
    assert caught.value.reason is Reason.UNSAFE_ARCHIVE
    assert not (tmp_path / "out").exists() and not list(tmp_path.parent.rglob("evil.txt"))


def test_unreadable_archive_is_reported_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "mead"
    root.mkdir()
    (root / "M007.tar").write_bytes(b"this is not a tar archive" * 40)
    specs = MeadSource(root).list_clips()
    assert [s.clip_id for s in specs] == ["mead_M007_M007_archive"]
    with pytest.raises(ClipRejected) as caught:
        MeadSource(root).materialise(specs[0], tmp_path / "clips")
    assert caught.value.reason is Reason.CORRUPT


def test_unsafe_audio_archive_refuses_the_clips_that_need_it(tmp_path: Path) -> None:
    tree = build_actor(tmp_path / "tree" / "M010")
    actor = tmp_path / "mead" / "M010"
    actor.mkdir(parents=True)
    _tar(actor / "video.tar", tree / "video", arc_prefix="video/")
    with tarfile.open(actor / "audio.tar", "w") as tf:
        tf.add(tree / "audio" / "angry" / "level_1" / "001.m4a", arcname="audio/angry/level_1/001.m4a")
        link = tarfile.TarInfo("audio/escape")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    source = MeadSource(tmp_path / "mead", work_dir=tmp_path / "work")
    outcome = {}
    for spec in source.list_clips():
        try:
            source.materialise(spec, tmp_path / "clips")
            outcome[spec.clip_id] = "ok"
        except ClipRejected as error:
            outcome[spec.clip_id] = error.reason.value
    assert outcome == {
        "mead_M010_angry_l1_001": "unsafe_archive",   # its audio lives in the hostile archive
        "mead_M010_angry_l3_002": "ok",               # no audio: the video archive is fine
        "mead_M010_neutral_l1_001": "ok",             # its audio is not in the archive at all
        "mead_M010_audio_archive": "unsafe_archive",  # the refusal itself is reported
    }
    assert not any("audio" in p.name for p in (tmp_path / "work").iterdir())
