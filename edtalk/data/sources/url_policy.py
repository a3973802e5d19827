"""Which download URLs a source may follow: HDTF's list is fetched from the web, so its
entries are untrusted input.

Only http(s) URLs on allowed hosts pass: YouTube by default, since HDTF publishes
YouTube links. ``file://`` would read local files into the corpus, other schemes
(ftp, data, javascript) or hosts would let an edited list send yt-dlp anywhere, and
credentials in a URL are never needed for public videos.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

YOUTUBE_HOSTS: tuple[str, ...] = ("youtube.com", "youtu.be", "youtube-nocookie.com")
"""Hosts (with their subdomains: www., m., music.) HDTF's links point at."""


def url_problem(url: str, allowed_hosts: Iterable[str] | None = YOUTUBE_HOSTS) -> str | None:
    """Why ``url`` must not be downloaded, or None when it may be.

    ``allowed_hosts`` None allows any host (the scheme is still checked); a host
    matches itself and its subdomains.

    >>> url_problem("https://www.youtube.com/watch?v=abc") is None
    True
    >>> url_problem("file:///etc/passwd")
    "scheme 'file' is not http(s)"
    """
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError as exc:  # e.g. a malformed IPv6 literal
        return f"malformed URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return f"scheme {parts.scheme.lower() or 'none'!r} is not http(s)"
    if not host:
        return "no host"
    if parts.username or parts.password:
        return "credentials in the URL"
    if allowed_hosts is None:
        return None
    allowed = tuple(h.lower().rstrip(".") for h in allowed_hosts)
    if not any(host == h or host.endswith("." + h) for h in allowed):
        return f"host {host!r} is not one of {', '.join(allowed)}"
    return None
