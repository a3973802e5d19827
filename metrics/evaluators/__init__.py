"""Evaluator networks trained in-pipeline on the corpus' train split (offline substitutes).

No pretrained SyncNet, Emotion-FAN or 68-point detector for 64 px faces can be had
offline, so three small evaluators are trained here, each deterministic from a seed on
CPU and labelled as trained here in every result:

* :mod:`~metrics.evaluators.sync_train` — a scaled-down syncnet_v2 with Wav2Lip's expert
  objective (``syncnet:trained-here:w..-s..-d..@<hash>``);
* :mod:`~metrics.evaluators.emotion_train` — the 8-class frame-attention classifier
  (``emotion:trained-here@<hash>``);
* :mod:`~metrics.evaluators.landmark_train` — the 68-point regressor of
  :mod:`metrics.landmark_net` (``landmarks:trained-here@<hash>``).

:mod:`~metrics.evaluators.corpus` reads the features stage's tables for all three.
Free of Prefect and DVC.
"""
