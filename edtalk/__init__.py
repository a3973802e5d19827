"""EDTalk: efficient disentanglement of mouth, pose and expression for talking heads.

Library code only (no Prefect, no DVC): the pipeline's flows in ``pipeline/`` call it.
"""

__version__ = "0.1.0"
