"""Note events as tokens: miditok's REMI (Huang & Yang 2020) with programs, tempo and time signature, behind
a prefix of control tokens that say what the plan must be.

One planner sequence:

    BOS Key_2 Mode_minor Genre_chorale Inst_40 Inst_42 | Bar TimeSig_3/4 Position_0 Tempo_91.51 | body ... EOS
    `------------------- controls ------------------´   `------------- header --------------´

* controls: tonic pitch class, mode, genre (or Genre_any), the GM programs that may play (top voice first).
* header: REMI's own time-signature and tempo tokens (the meter and the tempo bucket), written by the caller
  at sampling time, never sampled, so a plan's meter and tempo are the ones asked.
* body: REMI bars `Bar Position Program Pitch Duration ...` with no tempo or meter changes (a piece is cut
  at its first meter change when cached). A training window may start at any bar: it gets the same header.

Velocities are not tokens: dynamics come from the caption and are applied, accented by the metre, when the
plan is written out, which keeps a note at three tokens (Program Pitch Duration) and a 1024-token window near 300 notes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from symusic import Score, Tempo

from musiclm.errors import MusicLMError
from musiclm.notes.midi import bar_quarters, beat_quarters

# Meters the tokenizer knows: every meter of the synth corpus's sources (Palestrina's 4/2 and 3/2 included).
TIME_SIGNATURES = {8: [3, 6, 9, 12], 4: [1, 2, 3, 4, 5, 6], 2: [2, 3, 4]}
FOLK_DANCES = ("reel", "jig", "hornpipe", "strathspey", "march", "polka", "waltz", "air", "slide")
GENRES = (
    "chorale",
    "instrumental piece",
    "sacred motet",
    "motet",
    "madrigal",
    "ballata",
    "string quartet movement",
    "romantic piece",
    "fiddle tune",
    "irish folk tune",
    "folk song",
    *(f"folk {d}" for d in FOLK_DANCES),
)
ANY = "any"
DYNAMICS_VELOCITY = {"soft": 52, "moderate": 76, "loud": 100}
# Metrical accent added to that velocity: the first beat of a bar, the other beats, notes between beats.
# Strong beats carry stress in performance (Lerdahl & Jackendoff 1983, "A Generative Theory of Tonal Music",
# ch. 4, the metrical grid). With one flat velocity a plan's dotted figures pulse as loudly as its beats, and
# a 4/4 at 117 bpm was heard at 2/3 of its tempo. What carries the pulse is the contrast between beats and
# the notes between them, more than the bar's accent: on 40 plans (eval/eval_melody.py's draws, and 40 other
# draws to guard against tuning to those), tempo heard on the render / through the codec at the LM's 4
# codebooks: flat 60 % / -; +20 / +8 / -8: 72.5 % / 52.5 % (70 % / 52.5 %); +24 / +18 / -18: 80 % / 67.5 %
# (75 % / 67.5 %); +30 / +22 / -22: no better (77.5 % / 65 % on the other draws).
ACCENT_DOWNBEAT, ACCENT_BEAT, ACCENT_OFFBEAT = 24, 18, -18


def metrical_velocity(tick: int, bar_ticks: int, beat_ticks: int, base: int) -> int:
    """`base` shaped by where `tick` falls in bars of `bar_ticks` and beats of `beat_ticks` (bars from tick 0),
    within MIDI's 1-127."""
    on_beat = tick % bar_ticks % beat_ticks == 0
    accent = ACCENT_DOWNBEAT if tick % bar_ticks == 0 else ACCENT_BEAT if on_beat else ACCENT_OFFBEAT
    return int(min(127, max(1, base + accent)))


@dataclass(frozen=True)
class Controls:
    """What a plan must be. `bpm` counts beats of the meter (as captions do), `programs` are GM programs
    (0-based, top voice first), `genre` None lets the planner choose."""

    key: int = 0  # tonic pitch class, 0 = C
    mode: str = "major"
    bpm: float = 90.0
    meter: str = "4/4"
    programs: tuple[int, ...] = (0,)
    genre: str | None = None
    dynamics: str = "moderate"
    fields: dict = field(default_factory=dict, compare=False)  # what the prompt stated, for the record

    @property
    def qpm(self) -> float:
        """The MIDI tempo: quarter notes per minute."""
        return self.bpm * beat_quarters(self.meter)

    def check(self) -> None:
        if self.mode not in ("major", "minor"):
            raise MusicLMError(f"mode must be major or minor, got {self.mode!r}")
        if not 0 <= self.key < 12:
            raise MusicLMError(f"key must be a pitch class 0-11, got {self.key}")
        if not (math.isfinite(self.bpm) and 20 <= self.bpm <= 400):
            raise MusicLMError(f"tempo must be 20-400 BPM, got {self.bpm}")
        if not self.programs or any(not 0 <= p < 128 for p in self.programs):
            raise MusicLMError(f"instruments must be 1 or more GM programs 0-127, got {list(self.programs)}")
        if self.genre is not None and self.genre not in GENRES:
            raise MusicLMError(f"unknown genre {self.genre!r}; known: {', '.join(GENRES)}")
        if self.dynamics not in DYNAMICS_VELOCITY:
            raise MusicLMError(f"dynamics must be one of {sorted(DYNAMICS_VELOCITY)}, got {self.dynamics!r}")


