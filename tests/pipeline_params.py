"""A tiny configuration of params.yaml for end-to-end tests (seconds to run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edtalk.params import load_params

ROOT = Path(__file__).resolve().parent.parent


def tiny_params(**overrides: Any) -> dict[str, Any]:
    """params.yaml with a 4-clip synthetic corpus at 48 px and 32 px crops."""
    params = load_params(ROOT / "params.yaml")
    params["data"]["synthetic"].update(identities=4, clips_per_identity=1, seconds=1.5,
                                       render_size=48)
    params["data"]["split"] = {"val": 1, "test": 1}
    params["crop"]["size"] = 32
    for section, stage in (("train", "autoencoder"), ("train", "mouth_pose"), ("train", "expression"),
                           ("evaluators", "syncnet"), ("evaluators", "emotion")):
        params[section][stage]["pretrained"] = None       # the shipped files are for the default corpus
    params["train"]["mouth_pose"]["emotions"] = None       # four clips need not include a neutral one
    for dotted, value in overrides.items():
        node = params
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return params
