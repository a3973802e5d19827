"""The synthetic corpus: determinism, schema, pixels vs ground truth, audio vs mouth,
emotion in prosody and wording, and factor independence."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from edtalk.data import media
from edtalk.data.schema import EMOTIONS, FPS, GROUNDTRUTH, SAMPLE_RATE, SAMPLES_PER_FRAME
from edtalk.data.synthetic import (MouthTrack, PoseTrack, SyntheticSource, geometry, prosody_for,
                                   render_clip, render_frame, sample_identity, sample_pose_track,
                                   speak, synthesize)
from edtalk.data.synthetic.transcripts import _TEMPLATES, emotion_words

MOUTH_INTERIOR = np.array([45, 15, 20])


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _materialise_all(seed: int, folder: Path, threads: int = 0) -> dict[str, str]:
    src = SyntheticSource(seed=seed, identities=2, clips_per_identity=1, render_size=64)
    specs = src.list_clips()
    if threads:  # ingest runs clips in parallel threads: results must not depend on it
        with ThreadPoolExecutor(threads) as pool:
            written_all = list(pool.map(lambda s: src.materialise(s, folder), specs))
    else:
        written_all = [src.materialise(s, folder) for s in specs]
    for written in written_all:
        assert written.video.exists() and written.audio is not None and written.audio.exists()
    return _digest(folder)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    a = _materialise_all(0, tmp_path / "a")
    b = _materialise_all(0, tmp_path / "b", threads=2)
    assert len(a) == 6 and a == b  # mp4 + wav + gt.parquet per clip, byte-identical
    c = _materialise_all(1, tmp_path / "c")
    assert set(c.values()).isdisjoint(a.values())


def test_tts_is_deterministic_whatever_ran_before() -> None:
    text = "Please put the letter in the second drawer."
    first = synthesize(text, prosody_for("happy", 2))
    synthesize("Something else entirely, loud and fast!", prosody_for("angry", 3), voice="en-us+f2")
    again = synthesize(text, prosody_for("happy", 2))
    assert np.array_equal(first.audio, again.audio) and first.phones == again.phones
    assert len(first.phones) > 10 and first.duration > 1.0


def test_groundtruth_parquet_matches_schema_and_media(tmp_path: Path) -> None:
    src = SyntheticSource(seed=3, identities=1, clips_per_identity=1, render_size=96)
    spec = src.list_clips()[0]
    written = src.materialise(spec, tmp_path)
    table = pq.read_table(tmp_path / f"{spec.clip_id}.gt.parquet")
    assert table.schema.remove_metadata().equals(GROUNDTRUTH)
    gt = table.to_pandas()
    frames, fps = media.read_frames(written.video)
    audio, rate = media.read_wav(written.audio)
    assert fps == FPS and rate == SAMPLE_RATE and frames.shape[1:] == (96, 96, 3)
    assert len(gt) == len(frames) and len(audio) == len(frames) * SAMPLES_PER_FRAME
    assert (gt["frame"].to_numpy() == np.arange(len(gt))).all()
    assert set(gt["emotion"]) == {spec.emotion} and set(gt["intensity"]) == {spec.intensity}
    lm = np.stack(gt["landmarks"].to_numpy()).reshape(len(gt), 68, 2)
    assert lm.min() > 0 and lm.max() < 96  # the face lies inside the frame
    assert "sil" in set(gt["viseme"]) and len(set(gt["viseme"])) >= 5


def test_corpus_covers_identities_and_emotions_evenly() -> None:
    specs = SyntheticSource(seed=0).list_clips()
    assert len(specs) == 48 and len({s.clip_id for s in specs}) == 48
    ids = {s.identity for s in specs}
    assert len(ids) == 12
    counts = {e: sum(s.emotion == e for s in specs) for e in EMOTIONS}
    assert min(counts.values()) == max(counts.values()) == 6
    for ident in ids:
        assert len({s.emotion for s in specs if s.identity == ident}) >= 3
    assert {s.intensity for s in specs} == {1, 2, 3}
    looks = {sample_identity(0, i) for i in range(12)}
    assert len({(x.skin, x.hair, x.jaw_width) for x in looks}) == 12


def _mouth_interior_pixels(img: np.ndarray, lm: np.ndarray) -> int:
    x0, y0 = np.floor(lm[48:68].min(0)).astype(int) - 2
    x1, y1 = np.ceil(lm[48:68].max(0)).astype(int) + 3
    patch = img[y0:y1, x0:x1].astype(int)
    return int((np.abs(patch - MOUTH_INTERIOR).sum(-1) < 40).sum())


def test_rendered_mouth_opening_follows_landmarks() -> None:
    ident = sample_identity(0, 4)
    openings = np.linspace(0, 1, 11, dtype=np.float32)
    mouth = MouthTrack(openings, np.zeros(11, np.float32), ("AA",) * 11)
    clip = render_clip(ident, PoseTrack.still(11), mouth, "neutral", 1, 256)
    lm = np.stack(clip.groundtruth["landmarks"].to_numpy()).reshape(11, 68, 2)
    height = lm[:, 66, 1] - lm[:, 62, 1]           # inner-lip gap from the landmarks
    area = np.array([_mouth_interior_pixels(f, pts) for f, pts in zip(clip.frames, lm)])
    assert np.all(np.diff(height) > 0) and height[0] < 0.5
    assert np.corrcoef(height, area)[0, 1] > 0.95
    assert area[-1] > 20 * max(area[0], 1)
    # the mouth interior is where the landmarks say: between the inner lips
    centre = np.round((lm[-1, 62] + lm[-1, 66]) / 2).astype(int)
    assert np.abs(clip.frames[-1][centre[1], centre[0]].astype(int) - MOUTH_INTERIOR).sum() < 60


def _skin_centroid(img: np.ndarray, skin: tuple[int, int, int]) -> np.ndarray:
    ys, xs = np.nonzero((img.astype(int) == np.array(skin)).all(-1))
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("angle", ["yaw", "pitch"])
def test_pose_moves_landmarks_and_pixels_as_its_sign_says(angle: str) -> None:
    ident = sample_identity(0, 1)
    axis = 0 if angle == "yaw" else 1  # +yaw: nose to +x; +pitch: nose down (+y)
    tips, centroids = [], []
    for value in (-15.0, 0.0, 15.0):
        g = geometry(ident, 256, **{angle: value})
        img = render_frame(ident, g, 256)
        tips.append(g.landmarks[30, axis] - g.origin[axis])
        centroids.append(_skin_centroid(img, ident.skin)[axis])
    assert tips[0] < tips[1] < tips[2] and tips[2] - tips[0] > 10
    assert centroids[0] < centroids[1] < centroids[2]
    # roll: the eye line tilts by the roll angle (clockwise on screen for +roll)
    g = geometry(ident, 256, roll=8.0)
    d = g.landmarks[45] - g.landmarks[36]
    assert np.degrees(np.arctan2(d[1], d[0])) == pytest.approx(8.0, abs=0.5)


def test_audio_energy_carries_the_mouth_opening() -> None:
    src = SyntheticSource(seed=0)
    rng = np.random.default_rng(0)
    real, shuffled = [], []
    for spec in src.list_clips()[::6]:
        ident = sample_identity(0, spec.origin["identity_index"])
        s = speak(spec.transcript, spec.emotion, spec.intensity, ident)
        energy = np.log(np.mean(s.audio.reshape(-1, SAMPLES_PER_FRAME) ** 2, axis=1) + 1e-6)
        real.append(np.corrcoef(energy, s.mouth.opening)[0, 1])
        shuffled.append(np.corrcoef(rng.permutation(energy), s.mouth.opening)[0, 1])
        # silence closes the mouth: first and last frames are lead-in / tail
        assert s.mouth.opening[0] < 0.05 and s.mouth.opening[-1] < 0.05
        assert s.mouth.viseme[0] == "sil"
    assert np.mean(real) > 0.5 and min(real) > 0.35
    assert abs(np.mean(shuffled)) < 0.15


def _f0(audio: np.ndarray) -> float:
    """Median autocorrelation pitch of the loud 40 ms frames."""
    out = []
    for f in audio[: len(audio) // 640 * 640].reshape(-1, 640):
        if np.sqrt(np.mean(f ** 2)) < 0.02:
            continue
        f = f - f.mean()
        ac = np.correlate(f, f, "full")[639:]
        lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 70
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.3 * ac[0]:
            out.append(SAMPLE_RATE / k)
    return float(np.median(out))


def test_emotion_is_audible_in_prosody() -> None:
    texts = ["The table is next to the door and the window.",
             "We moved the photo to the other room yesterday.",
             "Please put the letter in the second drawer."]

    def stats(emotion: str) -> np.ndarray:
        rows = []
        for t in texts:  # same words for both emotions: only prosody differs
            s = synthesize(t, prosody_for(emotion, 3), voice="en-us+m3")
            phones = [p for p in s.phones if not p.symbol.startswith("_")]
            rows.append((np.sqrt(np.mean(s.audio ** 2)), len(phones) / s.duration, _f0(s.audio)))
        return np.array(rows)

    angry, sad, surprised = stats("angry"), stats("sad"), stats("surprised")
    for col in range(3):  # energy, speaking rate, pitch: no overlap across sentences
        assert angry[:, col].min() > 1.2 * sad[:, col].max()
    assert surprised[:, 2].min() > angry[:, 2].max()  # surprise: the highest pitch
    # intensity scales the effect
    weak = synthesize(texts[0], prosody_for("sad", 1), voice="en-us+m3")
    strong = synthesize(texts[0], prosody_for("sad", 3), voice="en-us+m3")
    assert strong.duration > weak.duration


def test_transcripts_carry_the_emotion_in_their_wording() -> None:
    own = {e: emotion_words(e) for e in EMOTIONS}
    distinctive = {e: own[e] - set().union(*(own[o] for o in EMOTIONS if o != e)) for e in EMOTIONS}
    assert all(len(distinctive[e]) >= 8 for e in EMOTIONS)
    assert all(len(_TEMPLATES[e]) >= 5 for e in EMOTIONS)
    specs = SyntheticSource(seed=5).list_clips()
    for spec in specs:  # every transcript has words only its emotion's templates use
        words = {w.strip(".,!?").lower() for w in spec.transcript.split()}
        assert words & distinctive[spec.emotion], spec.transcript
    assert len({s.transcript for s in specs}) > 40


def test_each_factor_moves_only_its_part() -> None:
    n = 6
    ident, other = sample_identity(0, 0), sample_identity(0, 7)
    pose = sample_pose_track(11, n, blinks=False)
    closed = MouthTrack.closed(n)
    opened = MouthTrack(np.full(n, 0.8, np.float32), np.zeros(n, np.float32), ("AA",) * n)

    def lms(c):
        return np.stack(c.groundtruth["landmarks"].to_numpy()).reshape(n, 68, 2)

    base = render_clip(ident, pose, closed, "neutral", 1, 128)
    mouth = render_clip(ident, pose, opened, "neutral", 1, 128)
    moved = np.abs(lms(mouth) - lms(base)).max(axis=(0, 2)) > 1e-3
    assert moved[48:68].any() and not moved[17:48].any()  # brows, nose, eyes untouched
    assert set(np.nonzero(moved[:17])[0]) <= set(range(4, 13))  # only the lower jaw drops
    # emotion: brows and eyes move, the pose ground truth does not
    happy, surprised = (render_clip(ident, pose, closed, e, 3, 128) for e in ("happy", "surprised"))
    brow_eye_gap = lambda c: (lms(c)[:, 37, 1] - lms(c)[:, 19, 1]).mean()  # noqa: E731
    assert brow_eye_gap(surprised) > brow_eye_gap(base) + 2
    corner = lambda c: (lms(c)[:, [48, 54], 1].mean(1) - lms(c)[:, 51, 1]).mean()  # noqa: E731
    assert corner(happy) < corner(base) - 1  # corners rise towards the upper lip
    for col in ("yaw", "pitch", "roll", "tx", "ty", "mouth_open"):
        assert np.array_equal(surprised.groundtruth[col], base.groundtruth[col])
    # identity: a different face with the same pose track and mouth
    swapped = render_clip(other, pose, closed, "neutral", 1, 128)
    assert np.abs(lms(swapped) - lms(base)).mean() > 1.0
    assert np.array_equal(swapped.groundtruth["yaw"], base.groundtruth["yaw"])
    assert not np.array_equal(swapped.frames, base.frames)


def test_pose_track_is_smooth_and_bounded() -> None:
    p = sample_pose_track(42, 250)
    for name, lim in (("yaw", 20), ("pitch", 12), ("roll", 10)):
        v = getattr(p, name)
        assert np.abs(v).max() <= lim and np.abs(np.diff(v)).max() < 2.0 and v.std() > 0.5
    assert not np.array_equal(sample_pose_track(43, 250).yaw, p.yaw)


def test_real_face_detector_finds_the_faces() -> None:
    dlib = pytest.importorskip("dlib")
    detector = dlib.get_frontal_face_detector()
    hits = 0
    rng = np.random.default_rng(1)
    for k in range(12):
        ident = sample_identity(0, k)
        g = geometry(ident, 256, yaw=rng.uniform(-20, 20), pitch=rng.uniform(-12, 12),
                     roll=rng.uniform(-10, 10), opening=rng.uniform(0, 1),
                     emotion=EMOTIONS[k % 8], intensity=3)
        hits += len(detector(render_frame(ident, g, 256), 0)) == 1
    assert hits >= 9


def test_every_emotion_shows_at_level_one_with_sixty_percent_of_level_three():
    from edtalk.data.synthetic.face import SCALE, expression_offsets

    px = SCALE * 96                                    # template unit in the default 96 px frame
    for emotion in EMOTIONS:
        weak, strong = expression_offsets(emotion, 1), expression_offsets(emotion, 3)
        np.testing.assert_allclose(weak, 0.6 * strong, atol=1e-12)
        if emotion != "neutral":                       # level 1 moves some landmark by most of a pixel
            assert np.abs(weak[:, :2]).max() * px > 0.9, emotion
    # the upper face carries the expression too: brows move by over 2 px at level 1
    for emotion in ("angry", "fear", "sad", "surprised"):
        assert np.abs(expression_offsets(emotion, 1)[17:27, :2]).max() * px > 2.0, emotion
    assert not expression_offsets("neutral", 3).any()
