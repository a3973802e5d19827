"""Training of the expert networks on the corpus' train split (offline substitutes).

No pretrained SyncNet, Emotion-FAN or 68-point detector for 64 px faces can be had
offline, so three small experts are trained here, each deterministic from a seed on
CPU and labelled as trained here in every result:

* :mod:`~edtalk.train.experts.sync_train` — a scaled-down syncnet_v2 with Wav2Lip's expert
  objective (``syncnet:trained-here:w..-s..-d..@<hash>``);
* :mod:`~edtalk.train.experts.emotion_train` — the 8-class frame-attention classifier
  (``emotion:trained-here@<hash>``);
* :mod:`~edtalk.train.experts.landmark_train` — the 68-point regressor of
  :mod:`edtalk.experts.landmark_net` (``landmarks:trained-here@<hash>``).

:mod:`~edtalk.train.experts.corpus` reads the features stage's tables for all three;
:mod:`~edtalk.train.experts.loop` trains each through the one resumable loop
(:mod:`edtalk.train.resumable`), so a killed run resumes from its step checkpoints.
The networks themselves are in :mod:`edtalk.experts`; the held-out checks that score
them with the metrics are in :mod:`edtalk.evaluation.experts`. Free of Prefect and DVC.
"""
