"""The shipped-evaluator path end to end on a tiny corpus: the pretrain script makes the same
bytes twice, the stage fine-tunes the file and reports where it came from, and refuses a
file whose record describes another corpus."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from edtalk.train.corpus_record import WrongCorpus
from tests.pipeline_params import tiny_params

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, prefect_harness):
    from tests.test_pipeline_flows import _run_chain

    root = tmp_path_factory.mktemp("pretrained")
    params = tiny_params(crop__size=64)
    params["evaluators"].update(heldout_splits=["test"], sync_shifts=[0, 2])
    params["evaluators"]["syncnet"].update(steps=3, finetune_steps=2)
    params["evaluators"]["emotion"].update(steps=3, landmark_steps=3, head_frames=4, clips_per_batch=2,
                                           finetune_steps=2, finetune_landmark_steps=2)
    _run_chain(params, root)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root, params


def _pretrain(root: Path, evaluator: str, out: Path, *extra: str) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("pretrain_evaluators", ROOT / "scripts" / "pretrain_evaluators.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.main([evaluator, "--params", str(root / "params.yaml"), "--features", str(root / "features"),
                        "--crop", str(root / "crop"), "--work", str(root / f"work-{out.stem}"),
                        "--out", str(out), *extra])


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_pretrained_evaluators_are_reproducible_fine_tuned_and_guarded(corpus, tmp_path):
    from edtalk.experts import syncnet as sync
    from pipeline.train_emotion import train_emotion
    from pipeline.train_syncnet import train_syncnet

    root, params = corpus
    first = _pretrain(root, "syncnet", tmp_path / "sync-a.pt", "--steps", "3")
    again = _pretrain(root, "syncnet", tmp_path / "sync-b.pt", "--steps", "3")
    assert first.read_bytes() == again.read_bytes()                   # the script reproduces its file
    emotion = _pretrain(root, "emotion", tmp_path / "emotion.pt", "--steps", "3", "--landmark-steps", "3")

    params = copy.deepcopy(params)
    params["evaluators"]["syncnet"]["pretrained"] = str(first)
    params["evaluators"]["emotion"]["pretrained"] = str(emotion)
    feats, crop = str(root / "features"), str(root / "crop")
    out = train_syncnet(params, feats, crop, str(tmp_path / "m/syncnet.pt"), str(tmp_path / "r/syncnet.json"),
                        str(tmp_path / "m/ck/syncnet"))
    report = json.loads((tmp_path / "r/syncnet.json").read_text())
    assert report["train"]["pretrained"]["recipe"] == "python scripts/pretrain_evaluators.py syncnet --steps 3"
    assert "corpus" not in report["train"]["pretrained"]
    assert out["train"]["config"]["steps"] == report["train"]["config"]["steps"] == 2
    assert sync.load(tmp_path / "m/syncnet.pt").weights_hash != sync.load(first).weights_hash   # fine-tuned
    train_emotion(params, feats, str(tmp_path / "m/emotion.pt"), str(tmp_path / "r/emotion.json"),
                  str(tmp_path / "m/ck/emotion"))
    report = json.loads((tmp_path / "r/emotion.json").read_text())
    assert report["train"]["pretrained"]["recipe"].endswith("emotion --steps 3 --landmark-steps 3")
    assert report["train"]["config"]["landmark_steps"] == 2 and "accuracy" in report["test"]

    # the same weights with a record of other pictures are refused before any training
    import torch

    obj = torch.load(first, weights_only=True)
    clip = obj["pretrained"]["corpus"]["train_clips"][0]
    obj["pretrained"]["corpus"]["clip_colour"][clip][0] += 5.0
    torch.save(obj, tmp_path / "other.pt")
    params["evaluators"]["syncnet"]["pretrained"] = str(tmp_path / "other.pt")
    with pytest.raises(WrongCorpus, match="evaluators.syncnet.pretrained"):
        train_syncnet(params, feats, crop, str(tmp_path / "x/syncnet.pt"), str(tmp_path / "x/syncnet.json"),
                      str(tmp_path / "x/ck"))
    assert not (tmp_path / "x/syncnet.pt").exists()
