"""Registry of the external networks the project can use, and how to find their files.

Each entry names the file, its sha256 when known (a torch-hub style file name carries
the first hex digits of its sha256; that prefix is checked when the full hash is not
known), and where a user gets it. Nothing here downloads at import time.

Lookup order for ``locate(name)``: an explicit ``cache_dir`` argument, then the
directory in ``$EDTALK_WEIGHTS``, then torch hub's checkpoint directory
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``).

>>> REGISTRY["syncnet_v2"].filename
'syncnet_v2.model'
"""

from __future__ import annotations

import os
import pickle
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from edtalk.data.resume import file_sha256

ENV_VAR = "EDTALK_WEIGHTS"


class MissingWeights(FileNotFoundError):
    """A registered weight file is not in any searched directory (one-line message)."""


class MissingModel(FileNotFoundError):
    """A model file the pipeline writes is not there; the message names the stage."""


class UnsafeCheckpoint(ValueError):
    """A checkpoint that ``torch.load(weights_only=True)`` refuses (needs arbitrary pickle)."""


@dataclass(frozen=True)
class WeightSpec:
    """One external network's file: name, integrity data, and how to obtain it."""

    name: str
    filename: str
    description: str
    url: str | None = None
    instructions: str = ""
    sha256: str | None = None
    sha256_prefix: str | None = None  # from torch-hub style names, e.g. '6726825d'
    is_dir: bool = False


def _spec(*args, **kw) -> tuple[str, WeightSpec]:
    spec = WeightSpec(*args, **kw)
    return spec.name, spec


REGISTRY: dict[str, WeightSpec] = dict([
    _spec("syncnet_v2", "syncnet_v2.model", "SyncNet v2 (syncnet_python) for LSE-C/LSE-D",
          url="http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
          instructions="syncnet_python's download_model.sh fetches it"),
    _spec("inception_fid", "pt_inception-2015-12-05-6726825d.pth",
          "pytorch-fid InceptionV3 (TF-ported FID weights)",
          url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
              "pt_inception-2015-12-05-6726825d.pth",
          sha256_prefix="6726825d"),
    _spec("emotion_fan", "emotion_fan_mead8.pth",
          "Emotion-FAN (ResNet-18 + frame attention) fine-tuned on the 8 MEAD classes",
          instructions="no canonical release: fine-tune Emotion-FAN (github.com/Open-Debin/"
                       "Emotion-FAN) on MEAD's 8 classes and save its state_dict under this name"),
    _spec("fan_2d", "2DFAN4-11f355bf06.pth.tar", "face-alignment 2D 68-point landmark network",
          url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
          instructions="TorchScript archive used by the face-alignment package"),
    _spec("s3fd", "s3fd-619a316812.pth", "face-alignment's S3FD face detector",
          url="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"),
    _spec("vgg19", "vgg19-dcbb9e9d.pth", "torchvision VGG19 (ImageNet) for the perceptual loss",
          url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", sha256_prefix="dcbb9e9d"),
    _spec("hubert_base", "hubert_fairseq_base_ls960.pth", "HuBERT base (LibriSpeech 960 h)",
          url="https://download.pytorch.org/torchaudio/models/hubert_fairseq_base_ls960.pth",
          instructions="torchaudio.pipelines.HUBERT_BASE uses this file"),
    _spec("emoberta", "emoberta-base", "EmoBERTa base (text emotion encoder), a model folder",
          instructions="save huggingface.co/tae898/emoberta-base (config, tokenizer, weights) "
                       "into a folder with this name", is_dir=True),
    _spec("edtalk", "EDTalk.pt", "EDTalk's released full checkpoint",
          instructions="from the EDTalk repository's README (ckpts download links)"),
    _spec("edtalk_lip_pose", "EDTalk_lip_pose.pt", "EDTalk's released mouth+pose checkpoint",
          instructions="from the EDTalk repository's README (ckpts download links)"),
    _spec("audio2lip", "Audio2Lip.pt", "EDTalk's released audio-to-mouth checkpoint",
          instructions="from the EDTalk repository's README (ckpts download links)"),
])


def torch_hub_checkpoints() -> Path:
    """torch hub's checkpoint directory ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs(cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched, in order: ``cache_dir``, ``$EDTALK_WEIGHTS``, torch hub."""
    dirs: list[Path] = []
    if cache_dir is not None:
        dirs.append(Path(cache_dir))
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]))
    dirs.append(torch_hub_checkpoints())
    return dirs


