"""The training loop: stage freezing, resume = uninterrupted, DDP = one process, learning."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from edtalk.model import load_checkpoint
from edtalk.train import STAGES, build, check_frozen, frozen_snapshot, run_stage, stage_config
from edtalk.train import losses as L
from edtalk.train.data import FrameTable, autoencoder_batch
from edtalk.train.losses import Perceptual
from edtalk.train.stages import Context, autoencoder_losses
from tests.test_train_data import make_features
from tests.kill9 import run_and_kill

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(size=16, latent_dim=32, channel_base=8, channel_max=16, eem_hidden=8, n_mouth=4,
             n_pose=2, n_exp=3, trunk_layers=2, head_layers=2)
PARAMS = {"base": {"seed": 0, "profile": "tiny"},
          "train": {"perceptual": {"network": "image_gradients", "scales": 2}}}


pytestmark = pytest.mark.usefixtures("one_thread")


def small_cfg(stage: str, **kw):
    kw = {"steps": 4, "batch": 4, "checkpoint_every": 2, "aux_steps": 5, "val_frames": 4,
          "window": 3, "model_overrides": SMALL, **kw}
    return stage_config(PARAMS, stage, **kw)


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    return make_features(tmp_path_factory.mktemp("features"))


@pytest.fixture(scope="module")
def chain(features, tmp_path_factory) -> Path:
    """The three stages in order, 3 steps each, on the small model."""
    models = tmp_path_factory.mktemp("models")
    for stage in ("autoencoder", "mouth_pose", "expression"):
        run_stage(small_cfg(stage, steps=3), features, models, models.parent / "live")
    return models


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[0].state_dict()


@pytest.mark.parametrize("stage, previous", [("mouth_pose", "autoencoder"), ("expression", "mouth_pose")])
def test_stage_changes_only_its_groups(chain, stage, previous):
    before, after = _state(chain / f"train_{previous}" / "model.pt"), _state(chain / f"train_{stage}" / "model.pt")
    model = load_checkpoint(chain / f"train_{stage}" / "model.pt")[0]
    trained = {n for n, p in model.named_parameters()
               if any(p is q for q in model.group_parameters(*STAGES[stage].groups))}
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and moved <= trained, f"moved outside {STAGES[stage].groups}: {sorted(moved - trained)[:5]}"
    heads = {"mouth_pose": ("lip_fc.", "pose_fc."), "expression": ("exp_fc.", "dec.fineadainresblock")}[stage]
    for prefix in heads:
        assert any(k.startswith(prefix) for k in moved), f"{prefix} did not train"


def test_autoencoder_trains_encoder_and_generator_but_not_eln_or_eem(chain, features):
    cfg = small_cfg("autoencoder")
    torch.manual_seed(cfg.seed)
    init, _ = build(cfg)
    after = _state(chain / "train_autoencoder" / "model.pt")
    before = init.state_dict()
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert {"enc", "dec", "fc", "lip_fc", "pose_fc", "direction_lipnonlip"} <= moved
    assert not moved & {"exp_fc", "direction_exp"}
    assert all(torch.equal(before[k], after[k]) for k in before if ".fineadainresblock" in k)


def test_check_frozen_names_a_parameter_that_moved(features):
    model, _ = build(small_cfg("mouth_pose"))
    snap = frozen_snapshot(model, STAGES["mouth_pose"].groups)
    check_frozen(model, snap)
    with torch.no_grad():
        model.enc.parameters().__next__().add_(1e-7)
    with pytest.raises(AssertionError, match="enc"):
        check_frozen(model, snap)


@pytest.mark.parametrize("stage", ["autoencoder", "expression"])
def test_resume_after_interruption_equals_an_uninterrupted_run(features, chain, tmp_path, stage):
    def run(root: Path, stop_after=None):
        if stage == "expression":                    # start from the chain's mouth-pose model
            (root / "train_mouth_pose").mkdir(parents=True, exist_ok=True)
            (root / "train_mouth_pose" / "model.pt").write_bytes(
                (chain / "train_mouth_pose" / "model.pt").read_bytes())
        return run_stage(small_cfg(stage, steps=5), features, root, None, stop_after=stop_after)

    whole = run(tmp_path / "whole")
    first = run(tmp_path / "split", stop_after=3)    # "crash" after step 3; checkpoint at step 2
    assert first["step"] == 3 and not (tmp_path / "split" / f"train_{stage}" / "model.pt").exists()
    second = run(tmp_path / "split")
    assert second["resumed_from"] == 2 and second["step"] == 5
    a = torch.load(tmp_path / "whole" / f"train_{stage}" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / f"train_{stage}" / "model.pt", weights_only=True)
    assert whole["loss/total"] == second["loss/total"]
    for part in ("gen", "disc"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


def test_changed_config_discards_old_checkpoints(features, tmp_path):
    run_stage(small_cfg("autoencoder", steps=2), features, tmp_path, None)
    out = run_stage(small_cfg("autoencoder", steps=2, lr=1e-3), features, tmp_path, None)
    assert out["resumed_from"] == 0 and out["step"] == 2
    more = run_stage(small_cfg("autoencoder", steps=4, lr=1e-3), features, tmp_path, None)
    assert more["resumed_from"] == 2                  # a longer budget continues


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(features):
    cfg = small_cfg("autoencoder", weights={"adv": 0.0, "per": 0.1})
    model, _ = build(cfg)
    table = FrameTable.load(features)
    stage = STAGES["autoencoder"]
    batch = stage.make_batch(table, cfg, 0, 0, 1)
    model.set_trainable(*stage.groups)
    ctx = Context(model, None, Perceptual(cfg.perceptual), cfg)
    opt = torch.optim.Adam(model.group_parameters(*stage.groups), lr=1e-2, betas=cfg.betas)
    losses = []
    for _ in range(100):                # starts at the still identity (identity-copy start)
        out = stage.losses(ctx, batch)
        total = sum(out.terms.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.85 * losses[0], losses


def test_mouth_weight_adds_a_mouth_box_term_that_moves_only_with_the_mouth(features):
    table = FrameTable.load(features)
    cfg = small_cfg("mouth_pose", weights={"adv": 0.0, "mouth": 2.0})
    model, _ = build(cfg)
    stage = STAGES["mouth_pose"]
    batch = stage.make_batch(table, cfg, 0, 0, 1)
    ctx = Context(model, None, Perceptual(cfg.perceptual), cfg)
    with torch.no_grad():
        base = stage.losses(ctx, batch).terms
        assert "mouth" not in stage.losses(Context(model, None, Perceptual(cfg.perceptual),
                                                   small_cfg("mouth_pose", weights={"adv": 0.0})), batch).terms
        # the same images with every pixel outside the mouth boxes changed: the term stays
        far = {k: v.clone() for k, v in batch.items()}
        for key, mask in (("a", "mouth_a"), ("b", "mouth_b")):
            far[key] = torch.where(batch[mask].bool(), batch[key], -batch[key])
        moved = stage.losses(ctx, far).terms
    assert base["mouth"].item() > 0
    assert moved["mouth"].item() == pytest.approx(base["mouth"].item(), rel=1e-5)
    assert moved["rec"].item() != pytest.approx(base["rec"].item(), rel=1e-3)


def test_dvclive_logs_every_loss_per_step(chain):
    plots = chain.parent / "live" / "train_expression" / "plots" / "metrics" / "loss"
    names = {p.stem for p in plots.glob("*.tsv")}
    assert {"rec", "per", "adv", "mot", "mc", "total", "disc"} <= names
    rows = (plots / "mot.tsv").read_text().splitlines()
    assert rows[0].split("\t")[0] == "step" and [r.split("\t")[0] for r in rows[1:]] == ["1", "2", "3"]


# --- slow: a real kill -9, and DDP under gloo ----------------------------------------------

KILL_SCRIPT = """
import sys, torch
sys.path.insert(0, {root!r})
from tests.test_train_loop import small_cfg
from edtalk.train import run_stage
run_stage(small_cfg("autoencoder", steps=40, checkpoint_every=1), {features!r}, {models!r}, None)
"""


@pytest.mark.slow
def test_kill_9_then_rerun_ends_with_the_uninterrupted_weights(features, tmp_path):
    killed = tmp_path / "killed"
    script = KILL_SCRIPT.format(root=str(ROOT), features=str(features), models=str(killed))
    run_and_kill(script, killed / "train_autoencoder" / "checkpoints", 3, cwd=ROOT)
    assert not (killed / "train_autoencoder" / "model.pt").exists(), "finished before the kill"
    resumed = run_stage(small_cfg("autoencoder", steps=40, checkpoint_every=1), features, killed, None)
    assert resumed["resumed_from"] >= 3
    whole = run_stage(small_cfg("autoencoder", steps=40, checkpoint_every=1), features, tmp_path / "whole", None)
    assert whole["loss/total"] == resumed["loss/total"]
    a, b = _state(killed / "train_autoencoder" / "model.pt"), _state(tmp_path / "whole" / "train_autoencoder" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _ddp_worker(rank: int, world: int, init: str, features: str, models: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        run_stage(small_cfg("autoencoder", steps=3, batch=8), features, models, None)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_equal_one_process_on_the_combined_batch(features, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", str(features), str(tmp_path / "ddp")),
             nprocs=2, join=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run_stage(small_cfg("autoencoder", steps=3, batch=8), features, tmp_path / "one", None)
    finally:
        torch.set_num_threads(threads)
    a = torch.load(tmp_path / "ddp" / "train_autoencoder" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "one" / "train_autoencoder" / "model.pt", weights_only=True)
    for part in ("gen", "disc"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=1e-4, atol=1e-5, msg=f"{part}.{k}")
    assert single["step"] == 3


def test_autoencoder_loads_given_weights_instead_of_training(features, tmp_path):
    from edtalk.model import save_checkpoint

    source, _ = build(small_cfg("autoencoder"))
    save_checkpoint(tmp_path / "official.pt", source)
    out = run_stage(small_cfg("autoencoder", pretrained=str(tmp_path / "official.pt")), features,
                    tmp_path / "models", tmp_path / "live")
    assert out["loaded"] == str(tmp_path / "official.pt")
    loaded = _state(tmp_path / "models" / "train_autoencoder" / "model.pt")
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
    assert (tmp_path / "live" / "train_autoencoder" / "metrics.json").is_file()


def test_a_pretrained_autoencoder_must_not_have_seen_held_out_identities(features, tmp_path, chain):
    from edtalk.model import save_checkpoint

    # a model trained here records its training identities (the fixture's val identity is id3)
    assert load_checkpoint(chain / "train_autoencoder" / "model.pt")[1]["train_identities"] == ["id0", "id1", "id2"]
    source, _ = build(small_cfg("autoencoder"))
    for name, idents, error in (("leaky", ["id0", "id3"], "held out here"),
                                ("other", ["hdtf_7", "hdtf_9"], "another corpus"),
                                ("clean", ["id0", "id1"], None)):
        path = tmp_path / f"{name}.pt"
        save_checkpoint(path, source, train_identities=idents)
        cfg = small_cfg("autoencoder", pretrained=str(path))
        if error:
            with pytest.raises(ValueError, match=error):
                run_stage(cfg, features, tmp_path / name, None)
        else:
            assert run_stage(cfg, features, tmp_path / name, None)["loaded"] == str(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        run_stage(small_cfg("autoencoder", pretrained=str(tmp_path / "missing.pt")), features, tmp_path / "m", None)


def _pretrain_script():
    """scripts/pretrain_stage.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("pretrain_stage", ROOT / "scripts" / "pretrain_stage.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_pretrain_script_continues_an_autoencoder_file(features, tmp_path, chain, monkeypatch):
    script = _pretrain_script()
    monkeypatch.setattr(script, "stage_config", lambda params, stage, **kw: small_cfg(stage, **kw))
    start = chain / "train_autoencoder" / "model.pt"
    out = script.main(["autoencoder", "--steps", "2", "--start", str(start), "--features", str(features),
                       "--work", str(tmp_path / "work"), "--out", str(tmp_path / "ae.pt")])
    model, extra = load_checkpoint(out)
    assert extra["step"] == 2 and f"--steps 2 --start {start}" in extra["recipe"]
    assert extra["corpus"]["train_identities"] == ["id0", "id1", "id2"]   # the full guard record
    before, after = _state(start), model.state_dict()
    moved = [(after[k] - before[k]).abs().max().item() for k in before if not torch.equal(before[k], after[k])]
    assert moved and max(moved) < 0.05        # two steps on from the file, not a fresh model


def test_the_pretrain_script_overrides_one_loss_weight_and_records_it(features, tmp_path, chain, monkeypatch):
    script = _pretrain_script()
    seen = []
    monkeypatch.setattr(script, "stage_config",
                        lambda params, stage, **kw: seen.append(small_cfg(stage, **kw)) or seen[-1])
    start = chain / "train_autoencoder" / "model.pt"
    out = script.main(["autoencoder", "--steps", "1", "--start", str(start), "--features", str(features),
                       "--weight", "face=0", "--weight", "mouth=2.5", "--work", str(tmp_path / "work"),
                       "--out", str(tmp_path / "ae.pt")])
    assert seen[0].weights.face == 0.0 and seen[0].weights.mouth == 2.5
    assert seen[0].weights.rec == small_cfg("autoencoder").weights.rec     # the others untouched
    assert load_checkpoint(out)[1]["recipe"].count("--weight") == 2
    with pytest.raises(SystemExit):
        script.main(["autoencoder", "--steps", "1", "--weight", "face", "--out", str(tmp_path / "x.pt")])


def test_the_autoencoder_face_term_is_the_weighted_l1_inside_the_face_boxes(features):
    cfg = small_cfg("autoencoder", weights={"face": 3.0})
    table = FrameTable.load(features)
    batch = autoencoder_batch(table, 0, 0, 2)
    ctx = Context(model=build(cfg)[0], discriminator=None, perceptual=lambda a, b: a.new_zeros(()), cfg=cfg)
    out = autoencoder_losses(ctx, batch)
    expected = 3.0 * L.masked_rec(out.fake, batch["driving"], batch["face"])
    assert torch.allclose(out.terms["face"], expected) and out.terms["face"] > 0
    ctx.cfg = small_cfg("autoencoder", weights={"face": 0.0})
    assert "face" not in autoencoder_losses(ctx, batch).terms


def test_the_pretrain_script_then_fine_tunes_as_the_run_does(features, tmp_path, chain, monkeypatch):
    import shutil

    script = _pretrain_script()
    monkeypatch.setattr(script, "stage_config", lambda params, stage, **kw: small_cfg(stage, **kw))
    start, work = chain / "train_autoencoder" / "model.pt", tmp_path / "work"
    out = script.main(["mouth_pose", "--steps", "2", "--then-finetune", "2", "--start", str(start),
                       "--features", str(features), "--work", str(work), "--out", str(tmp_path / "mp.pt")])
    model, extra = load_checkpoint(out)
    assert extra["step"] == 4 and "--steps 2 --start" in extra["recipe"] and "--then-finetune 2" in extra["recipe"]
    # what `dvc repro` makes of the 2-step file with finetune_steps 2
    shutil.copytree(chain / "train_autoencoder", tmp_path / "run" / "train_autoencoder")
    run_stage(small_cfg("mouth_pose", pretrained=str(work / "train_mouth_pose" / "model.pt"), finetune_steps=2),
              features, tmp_path / "run", None)
    run, shipped = _state(tmp_path / "run" / "train_mouth_pose" / "model.pt"), model.state_dict()
    assert all(torch.equal(run[k], shipped[k]) for k in run)
    # ... and the run that takes the script's file with finetune_steps 0 has that same model
    shutil.copytree(chain / "train_autoencoder", tmp_path / "taken" / "train_autoencoder")
    run_stage(small_cfg("mouth_pose", pretrained=str(out), finetune_steps=0), features, tmp_path / "taken", None)
    taken = _state(tmp_path / "taken" / "train_mouth_pose" / "model.pt")
    assert all(torch.equal(run[k], taken[k]) for k in run)
    assert not torch.equal(shipped["lip_fc.0.weight"], _state(work / "train_mouth_pose" / "model.pt")["lip_fc.0.weight"])


def test_a_later_stage_fine_tunes_a_pretrained_file_of_this_corpus_only(features, tmp_path, chain):
    import shutil

    from edtalk.model import save_checkpoint
    from edtalk.train.corpus_record import WrongCorpus, train_corpus_record
    from tests.test_train_data import make_features

    model, _ = load_checkpoint(chain / "train_mouth_pose" / "model.pt")
    path = tmp_path / "mouth_pose.pt"
    save_checkpoint(path, model, corpus=train_corpus_record(features), train_identities=["id0", "id1", "id2"])
    cfg = small_cfg("mouth_pose", pretrained=str(path), finetune_steps=2, restart_navigation=True)
    shutil.copytree(chain / "train_autoencoder", tmp_path / "m" / "train_autoencoder")   # the frozen E, G
    out = run_stage(cfg, features, tmp_path / "m", None)
    assert out["finetuned_from"] == str(path) and out["step"] == 2
    start, tuned = model.state_dict(), _state(tmp_path / "m" / "train_mouth_pose" / "model.pt")
    trained = {n for n, p in model.named_parameters()
               if any(p is q for q in model.group_parameters(*STAGES["mouth_pose"].groups))}
    moved = {k for k in start if not torch.equal(start[k], tuned[k])}
    assert moved and moved <= trained
    # navigation continued from the file (not restarted): two steps move it only a little
    assert max((tuned[k] - start[k]).abs().max().item() for k in moved) < 0.05
    # finetune_steps 0: the file's groups on the previous stage's model are the stage's result
    # (the file's own E and G are moved off, so keeping the autoencoder's is visible)
    moved_eg = load_checkpoint(chain / "train_mouth_pose" / "model.pt")[0]
    with torch.no_grad():
        for n, p in moved_eg.named_parameters():
            if n.startswith(("enc.", "dec.")):
                p.add_(0.5)
    path0 = tmp_path / "mouth_pose_0.pt"
    save_checkpoint(path0, moved_eg, corpus=train_corpus_record(features), train_identities=["id0", "id1", "id2"])
    shutil.copytree(chain / "train_autoencoder", tmp_path / "z" / "train_autoencoder")
    out = run_stage(small_cfg("mouth_pose", pretrained=str(path0), finetune_steps=0), features, tmp_path / "z", None)
    assert out["loaded"] == str(path0) and "val/l1" in out
    taken = _state(tmp_path / "z" / "train_mouth_pose" / "model.pt")
    ae = _state(chain / "train_autoencoder" / "model.pt")
    assert all(torch.equal(taken[k], start[k]) for k in start if k in trained)
    assert all(torch.equal(taken[k], ae[k]) for k in ae if k.startswith(("enc.", "dec.")))
    assert (tmp_path / "z" / "train_mouth_pose" / "checkpoints").is_dir()
    other = make_features(tmp_path / "other", seed=1)
    with pytest.raises(WrongCorpus, match="set train.mouth_pose.pretrained to null"):
        run_stage(cfg, other, tmp_path / "o", None)


def test_a_pretrained_expression_file_gives_eln_and_eem_only(features, tmp_path, chain):
    import shutil

    from edtalk.model import save_checkpoint
    from edtalk.train.corpus_record import train_corpus_record

    # the file's generator differs from the previous stage's: the stage must keep the latter
    source, _ = load_checkpoint(chain / "train_expression" / "model.pt")
    g_name = next(n for n, _ in source.named_parameters() if n.startswith("dec."))
    with torch.no_grad():
        dict(source.named_parameters())[g_name].add_(1.0)
    path = tmp_path / "expression.pt"
    save_checkpoint(path, source, corpus=train_corpus_record(features))
    models = tmp_path / "models"
    shutil.copytree(chain / "train_mouth_pose", models / "train_mouth_pose")
    run_stage(small_cfg("expression", pretrained=str(path), finetune_steps=1), features, models, None)
    previous = _state(chain / "train_mouth_pose" / "model.pt")
    out = _state(models / "train_expression" / "model.pt")
    assert torch.equal(out[g_name], previous[g_name])                     # frozen part: the previous stage's
    eln = [n for n in out if n.startswith("exp_fc.")]
    assert eln and all((out[n] - source.state_dict()[n]).abs().max() < 0.05 for n in eln)   # from the file
    # finetune_steps 0: the file's ELN/EEM as they are, and every output the stage declares
    taken = tmp_path / "taken"
    shutil.copytree(chain / "train_mouth_pose", taken / "train_mouth_pose")
    summary = run_stage(small_cfg("expression", pretrained=str(path), finetune_steps=0), features, taken,
                        tmp_path / "live")
    got = _state(taken / "train_expression" / "model.pt")
    assert all(torch.equal(got[n], source.state_dict()[n]) for n in eln) and torch.equal(got[g_name], previous[g_name])
    assert "mouth_gain" in summary and "val/l1" in summary                # the end of the stage ran
    assert (taken / "train_expression" / "face_net.pt").is_file()
    assert (taken / "train_expression" / "checkpoints").is_dir()
    assert (tmp_path / "live" / "train_expression" / "metrics.json").is_file()


def test_training_device_is_resolved_and_unavailable_ones_are_refused() -> None:
    from edtalk.train.loop import resolve_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unsupported training device"):
        resolve_device("meta")


@pytest.mark.parametrize("size", [32, 64])
def test_identity_copy_start_makes_the_generator_return_the_identity_frame(size) -> None:
    """At the start, G(E(x)) with x's own motion is x resampled by the release's identity
    grid (linspace(-1, 1) under align_corners=False): the still-identity baseline, exactly."""
    from edtalk.model import EDTalk
    from edtalk.model.config import profile
    from edtalk.model.generator import identity_grid
    from edtalk.train.stages import identity_copy_start

    torch.manual_seed(0)
    model = EDTalk(profile("tiny", size=size)).eval()
    identity_copy_start(model)
    x = torch.rand(3, 3, size, size) * 2 - 1
    with torch.no_grad():
        lat, skips = model.encode(x)
        w = model.weights(lat, exp=False)
        out = model.generate(lat, skips, model.motion(w.mouth, w.pose), use_eem=False)
    grid = identity_grid(size, x).expand(3, -1, -1, -1)
    expected = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                               align_corners=False)
    assert torch.allclose(out, expected, atol=1e-4)
    # and that resampling is close to x itself (noise images: a shift of one pixel is far)
    assert (out - x)[..., 2:-2, 2:-2].abs().mean() < 0.5 * (x - x.roll(1, -1)).abs().mean()


