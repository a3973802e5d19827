"""A deterministic synthetic talking-head corpus whose every factor is known.

Speech comes from espeak-ng (real TTS, emotion in prosody and wording); phoneme
timings drive the mouth; identity, head pose and emotion are drawn independently
from the seed; faces are drawn from a posed 3D 68-point template, so the per-frame
ground truth (landmarks, pose, mouth, viseme, emotion) matches the pixels.

Modules, one job each: ``speech`` (TTS), ``transcripts`` (wording), ``visemes``
(phonemes to mouth track), ``identity``, ``pose``, ``face`` (geometry), ``render``
(drawing), ``corpus`` (clips and the Source).
"""

from edtalk.data.synthetic.corpus import (ClipSpeech, RenderedClip, SyntheticSource, plan_clip,
                                          render_clip, render_spec, speak, write_groundtruth)
from edtalk.data.synthetic.face import Geometry, geometry, rotation
from edtalk.data.synthetic.identity import Identity, sample_identity
from edtalk.data.synthetic.pose import PoseTrack, sample_pose_track
from edtalk.data.synthetic.render import render_frame
from edtalk.data.synthetic.speech import Prosody, Speech, prosody_for, synthesize
from edtalk.data.synthetic.visemes import MouthTrack, mouth_track, viseme_of

__all__ = [
    "ClipSpeech", "Geometry", "Identity", "MouthTrack", "PoseTrack", "Prosody", "RenderedClip",
    "Speech", "SyntheticSource", "geometry", "mouth_track", "plan_clip", "prosody_for",
    "render_clip", "render_frame", "render_spec", "rotation", "sample_identity",
    "sample_pose_track", "speak", "synthesize", "viseme_of", "write_groundtruth",
]
