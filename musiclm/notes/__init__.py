"""Notes first: MIDI in/out, note events as tokens, the planner (text → notes), per-frame note features.

    midi.py      MIDI files (symusic): load with checks, save, note arrays, key/meter/tempo of a score
    tokens.py    miditok REMI + control tokens (key, mode, genre, instruments; meter and tempo in the header)
    prompt.py    a prompt → the controls of a plan
    corpus.py    the music21 corpus as cached REMI bars (the synth corpus's pieces and splits), windows
    model.py     the planner transformer (musiclm.nn blocks, KV cache), its model directory
    planner.py   plan(prompt, seconds, seed) → Plan (its .midi is a symusic Score), windowed long plans
    features.py  piano_roll_features(midi) [T, 48] and chroma_features(wav) [T, 12] at the codec frame rate
    metrics.py   what a plan is judged by: key/meter/tempo adherence, novelty against the training pieces

Names are imported on first use, so `musiclm.notes.midi` stays light for the corpus renderer.
"""

from __future__ import annotations

_EXPORTS = {
    "plan": "musiclm.notes.planner",
    "Plan": "musiclm.notes.planner",
    "load_planner": "musiclm.notes.planner",
    "Planner": "musiclm.notes.model",
    "PlannerConfig": "musiclm.notes.model",
    "Controls": "musiclm.notes.tokens",
    "NoteTokenizer": "musiclm.notes.tokens",
    "controls_from_prompt": "musiclm.notes.prompt",
    "load_midi": "musiclm.notes.midi",
    "save_midi": "musiclm.notes.midi",
    "piano_roll_features": "musiclm.notes.features",
    "chroma_features": "musiclm.notes.features",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'musiclm.notes' has no attribute {name!r}")
