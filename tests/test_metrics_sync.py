"""SyncNet: the released file layout, and the reference scoring algorithm."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import python_speech_features
import torch
from torch import nn

from edtalk.experts import syncnet
from edtalk.experts.syncnet import SyncConfig, SyncNet
from metrics import sync

# The layer table of the protocol file: (branch, conv/linear idx, bn idx, kind).
CONV_IDX, BN_IDX = (0, 4, 8, 11, 14, 18), (1, 5, 9, 12, 15, 19)


def released_keys() -> list[str]:
    """Key names of syncnet_v2.model, written out from the protocol's table."""
    keys = []
    for branch in ("netcnnaud", "netcnnlip"):
        for c, b in zip(CONV_IDX, BN_IDX):
            keys += [f"{branch}.{c}.weight", f"{branch}.{c}.bias"]
            keys += [f"{branch}.{b}.{n}" for n in
                     ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    for fc in ("netfcaud", "netfclip"):
        keys += [f"{fc}.0.weight", f"{fc}.0.bias", f"{fc}.3.weight", f"{fc}.3.bias"]
        keys += [f"{fc}.1.{n}" for n in
                 ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    return keys


@pytest.fixture(scope="module")
def released_file(tmp_path_factory):
    """A random state dict in the released layout (BN statistics included), saved as torch.save(OrderedDict)."""
    g = torch.Generator().manual_seed(0)
    state = OrderedDict()
    for k, v in SyncNet().state_dict().items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7, dtype=torch.long)
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.01
    path = tmp_path_factory.mktemp("w") / "syncnet_v2.model"
    torch.save(state, path)
    return path, state


def test_architecture_has_the_released_names_and_size():
    net = SyncNet()
    assert sorted(net.state_dict()) == sorted(released_keys())
    n = sum(v.numel() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert round(n / 1e6, 2) == 13.64


def test_released_layout_round_trips_in_eval_mode(released_file):
    path, state = released_file
    net = SyncNet.from_file(path)
    assert not net.training
    loaded = net.state_dict()
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k
    assert net.backend == "syncnet_v2"


def test_wrong_layout_is_refused_naming_the_keys(tmp_path, released_file):
    _, state = released_file
    bad = OrderedDict(state)
    bad["netcnnaud.0.kernel"] = bad.pop("netcnnaud.0.weight")
    bad["netfclip.3.weight"] = torch.zeros(512, 512)
    path = tmp_path / "bad.model"
    torch.save(bad, path)
    with pytest.raises(ValueError) as e:
        SyncNet.from_file(path)
    msg = str(e.value)
    assert "missing keys: netcnnaud.0.weight" in msg
    assert "unexpected keys: netcnnaud.0.kernel" in msg
    assert "netfclip.3.weight (512, 512) != (1024, 512)" in msg


def test_scaled_variant_saves_loads_and_is_labelled(tmp_path):
    cfg = SyncConfig(width=0.125, image_size=64, embed_dim=16)
    net = SyncNet(cfg).eval()
    path = tmp_path / "trained.pt"
    syncnet.save_trained(net, path)
    back = syncnet.load(path)
    assert back.config == cfg and not back.training
    assert back.backend.startswith("syncnet:trained-here:w0.125-s64-d16@")
    assert len(back.backend.split("@")[1]) == 8
    x = torch.rand(2, 3, 5, 64, 64) * 255
    assert torch.allclose(back.forward_lip(x), net.forward_lip(x))


class CodeNet(nn.Module):
    """A 'SyncNet' whose embeddings are known: lips -> z-scored mean intensity of the 5
    frames; audio -> z-scored log energy (MFCC c0) at the step inside each frame."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SyncConfig(image_size=8)
        self.dummy = nn.Parameter(torch.zeros(1))

    @staticmethod
    def _z(x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-3)

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:   # N x 3 x 5 x S x S
        return self._z(x.mean(dim=(1, 3, 4)))

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:   # N x 1 x 13 x 20
        return self._z(x[:, 0, 0, 1::4])


def coded_clip(n_frames: int, delay: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.0, 2.0, n_frames)
    frames = np.repeat((level * 100 + 20).astype(np.uint8)[:, None, None, None], 3, axis=3)
    frames = np.ascontiguousarray(np.broadcast_to(frames, (n_frames, 16, 16, 3)))
    amp = np.repeat(300.0 * np.exp(level * 100 / 100 * 1.0), 640)     # energy grows with level
    audio = amp * rng.standard_normal(n_frames * 640)
    audio = np.concatenate([np.zeros(delay * 640), audio])[: n_frames * 640]
    return frames, np.clip(audio, -32768, 32767).astype(np.int16)


@torch.no_grad()
def reference_loop(frames, audio, net):
    """Independent re-statement of syncnet_python's evaluate (loops, numpy)."""
    mfcc = np.array(python_speech_features.mfcc(audio, 16000)).T
    n = min(len(frames), len(audio) // 640) - 5
    bgr = frames[..., ::-1].astype(np.float32)
    v = np.stack([net.forward_lip(torch.from_numpy(
        np.ascontiguousarray(bgr[i:i + 5].transpose(3, 0, 1, 2))[None])).numpy()[0] for i in range(n)])
    a = np.stack([net.forward_aud(torch.from_numpy(
        mfcc[:, 4 * i:4 * i + 20].astype(np.float32))[None, None]).numpy()[0] for i in range(n)])
    apad = np.concatenate([np.zeros((15, a.shape[1])), a, np.zeros((15, a.shape[1]))])
    d = np.array([[np.linalg.norm(v[i] - apad[i + k] + 1e-6) for k in range(31)] for i in range(n)])
    mdist = d.mean(axis=0)
    return 15 - int(np.argmin(mdist)), mdist.min(), np.median(mdist) - mdist.min(), mdist


@pytest.mark.parametrize("delay", [0, 3, 7])
def test_audio_lagging_by_d_frames_gives_offset_minus_d(delay):
    frames, audio = coded_clip(60, delay)
    net = CodeNet().eval()
    s = sync.score(frames, audio, 16000, net)
    off, lse_d, lse_c, mdist = reference_loop(frames, audio, net)
    assert s.offset == -delay == off
    assert s.windows == 55
    assert s.lse_d == pytest.approx(lse_d, abs=1e-4)
    assert s.lse_c == pytest.approx(lse_c, abs=1e-4)
    assert np.allclose(s.mdist, mdist, atol=1e-4)
    assert s.lse_c > 1.0


def test_real_architecture_windows_match_a_manual_forward():
    torch.manual_seed(0)
    net = SyncNet(SyncConfig(width=0.125, image_size=64, embed_dim=32)).eval()
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (12, 80, 80, 3), dtype=np.uint8)
    audio = (rng.standard_normal(12 * 640) * 2000).astype(np.int16)
    s = sync.score(frames, audio, 16000, net, batch_size=4)
    import cv2
    bgr = np.stack([cv2.resize(np.ascontiguousarray(f[..., ::-1]), (64, 64)) for f in frames])
    off, lse_d, lse_c, _ = reference_loop(bgr[..., ::-1], audio, net)
    assert (s.offset, s.windows) == (off, 7)
    assert s.lse_d == pytest.approx(lse_d, abs=1e-4) and s.lse_c == pytest.approx(lse_c, abs=1e-4)


def test_prepare_frames_is_bgr_and_resized():
    f = np.zeros((1, 4, 4, 3), np.uint8)
    f[..., 0], f[..., 1], f[..., 2] = 10, 20, 30
    out = syncnet.prepare_frames(f, 8)
    assert out.shape == (1, 8, 8, 3) and out[0, 0, 0].tolist() == [30, 20, 10]
    assert syncnet.prepare_frames(f, 8, jpeg_quality=90).shape == (1, 8, 8, 3)


def test_bad_inputs_raise():
    net = CodeNet().eval()
    frames, audio = coded_clip(20, 0)
    with pytest.raises(ValueError, match="16000 Hz"):
        sync.score(frames, audio, 8000, net)
    with pytest.raises(ValueError, match="too short"):
        sync.score(frames[:5], audio, 16000, net)
    with pytest.raises(ValueError, match="training mode"):
        sync.score(frames, audio, 16000, CodeNet().train())
    with pytest.raises(ValueError, match="uint8"):
        sync.score(frames.astype(np.float32), audio, 16000, net)


def test_distance_curve_matches_torch_pairwise_distance_with_zero_padding():
    g = torch.Generator().manual_seed(3)
    v, a = torch.randn(9, 6, generator=g), torch.randn(9, 6, generator=g)
    got = sync.distance_curve(v, a, vshift=4)
    ap = torch.cat([torch.zeros(4, 6), a, torch.zeros(4, 6)])
    want = torch.stack([torch.nn.functional.pairwise_distance(v[[i]].repeat(9, 1), ap[i:i + 9])
                        for i in range(9)])
    assert torch.allclose(got, want, atol=1e-6)
    offset, lse_d, lse_c, mdist = sync.summarise(got, vshift=4)
    assert offset == 4 - int(torch.argmin(want.mean(0)))
    assert lse_c == pytest.approx(float(torch.median(want.mean(0)) - want.mean(0).min()), abs=1e-6)


def _with_bn_statistics(net: SyncNet, seed: int = 0) -> SyncNet:
    """Non-trivial BatchNorm affine and running statistics, so that folding them matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                for t, lo, hi in ((m.weight, 0.5, 1.5), (m.bias, -0.2, 0.2),
                                  (m.running_mean, -0.5, 0.5), (m.running_var, 0.3, 2.0)):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
    return net.eval()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("config,size,n_frames,batch", [
    (SyncConfig(), 224, 9, 20),                                   # the released architecture
    (SyncConfig(width=0.125, image_size=64, embed_dim=32), 80, 30, 4),
])
def test_fused_towers_match_the_plain_net_and_scores_are_unchanged(config, size, n_frames, batch):
    torch.manual_seed(0)
    net = _with_bn_statistics(SyncNet(config))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (n_frames, size, size, 3), dtype=np.uint8)
    audio = (rng.standard_normal(n_frames * 640) * 3000).astype(np.int16)
    v0, a0 = sync.embed(frames, audio, 16000, net, batch, fused=False)
    v1, a1 = sync.embed(frames, audio, 16000, net, batch)
    assert v1.shape == v0.shape == (n_frames - 5, config.embed_dim) and a1.shape == a0.shape
    assert _rel(v1, v0) < 1e-4 and _rel(a1, a0) < 1e-4
    plain, fast = (sync.score(frames, audio, 16000, net, batch, fused=f) for f in (False, True))
    assert (fast.offset, fast.windows) == (plain.offset, plain.windows)
    assert fast.lse_d == pytest.approx(plain.lse_d, abs=1e-4)
    assert fast.lse_c == pytest.approx(plain.lse_c, abs=1e-4)
    assert np.allclose(fast.mdist, plain.mdist, atol=1e-4)
    # The caller's net is untouched: same tensors, BatchNorm layers still there, eval mode.
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(net.netcnnlip[1], nn.BatchNorm3d) and not net.training


def test_fused_towers_are_cached_and_follow_new_weights():
    cfg = SyncConfig(width=0.125, image_size=64, embed_dim=16)
    torch.manual_seed(0)
    net = _with_bn_statistics(SyncNet(cfg))
    fused = sync.fused_towers(net)
    assert sync.fused_towers(net) is fused                      # built once per net object
    x = torch.rand(3, 3, 5, 64, 64) * 255
    with torch.no_grad():
        assert _rel(fused.forward_lip(x), net.forward_lip(x)) < 1e-4
        net.load_state_dict(_with_bn_statistics(SyncNet(cfg), seed=5).state_dict())
        refused = sync.fused_towers(net)                        # weights changed in place: rebuilt
        assert refused is not fused
        assert _rel(refused.forward_lip(x), net.forward_lip(x)) < 1e-4
    with pytest.raises(ValueError, match="eval-mode"):
        sync.fused_towers(net.train())


def test_lip_batch_holds_lip_windows_values_in_channels_last_3d():
    bgr = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    got = sync.lip_batch(torch.from_numpy(bgr), range(2, 7))
    assert torch.equal(got, syncnet.lip_windows(bgr, range(2, 7)))
    assert got.is_contiguous(memory_format=torch.channels_last_3d)
