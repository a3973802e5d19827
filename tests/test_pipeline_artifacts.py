"""pipeline/artifacts.py: each flow's summary as a Prefect artifact under a stable key."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.artifacts import artifact_key, dvclive_history, flatten, loss_rows, quarantine_markdown
from tests.pipeline_params import tiny_params


def _versions(key: str) -> list:
    """Every artifact stored under ``key``, newest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                     sort=ArtifactSort.CREATED_DESC)


def test_keys_are_what_prefect_accepts_and_one_per_stage_and_kind():
    keys = {artifact_key(s, k) for s in ("ingest", "train_audio2mouth", "Train EDTalk/A")
            for k in ("quarantine", "loss")}
    assert len(keys) == 6
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", k) for k in keys)
    assert artifact_key("train_audio2mouth", "loss") == "edtalk-train-audio2mouth-loss"


def test_dvclive_history_reads_back_what_dvclive_logged_and_rows_are_thinned(tmp_path):
    from dvclive import Live

    live = Live(str(tmp_path / "live"), save_dvc_exp=False, dvcyaml=False)
    logged = {}
    for step in range(0, 1200, 10):                 # 120 rows, more than a table shows
        live.step = step
        live.log_metric("loss/rec", 1.0 / (1 + step))
        if step % 20 == 0:
            live.log_metric("total", 2.0 - step / 1000)
        logged[step] = 1.0 / (1 + step)
        live.next_step()
    live.end()
    history = dvclive_history(tmp_path / "live")
    assert set(history) == {"loss/rec", "total"}
    assert [s for s, _ in history["loss/rec"]] == sorted(logged)
    assert all(v == pytest.approx(logged[s]) for s, v in history["loss/rec"])
    rows = loss_rows(history)
    assert len(rows) == 50 and rows[0]["step"] == 0 and rows[-1]["step"] == 1190
    assert all(r["loss/rec"] == pytest.approx(logged[r["step"]], abs=1e-6) for r in rows)
    # a term logged every other step is None where it has no value
    assert {r["total"] is None for r in rows} == {True, False}
    assert dvclive_history(tmp_path / "nothing") == {}
    assert loss_rows({"a": [(1, float("nan")), (2, float("inf")), (3, 0.5)]}) == [
        {"step": 1, "a": None}, {"step": 2, "a": None}, {"step": 3, "a": 0.5}]


def test_quarantine_markdown_counts_reasons_and_escapes_details():
    results = [{"resumed": False, "row": {}}, {"resumed": True, "row": {}},
               {"resumed": False, "quarantine": {"clip_id": "b", "reason": "no_face", "detail": "x|y"}},
               {"resumed": False, "quarantine": {"clip_id": "a", "reason": "no_face", "detail": ""}},
               {"resumed": False, "quarantine": {"clip_id": "c", "reason": "corrupt", "detail": "bad\nhead"}}]
    md = quarantine_markdown("crop", results)
    assert md.startswith("# crop: 2 of 5 clips kept, 3 quarantined")
    assert "| no_face | 2 |" in md and "| corrupt | 1 |" in md
    assert "| resumed from an earlier run | 1 |" in md and "| processed in this run | 4 |" in md
    assert "| b | no_face | x\\|y |" in md and "bad head" in md
    assert md.index("| a | no_face") < md.index("| b | no_face")


def test_flatten_nests_with_dots_and_shortens_long_lists():
    out = dict(flatten({"a": {"b": 1, "c": {"d": 2.5}}, "xs": list(range(20)), "ys": [1, 2]}))
    assert out == {"a.b": 1, "a.c.d": 2.5, "xs": "[20 items]", "ys": [1, 2]}


def test_ingest_publishes_its_quarantine_counts(tmp_path, prefect_harness):
    from pipeline.ingest import ingest

    ingest(tiny_params(data__min_seconds=5.0), str(tmp_path / "short"))   # 1.5 s clips: all too short
    art = _versions(artifact_key("ingest", "quarantine"))[0]
    assert art.type == "markdown" and art.flow_run_id is not None
    assert art.data.startswith("# ingest: 0 of 4 clips kept, 4 quarantined")
    assert "| too_short | 4 |" in art.data


def test_the_stable_key_keeps_every_run_and_shows_the_latest(prefect_harness):
    from prefect import flow

    from pipeline.artifacts import publish_quarantine

    @flow(name="toy_stage")
    def toy_stage(kept: int) -> None:
        publish_quarantine("toy_stage", [{"row": {}}] * kept + [
            {"quarantine": {"clip_id": "x", "reason": "no_face", "detail": ""}}])

    key = artifact_key("toy_stage", "quarantine")
    before = len(_versions(key))
    toy_stage(1)
    toy_stage(2)
    versions = _versions(key)
    assert len(versions) == before + 2
    assert versions[0].data.startswith("# toy_stage: 2 of 3 clips kept")
    assert versions[1].data.startswith("# toy_stage: 1 of 2 clips kept")
    assert versions[0].flow_run_id != versions[1].flow_run_id


def test_a_flow_publishes_its_loss_curve_as_a_table(tmp_path, prefect_harness):
    from dvclive import Live
    from prefect import flow

    from pipeline.artifacts import publish_loss_curve

    live = Live(str(tmp_path / "live"), save_dvc_exp=False, dvcyaml=False)
    for step in range(3):
        live.step = step
        live.log_metric("loss/total", 3.0 - step)
        live.next_step()
    live.end()

    @flow(name="toy_train")
    def toy_train() -> None:
        publish_loss_curve("toy_train", dvclive_history(tmp_path / "live"), "step 3")
        assert publish_loss_curve("toy_train", {}) is None          # nothing logged, nothing shown

    toy_train()
    art = _versions("edtalk-toy-train-loss")[0]
    assert art.type == "table" and "step 3" in art.description
    table = art.data if isinstance(art.data, list) else json.loads(art.data)
    assert table == [{"step": 0, "loss/total": 3.0}, {"step": 1, "loss/total": 2.0},
                     {"step": 2, "loss/total": 1.0}]


def test_a_training_flow_publishes_its_dvclive_losses(tmp_path, prefect_harness, one_thread):
    import pandas as pd

    from pipeline.train_autoencoder import train_autoencoder
    from tests.test_train_data import make_features
    from tests.test_train_loop import SMALL

    features = make_features(tmp_path / "features")
    params = {"base": {"seed": 0, "profile": "tiny"},
              "train": {"perceptual": {"network": "image_gradients", "scales": 2}, "val_frames": 4,
                        "autoencoder": {"steps": 3, "batch": 2, "checkpoint_every": 3,
                                        "model_overrides": SMALL}}}
    train_autoencoder(params, features_dir=str(features), models_dir=str(tmp_path / "models"),
                      live_dir=str(tmp_path / "dvclive"))
    art = _versions("edtalk-train-autoencoder-loss")[0]
    table = art.data if isinstance(art.data, list) else json.loads(art.data)
    assert art.type == "table" and "step 3" in art.description
    # the same numbers as DVCLive's files, read here with pandas
    plots = tmp_path / "dvclive" / "train_autoencoder" / "plots" / "metrics"
    rec = pd.read_csv(plots / "loss" / "rec.tsv", sep="\t")
    assert [r["step"] for r in table] == rec["step"].tolist()
    assert [r["loss/rec"] for r in table] == pytest.approx(rec["rec"].tolist(), rel=1e-5)
    assert {p.relative_to(plots).with_suffix("").as_posix() for p in plots.rglob("*.tsv")} \
        == set(table[0]) - {"step"}
