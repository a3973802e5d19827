"""Emotion-bearing transcripts: per-emotion sentence templates with seeded word choices.

The wording carries the emotion (as MEAD's scripts do not, but a text-conditioned
model such as EDTalk's text-to-emotion path needs): an angry clip says something
angry, a sad one something sad. Templates and fillers are plain, common words so that
espeak pronounces them without surprises.
"""

from __future__ import annotations

import re

import numpy as np

from edtalk.data.schema import EMOTIONS

# Slots: {thing} and {person}, filled from the shared word lists below.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "angry": (
        "I am so furious about the {thing}.",
        "How dare {person} wreck the {thing} again!",
        "Stop it right now, I hate what you did to the {thing}!",
        "This is outrageous, {person} lied to me about the {thing}.",
        "I am sick and tired of this awful {thing}!",
    ),
    "disgusted": (
        "Ugh, that {thing} smells rotten and filthy.",
        "That is revolting, {person} left slime all over the {thing}.",
        "Yuck, the {thing} is covered in greasy mould.",
        "I feel sick just looking at that gross {thing}.",
        "Eww, who would ever touch such a nasty {thing}?",
    ),
    "contempt": (
        "Oh please, {person} thinks that {thing} is impressive.",
        "How pathetic, anyone could build a better {thing}.",
        "Frankly, the {thing} is beneath my attention.",
        "Sure, {person} is an expert on the {thing}, of course.",
        "What a cheap and silly little {thing}.",
    ),
    "fear": (
        "Please help me, something is hiding behind the {thing}.",
        "I am terrified, {person} never came back from the {thing}.",
        "Oh no, did you hear that noise near the {thing}?",
        "I am so scared, the {thing} is shaking in the dark.",
        "Run, we have to get away from the {thing} now!",
    ),
    "happy": (
        "I am so happy, {person} loved the {thing}!",
        "What a wonderful day, the {thing} is perfect.",
        "Hooray, we finally finished the beautiful {thing}!",
        "I love this {thing}, it makes me smile.",
        "This is great news, {person} won a brand new {thing}!",
    ),
    "neutral": (
        "The {thing} is on the table next to the door.",
        "{person} will bring the {thing} on Tuesday morning.",
        "Please put the {thing} in the second drawer.",
        "The meeting about the {thing} starts at nine.",
        "We moved the {thing} to the other room yesterday.",
    ),
    "sad": (
        "I miss {person} so much since the {thing} was lost.",
        "Nobody came to see the {thing}, and I feel so alone.",
        "I am heartbroken, the old {thing} is gone forever.",
        "It is so sad that {person} had to leave the {thing} behind.",
        "I cried all night about the broken {thing}.",
    ),
    "surprised": (
        "Wow, I cannot believe {person} found the {thing}!",
        "Oh my goodness, the {thing} is huge!",
        "Really? {person} built that {thing} all alone?",
        "What a surprise, there is a {thing} in the garden!",
        "No way, the {thing} actually works!",
    ),
}
_THINGS = (
    "window", "garden", "kitchen", "bicycle", "letter", "piano", "painting", "car",
    "lamp", "sandwich", "boat", "photo", "clock", "jacket", "table", "house",
)
_PERSONS = ("Maria", "my brother", "the neighbour", "our teacher", "David", "Anna",
            "my friend", "the doctor")


def compose(emotion: str, rng: np.random.Generator, sentences: int = 1) -> str:
    """``sentences`` emotion-specific sentences, chosen and filled by ``rng``."""
    if emotion not in _TEMPLATES:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    picks = rng.permutation(len(_TEMPLATES[emotion]))[:max(1, sentences)]
    out = []
    for k in picks:
        text = _TEMPLATES[emotion][int(k)].format(
            thing=_THINGS[int(rng.integers(len(_THINGS)))],
            person=_PERSONS[int(rng.integers(len(_PERSONS)))])
        # capitalise sentence starts, including a slot filled after "?" or "!"
        out.append(re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text))
    return " ".join(out)


def emotion_words(emotion: str) -> set[str]:
    """The words that appear in ``emotion``'s templates (for tests and analysis)."""
    words: set[str] = set()
    for template in _TEMPLATES[emotion]:
        for w in template.lower().replace("{thing}", " ").replace("{person}", " ").split():
            words.add(w.strip(".,!?"))
    return words