def test_mouth_pose_restart_gives_fresh_navigation_on_the_autoencoders_encoder(features, chain, tmp_path):
    """``restart_navigation``: MLN, PLN and the trunk start fresh (heads at zero motion) while E
    and G stay the autoencoder's; ``emotions`` restricts the stage to those clips."""
    from edtalk.model import EDTalk

    (tmp_path / "train_autoencoder").symlink_to(chain / "train_autoencoder", target_is_directory=True)
    summary = run_stage(small_cfg("mouth_pose", steps=0, restart_navigation=True, emotions=["neutral"]),
                        features, tmp_path, None)
    assert summary["emotions"] == ["neutral"]
    ae, mp = _state(chain / "train_autoencoder" / "model.pt"), _state(tmp_path / "train_mouth_pose" / "model.pt")
    cfg = load_checkpoint(chain / "train_autoencoder" / "model.pt")[0].cfg
    torch.manual_seed(0)                                   # the stage's seed
    fresh = EDTalk(cfg).state_dict()
    for k in mp:
        if k.startswith(("enc.", "dec.")):
            assert torch.equal(mp[k], ae[k]), k
        elif k.startswith(("fc.", "direction_lipnonlip")):
            assert torch.equal(mp[k], fresh[k]), k
    last = [k for k in mp if k.startswith("lip_fc.")][-2:]           # the last layer's weight and bias
    assert all(float(mp[k].abs().max()) == 0.0 for k in last)
    with pytest.raises(ValueError, match="emotions"):
        run_stage(small_cfg("mouth_pose", steps=0, emotions=["surprised"]), features, tmp_path / "none", None)


