"""An independent, deliberately literal re-statement of the released EDTalk-V forward.

Used only to check the fast path and as the "official-style" side of the benchmark.
It reads the weights of an :class:`EDTalk` but re-implements every operation in the
release's own form: per-frame processing, the identity re-encoded for every frame (four
encoder passes), style folded into a per-sample weight with a grouped convolution,
``upfirdn2d`` on a one-channel reshape, the ``diag_embed`` navigation sum, a numpy
identity grid, and the EEM including its overwritten conv1 branch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .edtalk import EDTalk
from .eem import EmotionEnhancement
from .layers import SQRT2, Blur, ConvLayer, EqualConv2d, FusedLeakyReLU, ModulatedConv2d, ResBlock, Upsample


def _upfirdn2d_native(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int, pad: tuple[int, int]) -> torch.Tensor:
    _, c, h, w = x.shape
    kh, kw = kernel.shape
    out = x.reshape(-1, c, h, 1, w, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1, 0, 0]).reshape(-1, c, h * up, w * up)
    out = F.pad(out, [pad[0], pad[1], pad[0], pad[1]])
    hh, ww = out.shape[2], out.shape[3]
    out = F.conv2d(out.reshape(-1, 1, hh, ww), torch.flip(kernel, [0, 1]).view(1, 1, kh, kw))
    out = out.reshape(-1, c, hh - kh + 1, ww - kw + 1)
    return out[:, :, ::down, ::down]


def _conv_layer(layer: ConvLayer, x: torch.Tensor) -> torch.Tensor:
    for m in layer:
        if isinstance(m, Blur):
            x = _upfirdn2d_native(x, m.kernel, 1, 1, m.pad)
        elif isinstance(m, EqualConv2d):
            x = F.conv2d(x, m.weight * m.scale, m.bias, m.stride, m.padding)
        elif isinstance(m, FusedLeakyReLU):
            x = F.leaky_relu(x + m.bias, 0.2) * SQRT2
        else:
            x = F.leaky_relu(x, 0.2)
    return x


def encode(model: EDTalk, img: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    res, x = [], img
    for conv in model.enc.net_app.convs:
        if isinstance(conv, ResBlock):
            x = (_conv_layer(conv.conv2, _conv_layer(conv.conv1, x)) + _conv_layer(conv.skip, x)) / SQRT2
        elif isinstance(conv, ConvLayer):
            x = _conv_layer(conv, x)
        else:
            x = F.conv2d(x, conv.weight * conv.scale, None, 1, 0)
        res.append(x)
    return res[-1].squeeze(-1).squeeze(-1), res[::-1][2:]


def _linear_stack(layers: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    for m in layers:
        x = F.linear(x, m.weight * m.scale, m.bias * m.lr_mul)
    return x


def _modulated_conv(m: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    b, cin, h, w = x.shape
    style = F.linear(style, m.modulation.weight * m.modulation.scale, m.modulation.bias).view(b, 1, cin, 1, 1)
    weight = m.scale * m.weight * style
    if m.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, m.out_ch, 1, 1, 1)
    weight = weight.view(b * m.out_ch, cin, m.k, m.k)
    x = x.reshape(1, b * cin, h, w)
    if m.upsample:
        weight = weight.view(b, m.out_ch, cin, m.k, m.k).transpose(1, 2).reshape(b * cin, m.out_ch, m.k, m.k)
        out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
        out = out.view(b, m.out_ch, out.shape[2], out.shape[3])
        return _upfirdn2d_native(out, m.blur.kernel, 1, 1, m.blur.pad)
    out = F.conv2d(x, weight, padding=m.padding, groups=b)
    return out.view(b, m.out_ch, out.shape[2], out.shape[3])


def _styled(sc, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(_modulated_conv(sc.conv, x, style) + sc.activate.bias, 0.2) * SQRT2


def _upsample(m: Upsample, x: torch.Tensor) -> torch.Tensor:
    return _upfirdn2d_native(x, m.kernel, m.factor, 1, m.pad)


def _adain(norm, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    normalized = torch.nn.InstanceNorm2d(x.shape[1], affine=False)(x)
    actv = norm.mlp_shared(e.view(e.size(0), -1))
    gamma, beta = norm.mlp_gamma(actv), norm.mlp_beta(actv)
    return normalized * (1 + gamma.view(*gamma.shape[:2], 1, 1)) + beta.view(*beta.shape[:2], 1, 1)


def _eem(m: EmotionEnhancement, x: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
    if e is None:
        return x
    dx = F.leaky_relu(_adain(m.norm1, m.conv1(x), e), 0.01)  # overwritten on the next line, as released
    dx = _adain(m.norm2, m.conv2(x), e)
    return dx + x


def decode(model: EDTalk, latent: torch.Tensor, feats: list[torch.Tensor], exp: torch.Tensor | None) -> torch.Tensor:
    dec = model.dec
    n_latent = model.cfg.log_size * 2 - 2
    lat = latent.unsqueeze(1).repeat(1, n_latent, 1)
    out = dec.input.input.repeat(latent.shape[0], 1, 1, 1)
    out = _styled(dec.conv1, out, lat[:, 0])
    i, skip, skip_flow = 1, None, None
    for lvl, feat in enumerate(feats):
        out = _styled(dec.convs[2 * lvl], out, lat[:, i])
        out = _styled(dec.convs[2 * lvl + 1], out, lat[:, i + 1])
        if dec.fineadainresblock is not None:
            feat = _eem(dec.fineadainresblock[lvl], feat, exp)
        tf = dec.to_flows[lvl]
        flow_raw = _modulated_conv(tf.conv, out, lat[:, i + 2]) + tf.bias
        xs = np.linspace(-1, 1, out.size(2))
        xs = np.stack(np.meshgrid(xs, xs), 2)
        xs = torch.tensor(xs).to(out.dtype).unsqueeze(0).repeat(out.size(0), 1, 1, 1)
        if skip_flow is not None:
            flow_raw = flow_raw + _upsample(tf.upsample, skip_flow)
        sampler = torch.tanh(flow_raw[:, 0:2])
        mask = torch.sigmoid(flow_raw[:, 2:3])
        warped = F.grid_sample(feat, sampler.permute(0, 2, 3, 1) + xs, align_corners=False) * mask
        out, skip_flow = warped + out * (1.0 - mask), flow_raw
        tr = dec.to_rgbs[lvl]
        rgb = _conv_layer(tr.conv, warped) + tr.bias
        skip = rgb if skip is None else rgb + _upsample(tr.upsample, skip)
        i += 2
    return skip


def edtalk_v_frame(model: EDTalk, source: torch.Tensor, mouth: torch.Tensor, pose: torch.Tensor,
                   exp: torch.Tensor | None) -> torch.Tensor:
    """One frame (batch 1) as the release's ``test_EDTalk_V``: four encoder passes + decoder."""
    wa, feats = encode(model, source)
    lat_m, lat_p = encode(model, mouth)[0], encode(model, pose)[0]
    alpha = [_linear_stack(model.lip_fc, _linear_stack(model.fc, lat_m)),
             _linear_stack(model.pose_fc, _linear_stack(model.fc, lat_p))]
    banks = [model.direction_lipnonlip.weight]
    if exp is not None and model.exp_fc is not None:
        lat_e = encode(model, exp)[0]
        alpha.append(_linear_stack(model.exp_fc, _linear_stack(model.fc, lat_e)))
        banks.append(model.direction_exp.weight)
    q, _ = torch.linalg.qr(torch.cat(banks, 1) + 1e-8)
    a = torch.cat(alpha, -1)
    directions = torch.sum(torch.matmul(torch.diag_embed(a), q.T), dim=1)   # sum_i a_i q_i
    exp_feature = None
    if len(alpha) == 3:
        n = alpha[2].shape[1]
        exp_feature = torch.sum(torch.matmul(torch.diag_embed(alpha[2]), q[:, -n:].T), dim=1)
    return decode(model, wa + directions, feats, exp_feature)


@torch.no_grad()
def edtalk_v_video(model: EDTalk, source: torch.Tensor, mouth: torch.Tensor, pose: torch.Tensor,
                   exp: torch.Tensor | None) -> torch.Tensor:
    """Frame by frame, recomputing everything per frame; (T,3,H,W) each, source (1,3,H,W)."""
    frames = [edtalk_v_frame(model, source, mouth[t:t + 1], pose[t:t + 1],
                             None if exp is None else exp[t:t + 1]) for t in range(mouth.shape[0])]
    return torch.cat(frames)
