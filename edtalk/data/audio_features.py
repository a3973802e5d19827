"""Audio features aligned to 25 fps video: SyncNet MFCC, a 100 Hz mel, and EDTalk's mel.

Three families, all from 16 kHz mono audio:

- ``mfcc_syncnet``: python_speech_features.mfcc with its defaults (25 ms window, 10 ms
  step, 13 coefficients, 26 filters, nfft 512, pre-emphasis 0.97, lifter 22, c0 = log
  energy) on int16-scale samples, as syncnet_python feeds its network.
- ``mel_100hz``: 80-band log mel on the same 10 ms grid (window 400 samples, hop 160),
  so that every video frame owns exactly 4 steps of either feature (``per_video_frame``).
- ``official_mel`` / ``mel_window``: EDTalk's (Wav2Lip's) mel, 80 x 16 windows per frame,
  reimplemented with numpy/scipy so no librosa pin is needed.
"""

from __future__ import annotations

import numpy as np
import python_speech_features as psf
import scipy.signal

from edtalk.data.schema import FPS, SAMPLE_RATE

HOP_100HZ = SAMPLE_RATE // 100       # 160 samples = 10 ms
WIN_100HZ = 400                      # 25 ms, python_speech_features' default window
STEPS_PER_FRAME = 100 // FPS         # 4 steps of 10 ms per 40 ms video frame


def _int16_scale(audio: np.ndarray) -> np.ndarray:
    """Float [-1, 1] (or int16) mono -> float64 samples on the int16 scale.

    SyncNet's reference reads int16 wavs and passes the raw integers to the MFCC, whose
    log energies (c0) depend on that scale, so we reproduce it.
    """
    audio = np.asarray(audio).reshape(-1)
    if audio.dtype == np.int16:
        return audio.astype(np.float64)
    return np.round(np.clip(audio.astype(np.float64), -1.0, 1.0) * 32767.0)


def _pad_to_grid(signal: np.ndarray) -> np.ndarray:
    """Append zeros so that a 400-sample window starts at every multiple of 160 samples.

    python_speech_features alone yields 1 + ceil((N - 400) / 160) frames (99 for one
    second); padding the end by 240 samples gives exactly N / 160 (100 per second), one
    step per 10 ms, without changing any earlier frame (its framing and the causal
    pre-emphasis only look at samples inside each window).
    """
    n_steps = int(np.ceil(len(signal) / HOP_100HZ))
    need = (n_steps - 1) * HOP_100HZ + WIN_100HZ
    return np.pad(signal, (0, max(0, need - len(signal))))


