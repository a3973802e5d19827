"""Face detection backends: dlib on a real photo, ground truth, and the face-alignment gate."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from edtalk.data import detect
from edtalk.data.detect import (
    GroundTruthDetector, MissingWeights, box_from_landmarks, landmarks_of, make_detector,
    resolve_backend,
)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


def test_dlib_finds_the_astronaut_face_with_landmarks_on_it(astronaut: np.ndarray) -> None:
    det = make_detector("dlib")
    faces = det.detect(astronaut, with_landmarks=True)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    # Her face spans roughly x 175..275, y 75..175 in the 512 px photo.
    assert 160 < x0 < 200 and 250 < x1 < 290 and 60 < y0 < 100 and 150 < y1 < 190
    lm = faces[0].landmarks
    assert lm.shape == (68, 2)
    assert x0 <= lm[30, 0] <= x1 and y0 <= lm[30, 1] <= y1          # nose tip inside the box
    eyes_y = lm[36:48, 1].mean()
    assert eyes_y < lm[30, 1] < lm[48:68, 1].mean()                   # eyes, nose, mouth top-down
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()                  # her right eye is image-left
    assert lm[8, 1] > lm[57, 1]                                       # chin below the lower lip


def test_dlib_model_is_loaded_once_and_shared(astronaut: np.ndarray) -> None:
    make_detector("dlib").detect(astronaut)
    first = detect._MODELS["dlib"]
    make_detector("dlib").detect(astronaut)
    assert detect._MODELS["dlib"] is first


def test_small_frames_are_enlarged_for_detection(astronaut: np.ndarray) -> None:
    import cv2

    small = cv2.resize(astronaut, (96, 96), interpolation=cv2.INTER_AREA)
    faces = make_detector("dlib").detect(small, with_landmarks=True)
    assert len(faces) == 1
    lm = faces[0].landmarks
    assert np.all((lm >= 0) & (lm < 96))
    assert abs(lm[30, 0] - 225 * 96 / 512) < 4 and abs(lm[30, 1] - 127 * 96 / 512) < 4


def test_two_faces_side_by_side_are_both_found(astronaut: np.ndarray) -> None:
    faces = make_detector("dlib").detect(np.concatenate([astronaut, astronaut], axis=1))
    assert len(faces) == 2
    assert sorted(f.box[0] > 512 for f in faces) == [False, True]


def test_blank_frame_has_no_face() -> None:
    assert make_detector("dlib").detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert landmarks_of(make_detector("dlib"), np.zeros((64, 64, 3), np.uint8)) is None


def test_groundtruth_backend_uses_given_landmarks() -> None:
    rng = np.random.default_rng(0)
    lms = rng.uniform(20, 60, size=(5, 68, 2))
    lms[3] = np.nan
    det = make_detector("groundtruth", groundtruth=lms.reshape(5, -1))  # flat rows accepted
    faces = det.detect(None, index=1, with_landmarks=True)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].landmarks, lms[1])
    lo, hi = lms[1].min(0), lms[1].max(0)
    np.testing.assert_allclose(faces[0].box, [lo[0], lo[1] - 0.2 * (hi[1] - lo[1]), hi[0], hi[1]])
    assert det.detect(None, index=3) == []   # missing ground truth = no face
    assert det.detect(None, index=9) == []   # past the end
    with pytest.raises(ValueError, match="frame index"):
        det.detect(None)
    with pytest.raises(ValueError, match="68, 2"):
        GroundTruthDetector(np.zeros((5, 10, 2)))
    np.testing.assert_allclose(box_from_landmarks(lms[:2])[1], faces[0].box)


def test_face_alignment_without_weights_names_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeights) as err:
        make_detector("face_alignment", device="cpu")
    message = str(err.value)
    assert "s3fd-619a316812.pth" in message or "2DFAN4-11f355bf06.pth.tar" in message
    assert str(tmp_path / "hub" / "checkpoints") in message


def test_backend_names() -> None:
    assert resolve_backend("auto", "synthetic") == "groundtruth"
    assert resolve_backend("auto", "hdtf") == "dlib"
    assert resolve_backend("face_alignment", "mead") == "face_alignment"
    with pytest.raises(ValueError, match="unknown detector"):
        resolve_backend("s3fd", "folder")
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("mtcnn")
    with pytest.raises(ValueError, match="ground-truth"):
        make_detector("groundtruth")


def test_face_alignment_loads_weights_from_the_hub_cache(tmp_path, monkeypatch) -> None:
    """The real loading path, fed with stand-in weight files of the right layout.

    The released weights cannot be fetched here, so random ones are saved under the
    published file names; the detector must load exactly those tensors. The stand-in
    S3FD is made to see no face (its face logits pushed down), which keeps this fast.
    """
    torch = pytest.importorskip("torch")
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(detect, "_MODELS", {})
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    fan = FAN(4).state_dict()
    sfd = s3fd().state_dict()
    for name, tensor in sfd.items():
        if "mbox_conf" in name:
            tensor.zero_()
            if name.endswith("bias"):
                tensor[3 if name.startswith("conv3_3") else 1] = -20.0
    torch.save(fan, folder / detect.FACE_ALIGNMENT_FILES["2DFAN-4"])
    torch.save(sfd, folder / detect.FACE_ALIGNMENT_FILES["s3fd"])

    det = make_detector("face_alignment", device="cpu", short_side=96)
    loaded = det._model.face_alignment_net.state_dict()
    key = next(iter(fan))
    assert torch.equal(loaded[key].cpu(), fan[key])
    assert det.detect(np.full((64, 64, 3), 120, np.uint8), with_landmarks=True) == []
    assert make_detector("face_alignment", device="cpu")._model is det._model  # one per process
