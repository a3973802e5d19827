"""The contact sheet: instants that alternate loud and quiet speech, one row per method."""

from __future__ import annotations

import numpy as np
import pytest

from edtalk.data.media import write_video, write_wav
from edtalk.data.schema import SAMPLES_PER_FRAME
from edtalk.evaluation import contact_sheet as cs


def test_loudness_is_the_rms_under_each_frame():
    audio = np.concatenate([np.full(SAMPLES_PER_FRAME, 0.5), np.zeros(SAMPLES_PER_FRAME),
                            np.full(SAMPLES_PER_FRAME // 2, -1.0)])
    np.testing.assert_allclose(cs.frame_loudness(audio, 3), [0.5, 0.0, np.sqrt(0.5)])


def test_instants_alternate_the_loudest_and_quietest_frame_of_each_span():
    loud = np.array([0, 5, 1, 2, 0, 3, 9, 1, 4, 0, 7, 2], float)
    picks = cs.pick_instants(loud, 4)                  # spans of 3: [0-2], [3-5], [6-8], [9-11]
    assert picks.tolist() == [1, 4, 6, 9]
    with pytest.raises(ValueError, match="fewer than"):
        cs.pick_instants(loud[:3], 4)


def test_a_clip_block_has_one_row_per_method_and_the_loudness_strip(tmp_path):
    n, size = 20, 16
    rng = np.random.default_rng(0)
    rows = []
    for label in ("GT", "Still"):
        path = tmp_path / f"{label}.mp4"
        write_video(path, rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8), 25)
        rows.append(cs.SheetRow(label, path))
    wav = tmp_path / "a.wav"
    write_wav(wav, np.sin(np.arange(n * SAMPLES_PER_FRAME) / 7.0).astype(np.float32) * 0.3)
    block = cs.clip_block("clip", rows, wav, frames=4, cell=32)
    assert block.shape[1] == 96 + 4 * 32                # label column + four frames
    assert block.shape[0] == 22 + 2 * 32 + 28           # title + two rows + loudness strip
    sheet = cs.contact_sheet([block, block])
    assert sheet.shape == (2 * block.shape[0] + 6, block.shape[1], 3)
    out = cs.write_png(sheet, tmp_path / "plots" / "sheet.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