def mfcc_syncnet(audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
                 pad_end: bool = True) -> np.ndarray:
    """(T100, 13) float64 MFCC exactly as python_speech_features.mfcc computes with its defaults.

    With ``pad_end`` (default) the signal is zero-padded at the end so that
    T100 = ceil(samples / 160) (100 per second); the rows python_speech_features would
    give without the padding are unchanged. ``pad_end=False`` is the bare call.
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"SyncNet MFCC expects {SAMPLE_RATE} Hz audio, got {sample_rate}")
    signal = _int16_scale(audio)
    if not pad_end:
        return psf.mfcc(signal, samplerate=sample_rate)
    # Pre-emphasis must come before the padding: python_speech_features pads its frames
    # with zeros *after* pre-emphasis, and emphasising appended zeros would not give zeros.
    signal = _pad_to_grid(psf.sigproc.preemphasis(signal, coeff=0.97))
    return psf.mfcc(signal, samplerate=sample_rate, preemph=0.0)


# --- mel filterbank (Slaney scale and area normalisation, as librosa's default) ----------

def hz_to_mel_slaney(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mel per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz,
                    min_log_mel + np.log(np.maximum(hz, 1e-12) / min_log_hz) / logstep,
                    hz / f_sp)


def mel_to_hz_slaney(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of ``hz_to_mel_slaney``."""
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)),
                    mel * f_sp)


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int,
                          fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) triangular filters, equally spaced on the Slaney mel
    scale, each scaled to unit area (2 / bandwidth) so that wide filters do not
    dominate. Matches librosa.filters.mel(htk=False, norm='slaney')."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_hz = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    edges = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax),
                                         n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def _stft_magnitude(signal: np.ndarray, n_fft: int, hop: int, win: int,
                    center: bool, pad_mode: str = "reflect") -> np.ndarray:
    """|STFT| as (frames, 1 + n_fft // 2), periodic Hann window, librosa's framing."""
    offset = 0
    if center:
        # librosa centres frame t on sample t * hop and a window shorter than n_fft in
        # the middle of the FFT frame; uncentred frames start at t * hop (like
        # python_speech_features) and are zero-padded to n_fft at the end.
        signal = np.pad(signal, n_fft // 2, mode=pad_mode)
        offset = (n_fft - win) // 2
    span = n_fft if center else win
    n_frames = 1 + (len(signal) - span) // hop if len(signal) >= span else 0
    if n_frames < 1:
        raise ValueError(f"signal of {len(signal)} samples is shorter than one window")
    frames = np.lib.stride_tricks.sliding_window_view(signal[offset:], win)[: n_frames * hop: hop]
    window = scipy.signal.get_window("hann", win, fftbins=True)
    return np.abs(np.fft.rfft(frames * window, n=n_fft, axis=1))


def mel_100hz(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = 80,
              fmin: float = 55.0, fmax: float = 7600.0) -> np.ndarray:
    """(T100, n_mels) log mel on the SyncNet MFCC grid (step t covers samples 160t..160t+400).

    Parameters: 25 ms periodic Hann window (400 samples) zero-padded to a 512-point FFT,
    hop 10 ms (160), no centring (same framing and end padding as ``mfcc_syncnet``, so
    both share T100 and the 4-steps-per-frame split), magnitude spectrum, Slaney mel
    filters 55-7600 Hz (EDTalk's band), natural log of max(1e-5, energy). No
    pre-emphasis, no normalisation: models normalise their inputs themselves.
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"expected {SAMPLE_RATE} Hz audio, got {sample_rate}")
    signal = _pad_to_grid(np.asarray(audio, dtype=np.float64).reshape(-1))
    mag = _stft_magnitude(signal, n_fft=512, hop=HOP_100HZ, win=WIN_100HZ, center=False)
    bank = slaney_mel_filterbank(sample_rate, 512, n_mels, fmin, fmax)
    return np.log(np.maximum(mag @ bank.T, 1e-5)).astype(np.float32)


def per_video_frame(features: np.ndarray, n_frames: int) -> np.ndarray:
    """(T100, D) features at 100 Hz -> (n_frames, 4, D): frame i gets steps 4i..4i+3.

    Missing steps at the end are zeros; steps beyond the last frame are dropped.
    """
    features = np.asarray(features)
    need = n_frames * STEPS_PER_FRAME
    out = np.zeros((need, features.shape[1]), dtype=features.dtype)
    take = min(need, len(features))
    out[:take] = features[:take]
    return out.reshape(n_frames, STEPS_PER_FRAME, features.shape[1])


# --- EDTalk's official mel ------------------------------------------------------------------

OFFICIAL = {"n_fft": 800, "hop": 200, "win": 800, "n_mels": 80, "fmin": 55.0, "fmax": 7600.0,
            "preemphasis": 0.97, "ref_level_db": 20.0, "min_level_db": -100.0, "max_abs": 4.0}
MEL_STEP_SIZE = 16


def official_mel(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """EDTalk's (Wav2Lip's) mel spectrogram, (T, 80) in [-4, 4], T = 1 + samples // 200.

    The audio is first cropped to whole 25 fps frames (floor(len / 640) * 640 samples).
    Pre-emphasis 0.97; centred STFT (n_fft 800, hop 200, Hann 800) with the signal padded
    by 400 samples of *reflection* at both ends, as the pinned librosa (<= 0.8) does
    (librosa >= 0.9 pads with zeros, which changes the first and last two frames);
    magnitude; 80 Slaney mel filters 55-7600 Hz; 20 log10(max(1e-5, x)) - 20 dB; mapped
    from [-100, 0] dB to [-4, 4] and clipped. The centred STFT yields one frame more than
    samples / 200 (80 frames per second of audio plus one).
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"expected {SAMPLE_RATE} Hz audio, got {sample_rate}")
    p = OFFICIAL
    wav = np.asarray(audio, dtype=np.float64).reshape(-1)
    wav = wav[: (len(wav) // (SAMPLE_RATE // FPS)) * (SAMPLE_RATE // FPS)]
    if len(wav) == 0:
        raise ValueError("audio shorter than one video frame (640 samples)")
    wav = scipy.signal.lfilter([1.0, -p["preemphasis"]], [1.0], wav)
    mag = _stft_magnitude(wav, p["n_fft"], p["hop"], p["win"], center=True, pad_mode="reflect")
    mel = mag @ slaney_mel_filterbank(sample_rate, p["n_fft"], p["n_mels"], p["fmin"], p["fmax"]).T
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - p["ref_level_db"]
    scaled = 2 * p["max_abs"] * (db - p["min_level_db"]) / (-p["min_level_db"]) - p["max_abs"]
    return np.clip(scaled, -p["max_abs"], p["max_abs"]).astype(np.float32)


def mel_window(mel: np.ndarray, frame_index: int, fps: float = FPS) -> np.ndarray:
    """(80, 16) window of ``official_mel`` output for video frame ``frame_index``.

    Rows int(80 (i - 2) / fps) .. +15 (80 mel frames per second; the window starts two
    video frames early so it is centred on the frame), each index clamped into
    [0, T - 1] so the first and last frames repeat the edge rows.
    """
    start = int(80.0 * (frame_index - 2) / fps)  # int() truncates toward zero, as the release
    rows = np.clip(np.arange(start, start + MEL_STEP_SIZE), 0, len(mel) - 1)
    return np.ascontiguousarray(mel[rows].T)
