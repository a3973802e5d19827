"""The ingest -> crop -> features flows end to end on a tiny corpus (in-process Prefect)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from edtalk.data import atomic
from edtalk.data.pixel_cache import PixelCache
from edtalk.data.schema import FRAMES, MANIFEST
from tests.pipeline_params import tiny_params


def _run_chain(params, root):
    from pipeline.common import make_task_runner
    from pipeline.crop import crop
    from pipeline.features import features
    from pipeline.ingest import ingest

    runner = make_task_runner(params["runner"])
    ingest.with_options(task_runner=runner)(params, str(root / "ingest"))
    crop.with_options(task_runner=make_task_runner(params["runner"]))(
        params, str(root / "ingest"), str(root / "crop"))
    features.with_options(task_runner=make_task_runner(params["runner"]))(
        params, str(root / "crop"), str(root / "ingest"), str(root / "features"))


@pytest.fixture(scope="module")
def chain(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("chain")
    _run_chain(tiny_params(), root)
    return root


def test_chain_writes_declared_tables_and_a_pixel_cache_matching_the_crops(chain):
    manifest = pq.read_table(chain / "ingest" / "manifest.parquet")
    assert manifest.schema.equals(MANIFEST)
    frames = pq.read_table(chain / "features" / "frames.parquet")
    assert frames.schema.equals(FRAMES)
    df = frames.to_pandas()
    cache = PixelCache(chain / "features" / "pixels.npy")
    assert len(cache) == len(df) and cache.frame_shape == (32, 32, 3)
    crops = pq.read_table(chain / "crop" / "manifest.parquet").to_pandas()
    assert set(df["clip_id"]) == set(crops["clip_id"]) == set(manifest.to_pandas()["clip_id"])
    assert df.groupby("clip_id").size().to_dict() == dict(zip(crops["clip_id"], crops["frames"]))
    # splits are by identity: no identity in two splits
    assert df.groupby("identity")["split"].nunique().max() == 1
    assert set(df["split"]) == {"train", "val", "test"}
    # landmarks of the synthetic source are exact and inside the crop
    lms = np.stack(df["landmarks"].to_numpy()).reshape(len(df), 68, 2)
    assert df["landmarks_valid"].all() and lms.min() > -2 and lms.max() < 34


def test_rerun_resumes_only_the_missing_clip_and_sweeps_partial_files(chain, capsys):
    from pipeline.ingest import ingest

    params = tiny_params()
    out = chain / "ingest"
    manifest = pd.read_parquet(out / "manifest.parquet")
    victim = manifest["clip_id"].iloc[0]
    others = [out / p for p in manifest["video_path"].iloc[1:]]
    mtimes = [p.stat().st_mtime_ns for p in others]
    # A crash while writing the victim: its outputs and stamp are gone, a partial remains.
    (out / manifest["video_path"].iloc[0]).unlink()
    (out / ".stamps" / f"{victim}.json").unlink()
    partial = out / "clips" / f".{victim}.mp4{atomic.PARTIAL_MARK}abc.mp4"
    partial.write_bytes(b"half")
    capsys.readouterr()
    ingest(params, str(out))
    printed = capsys.readouterr().out
    assert "ingest: 1 clips processed, 3 already done (resumed), 0 quarantined" in printed
    assert [p.stat().st_mtime_ns for p in others] == mtimes
    assert (out / manifest["video_path"].iloc[0]).exists() and not partial.exists()
    assert pd.read_parquet(out / "manifest.parquet").equals(manifest)


def test_bad_clip_is_quarantined_and_the_run_goes_on(tmp_path, prefect_harness, capsys):
    from pipeline.crop import crop

    # A clip whose video has no face: crop must quarantine it, keep the others.
    from pipeline.ingest import ingest

    params = tiny_params()
    params["data"]["synthetic"]["identities"] = 3
    params["data"]["split"] = {"val": 0, "test": 1}
    ingest(params, str(tmp_path / "ingest"))
    manifest = pd.read_parquet(tmp_path / "ingest" / "manifest.parquet")
    victim = manifest.iloc[0]
    from edtalk.data import media

    frames, _ = media.read_frames(tmp_path / "ingest" / victim["video_path"])
    media.write_video(tmp_path / "ingest" / victim["video_path"], np.zeros_like(frames))
    params["crop"]["detector"] = "dlib"  # a real detector sees the blank video has no face
    capsys.readouterr()
    cropped = crop(params, str(tmp_path / "ingest"), str(tmp_path / "crop"))
    printed = capsys.readouterr().out
    q = pd.read_parquet(tmp_path / "crop" / "quarantine.parquet")
    assert victim["clip_id"] in set(q["clip_id"])
    row = q.set_index("clip_id").loc[victim["clip_id"]]
    assert row["stage"] == "crop" and row["reason"] == "no_face"
    assert victim["clip_id"] not in set(cropped["clip_id"])
    assert f"{len(q)} quarantined" in printed


@pytest.mark.slow
def test_dask_task_runner_gives_the_same_outputs_as_threads(tmp_path, prefect_harness):
    threads, dask = tmp_path / "threads", tmp_path / "dask"
    _run_chain(tiny_params(), threads)
    _run_chain(tiny_params(runner__kind="dask"), dask)
    for table in ("ingest/manifest.parquet", "crop/boxes.parquet", "features/frames.parquet"):
        a, b = pd.read_parquet(threads / table), pd.read_parquet(dask / table)
        assert a.drop(columns=["video_path"], errors="ignore").equals(
            b.drop(columns=["video_path"], errors="ignore")), table
    assert np.array_equal(np.load(threads / "features/pixels.npy"), np.load(dask / "features/pixels.npy"))
    assert os.path.getsize(threads / "ingest/groundtruth.parquet") > 0


def test_flow_command_line_takes_every_path_argument_with_the_flow_defaults(tmp_path, monkeypatch,
                                                                            prefect_harness):
    import yaml
    from prefect import flow

    from pipeline.common import main_with_params

    seen = {}

    @flow(name="paths-probe")
    def probe(params: dict, features_dir: str = "data/features", out: str = "reports/x.md") -> None:
        seen.update(seed=params["base"]["seed"], features_dir=features_dir, out=out)

    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"base": {"seed": 3}}))
    monkeypatch.setattr("sys.argv", ["probe", "--params", str(tmp_path / "p.yaml"), "--features-dir", "f"])
    main_with_params(probe, "Probe.")
    assert seen == {"seed": 3, "features_dir": "f", "out": "reports/x.md"}
