"""The folder source: discovery, identities, ids, copying; and the source factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from edtalk.data import media
from edtalk.data.sources.base import validate_clip
from edtalk.data.sources.folder import FolderSource
from edtalk.data.sources.registry import make_source
from media_fixtures import make_clip, make_clip_pcm


@pytest.fixture()
def video_root(tmp_path: Path) -> Path:
    root = tmp_path / "videos"
    make_clip(root / "alice" / "take1.mp4", seconds=1.2)
    make_clip(root / "alice" / "day2" / "take.2.mp4", seconds=1.2, seed=1)
    make_clip_pcm(root / "bob" / "clip.mkv", seconds=1.2, sample_rate=16_000)
    make_clip(root / "carol.mp4", seconds=1.2, with_audio=False)
    make_clip(root / ".hidden" / "skip.mp4", seconds=1.2)
    (root / "alice" / "notes.txt").write_text("not a video")
    return root


def test_lists_videos_recursively_with_identities(video_root: Path) -> None:
    specs = FolderSource(video_root).list_clips()
    got = {s.clip_id: (s.identity, s.origin["path"]) for s in specs}
    assert got == {
        "folder_alice_day2_take-2": ("alice", "alice/day2/take.2.mp4"),
        "folder_alice_take1": ("alice", "alice/take1.mp4"),
        "folder_bob_clip": ("bob", "bob/clip.mkv"),
        "folder_carol": ("carol", "carol.mp4"),  # at the root: identity is the stem
    }
    assert all(s.source == "folder" and s.emotion == "unknown" for s in specs)
    # ids never hold a dot: ingest reads the id as the file name before its first dot
    assert all("." not in s.clip_id for s in specs)


def test_listing_is_deterministic(video_root: Path) -> None:
    assert FolderSource(video_root).list_clips() == FolderSource(video_root).list_clips()


def test_same_stem_different_extension_are_both_kept(tmp_path: Path) -> None:
    make_clip(tmp_path / "a.mp4")
    make_clip_pcm(tmp_path / "a.mkv", sample_rate=16_000)
    ids = sorted(s.clip_id for s in FolderSource(tmp_path).list_clips())
    assert ids == ["folder_a_mkv", "folder_a_mp4"]


def test_materialise_copies_the_file_and_validates(video_root: Path, tmp_path: Path) -> None:
    source = FolderSource(video_root)
    out = tmp_path / "ingest"
    rows = {}
    for spec in source.list_clips():
        written = source.materialise(spec, out / "clips")
        assert written.video.read_bytes() == (video_root / spec.origin["path"]).read_bytes()
        assert written.video.name == spec.clip_id + Path(spec.origin["path"]).suffix
        rows[spec.clip_id] = validate_clip(spec, written, out, "train", 1.0, require_audio=False)
    assert rows["folder_bob_clip"]["video_path"] == "clips/folder_bob_clip.mkv"
    assert rows["folder_alice_take1"]["frames"] == 30
    assert rows["folder_alice_take1"]["fps"] == 25.0
    # no temporary file left behind next to the clips
    assert sorted(p.name for p in (out / "clips").iterdir()) == sorted(
        f"{cid}{Path(s).suffix}" for cid, s in
        ((sp.clip_id, sp.origin["path"]) for sp in source.list_clips()))


def test_missing_root_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data\.folder\.root"):
        FolderSource(tmp_path / "nope").list_clips()


def test_registry_builds_each_real_source(tmp_path: Path) -> None:
    base = {"synthetic": {}, "hdtf": {"annotations": str(tmp_path), "retries": 2, "max_clips": 5},
            "mead": {"root": str(tmp_path), "camera": "front"}, "folder": {"root": str(tmp_path)}}
    for kind, cls_name in (("hdtf", "HdtfSource"), ("mead", "MeadSource"),
                           ("folder", "FolderSource")):
        source = make_source({"data": {**base, "source": kind}}, seed=0)
        assert type(source).__name__ == cls_name and source.name == kind
    hdtf = make_source({"data": {**base, "source": "hdtf"}}, seed=0)
    assert (hdtf.retries, hdtf.max_clips) == (2, 5)


def test_registry_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data.mead.root is not set"):
        make_source({"data": {"source": "mead", "mead": {"root": None}}}, seed=0)
    with pytest.raises(ValueError, match="must be one of"):
        make_source({"data": {"source": "youtube"}}, seed=0)


def test_mkv_with_pcm_audio_probes(video_root: Path) -> None:
    info = media.probe(video_root / "bob" / "clip.mkv")
    assert info.has_audio and info.sample_rate == 16_000


def test_sources_survive_pickling(tmp_path: Path) -> None:
    """The Dask task runner ships the source to worker processes."""
    import pickle

    for kind, section in (("hdtf", {"annotations": str(tmp_path)}), ("mead", {"root": str(tmp_path)}),
                          ("folder", {"root": str(tmp_path)})):
        source = make_source({"data": {"source": kind, kind: section}}, seed=0)
        clone = pickle.loads(pickle.dumps(source))
        assert vars(clone) == vars(source)


def test_registry_builds_the_synthetic_default() -> None:
    params = {"data": {"source": "synthetic", "synthetic": {
        "identities": 3, "clips_per_identity": 2, "seconds": 1.0, "render_size": 64}}}
    source = make_source(params, seed=7)
    assert source.name == "synthetic"
    assert len({s.identity for s in source.list_clips()}) == 3
