"""The fault and bad-input battery (issue 13 §3): bad files, kills, a full disk, a dead
Prefect server and untrusted files. Every outcome is a finished output or a quarantine
row with a reason; nothing crashes, nothing good is lost, nothing half-written stays.

Slow: it runs the real ingest -> crop -> features flows on real-face clips with dlib,
and `dvc repro` in a temporary git repo. ``BATTERY_REPORT=path.json`` writes the
figures (the README table is made from them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from edtalk.data import quarantine
from edtalk.data.sources.folder import FolderSource
from tests.pipeline_params import tiny_params

pytestmark = pytest.mark.slow

REPORT: dict[str, Any] = {}


def _report(key: str, value: Any) -> None:
    """Keep a figure for the README table; written out when BATTERY_REPORT is set."""
    REPORT[key] = value
    if target := os.environ.get("BATTERY_REPORT"):
        Path(target).write_text(json.dumps(REPORT, indent=2, sort_keys=True, ensure_ascii=False))


def _folder_params(root: Path) -> dict[str, Any]:
    params = tiny_params()
    params["data"].update(source="folder", require_audio=True, min_seconds=1.0,
                          split={"val": 0, "test": 0})
    params["data"]["folder"] = {"root": str(root)}
    params["crop"].update(detector="dlib", detect_every=2, size=64)
    params["features"]["landmarks"] = "auto"
    params["runner"] = {"kind": "threads", "workers": 2}
    return params


def _run_data_stages(params: dict[str, Any], work: Path) -> None:
    from pipeline.common import make_task_runner
    from pipeline.crop import crop
    from pipeline.features import features
    from pipeline.ingest import ingest

    runner = lambda: make_task_runner(params["runner"])  # noqa: E731 (one runner per flow)
    ingest.with_options(task_runner=runner())(params, str(work / "ingest"))
    crop.with_options(task_runner=runner())(params, str(work / "ingest"), str(work / "crop"))
    features.with_options(task_runner=runner())(params, str(work / "crop"), str(work / "ingest"),
                                                str(work / "features"))


def _outcomes(root: Path, work: Path) -> dict[str, tuple[str, str, str]]:
    """{input path: (outcome, stage, detail)}: "ok" when it reached the features table."""
    ids = {spec.clip_id: spec.origin["path"] for spec in FolderSource(root).list_clips()}
    kept = set(pq.read_table(work / "features" / "clips.parquet").to_pandas()["clip_id"])
    rejected = pd.concat([quarantine.read(work / stage / "quarantine.parquet")
                          for stage in ("ingest", "crop", "features")], ignore_index=True)
    out: dict[str, tuple[str, str, str]] = {}
    for clip_id, rel in ids.items():
        rows = rejected[rejected["clip_id"] == clip_id]
        if clip_id in kept:
            out[rel] = ("ok", "features", "")
        elif len(rows) == 1:
            row = rows.iloc[0]
            out[rel] = (row["reason"], row["stage"], row["detail"])
        else:
            out[rel] = ("lost", "", f"{len(rows)} quarantine rows")
    return out


def test_bad_inputs_are_processed_or_quarantined_and_good_clips_come_through(
        tmp_path: Path, prefect_harness: None) -> None:
    from battery_media import build_inputs

    root, work = tmp_path / "videos", tmp_path / "work"
    expected = build_inputs(root)
    _run_data_stages(_folder_params(root), work)  # a crash fails the test here

    got = _outcomes(root, work)
    _report("bad_inputs", {rel: {"expected": expected[rel], "outcome": o, "stage": s, "detail": d}
                           for rel, (o, s, d) in sorted(got.items())})
    assert set(got) == set(expected), "every input file is listed"
    assert {rel: o for rel, (o, _, _) in got.items()} == expected
    for rel, (outcome, _, detail) in got.items():
        assert outcome == "ok" or detail, f"{rel}: a quarantine row says why"
    # The survivors are complete: crops, features and frames of every one of them.
    frames = pq.read_table(work / "features" / "frames.parquet").to_pandas()
    kept_ids = set(pq.read_table(work / "features" / "clips.parquet").to_pandas()["clip_id"])
    assert set(frames["clip_id"]) == kept_ids
    assert frames.groupby("clip_id")["landmarks_valid"].mean().min() > 0.5
    # No temporary file survives anywhere in the outputs.
    partials = [p for p in work.rglob("*") if ".part-" in p.name]
    assert partials == []


# --- a full disk -----------------------------------------------------------------------

@pytest.fixture()
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs mounted inside ``tmp_path`` (needs root and mount permission)."""
    import subprocess

    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _noise_clip(path: Path, seed: int) -> Path:
    """About 0.9 MB of incompressible video: a few of these fill the small disk."""
    import numpy as np

    from edtalk.data import media
    from media_fixtures import tone

    frames = np.random.default_rng(seed).integers(0, 256, (30, 160, 160, 3), dtype=np.uint8)
    media.write_video(path, frames, audio=tone(1.2))
    return path


