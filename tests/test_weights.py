"""External-weights registry: lookup order, one-line missing message, safe loading."""

from __future__ import annotations

import collections

import pytest
import torch

from edtalk import weights


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights.ENV_VAR, raising=False)


def test_every_network_of_the_brief_is_registered():
    files = {s.filename for s in weights.REGISTRY.values()}
    for f in ("syncnet_v2.model", "pt_inception-2015-12-05-6726825d.pth", "vgg19-dcbb9e9d.pth",
              "s3fd-619a316812.pth", "EDTalk.pt", "EDTalk_lip_pose.pt", "Audio2Lip.pt"):
        assert f in files
    assert all(s.sha256 is None or len(s.sha256) == 64 for s in weights.REGISTRY.values())


def test_missing_file_is_one_clear_line(tmp_path):
    with pytest.raises(weights.MissingWeights) as e:
        weights.locate("syncnet_v2", cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert "\n" not in msg
    assert "syncnet_v2.model" in msg and str(tmp_path / "cache") in msg
    assert "EDTALK_WEIGHTS" in msg and "robots.ox.ac.uk" in msg


def test_lookup_order_cache_then_env_then_torch_hub(tmp_path, monkeypatch):
    hub = weights.torch_hub_checkpoints()
    hub.mkdir(parents=True)
    (hub / "syncnet_v2.model").write_bytes(b"x")
    assert weights.locate("syncnet_v2") == hub / "syncnet_v2.model"
    env = tmp_path / "env"
    env.mkdir()
    (env / "syncnet_v2.model").write_bytes(b"x")
    monkeypatch.setenv(weights.ENV_VAR, str(env))
    assert weights.locate("syncnet_v2") == env / "syncnet_v2.model"
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "syncnet_v2.model").write_bytes(b"x")
    assert weights.locate("syncnet_v2", cache) == cache / "syncnet_v2.model"


def test_unknown_name_and_prefix_check(tmp_path):
    with pytest.raises(ValueError, match="known:"):
        weights.locate("nope")
    f = tmp_path / "vgg19-dcbb9e9d.pth"
    f.write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="does not match"):
        weights.verify("vgg19", f)


def test_load_state_dict_is_weights_only(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(collections.OrderedDict(a=torch.ones(2)), good)
    assert weights.load_state_dict(good)["a"].tolist() == [1.0, 1.0]
    bad = tmp_path / "bad.pt"
    torch.save({"obj": collections.Counter(a=1), "fn": weights.WeightSpec}, bad)
    with pytest.raises(weights.UnsafeCheckpoint, match="weights_only=True"):
        weights.load_state_dict(bad)
    tensor_only = tmp_path / "t.pt"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(weights.UnsafeCheckpoint, match="not a state_dict"):
        weights.load_state_dict(tensor_only)


def test_download_without_url_explains():
    with pytest.raises(ValueError, match="no direct download"):
        weights.download("edtalk")
