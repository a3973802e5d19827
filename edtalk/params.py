"""params.yaml, read and resolved in one place.

``base.profile`` names a profile (``tiny``, the CPU default, or ``paper``). Any section may
carry ``profiles.<name>``: values that replace the section's own when that profile is
chosen. Nested mappings merge key by key; anything else (lists included) is replaced.
``section`` returns one section so resolved, without its ``profiles`` block; every
consumer reads its values through it, so the profile switches them all the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PARAMS = Path("params.yaml")
PROFILES = ("tiny", "paper")


def load_params(path: str | Path = PARAMS) -> dict[str, Any]:
    """params.yaml as written (profiles unresolved; ``section`` resolves them)."""
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def profile_name(params: dict[str, Any]) -> str:
    """``base.profile`` (``tiny`` when absent); ValueError for an unknown name."""
    name = (params.get("base") or {}).get("profile", "tiny")
    if name not in PROFILES:
        raise ValueError(f"base.profile is {name!r}; choose from {PROFILES}")
    return name


def merge(base: dict[str, Any], over: dict[str, Any] | None) -> dict[str, Any]:
    """``over`` laid on ``base``: mappings merge recursively, other values are replaced."""
    out = dict(base)
    for key, value in (over or {}).items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Section ``name`` with the chosen profile's overrides applied (a new dict)."""
    raw = params[name]
    own = {k: v for k, v in raw.items() if k != "profiles"}
    return merge(own, (raw.get("profiles") or {}).get(profile_name(params)))
