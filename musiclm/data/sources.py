"""What the synthesized corpus draws from: music21's bundled corpus by composer, and GM instrument ensembles.

Each source knows what a caption can say about its works (composer, era, genre) and a plausible tempo range
in beats of the meter. Weights keep the 1,318 Palestrina masses from drowning everything else. Atonal works
(Schoenberg, Webern) are left out: a key in their captions would be a lie.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

SCORE_EXTENSIONS = (".mxl", ".xml", ".musicxml", ".krn", ".abc")
# Whole quartets in one file and 1 MB trecento credos take music21 minutes to parse; a job should take
# seconds. (Books of ABC tunes are fine: synth.py parses only the tune it plays.)
MAX_SCORE_BYTES = {".mxl": 120_000, ".xml": 600_000, ".musicxml": 600_000, ".krn": 600_000}


@dataclass(frozen=True)
class Source:
    name: str
    folders: tuple[str, ...]  # music21 corpus sub-folders
    composer: str
    era: str
    genre: str
    bpm_range: tuple[int, int]  # beats (of the meter) per minute
    weight: float
    monophonic: bool = False

    def piece_id(self, path: str) -> str:
        parts = Path(path).parts
        i = parts.index("corpus") if "corpus" in parts else 0
        return "/".join(parts[i + 1 :])

    def genre_for(self, path: str, rng: random.Random) -> str:
        """Fiddle tunes name their dance in the title ("...Reel", "...Jig")."""
        if self.monophonic:
            m = re.search(r"(reel|jig|hornpipe|strathspey|march|polka|waltz|air|slide)", Path(path).stem, re.I)
            if m:
                return f"folk {m.group(1).lower()}"
        return self.genre


SOURCES = (
    Source("bach", ("bach",), "J. S. Bach", "baroque", "chorale", (50, 100), 3.0),
    Source(
        "baroque",
        ("handel", "corelli", "cpebach"),
        "a baroque composer",
        "baroque",
        "instrumental piece",
        (50, 120),
        0.3,
    ),
    Source("palestrina", ("palestrina",), "Palestrina", "renaissance", "sacred motet", (45, 85), 1.5),
    Source("renaissance", ("josquin", "lusitano"), "a renaissance composer", "renaissance", "motet", (45, 85), 0.3),
    Source("monteverdi", ("monteverdi",), "Monteverdi", "renaissance", "madrigal", (50, 90), 0.8),
    Source("medieval", ("trecento", "ciconia", "luca"), "a trecento composer", "medieval", "ballata", (50, 90), 0.5),
    Source(
        "classical",
        ("beethoven", "mozart", "haydn"),
        "a classical composer",
        "classical",
        "string quartet movement",
        (50, 150),
        1.5,
    ),
    Source(
        "romantic",
        (
            "schumann_robert",
            "schumann_clara",
            "schubert",
            "chopin",
            "verdi",
            "weber",
            "beach",
            "joplin",
            "johnson_j_r",
            "liliuokalani",
        ),
        "a romantic composer",
        "romantic",
        "romantic piece",
        (45, 130),
        0.6,
    ),
    Source("fiddle", ("ryansMammoth",), "traditional", "traditional", "fiddle tune", (70, 130), 2.0, monophonic=True),
    Source("irish", ("oneills1850",), "traditional", "traditional", "irish folk tune", (70, 130), 0.5, monophonic=True),
    Source(
        "folksong",
        ("essenFolksong", "airdsAirs", "miscFolk"),
        "traditional",
        "traditional",
        "folk song",
        (60, 120),
        0.3,
        monophonic=True,
    ),
)

# General MIDI programs (0-based) and the words a caption uses for them.
GM = {
    0: "piano",
    4: "electric piano",
    6: "harpsichord",
    8: "celesta",
    10: "music box",
    11: "vibraphone",
    12: "marimba",
    13: "xylophone",
    19: "pipe organ",
    21: "accordion",
    22: "harmonica",
    24: "nylon-string guitar",
    25: "steel-string guitar",
    40: "violin",
    41: "viola",
    42: "cello",
    43: "double bass",
    46: "harp",
    48: "strings",
    52: "choir",
    56: "trumpet",
    57: "trombone",
    58: "tuba",
    60: "french horn",
    65: "alto saxophone",
    68: "oboe",
    70: "bassoon",
    71: "clarinet",
    73: "flute",
    74: "recorder",
    75: "pan flute",
    78: "tin whistle",
    105: "banjo",
    109: "bagpipe",
}

# Ensembles for several parts, by register from the top part down: (label, programs top→bottom; the last
# program repeats for extra parts).
POLY_ENSEMBLES = (
    ("piano", (0,)),
    ("string quartet", (40, 40, 41, 42)),
    ("string orchestra", (48,)),
    ("pipe organ", (19,)),
    ("choir", (52,)),
    ("brass ensemble", (56, 60, 57, 58)),
    ("woodwind quartet", (73, 68, 71, 70)),
    ("harpsichord", (6,)),
    ("classical guitar", (24,)),
    ("harp", (46,)),
    ("flute and piano", (73, 0)),
    ("violin and piano", (40, 0)),
    ("clarinet and strings", (71, 48)),
    ("marimba ensemble", (12,)),
    ("electric piano", (4,)),
    ("accordion", (21,)),
    ("vibraphone", (11,)),
    ("oboe and strings", (68, 48)),
    ("saxophone and piano", (65, 0)),
)
MONO_INSTRUMENTS = (73, 40, 74, 71, 68, 0, 21, 24, 25, 46, 12, 11, 56, 65, 75, 78, 109, 105, 22, 10, 13, 6, 4)


@dataclass(frozen=True)
class Ensemble:
    label: str
    parts: tuple[tuple[int, str], ...]  # (GM program, name) per score part, top→bottom

    def instrument_names(self) -> list[str]:
        seen: list[str] = []
        for _, name in self.parts:
            if name not in seen:
                seen.append(name)
        return seen


def choose_ensemble(n_parts: int, source: Source, rng: random.Random) -> Ensemble:
    if n_parts == 1 or (source.monophonic and rng.random() < 0.9):
        program = rng.choice(MONO_INSTRUMENTS)
        return Ensemble(f"solo {GM[program]}", tuple((program, GM[program]) for _ in range(n_parts)))
    label, programs = rng.choice(POLY_ENSEMBLES)
    if n_parts == 2 and len(programs) == 4:  # a duo from a quartet: top and bottom voices
        programs = (programs[0], programs[-1])
    chosen = tuple(programs[min(i, len(programs) - 1)] for i in range(n_parts))
    if label == "string quartet" and n_parts == 3:
        chosen = (40, 41, 42)
    return Ensemble(label, tuple((p, GM[p]) for p in chosen))


def list_pieces(source: Source) -> list[str]:
    """Score files of a source, sorted (music21's corpus paths are the same on every machine)."""
    from music21 import corpus

    out = []
    for p in corpus.getPaths():
        parts = Path(p).parts
        i = parts.index("corpus") if "corpus" in parts else -1
        suffix = Path(p).suffix
        if i >= 0 and len(parts) > i + 1 and parts[i + 1] in source.folders and suffix in SCORE_EXTENSIONS:
            if Path(p).stat().st_size <= MAX_SCORE_BYTES.get(suffix, 10**9):
                out.append(str(p))
    return sorted(out)
