"""Run one training stage end to end (library entry point of the flows and of ``torchrun``).

    python -m edtalk.train.run --stage autoencoder                  # one process
    torchrun --nproc_per_node 2 -m edtalk.train.run --stage autoencoder   # DDP (gloo on CPU)

Outputs under ``models/<stage dir>/``: ``checkpoints/step-*.pt`` (resume), ``model.pt``
(final: model, D, stage, step, names of the substitutes used) and, for the expression
stage, ``face_net.pt`` (the phi/psi substitute). DVCLive writes ``dvclive/<stage dir>/``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from edtalk.data.resume import file_key, fingerprint
from edtalk.model import EDTalk, load_checkpoint, save_checkpoint
from edtalk.params import load_params

from .config import StageConfig, stage_config
from .corpus_record import check_corpus_record, held_out_identities
from .data import FrameTable, step_rng
from .loop import build, resolve_device, train
from .losses import Perceptual
from .motion_nets import landmark_error_px, load_or_train_face_net, motion_networks, spread_normalised
from .mouth_gain import calibrate
from .resumable import run_config, world
from .stages import STAGES, describe, neutral_start, restart_navigation

log = logging.getLogger(__name__)
DIRS = {"autoencoder": "train_autoencoder", "mouth_pose": "train_mouth_pose",
        "expression": "train_expression"}
PREVIOUS = {"mouth_pose": "autoencoder", "expression": "mouth_pose"}


@torch.no_grad()
def reconstruct(model: EDTalk, stage: str, identity: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
    """The stage's own reconstruction of ``driving`` from ``identity`` (expression: EDTalk-V)."""
    id_lat, skips = model.encode(identity)
    w = model.weights(model.encode(driving)[0], exp=stage == "expression")
    return model.generate(id_lat, skips, model.motion(w.mouth, w.pose, w.exp),
                          use_eem=stage == "expression").clamp(-1, 1)


def validate(model: EDTalk, stage: str, features_dir: str | Path, n: int, seed: int) -> dict[str, float]:
    """Mean L1 (in [-1,1] units) on val pairs (identity, driving of one clip) vs the still identity."""
    try:
        table = FrameTable.load(features_dir, "val")
    except ValueError:
        return {}
    rng = step_rng(seed, 0, salt=11)
    pairs = np.stack([rng.choice(table.clip_rows[c], 2, replace=False)
                      for c in rng.choice(len(table.clip_rows), n)])
    ident, drive = table.images(pairs[:, 0]), table.images(pairs[:, 1])
    fake = torch.cat([reconstruct(model, stage, i, d) for i, d in zip(ident.split(16), drive.split(16))])
    return {"val/l1": float((fake - drive).abs().mean()),
            "val/l1_still_identity": float((ident - drive).abs().mean())}


def check_pretrained_identities(extra: dict[str, Any], train: FrameTable, features_dir: str | Path,
                                source: str | Path, setting: str = "train.autoencoder.pretrained") -> None:
    """Refuse a checkpoint of ours whose training identities are held out here (val/test)
    or that was trained on another corpus (none of its identities in this train split).
    Official files carry no such record and are taken as they are."""
    trained = set(extra.get("train_identities") or [])
    if not trained:
        return
    held = held_out_identities(features_dir)
    if trained & held:
        raise ValueError(f"{source} was trained on identities that are held out here: "
                         f"{sorted(trained & held)[:5]}; set {setting} to null")
    if not trained & set(train.identity_names):
        raise ValueError(f"{source} was trained on another corpus (none of its {len(trained)} identities "
                         f"is in this train split); set {setting} to null")


