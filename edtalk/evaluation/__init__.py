"""Experiments on trained models: factor swaps (disentanglement), audio-to-motion held-out
checks, SyncNet offset tracking, the no-model baselines. They generate videos with
``edtalk.generate`` and score them with ``metrics``; nothing below imports this package.
"""