def test_disk_full_fails_clearly_and_leaves_no_partial_file(
        tmp_path: Path, small_disk: Path, prefect_harness: None) -> None:
    from edtalk.data import atomic, media
    from pipeline.ingest import ingest

    root = tmp_path / "videos"
    sources = [_noise_clip(root / f"spk{i}" / "take.mp4", seed=i) for i in range(6)]
    assert sum(p.stat().st_size for p in sources) > 2 * 2**20  # more than the disk holds

    # The stage: a clear failure, not a quarantine of good clips as "corrupt".
    out = small_disk / "ingest"
    with pytest.raises(atomic.DiskFull, match="no space left to write") as caught:
        ingest(_folder_params(root), str(out))
    message = str(caught.value)
    assert "MiB free" in message and str(out / "clips") in message
    written = sorted((out / "clips").iterdir()) if (out / "clips").exists() else []
    assert [p.name for p in written if atomic.PARTIAL_MARK in p.name] == []
    by_name = {f"folder_spk{i}_take.mp4": p for i, p in enumerate(sources)}
    for path in written:  # whatever did get written is complete
        assert path.read_bytes() == by_name[path.name].read_bytes(), path.name
    assert not (out / "quarantine.parquet").exists()

    # The encoder (crop, generate, ...): FFmpeg's own ENOSPC becomes the same error.
    import numpy as np

    big = np.random.default_rng(9).integers(0, 256, (120, 256, 256, 3), dtype=np.uint8)
    target = small_disk / "crop.mp4"
    with pytest.raises(atomic.DiskFull, match="crop.mp4"):
        media.write_video(target, big)
    assert not target.exists()
    assert [p.name for p in small_disk.iterdir() if atomic.PARTIAL_MARK in p.name] == []
    _report("disk_full", {"stage_error": message.split(";")[0], "partial_files_left": 0,
                          "complete_clips_kept": len(written)})


# --- Prefect server down ---------------------------------------------------------------

def test_prefect_server_down_is_a_quick_clear_error(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import time

    import yaml

    from tests.pipeline_params import ROOT

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params()))
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_HOME": str(tmp_path / "prefect-home")}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipeline.ingest", "--params", str(params),
                           "--out-dir", str(tmp_path / "ingest")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - start
    assert done.returncode != 0
    assert f"127.0.0.1:{port}" in done.stderr and "reach" in done.stderr.lower(), done.stderr[-2000:]
    assert elapsed < 120
    _report("prefect_down", {"seconds_to_error": round(elapsed, 1),
                             "error": done.stderr.strip().splitlines()[-1]})


# --- untrusted files -------------------------------------------------------------------