def test_the_expression_stage_stores_its_mouth_gain(features, tmp_path, chain):
    import shutil

    from edtalk import generate as gen
    from edtalk.experts import emotion_net as emo

    models = tmp_path / "models"
    shutil.copytree(chain / "train_mouth_pose", models / "train_mouth_pose")
    fixed = run_stage(small_cfg("expression", steps=1, mouth_gain=1.5), features, models, None)
    assert fixed["mouth_gain"] == 1.5
    assert gen.load_model(models / "train_expression" / "model.pt").mouth_gain == 1.5
    # calibrate without an emotion evaluator: gain 1, and the summary says why
    missing = run_stage(small_cfg("expression", steps=1, mouth_gain="calibrate",
                                  emotion_checkpoint=str(tmp_path / "none.pt")), features, models, None)
    assert missing["mouth_gain"] == 1.0 and "no emotion evaluator" in missing["mouth_gain_calibration"]
    # with one that has landmark heatmaps: measured on clips, kept within bounds, stored in the file
    torch.manual_seed(0)
    emo.save_trained(emo.FrameAttentionNet(emo.EmotionConfig("landmarks", 16, 4, 0.0, 16)), tmp_path / "emo.pt")
    calibrated = run_stage(small_cfg("expression", steps=1, mouth_gain="calibrate", gain_clips=2,
                                     emotion_checkpoint=str(tmp_path / "emo.pt")), features, models, None)
    record = calibrated["mouth_gain_calibration"]
    assert record["clips"] == 2 and record["split"] in ("val", "train") and 1.0 in {float(g) for g in record["ratios"]}
    assert 1.0 <= calibrated["mouth_gain"] <= 3.0
    assert gen.load_model(models / "train_expression" / "model.pt").mouth_gain == calibrated["mouth_gain"]
    with pytest.raises(ValueError, match="mouth_gain must be"):
        small_cfg("expression", mouth_gain="loud")
