"""The HDTF source against a loopback HTTP server: lists over HTTP, yt-dlp downloads
(cached, resumed, retried), failures quarantined, and frame-accurate trimming."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edtalk.data import media
from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.sources.base import validate_clip
from edtalk.data.sources.hdtf import (Downloader, HdtfSource, is_permanent, parse_annotations,
                                      parse_time, parse_video_urls, speaker)
from media_fixtures import LoopbackServer, make_clip, serve_directory


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy configured on the machine must never see the loopback requests."""
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[LoopbackServer]:
    """Serves two 'YouTube' videos and HDTF-style lists that point at them."""
    site = tmp_path / "site"
    make_clip(site / "v" / "radio1.mp4", seconds=4.0, fps=25, size=48)
    make_clip(site / "v" / "deb0.mp4", seconds=3.0, fps=25, size=48, seed=3)
    with serve_directory(site) as srv:
        (site / "lists").mkdir()
        (site / "lists" / "RD_video_url.txt").write_text(
            f"Radio1.mp4 {srv.url('v/radio1.mp4')}\nRadio2.mp4 {srv.url('v/missing.mp4')}\n")
        (site / "lists" / "RD_annotion_time.txt").write_text(
            "Radio1.mp4 00:00-00:01 00:01-00:03\nRadio2.mp4 00:00-00:02\nRadio9.mp4 00:00-00:02\n")
        (site / "lists" / "WRA_video_url.txt").write_text(
            f"DebFischer0 {srv.url('v/deb0.mp4')}\n")
        (site / "lists" / "WRA_annotion_time.txt").write_text("DebFischer0.mp4 00:00:01-00:00:03\n")
        yield srv


def _source(srv: LoopbackServer, tmp_path: Path, **kw: object) -> HdtfSource:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("allowed_hosts", ("127.0.0.1",))   # the loopback server stands in for YouTube
    return HdtfSource(srv.url("lists"), download_dir=tmp_path / "downloads", **kw)


def test_parsers_follow_the_published_format() -> None:
    assert parse_time("01:35") == 95 and parse_time("1:02:03") == 3723 and parse_time("00:07.5") == 7.5
    assert parse_annotations("Radio34.mp4 00:02-00:30 00:40-00:50\n\n") == {
        "Radio34": [(2.0, 30.0), (40.0, 50.0)]}
    assert parse_video_urls("DebFischer0 https://y/a\nRadio1.mp4 https://y/b\n") == {
        "DebFischer0": "https://y/a", "Radio1": "https://y/b"}
    with pytest.raises(ValueError, match="range"):
        parse_annotations("Radio1.mp4 00:20")
    assert speaker("DebFischer0", "WRA") == speaker("DebFischer", "WRA") == "DebFischer"
    assert speaker("Radio12", "RD") == "Radio12"


def test_lists_fetched_over_http(server: LoopbackServer, tmp_path: Path) -> None:
    specs = _source(server, tmp_path).list_clips()
    got = [(s.clip_id, s.identity, s.origin["start"], s.origin["end"]) for s in specs]
    assert got == [
        ("hdtf_Radio1_00", "Radio1", 0.0, 1.0),
        ("hdtf_Radio1_01", "Radio1", 1.0, 3.0),
        ("hdtf_Radio2_00", "Radio2", 0.0, 2.0),   # Radio9 has no URL: skipped
        ("hdtf_DebFischer0_00", "DebFischer", 1.0, 3.0),
    ]
    assert all(s.emotion == "unknown" and s.source == "hdtf" for s in specs)
    assert [s.clip_id for s in _source(server, tmp_path, max_clips=2).list_clips()] == [
        "hdtf_Radio1_00", "hdtf_Radio1_01"]


def test_lists_from_a_local_folder(server: LoopbackServer, tmp_path: Path) -> None:
    local = HdtfSource(server.root / "lists", download_dir=tmp_path / "d")
    assert len(local.list_clips()) == 4
    with pytest.raises(FileNotFoundError, match="annotion_time"):
        HdtfSource(tmp_path, download_dir=tmp_path / "d").list_clips()