class _Payload:
    """Unpickling this runs code: it would create the file it names."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_checkpoint_that_needs_code_is_refused(tmp_path: Path) -> None:
    import torch

    from edtalk.weights import UnsafeCheckpoint, load_state_dict

    marker = tmp_path / "code-ran"
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpoint, match="weights_only"):
        load_state_dict(path)
    assert not marker.exists()  # refused before anything ran
    # Every torch.load in the package is weights-only.
    from tests.pipeline_params import ROOT

    unsafe = [f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "edtalk").rglob("*.py")
              for n, line in enumerate(p.read_text().splitlines(), 1)
              if "torch.load(" in line and "weights_only=True" not in line
              and not line.lstrip().startswith(("#", ">>>"))]
    assert unsafe == []


def _hostile_mead_tar(path: Path, clip: Path) -> list[str]:
    """An actor archive: one genuine clip plus an entry of each escaping kind."""
    import io
    import tarfile

    names = []
    with tarfile.open(path, "w") as tf:
        tf.add(clip, arcname="video/front/angry/level_1/001.mp4")
        for name, kind, link in (("video/../../evil_dotdot.txt", tarfile.REGTYPE, ""),
                                 (f"/tmp/evil_absolute_{path.parent.parent.name}.txt",
                                  tarfile.REGTYPE, ""),
                                 ("video/escape", tarfile.SYMTYPE, "../../../../etc"),
                                 ("video/passwd", tarfile.LNKTYPE, "/etc/passwd")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            payload = b"owned\n" if kind == tarfile.REGTYPE else b""
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload else None)
            names.append(name)
    return names


def test_hostile_mead_archive_is_refused_entry_by_entry(tmp_path: Path) -> None:
    from edtalk.data.quarantine import ClipRejected, Reason
    from edtalk.data.sources.mead import MeadSource
    from media_fixtures import make_clip

    root = tmp_path / "mead"
    root.mkdir()
    clip = make_clip(tmp_path / "clip.mp4", seconds=1.2)
    hostile = _hostile_mead_tar(root / "M001.tar", clip)
    good = root / "M002" / "video" / "front" / "happy" / "level_2"
    good.mkdir(parents=True)
    (good / "003.mp4").write_bytes(clip.read_bytes())

    before = {p for p in tmp_path.parent.rglob("*evil*")}
    source = MeadSource(root, work_dir=tmp_path / "work")
    outcome: dict[str, str] = {}
    for spec in source.list_clips():
        try:
            source.materialise(spec, tmp_path / "clips")
            outcome[spec.clip_id] = "ok"
        except ClipRejected as error:
            assert error.reason is Reason.UNSAFE_ARCHIVE
            for name in hostile:  # every hostile entry is named, not just the first
                assert repr(name) in error.detail, (name, error.detail)
            outcome[spec.clip_id] = error.reason.value
    assert outcome == {"mead_M001_angry_l1_001": "unsafe_archive", "mead_M002_happy_l2_003": "ok"}
    assert {p for p in tmp_path.parent.rglob("*evil*")} == before
    assert not Path(f"/tmp/evil_absolute_{tmp_path.name}.txt").exists()
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").rglob("*"))
    _report("mead_archive", {"hostile_entries": len(hostile), "refused": True,
                             "good_actor_ok": outcome["mead_M002_happy_l2_003"] == "ok"})


def test_hdtf_list_with_foreign_urls_is_refused_per_clip(tmp_path: Path) -> None:
    from edtalk.data.quarantine import ClipRejected, Reason
    from edtalk.data.sources.hdtf import HdtfSource
    from edtalk.data.sources.url_policy import url_problem

    urls = {"Good0": "https://www.youtube.com/watch?v=abcdefghijk",
            "Short0": "https://youtu.be/abcdefghijk",
            "Local0": "file:///etc/passwd",
            "Other0": "https://evil.example/video.mp4",
            "Lookalike0": "https://youtube.com.evil.example/watch?v=x",
            "Creds0": "https://user:pw@www.youtube.com/watch?v=x",
            "Ftp0": "ftp://youtube.com/v.mp4"}
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "WRA_video_url.txt").write_text("".join(f"{n} {u}\n" for n, u in urls.items()))
    (lists / "WRA_annotion_time.txt").write_text("".join(f"{n}.mp4 00:00-00:02\n" for n in urls))
    source = HdtfSource(lists, download_dir=tmp_path / "downloads", retries=0)
    refused = {}
    for spec in source.list_clips():
        if url_problem(spec.origin["url"], source.allowed_hosts) is None:
            continue  # allowed: would be downloaded (no network in tests)
        with pytest.raises(ClipRejected) as caught:
            source.materialise(spec, tmp_path / "clips")
        assert caught.value.reason is Reason.REFUSED_URL
        refused[spec.origin["video"]] = caught.value.detail
    assert set(refused) == set(urls) - {"Good0", "Short0"}
    assert "file" in refused["Local0"] and "evil.example" in refused["Other0"]
    assert not (tmp_path / "downloads").exists() or not any((tmp_path / "downloads").iterdir())
    _report("hdtf_urls", {name: detail.split(": ", 1)[1] for name, detail in sorted(refused.items())})


# --- kill -9 of dvc repro ----------------------------------------------------------------

KILL_STAGES = ("ingest", "crop", "features", "train@autoencoder")
SMALL_MODEL = dict(size=32, latent_dim=32, channel_base=8, channel_max=16, eem_hidden=8,
                   n_mouth=4, n_pose=2, n_exp=3, trunk_layers=2, head_layers=2)


def _kill_params() -> dict[str, Any]:
    params = tiny_params()
    params["data"]["synthetic"].update(identities=6)
    params["data"]["split"] = {"val": 1, "test": 1}
    params["train"].update(val_frames=4, checkpoint_every=1)
    params["train"]["perceptual"].update(network="image_gradients", scales=2)
    params["train"]["autoencoder"].update(steps=8, batch=2, checkpoint_every=1,
                                          model_overrides=SMALL_MODEL)
    return params


def _dvc_repo(path: Path, params: dict[str, Any], prefect_url: str) -> dict[str, str]:
    """A git + dvc repo holding the project's code and ``params``; returns the env to run in."""
    import shutil
    import subprocess
    import sys

    import yaml

    from tests.pipeline_params import ROOT

    path.mkdir()
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, path / name)
    for package in ("edtalk", "pipeline", "pretrained"):
        shutil.copytree(ROOT / package, path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    (path / ".gitignore").write_text("/data/\n/models/\n/dvclive/\n.prefect/\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_API_URL": prefect_url, "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=path, env=env, check=True, capture_output=True)
    return env


def _weights(path: Path) -> dict[str, Any]:
    import torch

    from edtalk.weights import load_state_dict

    state = load_state_dict(path)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} or dict(state)


def _progress(repo: Path, stage: str) -> int:
    """Clips stamped (data stages) or the newest checkpoint's step (training) at the kill."""
    from tests.kill9 import newest_step

    if stage.startswith("train"):
        return newest_step(repo / "models" / "train_autoencoder" / "checkpoints")
    folder = repo / "data" / stage / ".stamps"
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def test_kill9_of_dvc_repro_inside_each_stage_then_rerun_equals_a_clean_run(
        tmp_path: Path, prefect_server: str) -> None:
    import random

    import torch

    from battery_kill import repro_and_kill, timed_repro, tree_digest
    from tests.kill9 import newest_step

    target = "train@autoencoder"
    params = _kill_params()
    clean_env = _dvc_repo(tmp_path / "clean", params, prefect_server)
    durations = timed_repro(tmp_path / "clean", clean_env, target)
    assert set(KILL_STAGES) <= set(durations), durations

    # The crashed repo: one kill inside each stage, at a random point of its clean duration.
    seed = int(os.environ.get("BATTERY_SEED", "13"))
    rng = random.Random(seed)
    env = _dvc_repo(tmp_path / "crashed", params, prefect_server)
    kills = []
    ckpt = tmp_path / "crashed" / "models" / "train_autoencoder" / "checkpoints"
    clips = params["data"]["synthetic"]["identities"]
    for stage in KILL_STAGES:
        # A stage's wall time is mostly start-up (Python, Prefect), so a random time would
        # rarely land mid-work: kill after a random number of clips or optimiser steps.
        if stage.startswith("train"):
            step = rng.randint(1, params["train"]["autoencoder"]["steps"] - 2)
            when = lambda: newest_step(ckpt) >= step  # noqa: E731
        else:
            step = rng.randint(1, clips - 1)
            when = lambda: _progress(tmp_path / "crashed", stage) >= step  # noqa: E731
        kill = repro_and_kill(tmp_path / "crashed", env, target, stage, 0.0, when=when)
        assert not kill.finished_before_kill, kill
        assert kill.stage_running == stage, kill
        kills.append({"stage": stage, "after_s": round(kill.after_s, 2), "kill_at": step,
                      "clean_stage_s": round(durations[stage], 2),
                      "done_at_kill": _progress(tmp_path / "crashed", stage)})
    rerun = timed_repro(tmp_path / "crashed", env, target)
    assert "train@autoencoder" in rerun

    skip = (".stamps", "checkpoints")  # resume bookkeeping, not outputs
    clean = tree_digest(tmp_path / "clean" / "data", skip)
    crashed = tree_digest(tmp_path / "crashed" / "data", skip)
    assert sorted(crashed) == sorted(clean)
    differing = [rel for rel in clean if clean[rel] != crashed[rel]]
    assert differing == [], differing
    model = "models/train_autoencoder/model.pt"
    a, b = _weights(tmp_path / "clean" / model), _weights(tmp_path / "crashed" / model)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
    kills.append(_kill_evaluate(tmp_path, tmp_path / "crashed", env, rng))
    _report("kills", {"seed": seed, "points": kills, "data_files_compared": len(clean),
                      "byte_equal": True, "weights_equal": True,
                      "rerun_stages": sorted(rerun)})


def _kill_evaluate(tmp_path: Path, repo: Path, env: dict[str, str], rng: Any) -> dict[str, Any]:
    """The evaluate flow, killed directly (a dvc-level run would need generate and the
    experts first): killed at a random point, re-run, equal to an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from battery_kill import tree_digest
    from tests.pipeline_params import ROOT

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["landmarks"] = "dlib68"  # no trained evaluators in this tiny run
    (tmp_path / "eval_params.yaml").write_text(yaml.safe_dump(params))

    def command(name: str) -> list[str]:
        return [sys.executable, "-m", "pipeline.evaluate", "--params",
                str(tmp_path / "eval_params.yaml"), "--features-dir", str(repo / "data/features"),
                "--crop-dir", str(repo / "data/crop"), "--models-dir", str(tmp_path / "no-models"),
                "--generate-dir", str(tmp_path / "no-generate"),
                "--work-dir", str(tmp_path / name / "work"), "--out-dir", str(tmp_path / name / "out")]

    start = time.monotonic()
    subprocess.run(command("eval_clean"), cwd=ROOT, env=env, check=True, capture_output=True)
    duration = time.monotonic() - start
    delay = rng.uniform(0.2, 0.9) * duration
    proc = subprocess.Popen(command("eval_crashed"), cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    assert proc.poll() is None, "evaluate finished before the kill point"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(command("eval_crashed"), cwd=ROOT, env=env, check=True, capture_output=True)

    def outputs(name: str) -> dict[str, Any]:
        files = tree_digest(tmp_path / name)
        for rel in [r for r in files if r.endswith(".json")]:
            record = json.loads(files[rel])
            for timing in ("seconds", "peak_rss_mib"):  # wall time and memory, not results
                record.pop(timing, None)
            files[rel] = record
        return files

    clean, crashed = outputs("eval_clean"), outputs("eval_crashed")
    assert sorted(crashed) == sorted(clean)
    assert [rel for rel in clean if clean[rel] != crashed[rel]] == []
    return {"stage": "evaluate (flow)", "after_s": round(delay, 2),
            "clean_stage_s": round(duration, 2), "done_at_kill": None}


def test_frozen_prefect_server_is_a_bounded_clear_error(tmp_path: Path) -> None:
    """A server that accepts connections but never answers (frozen, overloaded)."""
    import socket
    import subprocess
    import sys

    import yaml

    from tests.pipeline_params import ROOT

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params()))
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # the kernel completes handshakes; nobody ever reads
        url = f"http://127.0.0.1:{server.getsockname()[1]}/api"
        env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(tmp_path / "home")}
        try:
            done = subprocess.run([sys.executable, "-m", "pipeline.ingest", "--params", str(params),
                                   "--out-dir", str(tmp_path / "ingest")], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail("the flow was still waiting for the frozen server after 90 s")
    assert done.returncode != 0 and url.split("/api")[0] in done.stderr
