"""Fast checks of the input policies the slow battery (test_battery.py) exercises end to end."""

from __future__ import annotations

import errno

import pytest

from edtalk.data import atomic
from edtalk.data.sources.url_policy import url_problem


@pytest.mark.parametrize("url", ["https://www.youtube.com/watch?v=abc", "http://youtu.be/abc",
                                 "https://m.youtube.com/watch?v=x"])
def test_youtube_links_pass(url):
    assert url_problem(url) is None


@pytest.mark.parametrize("url, why", [
    ("file:///etc/passwd", "scheme 'file'"),
    ("ftp://youtube.com/v", "scheme 'ftp'"),
    ("https://youtube.com.evil.example/watch", "host 'youtube.com.evil.example'"),
    ("https://user:pw@www.youtube.com/watch?v=a", "credentials"),
    ("https:///watch", "no host"),
])
def test_other_schemes_hosts_and_credentials_are_refused_with_the_reason(url, why):
    assert why in (url_problem(url) or "")


def test_a_mirror_host_can_be_allowed_and_none_allows_any_http_host():
    assert url_problem("https://mirror.example/x.mp4", ("mirror.example",)) is None
    assert url_problem("https://other.example/x.mp4", None) is None
    assert url_problem("file:///x.mp4", None) is not None


def test_a_full_disk_fails_with_the_file_named_and_leaves_no_partial(tmp_path):
    target = tmp_path / "out" / "clip.mp4"
    with pytest.raises(atomic.DiskFull, match="no space left to write clip.mp4"):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(target.parent.iterdir()) == [] and not target.exists()
