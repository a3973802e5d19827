"""EDTalk-A's motion source: 16 kHz speech (+ transcript) -> W^m, W^p, W^e per video frame.

``AudioDriver.load(models_dir)`` reads the three predictors the audio stages write
(``mouth.pt``, ``pose.pt``, ``expression.pt``, all ``weights_only``); ``predict`` returns
float32 arrays for the EDTalk banks:

* "mouth" (T, 20): MLP^m_A(E_a(window_t)) per frame (§3.3, audio-driven lips);
* "pose" (T, 6): phi_p(z, f^a) with z from the flow's fitted latent process x temperature
  from ``pose_seed`` (smooth over time, Eq. 13 inverted); a flow fitted with a W^e offset
  centres the clip's latent on the offset that this clip's "exp" predicts;
* "exp" (T, 10): MLP^e_A([E_S(a); E_T(text)]) (either modality may be missing, Eq. 15),
  or, with ``emotion``, that emotion's mean W^e over the training clips. Expression is
  constant over a clip, as in MEAD and as the predictor is trained.

Audio features are computed exactly as the features stage does (``audio_per_frame``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edtalk.data.schema import EMOTIONS, SAMPLE_RATE
from edtalk.weights import MissingModel

from .audio_encoder import frame_windows
from .audio_pose import AudioPose
from .config import AudioEncoderConfig, PoseFlowConfig
from .model_files import expression_config_from_dict, load_model_file, mouth_config_from_dict
from .mouth import AudioToMouth
from .semantic_expression import SemanticExpression
from .text_encoder import TextEncoder

FILES = {"mouth": "mouth.pt", "pose": "pose.pt", "expression": "expression.pt"}


class AudioDriver:
    """The three trained Audio-to-Motion predictors behind one ``predict`` call."""

    def __init__(self, mouth: AudioToMouth, pose: AudioPose, expression: SemanticExpression,
                 emotion_means: torch.Tensor, mouth_feature: str = "mfcc", pose_feature: str = "mfcc",
                 text_backend: str = "minilm") -> None:
        self.mouth, self.pose, self.expression = mouth.eval(), pose.eval(), expression.eval()
        self.emotion_means = emotion_means
        self.mouth_feature, self.pose_feature = mouth_feature, pose_feature
        self.text_backend = text_backend
        self._text: TextEncoder | None = None

    # --- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, models_dir: str | Path = "models/audio2motion") -> "AudioDriver":
        root = Path(models_dir)
        missing = [str(root / f) for f in FILES.values() if not (root / f).is_file()]
        if missing:
            raise FileNotFoundError(f"Audio-to-Motion models missing: {missing}; run the "
                                    f"train_audio2mouth / train_audio2pose / train_audio2exp stages")
        m = load_model_file(root / FILES["mouth"], "mouth")
        mouth = AudioToMouth(mouth_config_from_dict(m["config"]))
        mouth.load_state_dict(m["state_dict"])
        p = load_model_file(root / FILES["pose"], "pose")
        enc = AudioEncoderConfig(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in p["config"]["encoder"].items()})
        pose = AudioPose(enc, PoseFlowConfig(**p["config"]["flow"]))
        pose.load_state_dict(p["state_dict"])
        e = load_model_file(root / FILES["expression"], "expression")
        expression = SemanticExpression(expression_config_from_dict(e["config"]))
        expression.load_state_dict(e["state_dict"])
        return cls(mouth, pose, expression, e["emotion_means"].float(), m.get("feature", "mfcc"),
                   p.get("feature", "mfcc"), e.get("text_backend", "minilm"))

    # --- inference ---------------------------------------------------------------------------
    def text_encoder(self) -> TextEncoder:
        if self._text is None:
            self._text = TextEncoder(self.text_backend)
        return self._text

    @staticmethod
    def features(audio: np.ndarray, n_frames: int) -> dict[str, np.ndarray]:
        """Per-frame (T, 4, 13) MFCC and (T, 4, 80) mel, as the features stage computes them."""
        from edtalk.data.features import audio_per_frame

        mfcc, mel = audio_per_frame(np.asarray(audio, np.float32), n_frames)
        return {"mfcc": mfcc.reshape(n_frames, 4, -1), "mel": mel.reshape(n_frames, 4, -1)}

    def emotion_weights(self, emotion: str) -> torch.Tensor:
        if emotion not in EMOTIONS or torch.isnan(self.emotion_means[EMOTIONS.index(emotion)]).any():
            known = [e for k, e in enumerate(EMOTIONS) if not torch.isnan(self.emotion_means[k]).any()]
            raise ValueError(f"unknown emotion {emotion!r}; known: {known}")
        return self.emotion_means[EMOTIONS.index(emotion)]

    @torch.no_grad()
    def predict(self, audio: np.ndarray, n_frames: int, transcript: str | None = None,
                pose_seed: int | None = 0, temperature: float = 1.0,
                emotion: str | None = None) -> dict[str, np.ndarray]:
        """{"mouth": (T,20), "pose": (T,6), "exp": (T,10)} float32 for ``n_frames`` 25 fps frames.

        ``audio``: float32 mono 16 kHz. ``pose_seed`` None draws a fresh random seed;
        ``temperature`` scales the pose latent (0 = the deterministic mean path).
        """
        audio = np.asarray(audio, np.float32).reshape(-1)
        if n_frames < 1:
            raise ValueError("n_frames must be >= 1")
        feats = self.features(audio, n_frames)
        ctx_m = self.mouth.cfg.encoder.context_frames
        mouth = self.mouth(frame_windows(feats[self.mouth_feature], ctx_m))
        ctx_p = self.pose.encoder.cfg.context_frames
        fa = self.pose.features(frame_windows(feats[self.pose_feature], ctx_p)[None])
        if emotion is not None:
            exp = self.emotion_weights(emotion)
        else:
            wave = torch.from_numpy(audio)[None] if len(audio) >= SAMPLE_RATE // 10 else None
            text = (self.text_encoder().encode([transcript])
                    if transcript is not None and transcript.strip() else None)
            if wave is None and text is None:
                raise ValueError("need audio (>= 0.1 s), a transcript or an emotion for the expression")
            exp = self.expression(wave, text)[0]
        gen = torch.Generator()
        if pose_seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(pose_seed))
        pose = self.pose.flow.sample(fa, temperature, generator=gen, exp=exp[None])[0]
        return {"mouth": mouth.float().numpy(), "pose": pose.float().numpy(),
                "exp": np.repeat(exp.float().numpy()[None], n_frames, axis=0)}


def load_audio_driver(models_dir: str | Path) -> AudioDriver:
    """The audio models (EDTalk-A) from the folder the audio2motion stages write;
    ``MissingModel`` naming those stages when they are absent."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise MissingModel(
            f"audio models {models_dir}/ not found: they are written by the audio2motion DVC stages "
            "(train_audio2mouth, train_audio2pose, train_audio2exp; run `dvc repro`), "
            "or pass --audio-models")
    try:
        return AudioDriver.load(models_dir)
    except FileNotFoundError as exc:
        raise MissingModel(str(exc)) from exc
