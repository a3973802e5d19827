"""Audio features: SyncNet MFCC, 100 Hz mel, per-frame grouping, EDTalk's official mel."""

from __future__ import annotations

import numpy as np
import pytest
import python_speech_features as psf
import scipy.signal

from edtalk.data.audio_features import (
    hz_to_mel_slaney, mel_100hz, mel_to_hz_slaney, mel_window, mfcc_syncnet, official_mel,
    per_video_frame, slaney_mel_filterbank,
)

SR = 16_000


def speechy(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise bursts under a changing tone: features vary over time, so shifts are visible."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
    pitch = 200 + 80 * np.sin(2 * np.pi * 0.7 * t)
    tone = np.sin(2 * np.pi * np.cumsum(pitch) / SR)
    return (0.3 * envelope * (tone + 0.3 * rng.standard_normal(n))).astype(np.float32)


def test_mfcc_equals_python_speech_features_on_int16_scale() -> None:
    audio = speechy(2.0)
    ints = np.round(np.clip(audio.astype(np.float64), -1, 1) * 32767)
    reference = psf.mfcc(ints, samplerate=SR)  # what syncnet_python computes
    bare = mfcc_syncnet(audio, pad_end=False)
    np.testing.assert_array_equal(bare, reference)
    padded = mfcc_syncnet(audio)
    assert padded.shape == (200, 13)                      # 100 steps per second
    np.testing.assert_allclose(padded[: len(reference)], reference, rtol=1e-10, atol=1e-9)
    # int16 input gives the same numbers as its float form.
    np.testing.assert_allclose(mfcc_syncnet(ints.astype(np.int16)), padded)
    with pytest.raises(ValueError, match="16000"):
        mfcc_syncnet(audio, sample_rate=22_050)


def test_per_video_frame_groups_four_steps() -> None:
    feats = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)  # 10 steps, 3 dims
    grouped = per_video_frame(feats, 3)
    assert grouped.shape == (3, 4, 3)
    np.testing.assert_array_equal(grouped[1], feats[4:8])
    np.testing.assert_array_equal(grouped[2, :2], feats[8:10])
    assert not grouped[2, 2:].any()                           # zero-padded at the end
    assert per_video_frame(feats, 2).shape == (2, 4, 3)       # extra steps dropped
    audio = speechy(1.0)
    per_frame = per_video_frame(mfcc_syncnet(audio), 25)
    assert per_frame.shape == (25, 4, 13)
    np.testing.assert_array_equal(per_frame[7], mfcc_syncnet(audio)[28:32])


def test_delay_shifts_the_features() -> None:
    audio = speechy(2.0, seed=3)
    delay_steps = 7                                            # 70 ms
    delayed = np.concatenate([np.zeros(delay_steps * 160, np.float32), audio])[: len(audio)]
    for fn in (mfcc_syncnet, mel_100hz):
        a, b = fn(audio), fn(delayed)
        np.testing.assert_allclose(b[delay_steps + 3: 150], a[3: 150 - delay_steps], rtol=1e-4, atol=1e-4)
        # and the best-matching lag found by search is the delay
        errors = [np.abs(b[k + 3:150] - a[3:150 - k]).mean() for k in range(15)]
        assert int(np.argmin(errors)) == delay_steps


def test_mel_100hz_grid_and_values() -> None:
    audio = speechy(1.5)
    mel = mel_100hz(audio)
    assert mel.shape == (150, 80) and mel.dtype == np.float32
    assert np.isfinite(mel).all() and mel.min() >= np.log(1e-5) - 1e-6
    # A pure 1 kHz tone lights up the band whose centre is nearest 1 kHz.
    t = np.arange(SR) / SR
    tone = mel_100hz((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    centres = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(55), hz_to_mel_slaney(7600), 82))[1:-1]
    assert abs(centres[int(np.argmax(tone[50]))] - 1000) < 60


def test_slaney_filterbank_shape_and_scale() -> None:
    np.testing.assert_allclose(mel_to_hz_slaney(hz_to_mel_slaney([55.0, 999.0, 1000.0, 7600.0])),
                               [55.0, 999.0, 1000.0, 7600.0])
    assert hz_to_mel_slaney(1000.0) == pytest.approx(15.0)
    bank = slaney_mel_filterbank(SR, 800, 80, 55, 7600)
    assert bank.shape == (80, 401) and (bank >= 0).all()
    freqs = np.linspace(0, SR / 2, 401)
    assert not bank[:, freqs > 7600].any() and not bank[:, freqs < 55].any()
    # Area normalisation: each triangle integrates (over Hz) to about 1.
    areas = bank.sum(axis=1) * (freqs[1] - freqs[0])
    np.testing.assert_allclose(areas[10:], 1.0, rtol=0.05)


def test_official_mel_shape_range_and_definition() -> None:
    audio = speechy(2.0) * 1.5
    audio = np.concatenate([audio, np.zeros(300, np.float32)])   # not a whole frame: cropped
    mel = official_mel(audio)
    samples = (len(audio) // 640) * 640
    assert mel.shape == (samples // 200 + 1, 80)               # centred STFT: one extra frame
    assert mel.min() >= -4 and mel.max() <= 4 and mel.max() > 0
    # Re-derive one interior frame straight from the definition.
    wav = scipy.signal.lfilter([1, -0.97], [1], audio[:samples].astype(np.float64))
    k = 37
    seg = wav[k * 200 - 400: k * 200 + 400] * scipy.signal.get_window("hann", 800, fftbins=True)
    spec = np.abs(np.fft.rfft(seg)) @ slaney_mel_filterbank(SR, 800, 80, 55, 7600).T
    db = 20 * np.log10(np.maximum(1e-5, spec)) - 20
    np.testing.assert_allclose(mel[k], np.clip(8 * (db + 100) / 100 - 4, -4, 4), atol=1e-4)
    # Reflect padding at the start, as the pinned librosa.
    padded = np.pad(wav, 400, mode="reflect")[:800] * scipy.signal.get_window("hann", 800, fftbins=True)
    spec0 = np.abs(np.fft.rfft(padded)) @ slaney_mel_filterbank(SR, 800, 80, 55, 7600).T
    db0 = 20 * np.log10(np.maximum(1e-5, spec0)) - 20
    np.testing.assert_allclose(mel[0], np.clip(8 * (db0 + 100) / 100 - 4, -4, 4), atol=1e-4)
    assert official_mel(np.zeros(16_000, np.float32)).max() == -4.0   # silence floors at -4
    with pytest.raises(ValueError, match="shorter"):
        official_mel(np.zeros(100, np.float32))


def test_mel_window_clamps_at_the_edges() -> None:
    mel = np.arange(81 * 80, dtype=np.float32).reshape(81, 80)  # row r holds r*80 .. r*80+79
    first = mel_window(mel, 0)
    assert first.shape == (80, 16)
    rows = first[0] / 80                                        # row index of each column
    np.testing.assert_array_equal(rows, np.clip(np.arange(-6, 10), 0, 80))
    mid = mel_window(mel, 10)                                   # int(80 * 8 / 25) = 25
    np.testing.assert_array_equal(mid[0] / 80, np.arange(25, 41))
    last = mel_window(mel, 24)                                  # int(80 * 22 / 25) = 70
    np.testing.assert_array_equal(last[0] / 80, np.clip(np.arange(70, 86), 0, 80))
    np.testing.assert_array_equal(mid[:, 0], mel[25])