def calibration_pairs(table: FrameTable, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` clips of ``table`` as EDTalk-V drives them: (first frame of another clip of the
    same identity, the clip's frames), spread over identities by a seeded draw."""
    rng = step_rng(seed, 0, salt=13)
    clips = rng.permutation(len(table.clip_rows))[:n]
    pairs = []
    for c in sorted(clips):
        rows = table.clip_rows[c]
        same = table.identity_rows[table.identity[rows[0]]]
        others = same[table.clip[same] != c]
        ident_row = int(others.min()) if len(others) else int(rows[0])
        frames = table.pixels[table.pixel_index[np.concatenate([[ident_row], rows])]]
        pairs.append((frames[0], frames[1:]))
    return pairs


def mouth_gain(cfg: StageConfig, model: EDTalk, features_dir: str | Path) -> dict[str, Any]:
    """The expression model's mouth gain (``edtalk.train.mouth_gain``): the configured number,
    or calibrated with the emotion evaluator's heatmap landmarks on clips of ``gain_split``
    (val: faces the generator has not fitted, as at test; train when there is no val split);
    without that evaluator the gain stays 1 and the note says why."""
    if cfg.mouth_gain != "calibrate":
        return {"mouth_gain": float(cfg.mouth_gain)}
    from edtalk import generate as gen
    from edtalk.experts import emotion_net

    path = cfg.emotion_checkpoint
    if not path or not Path(path).is_file():
        return {"mouth_gain": 1.0, "note": f"not calibrated: no emotion evaluator at {path}"}
    try:
        landmarker = emotion_net.load_heatmap_landmarker(path)
    except ValueError as err:           # an evaluator without the heatmap head
        return {"mouth_gain": 1.0, "note": f"not calibrated: {err}"}
    renderer = copy.deepcopy(model).cpu().eval()

    def render(identity: np.ndarray, video: np.ndarray, g: float) -> np.ndarray:
        return gen.generate(renderer, identity, mouth=video, pose=video, exp=video,
                            n_frames=len(video), mouth_gain=g).frames

    try:
        split = cfg.gain_split
        table = FrameTable.load(features_dir, split)
    except ValueError:
        split = "train"
        table = FrameTable.load(features_dir, split)
    try:
        result = calibrate(calibration_pairs(table, cfg.gain_clips, cfg.seed), render, landmarker)
    except ValueError as err:           # e.g. no clip with a moving mouth: keep the training
        return {"mouth_gain": 1.0, "note": f"not calibrated: {err}"}
    log.info("expression: mouth gain %.3f on %s clips (rendered/driving opening spread %s)",
             result.gain, split, result.ratios)
    return {"mouth_gain": result.gain, "calibration": {**result.to_dict(), "split": split}}


def take_groups(model: EDTalk, source: EDTalk, groups: tuple[str, ...]) -> None:
    """Copy the parameters of ``groups`` from ``source`` into ``model`` (same layout)."""
    names = {id(p) for p in source.group_parameters(*groups)}
    values = {n: p for n, p in source.named_parameters() if id(p) in names}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in values:
                p.copy_(values[n])


def run_stage(cfg: StageConfig, features_dir: str | Path = "data/features", models_dir: str | Path = "models",
              live_root: str | Path | None = "dvclive", stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume) one stage and write its final model; returns a summary. With a
    pretrained file and ``finetune_steps: 0`` the file is the stage's model (no training)."""
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_stage(cfg, features_dir, models_dir, live_root, stop_after)
    finally:
        torch.set_num_threads(threads)


def _check_frame_size(model: EDTalk, table: FrameTable) -> None:
    """The features must be crops at the model's size (``crop.size`` follows ``base.profile``)."""
    size = table.pixels.frame_shape[0]
    if size != model.cfg.size:
        raise ValueError(f"the features are {size} px crops but the model is {model.cfg.size} px: "
                         "run crop and features with the model's profile (params.yaml crop.size)")


def _finish(cfg: StageConfig, model: EDTalk, features_dir: str | Path, out_dir: Path, summary: dict[str, Any],
            **record: Any) -> None:
    """The end of every stage that has a model to write: the val check, the expression stage's
    mouth gain, and ``model.pt`` (``record``: D's weights and what the file says about its making)."""
    summary.update(validate(model, cfg.stage, features_dir, cfg.val_frames, cfg.seed))
    gain: dict[str, Any] = {}
    if cfg.stage == "expression":
        gain = mouth_gain(cfg, model, features_dir)
        summary["mouth_gain"] = gain["mouth_gain"]
        summary["mouth_gain_calibration"] = gain.get("calibration") or gain.get("note")
    save_checkpoint(out_dir / "model.pt", model, stage=cfg.stage, **record, **gain)


def _write_summary(live: Any, summary: dict[str, Any]) -> None:
    """The summary's numbers into DVCLive's metrics.json; "a/b" nests as DVCLive's own metrics do."""
    for k, v in summary.items():
        if isinstance(v, (int, float)) and not k.startswith("loss/"):
            head, _, tail = k.partition("/")
            if tail:
                live.summary.setdefault(head, {})[tail] = v
            else:
                live.summary[k] = v
    live.end()


def _use_pretrained(cfg: StageConfig, model: EDTalk, disc: torch.nn.Module | None, table: FrameTable,
                    features_dir: str | Path, out_dir: Path, live_dir: Path | None,
                    summary: dict[str, Any]) -> dict[str, Any]:
    """A stage with ``finetune_steps: 0``: the pretrained file (a later stage: its groups on the
    previous stage's output) is the stage's model, checked on val (and, for the expression
    stage, its mouth gain calibrated) without training here."""
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)   # the stage's declared output
    if cfg.stage == "expression" and cfg.weights.mot:   # the stage's declared phi/psi substitute
        load_or_train_face_net(out_dir / "face_net.pt", table, cfg.seed, cfg.aux_steps)
    what = "loaded the whole model" if cfg.stage == "autoencoder" else "took " + "/".join(STAGES[cfg.stage].groups)
    log.info("%s: %s from %s instead of training", cfg.stage, what, cfg.pretrained)
    if world()[0] == 0:
        record = {"disc": disc.state_dict()} if disc is not None else {}
        _finish(cfg, model, features_dir, out_dir, summary, step=0, source=str(cfg.pretrained), **record)
        if live_dir is not None:                    # the stage's declared DVCLive outputs exist
            from dvclive import Live

            live = Live(str(live_dir), save_dvc_exp=False, dvcyaml=False)
            live.log_metric("pretrained_loaded", 1.0)
            _write_summary(live, summary)
    return {**summary, "loaded": str(cfg.pretrained)}


def _run_stage(cfg: StageConfig, features_dir: str | Path, models_dir: str | Path,
               live_root: str | Path | None, stop_after: int | None) -> dict[str, Any]:
    rank, size = world()
    out_dir = Path(models_dir) / DIRS[cfg.stage]
    live_dir = Path(live_root) / DIRS[cfg.stage] if live_root is not None else None
    table = FrameTable.load(features_dir, "train", cfg.emotions)
    summary: dict[str, Any] = {"stage": cfg.stage, "world_size": size}
    if cfg.emotions is not None:
        summary["emotions"] = list(cfg.emotions)
    finetune = bool(cfg.pretrained) and cfg.finetune_steps > 0
    if cfg.pretrained:
        if not Path(cfg.pretrained).is_file():
            raise FileNotFoundError(f"train.{cfg.stage}.pretrained: {cfg.pretrained} does not exist "
                                    f"(set it to null to train the {cfg.stage} stage here)")
        pretrained, extra = load_checkpoint(cfg.pretrained)      # official EDTalk.pt or one of ours
        _check_frame_size(pretrained, table)
        setting = f"train.{cfg.stage}.pretrained"
        if "corpus" in extra:           # ours since the corpus record (edtalk.train.corpus_record)
            check_corpus_record(extra["corpus"], features_dir, cfg.pretrained, setting)
        else:
            check_pretrained_identities(extra, table, features_dir, cfg.pretrained, setting)
    if finetune:                        # the pretrained file is the start; train finetune_steps on it
        cfg = replace(cfg, steps=cfg.finetune_steps)
        summary["finetuned_from"] = str(cfg.pretrained)
    elif cfg.stage == "autoencoder" and cfg.pretrained:   # the file is the whole model
        return _use_pretrained(cfg, pretrained, None, table, features_dir, out_dir, live_dir, summary)
    init = Path(models_dir) / DIRS[PREVIOUS[cfg.stage]] / "model.pt" if cfg.stage in PREVIOUS else None
    if finetune and init is None:       # the autoencoder: the pretrained file is the start
        init = Path(cfg.pretrained)
    model, disc = build(cfg, init)
    if cfg.pretrained and cfg.stage in PREVIOUS:
        # A later stage's file gives only the groups this stage trains; the frozen rest is the
        # previous stage's output, as when training here (else that stage's work is lost).
        take_groups(model, pretrained, STAGES[cfg.stage].groups)
    if cfg.pretrained and not finetune:  # finetune_steps 0: the file is the stage's result
        return _use_pretrained(cfg, model, disc, table, features_dir, out_dir, live_dir, summary)
    _check_frame_size(model, table)
    if cfg.stage == "expression" and cfg.neutral_start and not finetune:
        neutral_start(model)            # a resumed run's checkpoint overwrites this
    if cfg.stage == "mouth_pose" and cfg.restart_navigation and not finetune:
        restart_navigation(model, cfg.seed)
    perceptual = Perceptual(cfg.perceptual, seed=cfg.seed)
    nets, names = [], []
    if cfg.stage == "expression" and cfg.weights.mot:
        face = load_or_train_face_net(out_dir / "face_net.pt", table, cfg.seed, cfg.aux_steps)
        summary["face_net_landmark_err_px"] = landmark_error_px(face, table, np.arange(0, len(table), 7))
        dev = resolve_device(cfg.device)
        nets, names = motion_networks(face.to(dev), cfg.emotion_checkpoint, dev)
        nets, spreads = spread_normalised(nets, table, cfg.seed, dev)
        summary["mot_spreads"] = [round(v, 6) for v in spreads]
    summary.update(describe(STAGES[cfg.stage], model), perceptual=perceptual.name, mot_networks=names)
    log.info("%s: Phi = %s; L_mot networks = %s", cfg.stage, perceptual.name, names or "none")
    # what the checkpoints' validity depends on: the config (not the step budget or the
    # bookkeeping), the initial weights' bytes and the L_mot networks used
    key = fingerprint(run_config(cfg, drop=("val_frames",)), file_key(init) if init else None,
                      file_key(cfg.pretrained) if finetune else None, ",".join(names))
    result = train(cfg, table, out_dir, model, disc, live_dir, nets, stop_after, perceptual, key)
    summary.update(step=result.step, resumed_from=result.resumed_from, seconds=round(result.seconds, 2),
                   samples_per_s=round(result.samples_per_s, 3), **result.last)
    if result.step >= cfg.steps and rank == 0:
        _finish(cfg, model, features_dir, out_dir, summary, disc=disc.state_dict() if disc is not None else {},
                step=result.step, perceptual=perceptual.name,
                mot_networks=list(names), train_identities=sorted(table.identity_names),
                **({"finetuned_from": str(cfg.pretrained)} if finetune else {}))
    if result.live is not None:
        _write_summary(result.live, summary)
    return summary


def _cli() -> None:
    parser = argparse.ArgumentParser(description="Run one EDTalk training stage (DDP under torchrun).")
    parser.add_argument("--stage", required=True, choices=sorted(DIRS))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--models", default="models")
    parser.add_argument("--live", default="dvclive")
    args = parser.parse_args()
    cfg = stage_config(load_params(args.params), args.stage)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        dist.init_process_group("nccl" if resolve_device(cfg.device).type == "cuda" else "gloo")
    try:
        print(run_stage(cfg, args.features, args.models, args.live))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    _cli()
