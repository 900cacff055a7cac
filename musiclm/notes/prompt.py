"""A prompt → the controls of a plan: what the text states, and seeded choices for what it does not.

Key, mode, BPM, meter and tempo words are read by `musiclm.data.captions.parse_controls`, the parser the
adherence evaluation uses; instruments, genre and dynamics by the word lists the captions are made from
(`musiclm.data.sources.GM`, its ensembles, `captions.DYNAMICS_WORDS`), so any caption of the synth corpus
reads back to its fields.
"""

from __future__ import annotations

import random
import re

from musiclm.data.captions import DYNAMICS_WORDS, NOTE_NAMES, TEMPO_WORDS, parse_controls
from musiclm.data.sources import GM, POLY_ENSEMBLES
from musiclm.notes.tokens import FOLK_DANCES, GENRES, Controls

# Longest phrases first, so "string quartet" wins over "strings" and "electric piano" over "piano".
_INSTRUMENTS = sorted(
    [(label, programs) for label, programs in POLY_ENSEMBLES]
    + [(name, (p,)) for p, name in GM.items()]
    + [("guitar", (24,)), ("organ", (19,)), ("saxophone", (65,)), ("sax", (65,)), ("horn", (60,)), ("bass", (43,))]
    + [("violins", (40,)), ("flutes", (73,)), ("voices", (52,)), ("string ensemble", (48,))],
    key=lambda item: -len(item[0]),
)
_GENRE_WORDS = sorted(
    [(g, g) for g in GENRES]
    + [(d, f"folk {d}") for d in FOLK_DANCES]
    + [
        ("hymn", "chorale"),
        ("quartet", "string quartet movement"),
        ("fiddle", "fiddle tune"),
        ("irish", "irish folk tune"),
    ],
    key=lambda item: -len(item[0]),
)
# the genres' own names, longest first, blanked before instruments are read (`parse_prompt`)
_GENRE_NAMES = re.compile(r"\b(?:" + "|".join(re.escape(g) for g in sorted(GENRES, key=len, reverse=True)) + r")s?\b")
_DEFAULT_BPM = {
    "slow": (48, 64),
    "moderately slow": (68, 90),
    "moderate": (94, 118),
    "fast": (122, 150),
    "very fast": (154, 180),
}


def _find(words: list[tuple[str, object]], text: str) -> list[tuple[int, object]]:
    """(position, value) of every phrase found, each stretch of text used once, longest phrase first."""
    taken = [False] * len(text)
    found = []
    for phrase, value in words:
        for m in re.finditer(rf"\b{re.escape(phrase)}s?\b", text):
            if not any(taken[m.start() : m.end()]):
                taken[m.start() : m.end()] = [True] * (m.end() - m.start())
                found.append((m.start(), value))
    return sorted(found, key=lambda item: item[0])


def parse_prompt(prompt: str) -> dict:
    """The fields a prompt states: key (pitch class), mode, bpm, meter, tempo_word, programs, genre, dynamics."""
    text = prompt.lower()
    fields = {k: v for k, v in parse_controls(prompt).items()}
    if "key" in fields:
        name = fields["key"]
        fields["key"] = (NOTE_NAMES.index(name[0]) + (1 if name[1:] == "#" else -1 if name[1:] == "b" else 0)) % 12
    # A genre's name may hold an ensemble ("string quartet movement" played by "a pipe organ"): instruments
    # named outside genre names come first; the genre's ensemble only when the prompt names no other.
    outside = _GENRE_NAMES.sub(lambda m: " " * len(m.group()), text)
    programs: list[int] = []
    for _, progs in _find(_INSTRUMENTS, outside) or _find(_INSTRUMENTS, text):
        programs += [p for p in progs if p not in programs]
    if programs:
        fields["programs"] = tuple(programs)
    genres = _find(_GENRE_WORDS, text)
    if genres:
        fields["genre"] = genres[0][1]
    for level, words in DYNAMICS_WORDS.items():
        if any(re.search(rf"\b{re.escape(w)}\b", text) for w in words):
            fields["dynamics"] = level
            break
    return fields


def controls_from_prompt(prompt: str, seed: int = 0, **fields) -> Controls:
    """Controls for `prompt`; keyword `fields` (key, mode, bpm, meter, programs, genre, dynamics) override
    what the text says. Whatever neither states is drawn from `seed`: key and mode, a tempo in the range of
    the stated tempo word, 4/4 or 3/4, piano."""
    stated = {**parse_prompt(prompt), **{k: v for k, v in fields.items() if v is not None}}
    rng = random.Random(f"plan:{seed}")
    key = stated.get("key", rng.randrange(12))
    mode = stated.get("mode", "major" if rng.random() < 0.6 else "minor")
    bpm = stated.get("bpm")
    if bpm is None:
        word = stated.get("tempo_word") or rng.choice([w for _, w, _ in TEMPO_WORDS[:4]])
        bpm = float(rng.randint(*_DEFAULT_BPM[word]))
    meter = stated.get("meter") or ("4/4" if rng.random() < 0.6 else "3/4")
    c = Controls(
        key=int(key),
        mode=mode,
        bpm=float(bpm),
        meter=meter,
        programs=tuple(stated.get("programs") or (0,)),
        genre=stated.get("genre"),
        dynamics=stated.get("dynamics", "moderate"),
        fields={k: v for k, v in stated.items()},
    )
    c.check()
    return c
