"""LPIPS (Zhang et al. 2018) between generated and ground-truth frames; lower is better.

The maths is the ``lpips`` package's (0.1.4): its linear calibration layers ship inside
the wheel, but the ImageNet backbone (AlexNet by default) is a torchvision file that
torchvision would download. Here nothing downloads: the backbone is built empty and
filled from the local file, looked up in the weight folders of ``edtalk.weights``
(``$EDTALK_WEIGHTS``, then torch hub's ``checkpoints``). Without the file,
``lpips_available()`` says which file is missing and where it was looked for, and
``lpips()`` raises MissingWeights with the same message.

Frames are paired by the shared ``linspace`` rule (``metrics.align``) and the score is
the mean over pairs (RGB scaled to [-1, 1], the package's convention).
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edtalk.weights import MissingWeights, search_dirs
from metrics.align import pair_indices

HIGHER_IS_BETTER = {"lpips": False}
# torchvision's file name for each backbone the lpips package offers.
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                  "squeeze": "squeezenet1_1-b8a52dc0.pth"}

_LOCK = threading.Lock()
_CACHE: dict[tuple, Any] = {}


def _backbone_file(net: str, weights_dir: str | os.PathLike | None) -> Path:
    if net not in BACKBONE_FILES:
        raise ValueError(f"unknown LPIPS backbone {net!r}; choose one of {sorted(BACKBONE_FILES)}")
    name = BACKBONE_FILES[net]
    dirs = search_dirs(weights_dir)
    for d in dirs:
        if (d / name).is_file():
            return d / name
    raise MissingWeights(f"LPIPS needs the torchvision {net} backbone file {name} in one of "
                         f"{', '.join(str(d) for d in dirs)} (not downloaded here); LPIPS not computed")


def lpips_available(net: str = "alex", weights_dir: str | os.PathLike | None = None) -> tuple[bool, str]:
    """(True, backend label) when the package and the backbone file are present, else
    (False, reason naming what is missing)."""
    try:
        import lpips  # noqa: F401
    except ImportError:
        return False, "the lpips package is not installed (pip install lpips==0.1.4)"
    try:
        path = _backbone_file(net, weights_dir)
    except MissingWeights as exc:
        return False, str(exc)
    return True, f"lpips-0.1.4:{net}({path.name})"


def load_model(net: str = "alex", weights_dir: str | os.PathLike | None = None,
               device: str | None = None) -> Any:
    """The lpips.LPIPS module with its backbone filled from the local file (eval mode)."""
    import lpips as lp
    import torch
    import torchvision

    from edtalk.weights import load_state_dict

    path = _backbone_file(net, weights_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (net, str(path.resolve()), device)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        # pnet_rand: the package builds the torchvision trunk without weights (no download);
        # it still passes torchvision's deprecated ``pretrained=`` argument, hence the filter.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = lp.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        build = {"alex": torchvision.models.alexnet, "vgg": torchvision.models.vgg16,
                 "squeeze": torchvision.models.squeezenet1_1}[net]
        trunk = build(weights=None)
        trunk.load_state_dict(load_state_dict(path))
        # The package's slices hold the trunk's feature layers under their indices.
        for child in model.net.children():
            for name, layer in child.named_children():
                layer.load_state_dict(trunk.features[int(name)].state_dict())
        model = model.eval().to(device)
        _CACHE[key] = model
        return model


def lpips(pred_frames: np.ndarray, gt_frames: np.ndarray, *, net: str = "alex",
          weights_dir: str | os.PathLike | None = None, batch_size: int = 16,
          device: str | None = None) -> tuple[float, str]:
    """Mean LPIPS over the paired frames of two uint8 RGB videos (T, H, W, 3), and the
    backend label. MissingWeights (naming the file) when the backbone is absent."""
    import torch

    pred, gt = np.asarray(pred_frames), np.asarray(gt_frames)
    for what, v in (("pred_frames", pred), ("gt_frames", gt)):
        if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3 or len(v) == 0:
            raise ValueError(f"{what} must be uint8 RGB (T, H, W, 3), got {v.dtype} {v.shape}")
    if pred.shape[1:] != gt.shape[1:]:
        raise ValueError(f"frame sizes differ: pred {pred.shape[1:3]}, gt {gt.shape[1:3]}")
    ok, label = lpips_available(net, weights_dir)
    if not ok:
        raise MissingWeights(label)
    model = load_model(net, weights_dir, device)
    dev = next(model.parameters()).device
    gi, pi = pair_indices(len(gt), len(pred))
    total = 0.0
    with torch.inference_mode():
        for s in range(0, len(gi), batch_size):
            def to_tensor(v: np.ndarray) -> torch.Tensor:
                x = torch.from_numpy(np.ascontiguousarray(v)).to(dev).permute(0, 3, 1, 2).float()
                return x / 127.5 - 1.0
            d = model(to_tensor(pred[pi[s:s + batch_size]]), to_tensor(gt[gi[s:s + batch_size]]))
            total += float(d.sum())
    return total / len(gi), label
