"""How strongly each MEAD intensity level (0..3) shows an emotion in the synthetic corpus."""

# Share of the level-3 expression (face) and prosody offset (voice) shown at each level.
# Level 1 keeps 60 %, not a third: at the default 64 px crop a third of a brow raise is under
# one pixel, and level-1 clips then read as neutral to any evaluator, face or voice.
LEVEL_SCALE = (0.0, 0.6, 0.8, 1.0)


def level_scale(intensity: int) -> float:
    """The share of the level-3 effect shown at ``intensity`` (clamped to 0..3)."""
    return LEVEL_SCALE[max(0, min(3, int(intensity)))]
