"""E_S: the Semantics Encoder of §3.3, a HuBERT-style model over raw 16 kHz audio.

CNN feature encoder (7 temporal convs, GroupNorm on the first, GELU; 320x down-sampling
to 50 frames/s) -> feature projection (LayerNorm + Linear) -> convolutional positional
embedding (grouped conv, weight norm, GELU) -> post-LN transformer encoder. Parameter
names follow the Hugging Face ``HubertModel`` layout exactly, so ``from_pretrained_hubert``
loads a ``facebook/hubert-base-ls960`` folder / HF cache snapshot (safetensors or bin)
without needing ``transformers``, and torchaudio's ``hubert_fairseq_base_ls960.pth`` after
renaming its keys. Without weights, a small configuration is trained from scratch.
As in the paper, ``freeze_feature_encoder`` fixes the CNN once pretrained weights load.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import SemanticEncoderConfig

HF_REPO = "facebook/hubert-base-ls960"


class FeatureEncoder(nn.Module):
    """Conv stack over the waveform; ``conv_layers.i.conv`` (+ ``.layer_norm`` = GroupNorm on 0)."""

    def __init__(self, cfg: SemanticEncoderConfig) -> None:
        super().__init__()
        layers = []
        c_in = 1
        for i, (k, s) in enumerate(zip(cfg.conv_kernels, cfg.conv_strides)):
            layer = nn.Module()
            layer.conv = nn.Conv1d(c_in, cfg.conv_channels, k, s, bias=False)
            if i == 0:
                layer.layer_norm = nn.GroupNorm(cfg.conv_channels, cfg.conv_channels, affine=True)
            layers.append(layer)
            c_in = cfg.conv_channels
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave.unsqueeze(1)                                             # (B, 1, S)
        for layer in self.conv_layers:
            x = layer.conv(x)
            if hasattr(layer, "layer_norm"):
                x = layer.layer_norm(x)
            x = F.gelu(x)
        return x                                                          # (B, C, T')


class FeatureProjection(nn.Module):
    """LayerNorm over conv channels, then Linear to the transformer width."""

    def __init__(self, cfg: SemanticEncoderConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(cfg.conv_channels, eps=1e-5)
        self.projection = nn.Linear(cfg.conv_channels, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.projection(self.layer_norm(x)))


class PositionalConv(nn.Module):
    """Grouped conv positional embedding with weight norm over the kernel axis (dim 2)."""

    def __init__(self, cfg: SemanticEncoderConfig) -> None:
        super().__init__()
        conv = nn.Conv1d(cfg.d_model, cfg.d_model, cfg.pos_conv_kernel,
                         padding=cfg.pos_conv_kernel // 2, groups=cfg.pos_conv_groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if cfg.pos_conv_kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:              # x: (B, T, D)
        h = self.conv(x.transpose(1, 2))
        if self.trim:
            h = h[..., :-self.trim]
        return F.gelu(h).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections."""

    def __init__(self, cfg: SemanticEncoderConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.p = cfg.dropout

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)  # noqa: E731
        mask = None if pad_mask is None else ~pad_mask[:, None, None, :]   # True = attend
        y = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)),
                                           split(self.v_proj(x)), attn_mask=mask,
                                           dropout_p=self.p if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    """Post-LN block: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: SemanticEncoderConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layer_norm = nn.LayerNorm(cfg.d_model, eps=1e-5)
        self.feed_forward = nn.Module()
        self.feed_forward.intermediate_dense = nn.Linear(cfg.d_model, cfg.ffn_dim)
        self.feed_forward.output_dense = nn.Linear(cfg.ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model, eps=1e-5)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.layer_norm(x + self.dropout(self.attention(x, pad_mask)))
        ff = self.feed_forward
        h = ff.output_dense(self.dropout(F.gelu(ff.intermediate_dense(x))))
        return self.final_layer_norm(x + self.dropout(h))


class TransformerEncoder(nn.Module):
    """x + pos_conv(x) -> LayerNorm -> dropout -> layers."""

    def __init__(self, cfg: SemanticEncoderConfig) -> None:
        super().__init__()
        self.pos_conv_embed = PositionalConv(cfg)
        self.layer_norm = nn.LayerNorm(cfg.d_model, eps=1e-5)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        if pad_mask is not None:
            x = x.masked_fill(pad_mask[..., None], 0.0)
        x = self.dropout(self.layer_norm(x + self.pos_conv_embed(x)))
        for layer in self.layers:
            x = layer(x, pad_mask)
        return x


class SemanticEncoder(nn.Module):
    """E_S: (B, S) 16 kHz waveform -> hidden states (B, T', D) or a pooled (B, D) embedding."""

    def __init__(self, cfg: SemanticEncoderConfig = SemanticEncoderConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.masked_spec_embed = nn.Parameter(torch.zeros(cfg.d_model))  # HF layout; unused here
        self.feature_extractor = FeatureEncoder(cfg)
        self.feature_projection = FeatureProjection(cfg)
        self.encoder = TransformerEncoder(cfg)

    @property
    def out_dim(self) -> int:
        return self.cfg.d_model

    def n_frames(self, n_samples: int) -> int:
        """Number of feature frames the CNN gives for ``n_samples`` samples."""
        for k, s in zip(self.cfg.conv_kernels, self.cfg.conv_strides):
            n_samples = (n_samples - k) // s + 1
        return n_samples

    def hidden_states(self, wave: torch.Tensor, lengths: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Last hidden states (B, T', D) and the padding mask (True = padded) or None."""
        if wave.ndim != 2:
            raise ValueError(f"expected (B, samples) waveforms, got {tuple(wave.shape)}")
        feats = self.feature_extractor(wave).transpose(1, 2)              # (B, T', C)
        pad = None
        if lengths is not None:
            n = torch.tensor([self.n_frames(int(s)) for s in lengths], device=wave.device)
            pad = torch.arange(feats.shape[1], device=wave.device)[None] >= n[:, None]
        return self.encoder(self.feature_projection(feats), pad), pad

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Utterance embedding E_S(a): mean of the last hidden states over valid frames."""
        h, pad = self.hidden_states(wave, lengths)
        if pad is None:
            return h.mean(1)
        keep = (~pad).float()[..., None]
        return (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)

    def freeze_feature_encoder(self) -> None:
        """Fix the CNN feature encoder (paper: only the transformer blocks are fine-tuned)."""
        for p in self.feature_extractor.parameters():
            p.requires_grad_(False)


# --- loading pretrained HuBERT-base ---------------------------------------------------------

def config_from_hf(config: Mapping) -> SemanticEncoderConfig:
    """SemanticEncoderConfig from a Hugging Face HubertConfig dict (base layout only)."""
    if config.get("feat_extract_norm", "group") != "group" or config.get("do_stable_layer_norm"):
        raise ValueError("only the HuBERT-base layout (group-norm CNN, post-LN transformer) "
                         "is supported; large/xlarge use layer-norm CNNs and pre-LN blocks")
    convs = set(config.get("conv_dim", [512] * 7))
    if len(convs) != 1:
        raise ValueError(f"conv_dim must be constant, got {config.get('conv_dim')}")
    return SemanticEncoderConfig(
        conv_channels=convs.pop(), conv_kernels=tuple(config.get("conv_kernel", (10, 3, 3, 3, 3, 2, 2))),
        conv_strides=tuple(config.get("conv_stride", (5, 2, 2, 2, 2, 2, 2))),
        d_model=config["hidden_size"], n_layers=config["num_hidden_layers"],
        n_heads=config["num_attention_heads"], ffn_dim=config["intermediate_size"],
        pos_conv_kernel=config["num_conv_pos_embeddings"],
        pos_conv_groups=config["num_conv_pos_embedding_groups"], dropout=0.1)


_TORCHAUDIO_RENAMES = (
    (r"^encoder\.feature_projection\.", "feature_projection."),
    (r"^encoder\.transformer\.", "encoder."),
    (r"^mask_generator\.mask_embedding$", "masked_spec_embed"),
)


def _to_hf_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchaudio / HubertForCTC / old weight-norm keys to the HF HubertModel layout."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(("aux.", "lm_head.", "label_embs", "final_proj.")):
            continue                                 # heads of fine-tuned / pre-training models
        key = key.removeprefix("hubert.")
        for pattern, repl in _TORCHAUDIO_RENAMES:
            key = re.sub(pattern, repl, key)
        key = key.replace("pos_conv_embed.conv.weight_g", "pos_conv_embed.conv.parametrizations.weight.original0")
        key = key.replace("pos_conv_embed.conv.weight_v", "pos_conv_embed.conv.parametrizations.weight.original1")
        out[key] = value
    return out


def _find_hf_snapshot(root: Path) -> Path | None:
    """A folder with config.json + weights: ``root`` itself or an HF cache snapshot under it."""
    candidates = [root] + sorted(root.glob("snapshots/*")) + \
        sorted(root.glob(f"models--{HF_REPO.replace('/', '--')}/snapshots/*"))
    for c in candidates:
        if (c / "config.json").is_file() and any((c / n).is_file() for n in
                                                 ("model.safetensors", "pytorch_model.bin")):
            return c
    return None


def _hf_cache_roots() -> list[Path]:
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    roots = [Path(os.environ["HF_HUB_CACHE"])] if os.environ.get("HF_HUB_CACHE") else []
    return roots + [home / "hub"]


def from_pretrained_hubert(path: str | os.PathLike | None = None,
                           config: SemanticEncoderConfig | None = None,
                           freeze_cnn: bool = True) -> SemanticEncoder:
    """E_S with pretrained HuBERT-base weights, loaded strictly.

    ``path``: an HF model folder or cache snapshot (config.json + model.safetensors /
    pytorch_model.bin), an HF cache root, or a torchaudio ``.pth`` state dict (with
    ``config``, default the paper profile). None searches the HF cache for
    ``facebook/hubert-base-ls960`` and then the weights registry (``hubert_base``),
    raising ``MissingWeights`` when neither has it. Returned in eval mode (call
    ``.train()`` to fine-tune the transformer), CNN frozen unless ``freeze_cnn`` is False.
    """
    from edtalk.weights import MissingWeights, locate
    from .config import a2m_config

    if path is None:
        for root in _hf_cache_roots():
            snap = _find_hf_snapshot(root)
            if snap is not None:
                path = snap
                break
        else:
            try:
                path = locate("hubert_base")
            except MissingWeights as e:
                raise MissingWeights(f"{HF_REPO} not in the Hugging Face cache "
                                     f"({', '.join(map(str, _hf_cache_roots()))}) and {e}") from None
    path = Path(path)
    if path.is_dir():
        snap = _find_hf_snapshot(path)
        if snap is None:
            raise MissingWeights(f"{path}: no config.json with model.safetensors/pytorch_model.bin")
        cfg = config or config_from_hf(json.loads((snap / "config.json").read_text()))
        if (snap / "model.safetensors").is_file():
            from safetensors.torch import load_file
            state = load_file(str(snap / "model.safetensors"))
        else:
            state = torch.load(snap / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        cfg = config or a2m_config("paper").expression.semantic
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, Mapping) else state
    model = SemanticEncoder(cfg)
    state = _to_hf_layout(state)
    state.setdefault("masked_spec_embed", model.masked_spec_embed.detach().clone())
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"{path}: HuBERT weights do not fit this config: {str(e)[:400]}") from None
    if missing or unexpected:
        raise ValueError(f"{path}: not a HuBERT-base state dict for this config: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    if freeze_cnn:
        model.freeze_feature_encoder()
    return model.eval()
