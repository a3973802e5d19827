"""Train/val/test assignment by identity, never by clip."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def split_identities(identities: Iterable[str], n_val: int, n_test: int, seed: int) -> dict[str, str]:
    """Map each identity to 'train', 'val' or 'test'.

    Identities are ordered by a seeded hash (stable whatever order they arrive in), then
    the first ``n_test`` go to test, the next ``n_val`` to val, the rest to train. At
    least one identity always stays in train.
    """
    unique = sorted(set(identities))
    if not unique:
        return {}
    order = sorted(unique, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    n_test = min(n_test, max(len(order) - 1, 0))
    n_val = min(n_val, max(len(order) - 1 - n_test, 0))
    out: dict[str, str] = {}
    for rank, identity in enumerate(order):
        out[identity] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out
