"""Every metric declares its direction once in ``metrics.HIGHER_IS_BETTER``; the modules'
own declarations and the plotted metrics agree with it."""

from __future__ import annotations

import pytest

from edtalk.evaluation import factors
from metrics import HIGHER_IS_BETTER, emotion, fid, higher_is_better, image, landmarks, reporting, sync


@pytest.mark.parametrize("declared", [image.HIGHER_IS_BETTER, landmarks.HIGHER_IS_BETTER,
                                      sync.HIGHER_IS_BETTER, factors.HIGHER_IS_BETTER,
                                      {"fid": fid.HIGHER_IS_BETTER, "fd": fid.HIGHER_IS_BETTER},
                                      {"acc_emo": emotion.HIGHER_IS_BETTER}])
def test_module_declarations_match_the_table(declared: dict[str, bool]) -> None:
    assert {k: HIGHER_IS_BETTER[k] for k in declared} == declared


def test_plotted_metrics_and_backend_keys_have_a_direction() -> None:
    assert all(name in HIGHER_IS_BETTER for name in reporting.PLOT_METRICS)
    assert higher_is_better("lse_d[syncnet:trained-here:w0.125-s64-d64@ab12cd34]") is False
    with pytest.raises(ValueError, match="unknown metric"):
        higher_is_better("nope")
