"""Expert networks: the pretrained-style judges the training losses and the metrics share.

* :mod:`edtalk.experts.syncnet` — syncnet_v2 (lip sync), its loaders and the one SyncNet
  input convention (BGR 0-255 lips, 5-frame windows, 13 x 20 MFCC windows);
* :mod:`edtalk.experts.emotion_net` — the frame-attention emotion classifier
  (Emotion-FAN layout, or the landmark-shape classifier trained here);
* :mod:`edtalk.experts.landmark_net` — the 68-point regressor for low-resolution crops.

Each module holds the network, its config, its loader and saver and one differentiable
entry point the training losses call. Scoring over arrays and files lives in ``metrics``;
training of these networks in ``edtalk.train.experts``.
"""