def test_download_once_and_trim_each_range(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "ingest"
    source = _source(server, tmp_path)
    specs = {s.clip_id: s for s in source.list_clips()}
    rows, gets = {}, []
    for clip_id in ("hdtf_Radio1_00", "hdtf_Radio1_01", "hdtf_DebFischer0_00"):
        written = source.materialise(specs[clip_id], out / "clips")
        rows[clip_id] = validate_clip(specs[clip_id], written, out, "train", 0.5, True)
        gets.append(server.requests["v/radio1.mp4"])
    assert gets[0] >= 1 and gets[0] == gets[1] == gets[2]  # both ranges share one download
    assert rows["hdtf_Radio1_00"]["frames"] == 25 and rows["hdtf_Radio1_01"]["frames"] == 50
    assert rows["hdtf_DebFischer0_00"]["duration"] == pytest.approx(2.0)
    audio = media.read_audio(out / "clips" / "hdtf_Radio1_01.mp4")
    assert abs(audio.size / 16_000 - 2.0) < 0.1  # the audio is cut to the same range
    # the second range starts where the first ended: its first frame is source frame 25
    src_frames, _ = media.read_frames(tmp_path / "downloads" / "Radio1.mp4")
    cut, _ = media.read_frames(out / "clips" / "hdtf_Radio1_01.mp4")
    errors = [abs(cut[0].astype(int) - src_frames[i].astype(int)).mean() for i in (24, 25, 26)]
    assert errors.index(min(errors)) == 1
    video_gets = server.requests["v/radio1.mp4"]

    # a second run (new source object, same cache) downloads nothing
    again = _source(server, tmp_path)
    for spec in again.list_clips()[:2]:
        again.materialise(spec, tmp_path / "ingest2" / "clips")
    assert server.requests["v/radio1.mp4"] == video_gets
    # ...and re-cuts the same bytes (the manifest checksum is stable across runs)
    assert (tmp_path / "ingest2" / "clips" / "hdtf_Radio1_01.mp4").read_bytes() == (
        out / "clips" / "hdtf_Radio1_01.mp4").read_bytes()


def test_404_is_quarantined_as_download_failed(server: LoopbackServer, tmp_path: Path) -> None:
    source = _source(server, tmp_path, retries=3)
    spec = next(s for s in source.list_clips() if s.clip_id == "hdtf_Radio2_00")
    with pytest.raises(ClipRejected) as caught:
        source.materialise(spec, tmp_path / "ingest" / "clips")
    assert caught.value.reason is Reason.DOWNLOAD_FAILED
    assert "404" in caught.value.detail
    assert server.requests["v/missing.mp4"] == 1  # a 404 is permanent: no retries
    assert not (tmp_path / "ingest" / "clips").exists() or not any(
        (tmp_path / "ingest" / "clips").iterdir())


def test_transient_errors_are_retried(server: LoopbackServer, tmp_path: Path) -> None:
    server.fail_next["v/deb0.mp4"] = 2  # two 503s, then the file
    downloader = Downloader(tmp_path / "dl", retries=3, backoff=0.01)
    path = downloader.fetch("DebFischer0", server.url("v/deb0.mp4"))
    assert path.read_bytes() == (server.root / "v" / "deb0.mp4").read_bytes()
    assert server.requests["v/deb0.mp4"] >= 3
    server.fail_next["v/radio1.mp4"] = 10
    with pytest.raises(ClipRejected) as caught:
        Downloader(tmp_path / "dl", retries=1, backoff=0.01).fetch("Radio1", server.url("v/radio1.mp4"))
    assert caught.value.reason is Reason.DOWNLOAD_FAILED and "503" in caught.value.detail
    assert is_permanent("HTTP Error 410: Gone") and not is_permanent("HTTP Error 429")


def test_interrupted_download_resumes_with_a_range_request(server: LoopbackServer,
                                                           tmp_path: Path) -> None:
    data = (server.root / "v" / "radio1.mp4").read_bytes()
    cache = tmp_path / "dl"
    cache.mkdir()
    half = len(data) // 2
    (cache / "Radio1.mp4.part").write_bytes(data[:half])  # what a killed download leaves
    path = Downloader(cache, retries=1, backoff=0.01).fetch("Radio1", server.url("v/radio1.mp4"))
    assert path.read_bytes() == data
    assert ("v/radio1.mp4", f"bytes={half}-") in server.ranges
    assert not (cache / "Radio1.mp4.part").exists()


def test_list_supplied_names_stay_inside_the_cache(server: LoopbackServer, tmp_path: Path) -> None:
    cache = tmp_path / "deep" / "dl"
    path = Downloader(cache, retries=0).fetch("../../evil", server.url("v/deb0.mp4"))
    assert path.parent == cache and "/" not in path.name
    assert not list(tmp_path.rglob("evil*")) or all(cache in p.parents for p in tmp_path.rglob("evil*"))


def test_parallel_ranges_share_one_download(server: LoopbackServer, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # what one download of one video costs in requests (yt-dlp probes, then fetches)
    Downloader(tmp_path / "probe", retries=0).fetch("DebFischer0", server.url("v/deb0.mp4"))
    one_download = server.requests["v/deb0.mp4"]
    source = _source(server, tmp_path)
    specs = [s for s in source.list_clips() if s.origin["video"] == "Radio1"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        written = list(pool.map(lambda s: source.materialise(s, tmp_path / "clips"), specs))
    assert [media.probe(w.video).frames for w in written] == [25, 50]
    assert server.requests["v/radio1.mp4"] == one_download
