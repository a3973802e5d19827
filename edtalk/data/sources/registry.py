"""Build the clip source that ``params["data"]["source"]`` names.

Each source module is imported only when chosen, so the default synthetic run never
imports yt-dlp and a real-data run never imports the synthetic renderer.
"""

from __future__ import annotations

from typing import Any

from edtalk.data.sources.base import Source
from edtalk.params import section as params_section

SOURCES = ("synthetic", "hdtf", "mead", "folder")


def _required(section: dict[str, Any], key: str, source: str) -> Any:
    value = section.get(key)
    if value in (None, ""):
        raise ValueError(f"data.source is {source!r} but data.{source}.{key} is not set in params.yaml")
    return value


def make_source(params: dict[str, Any], seed: int) -> Source:
    """The source for ``params['data']['source']`` configured from its params section."""
    data = params_section(params, "data")
    kind = data.get("source", "synthetic")
    section = data.get(kind) or {}
    if kind == "synthetic":
        from edtalk.data.synthetic import SyntheticSource

        return SyntheticSource(
            seed=seed,
            identities=int(section["identities"]),
            clips_per_identity=int(section["clips_per_identity"]),
            seconds=float(section["seconds"]),
            render_size=int(section["render_size"]),
        )
    if kind == "hdtf":
        from edtalk.data.sources.hdtf import DEFAULT_FORMAT, HdtfSource
        from edtalk.data.sources.url_policy import YOUTUBE_HOSTS

        max_clips = section.get("max_clips")
        return HdtfSource(
            annotations=_required(section, "annotations", kind),
            max_clips=int(max_clips) if max_clips is not None else None,
            retries=int(section.get("retries", 3)),
            format=section.get("format") or DEFAULT_FORMAT,
            download_dir=section.get("download_dir"),
            # extra hosts (a mirror of HDTF's videos) on top of YouTube's
            allowed_hosts=(*YOUTUBE_HOSTS, *(section.get("allowed_hosts") or ())),
        )
    if kind == "mead":
        from edtalk.data.sources.mead import MeadSource

        return MeadSource(root=_required(section, "root", kind),
                          camera=section.get("camera") or "front",
                          work_dir=section.get("work_dir"))
    if kind == "folder":
        from edtalk.data.sources.folder import FolderSource

        return FolderSource(root=_required(section, "root", kind))
    raise ValueError(f"data.source must be one of {', '.join(SOURCES)}; got {kind!r}")
