"""Typed configurations of the Audio-to-Motion modules (paper §3.3), tiny and paper profiles.

The *tiny* profile is the CPU default used by the pipeline and the tests; the *paper*
profile follows the sizes the paper implies (HuBERT-base for E_S, 20/6/10 weights).

>>> a2m_config("tiny").pose.dim
6
"""

from __future__ import annotations

from dataclasses import dataclass, field

N_MOUTH, N_POSE, N_EXP = 20, 6, 10  # bank sizes |B^m|, |B^p|, |B^e| (paper §4.1)


@dataclass(frozen=True)
class AudioEncoderConfig:
    """E_a: a 1-D conv net over a window of 100 Hz audio features around one video frame."""

    feature_dim: int = 13        # 13 MFCC (or 80 mel) coefficients per 10 ms step
    context_frames: int = 2      # +-2 video frames -> (2*2+1) * 4 = 20 steps of 10 ms
    channels: tuple[int, ...] = (64, 96, 128)
    out_dim: int = 128           # dimension of f^a
    dropout: float = 0.0
    input_norm: str = "layer"    # layer: each 10 ms step's coefficients normalised together (that
                                 # drops the step's loudness) | batch: each coefficient standardised
                                 # over the data (BatchNorm), which keeps the loudness

    @property
    def window_steps(self) -> int:
        """Number of 10 ms steps in one window (4 per 25 fps frame)."""
        return (2 * self.context_frames + 1) * 4


@dataclass(frozen=True)
class MouthConfig:
    """Audio -> mouth: E_a then the linear head MLP^m_A -> W^m (Eq. 11)."""

    # batch norm: the mouth opens with loudness; with per-step layer norm E_a predicted the
    # opening less well than a linear map of the raw window (README "Why these values")
    encoder: AudioEncoderConfig = field(default_factory=lambda: AudioEncoderConfig(input_norm="batch"))
    n_weights: int = N_MOUTH
    sync_eps: float = 1e-8       # epsilon of Eq. 12


@dataclass(frozen=True)
class PoseFlowConfig:
    """phi_p: conditional affine-coupling normalizing flow over W^p given f^a (Eq. 13-14)."""

    dim: int = N_POSE
    cond_dim: int = 128          # dimension of the incoming f^a
    context_dim: int = 64        # after the temporal context network
    audio_cmn: bool = True       # mean-normalise the audio features per sequence (AudioPose)
    context_kernel: int = 5      # temporal conv kernel over the f^a sequence (frames)
    context_layers: int = 2
    context_smooth: float = 3.0  # std (frames) of a fixed Gaussian low-pass on h (0 = off): the
                                 # conditioning, hence the mean path, cannot jitter at frame rate
    n_couplings: int = 6
    hidden: int = 64
    scale_clamp: float = 2.0     # |log s| <= scale_clamp via tanh, keeps inverses stable
    temporal_kernel: str = "gaussian"  # time-varying part of the sampled z: "gaussian" (smooth,
                                 # squared-exponential correlation) | "ar1" (Markov, rough)
    temporal_rho: float = 0.0    # default lag-1 correlation of that part (0 = i.i.d.);
    temporal_shared: float = 0.0 # default fraction of z's variance held constant over a sequence;
                                 # PoseFlow.fit_temporal_correlation sets fitted values of both
    latent_axes: str = "within"  # axes of that process: "within" (where the training latents'
                                 # motion is uncorrelated across dimensions) | "identity" (z's own)
    exp_dim: int = N_EXP         # size of the W^e a sequence's latent offset may be regressed on


@dataclass(frozen=True)
class SemanticEncoderConfig:
    """E_S: HuBERT-style CNN feature encoder over 16 kHz audio + transformer encoder."""

    conv_channels: int = 64
    conv_kernels: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)   # HuBERT's: 320x down-sampling
    conv_strides: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)    # -> 50 feature frames / s
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    ffn_dim: int = 128
    pos_conv_kernel: int = 16
    pos_conv_groups: int = 4
    dropout: float = 0.1


@dataclass(frozen=True)
class ExpressionConfig:
    """E_S (+) E_T -> MLP^e_A -> W^e with the modality masking of Eq. 15."""

    semantic: SemanticEncoderConfig = field(default_factory=SemanticEncoderConfig)
    text_dim: int = 384          # all-MiniLM-L6-v2 (EmoBERTa-base: 768)
    hidden: int = 128
    n_weights: int = N_EXP
    p_both: float = 0.5          # Eq. 15: p >= 0.5 keep both modalities
    p_mask_audio: float = 0.25   # 0.25 <= p < 0.5 mask E_S(a); p < 0.25 mask E_T(T)


@dataclass(frozen=True)
class A2MConfig:
    """All Audio-to-Motion modules of one profile."""

    mouth: MouthConfig = field(default_factory=MouthConfig)
    pose: PoseFlowConfig = field(default_factory=PoseFlowConfig)
    expression: ExpressionConfig = field(default_factory=ExpressionConfig)


def a2m_config(profile: str = "tiny") -> A2MConfig:
    """The ``tiny`` (CPU default) or ``paper`` profile; ValueError for anything else."""
    if profile == "tiny":
        return A2MConfig()
    if profile == "paper":
        enc = AudioEncoderConfig(channels=(128, 256, 512), out_dim=512, input_norm="batch")
        return A2MConfig(
            mouth=MouthConfig(encoder=enc),
            pose=PoseFlowConfig(cond_dim=512, context_dim=256, n_couplings=12, hidden=256),
            expression=ExpressionConfig(
                semantic=SemanticEncoderConfig(conv_channels=512, d_model=768, n_layers=12,
                                               n_heads=12, ffn_dim=3072, pos_conv_kernel=128,
                                               pos_conv_groups=16),
                text_dim=768, hidden=512),
        )
    raise ValueError(f"unknown profile {profile!r}; expected 'tiny' or 'paper'")
