"""Real TTS through espeak-ng (the ``espeakng-loader`` wheel), driven with ctypes.

The library is used in AUDIO_OUTPUT_SYNCHRONOUS mode: ``espeak_Synth`` returns only
after every sample went through our callback, so synthesis goes straight to memory.
With phoneme events enabled, the callback also receives one event per phoneme and
word, each with its position in the audio (ms), which gives the phoneme timings the
mouth track is built from.

espeak-ng keeps global state and is not thread-safe, so every call holds one
process-wide lock and runs in a freshly loaded copy of the library (see
``_fresh_library``): the same text and prosody give the same samples whatever was
synthesised before (determinism across clip order, threads and processes).
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from edtalk.data.schema import EMOTIONS, SAMPLE_RATE
from edtalk.data.synthetic.levels import level_scale

# Constants from espeak-ng's speak_lib.h (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6
_EVENT_PHONEME = 7
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE = 1, 2, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Prosody:
    """espeak parameters: rate (words/min), volume (0..200), pitch and range (0..100)."""

    rate: int = 165
    volume: int = 75  # below espeak's default 100: leaves headroom so loud emotions do not clip
    pitch: int = 50
    range: int = 50


@dataclass(frozen=True)
class Phone:
    """One phoneme (espeak mnemonic) and its span in the output audio, in seconds."""

    symbol: str
    start: float
    end: float


@dataclass(frozen=True)
class Speech:
    """Synthesised speech: float32 mono samples at SAMPLE_RATE and phoneme timings."""

    audio: np.ndarray
    phones: tuple[Phone, ...]
    words: tuple[float, ...]  # word onsets, seconds

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


# Per emotion: (rate, volume, pitch, range) offsets at intensity 3 from the neutral
# voice; intensity 1 and 2 use 60 % and 80 % of them (levels.py). Chosen after the acoustic
# correlates reported for acted emotional speech: anger loud and fast, sadness slow,
# low, quiet and flat, surprise high with a wide range, fear fast and high.
_EMOTION_OFFSETS: dict[str, tuple[int, int, int, int]] = {
    "angry": (+55, +55, +8, +25),
    "disgusted": (-35, +8, -14, +15),
    "contempt": (-25, -5, -10, -20),
    "fear": (+45, -20, +25, +10),
    "happy": (+25, +25, +18, +30),
    "neutral": (0, 0, 0, 0),
    "sad": (-60, -42, -22, -35),
    "surprised": (+15, +32, +32, +45),
}
_NEUTRAL = Prosody()


def prosody_for(emotion: str, intensity: int, voice_pitch: int = 0) -> Prosody:
    """The espeak prosody of ``emotion`` at ``intensity`` (1..3) for a speaker whose
    habitual pitch is offset by ``voice_pitch``."""
    if emotion not in _EMOTION_OFFSETS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    k = level_scale(intensity)
    dr, dv, dp, dg = _EMOTION_OFFSETS[emotion]
    return Prosody(
        rate=int(np.clip(round(_NEUTRAL.rate + k * dr), 80, 400)),
        volume=int(np.clip(round(_NEUTRAL.volume + k * dv), 10, 200)),
        pitch=int(np.clip(round(_NEUTRAL.pitch + voice_pitch + k * dp), 0, 99)),
        range=int(np.clip(round(_NEUTRAL.range + k * dg), 0, 99)),
    )


@lru_cache(maxsize=1)
def _wheel() -> tuple[bytes, bytes]:
    """The bytes of the wheel's libespeak-ng and the path of its voice data."""
    import espeakng_loader  # the wheel ships libespeak-ng and its data

    return Path(espeakng_loader.get_library_path()).read_bytes(), espeakng_loader.get_data_path().encode()


def _fresh_library() -> tuple[ctypes.CDLL, bytes]:
    """A newly loaded, private copy of libespeak-ng, and the voice data path.

    Why a copy: espeak-ng keeps synthesis state in static variables (waveform phase,
    pitch flutter, ...) that neither espeak_Terminate nor a new espeak_Initialize
    resets, so a second utterance in the same process comes out a few samples
    different. A copy under its own name is a separate library to the dynamic
    loader: loaded for one utterance and unloaded after it, it always starts fresh,
    so output depends on text and prosody only. The file is unlinked as soon as it
    is mapped, so nothing is left on disk (not even by killed or forked workers).
    """
    image, data_path = _wheel()
    fd, name = tempfile.mkstemp(prefix="edtalk-espeak-", suffix=".so")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(image)
        lib = _load(name)
    finally:
        os.unlink(name)
    return lib, data_path


def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    return lib


def synthesize(text: str, prosody: Prosody = _NEUTRAL, voice: str = "en-us") -> Speech:
    """Speak ``text`` with ``prosody``; return 16 kHz audio and phoneme timings."""
    chunks: list[np.ndarray] = []
    events: list[tuple[int, int, str]] = []  # (type, audio ms, phoneme)

    def on_synth(wav, n, ev):  # called by espeak from inside espeak_Synth
        if n > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while ev[i].type != _EVENT_LIST_TERMINATED:
            e = ev[i]
            if e.type == _EVENT_PHONEME:
                events.append((_EVENT_PHONEME, e.audio_position, e.id.string.decode("ascii", "replace")))
            elif e.type in (_EVENT_WORD, _EVENT_END, _EVENT_MSG_TERMINATED):
                events.append((e.type, e.audio_position, ""))
            i += 1
        return 0

    callback = _CALLBACK(on_synth)  # keep a reference for the duration of the call
    with _LOCK:
        lib, data_path = _fresh_library()
        try:
            rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path,
                                         _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
            if rate <= 0:
                raise RuntimeError(f"espeak_Initialize failed ({rate})")
            lib.espeak_SetSynthCallback(callback)
            lib.espeak_ng_SetRandSeed(1)  # frication noise comes from espeak's own generator
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise RuntimeError(f"espeak has no voice {voice!r}")
            for param, value in ((_P_RATE, prosody.rate), (_P_VOLUME, prosody.volume),
                                 (_P_PITCH, prosody.pitch), (_P_RANGE, prosody.range)):
                lib.espeak_SetParameter(param, int(value), 0)
            raw = text.encode("utf-8") + b"\0"
            err = lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed ({err})")
            lib.espeak_Synchronize()
            lib.espeak_Terminate()
        finally:
            _ctypes.dlclose(lib._handle)  # unload: the next call starts from a fresh copy
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    audio = pcm.astype(np.float32) / 32768.0
    if rate != SAMPLE_RATE:  # espeak's voices run at 22050 Hz; polyphase resampling is exact and deterministic
        g = np.gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return Speech(audio=audio, phones=_phones(events, len(audio) / SAMPLE_RATE),
                  words=tuple(ms / 1000.0 for t, ms, _ in events if t == _EVENT_WORD))


def _phones(events: list[tuple[int, int, str]], total: float) -> tuple[Phone, ...]:
    """Phoneme spans: each lasts until the next phoneme (or the end of the audio)."""
    marks = [(ms / 1000.0, sym) for t, ms, sym in events if t == _EVENT_PHONEME]
    out = []
    for i, (start, sym) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else total
        if end > start:
            out.append(Phone(sym.strip(), start, min(end, total)))
    return tuple(out)