def get(name: str) -> WeightSpec:
    """The registry entry for ``name``; ValueError listing the known names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def locate(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the weight file ``name``; ``MissingWeights`` (one line) when absent.

    >>> try:
    ...     locate("syncnet_v2", cache_dir="/nonexistent")
    ... except MissingWeights as e:
    ...     print(str(e).split(":")[0])
    missing weights syncnet_v2.model (SyncNet v2 (syncnet_python) for LSE-C/LSE-D)
    """
    spec = get(name)
    dirs = search_dirs(cache_dir)
    for d in dirs:
        p = d / spec.filename
        if (p.is_dir() if spec.is_dir else p.is_file()):
            return p
    how = f"get it from {spec.url}" if spec.url else spec.instructions
    if spec.url and spec.instructions:
        how += f" ({spec.instructions})"
    where = f"${ENV_VAR} or " if not os.environ.get(ENV_VAR) else ""
    raise MissingWeights(
        f"missing weights {spec.filename} ({spec.description}): put it in {where}"
        f"one of {', '.join(str(d) for d in dirs)}; {how}")


def is_available(name: str, cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``locate(name, cache_dir)`` would succeed."""
    try:
        locate(name, cache_dir)
    except MissingWeights:
        return False
    return True


def verify(name: str, path: str | os.PathLike) -> None:
    """ValueError when the file's sha256 contradicts the registry (full hash or prefix)."""
    spec = get(name)
    if spec.is_dir or (spec.sha256 is None and spec.sha256_prefix is None):
        return
    digest = file_sha256(path)
    want = spec.sha256 or spec.sha256_prefix
    if not digest.startswith(want):
        raise ValueError(f"{path}: sha256 {digest[:16]}... does not match {spec.filename} ({want})")


def download(name: str, dest: str | os.PathLike | None = None) -> Path:
    """Fetch ``name`` into ``dest`` (default ``$EDTALK_WEIGHTS`` or torch hub) and verify it.

    Only for online users; never called implicitly. Raises ValueError when the entry
    has no direct URL (its instructions say how to get it).
    """
    spec = get(name)
    if not spec.url:
        raise ValueError(f"{spec.filename} has no direct download: {spec.instructions}")
    dest_dir = Path(dest) if dest else search_dirs()[0]
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / spec.filename
    tmp = target.with_name(f".{target.name}.download")
    urllib.request.urlretrieve(spec.url, tmp)  # noqa: S310 - explicit user action
    try:
        verify(name, tmp)
    except ValueError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    return target


def load_state_dict(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Mapping:
    """``torch.load(path, weights_only=True)``; UnsafeCheckpoint when the pickle needs more.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "w.pt"); torch.save({"a": torch.zeros(2)}, f)
    >>> load_state_dict(f)["a"].tolist()
    [0.0, 0.0]
    """
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
        if isinstance(exc, RuntimeError) and "weights_only" not in str(exc).lower() \
                and "unpickl" not in str(exc).lower():
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpoint(
            f"{path} needs more than tensors to unpickle (refused: weights_only=True only; "
            f"re-save it as a plain state_dict): {first}") from exc
    if not isinstance(obj, Mapping):
        raise UnsafeCheckpoint(f"{path} holds a {type(obj).__name__}, not a state_dict mapping")
    return obj