class NoteTokenizer:
    """REMI (miditok) + the control vocabulary. Ids below `len(remi)` are miditok's own; controls follow."""

    VERSION = 1  # bumped when the vocabulary or the sequence layout changes; stored with every planner

    def __init__(self):
        from miditok import REMI, TokenizerConfig

        self.remi = REMI(
            TokenizerConfig(
                pitch_range=(21, 109),
                use_velocities=False,
                use_tempos=True,
                num_tempos=32,
                tempo_range=(40, 250),
                log_tempos=True,
                use_time_signatures=True,
                time_signature_range=TIME_SIGNATURES,
                use_programs=True,
                one_token_stream_for_programs=True,
                special_tokens=["PAD", "BOS", "EOS"],
            )
        )
        names = [None] * len(self.remi.vocab)
        for name, i in self.remi.vocab.items():
            names[i] = name
        names += [f"Key_{pc}" for pc in range(12)] + ["Mode_major", "Mode_minor"]
        names += [f"Genre_{g}" for g in (*GENRES, ANY)] + [f"Inst_{p}" for p in range(128)]
        self.names: list[str] = names
        self.ids = {n: i for i, n in enumerate(names)}
        self.pad, self.bos, self.eos, self.bar = (self.ids[n] for n in ("PAD_None", "BOS_None", "EOS_None", "Bar_None"))
        self.kind = np.array([n.split("_", 1)[0] for n in names])  # "Pitch", "Position", "Key", ...
        self.tempos = np.asarray(self.remi.tempos, dtype=np.float64)
        self.pitch_of = np.full(len(names), -1, dtype=np.int64)
        self.program_of = np.full(len(names), -1, dtype=np.int64)
        self.position_of = np.full(len(names), -1, dtype=np.int64)
        for i, n in enumerate(names):
            kind, _, value = n.partition("_")
            if kind == "Pitch":
                self.pitch_of[i] = int(value)
            elif kind == "Program":
                self.program_of[i] = int(value)
            elif kind == "Position":
                self.position_of[i] = int(value)

    def __len__(self) -> int:
        return len(self.names)

    # ---- controls and header ------------------------------------------------------------------------------
    def meters(self) -> list[str]:
        return [n[len("TimeSig_") :] for n in self.names if n.startswith("TimeSig_")]

    def tempo_token(self, qpm: float) -> int:
        """The REMI tempo bucket nearest `qpm` (log scale; buckets ~6 % apart)."""
        k = int(np.argmin(np.abs(np.log(self.tempos) - math.log(max(qpm, 1e-3)))))
        return self.ids[f"Tempo_{self.remi.tempos[k]}"]

    def control_ids(self, c: Controls) -> list[int]:
        c.check()
        ids = [self.bos, self.ids[f"Key_{c.key}"], self.ids[f"Mode_{c.mode}"], self.ids[f"Genre_{c.genre or ANY}"]]
        seen: list[int] = []
        for p in c.programs:
            if p not in seen:
                seen.append(p)
        return ids + [self.ids[f"Inst_{p}"] for p in seen]

    def header_ids(self, meter: str, qpm: float) -> list[int]:
        name = f"TimeSig_{meter}"
        if name not in self.ids:
            raise MusicLMError(f"meter {meter} is not one the planner knows ({', '.join(self.meters())})")
        return [self.bar, self.ids[name], self.ids["Position_0"], self.tempo_token(qpm)]

    def window(self, c: Controls, bars: list[list[int]], end: bool = False) -> list[int]:
        """controls + header + `bars` (body bars without their Bar token) [+ EOS]: one planner sequence."""
        ids = self.control_ids(c) + self.header_ids(c.meter, c.qpm)
        for b, bar in enumerate(bars):
            if b == 0:  # the header already opened bar 0 at position 0
                ids += bar[1:] if bar and bar[0] == self.ids["Position_0"] else bar
            else:
                ids += [self.bar, *bar]
        return ids + [self.eos] if end else ids

    # ---- scores ↔ body bars -------------------------------------------------------------------------------
    def encode_bars(self, score: Score) -> list[list[int]]:
        """A score (one meter, any tempo) → its bars as REMI ids, without Bar, TimeSig or Tempo tokens."""
        seq = self.remi.encode(score)
        seq = seq[0] if isinstance(seq, list) else seq
        bars: list[list[int]] = []
        for i in seq.ids:
            kind = self.kind[i]
            if kind == "Bar":
                bars.append([])
            elif kind in ("Pitch", "Program", "Duration", "Position"):
                assert bars, "REMI starts with a Bar token"
                bars[-1].append(int(i))
        return [self._drop_dangling_positions(b) for b in bars]

    def _drop_dangling_positions(self, bar: list[int]) -> list[int]:
        """A Position that only carried a tempo or meter change is followed by another Position or nothing."""
        out = []
        for k, i in enumerate(bar):
            nxt = bar[k + 1] if k + 1 < len(bar) else None
            if self.kind[i] == "Position" and (nxt is None or self.kind[nxt] == "Position"):
                continue
            out.append(i)
        return out

    def decode(self, ids: list[int], c: Controls) -> Score:
        """A planner sequence (controls optional) → Score in ticks with the exact tempo asked and the
        velocity of the asked dynamics, accented by the metre (`metrical_velocity`). Control, BOS, PAD
        tokens and everything after EOS are ignored."""
        remi_size = len(self.remi.vocab)
        body = []
        for i in ids:
            if i == self.eos:
                break
            if self.bos < i < remi_size:  # PAD, BOS and the control ids (>= remi_size) are not REMI
                body.append(int(i))
        score = self.remi.decode(body)
        score.tempos.clear()
        score.tempos.append(Tempo(0, qpm=c.qpm))
        velocity, tpq = DYNAMICS_VELOCITY[c.dynamics], score.ticks_per_quarter
        bar, beat = round(bar_quarters(c.meter) * tpq), round(beat_quarters(c.meter) * tpq)  # once per plan
        for track in score.tracks:
            for note in track.notes:
                note.velocity = metrical_velocity(note.time, bar, beat, velocity)
        return score


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> NoteTokenizer:
    return NoteTokenizer()
