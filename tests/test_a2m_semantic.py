"""Semantic expression (Eq. 15): masking schedule, single-modality inference, E_T, E_S loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from edtalk.audio2motion.config import ExpressionConfig, SemanticEncoderConfig
from edtalk.audio2motion.semantic_encoder import (SemanticEncoder, _to_hf_layout,
                                                  from_pretrained_hubert)
from edtalk.audio2motion.semantic_expression import (BOTH, MASK_AUDIO, MASK_TEXT, ExpressionHead,
                                                     SemanticExpression, expression_loss,
                                                     modality_branch, sample_branches)
from edtalk.weights import MissingWeights

TINY = SemanticEncoderConfig(conv_channels=16, d_model=32, n_layers=1, n_heads=2, ffn_dim=64,
                             pos_conv_kernel=16, pos_conv_groups=4, dropout=0.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny CPU models run far faster on one thread when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_eq15_branch_frequencies_and_thresholds() -> None:
    branches = sample_branches(40_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(branches, minlength=3).float() / len(branches)
    assert abs(float(freq[BOTH]) - 0.5) < 0.01
    assert abs(float(freq[MASK_AUDIO]) - 0.25) < 0.01
    assert abs(float(freq[MASK_TEXT]) - 0.25) < 0.01
    edges = modality_branch(torch.tensor([1.0, 0.5, 0.4999, 0.25, 0.2499, 0.0]))
    assert edges.tolist() == [BOTH, BOTH, MASK_AUDIO, MASK_AUDIO, MASK_TEXT, MASK_TEXT]


def test_masked_embedding_is_really_masked() -> None:
    torch.manual_seed(0)
    head = ExpressionHead(32, ExpressionConfig(text_dim=24, hidden=16))
    with torch.no_grad():
        head.audio_mask.normal_()
        head.text_mask.normal_()
    a1, a2 = torch.randn(4, 32), torch.randn(4, 32)
    t1, t2 = torch.randn(4, 24), torch.randn(4, 24)
    mask_audio = torch.full((4,), MASK_AUDIO)
    mask_text = torch.full((4,), MASK_TEXT)
    both = torch.full((4,), BOTH)
    # a masked modality cannot influence the output; the kept one does
    assert torch.equal(head(a1, t1, mask_audio), head(a2, t1, mask_audio))
    assert not torch.allclose(head(a1, t1, mask_audio), head(a1, t2, mask_audio))
    assert torch.equal(head(a1, t1, mask_text), head(a1, t2, mask_text))
    assert not torch.allclose(head(a1, t1, mask_text), head(a2, t1, mask_text))
    assert not torch.allclose(head(a1, t1, both), head(a2, t1, both))
    # inference with one modality equals the training-time masked branch
    assert torch.equal(head(None, t1), head(a1, t1, mask_audio))
    assert torch.equal(head(a1, None), head(a1, t1, mask_text))
    # per-sample branches
    mixed = torch.tensor([BOTH, MASK_AUDIO, MASK_TEXT, BOTH])
    out = head(a1, t1, mixed)
    assert torch.equal(out[1], head(None, t1)[1]) and torch.equal(out[2], head(a1, None)[2])
    with pytest.raises(ValueError):
        head(None, None)
    # the mask tokens are learned: they receive gradient through masked samples
    head(a1, t1, mask_audio).sum().backward()
    assert head.audio_mask.grad is not None and head.audio_mask.grad.abs().sum() > 0


def test_expression_predictor_trains_and_runs_with_either_modality() -> None:
    torch.manual_seed(0)
    cfg = ExpressionConfig(semantic=TINY, text_dim=8, hidden=16)
    model = SemanticExpression(cfg)
    model.semantic.freeze_feature_encoder()
    assert not any(p.requires_grad for p in model.semantic.feature_extractor.parameters())
    wave, text = torch.randn(6, 8000), torch.randn(6, 8)
    target = torch.randn(6, 10)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        start = float(expression_loss(target, model(wave, text)))
    for _ in range(30):
        opt.zero_grad()
        pred, branch = model.training_forward(wave, text, generator=g)
        expression_loss(target, pred).backward()
        opt.step()
    with torch.no_grad():
        assert float(expression_loss(target, model(wave, text))) < start
    model.eval()
    assert model.predict(wave=wave).shape == (6, 10)                 # audio only
    assert model.predict(text_emb=text).shape == (6, 10)             # text only
    lengths = torch.tensor([8000, 6000, 4000, 8000, 3000, 8000])
    assert model.predict(wave=wave, text_emb=text, lengths=lengths).isfinite().all()
    assert float(expression_loss(torch.zeros(2, 10), torch.ones(2, 10))) == 1.0


def test_text_encoder_embeds_meaning_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from edtalk.audio2motion.text_encoder import TextEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EDTALK_WEIGHTS", "/nonexistent")               # no EmoBERTa
    enc = TextEncoder("minilm")
    emb = enc.encode(["I am so happy and delighted today, this is wonderful.",
                      "What a joyful day, I feel really glad and cheerful.",
                      "I am furious, this makes me so angry I could scream.",
                      ""])
    assert emb.shape == (4, 384) and not emb.requires_grad
    cos = emb[:3] @ emb[:3].T
    assert float(cos[0, 1]) > float(cos[0, 2]) + 0.1                 # paraphrases are closer
    assert float(cos[0, 1]) > float(cos[1, 2]) + 0.1
    assert torch.equal(emb[3], torch.zeros(384))                     # unknown transcript


def _tiny_hf_config() -> dict:
    return {"model_type": "hubert", "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64, "conv_dim": [16] * 7,
            "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
            "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4,
            "feat_extract_norm": "group", "do_stable_layer_norm": False}


def test_hubert_weights_load_and_match_transformers(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny HF HubertModel saved as a model folder loads into E_S and gives its outputs."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.HubertModel(transformers.HubertConfig(**_tiny_hf_config())).eval()
    hf.save_pretrained(tmp_path / "hubert")
    ours = from_pretrained_hubert(tmp_path / "hubert").eval()
    assert not any(p.requires_grad for p in ours.feature_extractor.parameters())
    wave = torch.randn(2, 4000)
    with torch.no_grad():
        expected = hf(wave).last_hidden_state
        got, _ = ours.hidden_states(wave)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-4)
    # found without a path in the Hugging Face cache layout
    snap = tmp_path / "hf" / "hub" / "models--facebook--hubert-base-ls960" / "snapshots" / "abc"
    hf.save_pretrained(snap)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with torch.no_grad():
        assert torch.allclose(from_pretrained_hubert().hidden_states(wave)[0], expected, atol=1e-4)
    # the same weights in torchaudio's layout (as in hubert_fairseq_base_ls960.pth)
    to_ta = {}
    for k, v in ours.state_dict().items():
        k = k.replace("feature_projection.", "encoder.feature_projection.", 1) \
            if k.startswith("feature_projection.") else k
        k = k.replace("encoder.", "encoder.transformer.", 1) \
            if k.startswith("encoder.") and not k.startswith("encoder.feature_projection") else k
        k = k.replace("masked_spec_embed", "mask_generator.mask_embedding")
        k = k.replace("parametrizations.weight.original0", "weight_g")
        k = k.replace("parametrizations.weight.original1", "weight_v")
        to_ta[k] = v
    assert set(_to_hf_layout(to_ta)) == set(ours.state_dict())
    torch.save(to_ta, tmp_path / "hubert_ta.pth")
    from edtalk.audio2motion.semantic_encoder import config_from_hf
    again = from_pretrained_hubert(tmp_path / "hubert_ta.pth", config=config_from_hf(_tiny_hf_config()))
    with torch.no_grad():
        assert torch.allclose(again.hidden_states(wave)[0], expected, atol=1e-4)


def test_missing_hubert_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeights, match="hubert-base-ls960.*hubert_fairseq_base_ls960"):
        from_pretrained_hubert()
    bad = SemanticEncoder(TINY).state_dict()
    bad.pop("encoder.layer_norm.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="encoder.layer_norm.weight"):
        from_pretrained_hubert(tmp_path / "bad.pth", config=TINY)


def test_semantic_encoder_frame_rate_and_pooling() -> None:
    enc = SemanticEncoder(TINY).eval()
    assert enc.n_frames(16_000) == 49                                  # HuBERT: ~50 frames/s
    h, _ = enc.hidden_states(torch.randn(1, 16_000))
    assert h.shape == (1, 49, 32)
    wave = torch.randn(2, 16_000)
    short = wave.clone()
    short[1, 8000:] = 0
    pooled = enc(short, torch.tensor([16_000, 8000]))
    alone = enc(wave[1:, :8000])
    # padded frames are excluded from attention and pooling (only the conv context differs)
    assert F.cosine_similarity(pooled[1], alone[0], dim=0) > 0.9
    assert not torch.allclose(pooled[0], pooled[1])


def test_paper_profile_matches_hubert_base_layout() -> None:
    """Our paper-profile E_S has exactly HF hubert-base's keys and shapes (built on meta)."""
    transformers = pytest.importorskip("transformers")
    from edtalk.audio2motion.config import a2m_config
    from edtalk.audio2motion.semantic_encoder import config_from_hf

    paper = a2m_config("paper").expression.semantic
    assert config_from_hf(transformers.HubertConfig().to_dict()) == paper
    with torch.device("meta"):
        ours = SemanticEncoder(paper).state_dict()
        theirs = transformers.HubertModel(transformers.HubertConfig()).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == \
        {k: tuple(v.shape) for k, v in theirs.items()}
