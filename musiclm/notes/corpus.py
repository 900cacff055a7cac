"""The planner's training data: the music21 corpus as REMI bars, cached, and windows drawn from it.

Pieces are the synth corpus's pieces (`musiclm.data.sources`: same sources, same piece ids, a book of ABC
tunes split into `path#n`), and each keeps the split `split_for_piece` gives it, so a piece held out from
the audio corpus is held out from the planner too.

Cache (data/planner/, gitignored): one `shard-SOURCE-NNN.npz` per 100 pieces, written atomically when done,
so an interrupted build resumes at the next unfinished shard. A shard holds every bar's REMI ids (programs
are placeholders: part i plays `Program_i`; no tempo), each bar's duration-weighted pitch classes, and per
piece its id, split, source, meter, number of parts and pitch range.

A training window (`draw_window`) augments as the synth corpus varies its renders: a transposition in
[-5, +5] semitones (the key control moves with it), a tempo from the source's range, an ensemble from
`choose_ensemble`; it starts at bar 0 (30 %) or a random bar, and its key is the key of the bars it holds.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musiclm.audio import atomic_write
from musiclm.data.manifest import split_for_piece
from musiclm.data.render import abc_tunes, strip_repeats
from musiclm.data.sources import SOURCES, Source, choose_ensemble, list_pieces
from musiclm.errors import MusicLMError
from musiclm.notes.midi import bar_quarters, from_music21, key_from_histogram
from musiclm.notes.tokens import Controls, NoteTokenizer

CACHE_VERSION = 1
SHARD_SIZE = 100
# Parsing is the cost (music21: 0.05 s a folk tune, 0.5 s a Palestrina movement, 1 s a quartet movement):
# the large sources keep a stable subset (lowest hash of the piece id, so every split keeps its share) that
# a 2-core machine parses in minutes; the other sources are kept whole.
DEFAULT_CAPS = {"folksong": 400, "irish": 600, "palestrina": 150}
# music21 parse time per piece on this project's machines (seconds), to order the cache build
PARSE_SECONDS = {"irish": 0.04, "fiddle": 0.05, "folksong": 0.05, "baroque": 0.08, "renaissance": 0.08, "bach": 0.12}
PLACEHOLDER_QPM = 120.0


@dataclass(frozen=True)
class PieceRef:
    source: str
    path: str
    tune: int | None  # index of the tune in a book of ABC tunes
    piece: str  # the synth corpus's piece id
    split: str


def corpus_pieces(caps: dict[str, int] | None = None, sources: tuple[Source, ...] = SOURCES) -> list[PieceRef]:
    """Every piece of the synth corpus's sources, with the ids and splits `musiclm.data.synth` gives them."""
    caps = DEFAULT_CAPS if caps is None else caps
    out = []
    for src in sources:
        refs = []
        for path in list_pieces(src):
            base = src.piece_id(path)
            tunes = abc_tunes(path) if path.endswith(".abc") else []
            if len(tunes) > 1:  # as synth._render: a book's tune n is the piece "path#n"
                refs += [
                    PieceRef(src.name, path, n, f"{base}#{n}", split_for_piece(f"{base}#{n}"))
                    for n in range(len(tunes))
                ]
            else:
                refs.append(PieceRef(src.name, path, None, base, split_for_piece(base)))
        cap = caps.get(src.name)
        if cap is not None and len(refs) > cap:
            refs = sorted(refs, key=lambda r: hashlib.sha1(r.piece.encode()).digest())[:cap]
            refs.sort(key=lambda r: (r.path, r.tune or 0))
        out += refs
    return out


# ---------------------------------------------------------------- one piece → bars


def parse_piece(ref: PieceRef):
    """The music21 score of a piece (the tune of a book; the first score of an opus), repeats not taken."""
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ref.tune is not None:
            score = converter.parse(abc_tunes(ref.path)[ref.tune], format="abc")
        else:
            score = converter.parse(ref.path)
        if type(score).__name__ == "Opus":
            score = score.scores[0]
        return strip_repeats(score)


def piece_bars(tok: NoteTokenizer, m21_score) -> dict:
    """A music21 score → {meter, n_parts, bars: [[ids]], chroma [n_bars, 12], pmin, pmax}. The bars start at
    the first full bar line (a pickup keeps its place in its bar) and end at the first change of meter."""
    from symusic import Tempo, TimeSignature

    parts = list(m21_score.parts)
    if not parts:
        raise ValueError("no parts")
    ts = m21_score.recurse().getElementsByClass("TimeSignature").first()
    meter = ts.ratioString if ts else "4/4"
    if f"TimeSig_{meter}" not in tok.ids:
        raise ValueError(f"meter {meter} not in the vocabulary")
    measures = parts[0].getElementsByClass("Measure")
    pickup = float(measures[0].paddingLeft) if len(measures) else 0.0

    score = from_music21(m21_score)
    tpq = score.ticks_per_quarter
    if pickup > 0:  # music21 starts the MIDI at the pickup's first note: move it to its place in the bar
        score = score.shift_time(int(round(pickup * tpq)))
    changes = sorted(t.time for t in score.time_signatures if f"{t.numerator}/{t.denominator}" != meter)
    end = changes[0] if changes else None
    score.time_signatures.clear()
    score.time_signatures.append(TimeSignature(0, *(int(x) for x in meter.split("/")), "tick"))
    score.tempos.clear()
    score.tempos.append(Tempo(0, qpm=PLACEHOLDER_QPM))
    score.key_signatures.clear()
    kept = []
    for track in score.tracks:
        if track.is_drum:
            continue
        if end is not None:
            track = track.clip(0, end, clip_end=True)
        if len(track.notes):
            kept.append(track)
    if not kept:
        raise ValueError("no pitched notes")
    score.tracks.clear()
    for i, track in enumerate(kept):
        track.program = i  # placeholder: part i; a window maps it to its ensemble's i-th program
        score.tracks.append(track)
    bars = tok.encode_bars(score)
    if not bars or not any(bars):
        raise ValueError("no notes in range")

    bar_ticks = bar_quarters(meter) * tpq
    chroma = np.zeros((len(bars), 12), dtype=np.float32)
    pitches = []
    for track in kept:
        n = track.notes.numpy()
        idx = np.minimum((n["time"] / bar_ticks).astype(int), len(bars) - 1)
        np.add.at(chroma, (idx, n["pitch"] % 12), n["duration"] / tpq)
        pitches.append(n["pitch"])
    pitches = np.concatenate(pitches)
    return {
        "meter": meter,
        "n_parts": len(kept),
        "bars": bars,
        "chroma": chroma,
        "pmin": int(pitches.min()),
        "pmax": int(pitches.max()),
    }


# ---------------------------------------------------------------- the cache


def _tokenizer_fingerprint(tok: NoteTokenizer) -> str:
    return hashlib.sha1(json.dumps([CACHE_VERSION, tok.VERSION, tok.names]).encode()).hexdigest()[:16]


def build_cache(
    out: str | Path,
    caps: dict[str, int] | None = None,
    sources: tuple[Source, ...] = SOURCES,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Parse and tokenize the corpus into `out` (resumable by shard). `limit`: at most that many pieces per
    source (tests, smoke runs). Returns a summary."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = NoteTokenizer()
    stamp = out / "cache.json"
    settings = {"version": CACHE_VERSION, "tokenizer": _tokenizer_fingerprint(tok), "caps": caps or DEFAULT_CAPS}
    if limit is not None:
        settings["limit"] = limit
    if stamp.is_file() and json.loads(stamp.read_text()) != settings:
        raise MusicLMError(f"{out} holds a planner cache made with other settings; use another folder")
    with atomic_write(stamp) as tmp:
        Path(tmp).write_text(json.dumps(settings, indent=2))

    summary = {"pieces": 0, "failed": 0, "bars": 0, "tokens": 0}
    refs = corpus_pieces(caps, sources)
    by_source: dict[str, list[PieceRef]] = {}
    for r in refs:
        by_source.setdefault(r.source, []).append(r)
    queues = []
    for name, items in by_source.items():
        items = items[:limit] if limit is not None else items
        queues.append([(name, k, items[k : k + SHARD_SIZE]) for k in range(0, len(items), SHARD_SIZE)])
    # round robin over the sources, cheapest to parse first, so a cache cut short still holds some of
    # every source and the most pieces for its time
    queues.sort(key=lambda q: PARSE_SECONDS.get(q[0][0], 0.5))
    jobs = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    for name, k, chunk in tqdm(jobs, desc="planner cache", unit="shard", disable=not progress):
        path = out / f"shard-{name}-{k // SHARD_SIZE:03d}.npz"
        if not path.is_file():
            _write_shard(path, tok, chunk, progress)
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            summary["pieces"] += len(meta["pieces"])
            summary["failed"] += meta["failed"]
            summary["bars"] += int(z["bar_starts"].shape[0])
            summary["tokens"] += int(z["ids"].shape[0])
    return summary


def _write_shard(path: Path, tok: NoteTokenizer, refs: list[PieceRef], progress: bool) -> None:
    ids, bar_starts, chroma, pieces, failed = [], [], [], [], 0
    n_ids = n_bars = 0
    for ref in refs:
        try:
            rec = piece_bars(tok, parse_piece(ref))
        except Exception:  # a score music21 cannot read, a meter outside the vocabulary, no notes: skip it
            failed += 1
            continue
        pieces.append(
            {
                "piece": ref.piece,
                "source": ref.source,
                "path": ref.path,
                "split": ref.split,
                "meter": rec["meter"],
                "n_parts": rec["n_parts"],
                "pmin": rec["pmin"],
                "pmax": rec["pmax"],
                "first_bar": n_bars,
                "n_bars": len(rec["bars"]),
            }
        )
        for bar in rec["bars"]:
            bar_starts.append(n_ids)
            ids += bar
            n_ids += len(bar)
        n_bars += len(rec["bars"])
        chroma.append(rec["chroma"])
    meta = {"pieces": pieces, "failed": failed}
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            ids=np.asarray(ids, dtype=np.int16),
            bar_starts=np.asarray(bar_starts, dtype=np.int64),
            chroma=np.concatenate(chroma) if chroma else np.zeros((0, 12), np.float32),
            meta=np.asarray(json.dumps(meta)),
        )


@dataclass
class Piece:
    piece: str
    source: str
    path: str
    split: str
    meter: str
    n_parts: int
    pmin: int
    pmax: int
    bars: list[np.ndarray]  # REMI ids per bar (int64), placeholder programs, no Bar token
    chroma: np.ndarray  # [n_bars, 12]


def load_cache(folder: str | Path, splits: tuple[str, ...] = ("train", "valid", "test")) -> list[Piece]:
    folder = Path(folder)
    stamp = folder / "cache.json"
    if not stamp.is_file():
        raise MusicLMError(f"{folder}: no planner cache (build it with train/train_planner.py --prepare)")
    if json.loads(stamp.read_text())["tokenizer"] != _tokenizer_fingerprint(NoteTokenizer()):
        raise MusicLMError(f"{folder}: the cache was made with another tokenizer; rebuild it in a new folder")
    pieces = []
    for path in sorted(folder.glob("shard-*.npz")):
        with np.load(path) as z:
            ids, starts, chroma = z["ids"].astype(np.int64), z["bar_starts"], z["chroma"]
            meta = json.loads(str(z["meta"]))
        ends = np.append(starts[1:], len(ids))
        for m in meta["pieces"]:
            if m["split"] not in splits:
                continue
            b0, n = m.pop("first_bar"), m.pop("n_bars")
            bars = [ids[starts[b] : ends[b]] for b in range(b0, b0 + n)]
            pieces.append(Piece(**m, bars=bars, chroma=chroma[b0 : b0 + n]))
    return pieces


# ---------------------------------------------------------------- windows


class WindowMaker:
    """Planner sequences from cached pieces: `draw` (augmented, for training) and `held_out` (fixed)."""

    def __init__(self, tok: NoteTokenizer, max_len: int):
        self.tok, self.max_len = tok, max_len
        self.sources = {s.name: s for s in SOURCES}
        V = len(tok)
        self.shift = {}  # semitones → id map that transposes Pitch tokens
        for s in range(-5, 6):
            table = np.arange(V)
            for i in np.nonzero(tok.pitch_of >= 0)[0]:
                j = tok.ids.get(f"Pitch_{tok.pitch_of[i] + s}")
                if j is not None:
                    table[i] = j
            self.shift[s] = table
        self.program_ids = np.array([tok.ids[f"Program_{p}"] for p in range(128)])

    def window(
        self, piece: Piece, start: int, semitones: int, bpm: float, programs: tuple[int, ...], genre: str | None
    ) -> tuple[list[int], int, int]:
        """→ (ids, prefix length, notes in the window). Bars from `start` while they fit in max_len."""
        tok = self.tok
        table = self.shift[semitones].copy()
        placeholder = self.program_ids[: piece.n_parts]
        table[placeholder] = self.program_ids[list(programs)]
        prefix = 5 + len(set(programs)) + 3  # controls + header (without its Bar), an upper bound
        budget, bars, stop = self.max_len - prefix - 1, [], start
        for b in range(start, len(piece.bars)):
            cost = len(piece.bars[b]) + 1
            if budget - cost < 0 and bars:
                break
            budget -= cost
            bars.append(table[piece.bars[b]].tolist())
            stop = b + 1
        h = np.roll(piece.chroma[start:stop].sum(0), semitones)
        tonic, mode, _ = key_from_histogram(h)
        c = Controls(tonic, mode, bpm, piece.meter, tuple(programs), genre)
        ids = tok.window(c, bars, end=stop == len(piece.bars))[: self.max_len]
        n_prefix = len(tok.control_ids(c)) + 4
        n_notes = int(sum((tok.kind[np.asarray(b, dtype=np.int64)] == "Pitch").sum() for b in bars if b))
        return ids, n_prefix, n_notes

    def draw(self, pieces_by_source: dict[str, list[Piece]], rng: random.Random) -> tuple[list[int], int]:
        names = sorted(pieces_by_source)
        src = self.sources[rng.choices(names, [self.sources[n].weight for n in names])[0]]
        piece = rng.choice(pieces_by_source[src.name])
        shifts = [s for s in range(-5, 6) if piece.pmin + s >= 21 and piece.pmax + s <= 108] or [0]
        semitones = rng.choice(shifts)
        bpm = float(rng.uniform(*src.bpm_range))
        ensemble = choose_ensemble(piece.n_parts, src, rng)
        programs = tuple(p for p, _ in ensemble.parts)
        genre = None if rng.random() < 0.2 else src.genre_for(piece.path, rng)
        start = 0 if rng.random() < 0.3 else rng.randrange(len(piece.bars))
        ids, n_prefix, _ = self.window(piece, start, semitones, bpm, programs, genre)
        return ids, n_prefix

    def held_out(self, pieces: list[Piece]) -> list[tuple[list[int], int, int]]:
        """Every bar of every piece once, in consecutive windows; untransposed, the source's middle tempo,
        an ensemble drawn from the piece id: the same windows on every run."""
        out = []
        for piece in pieces:
            src = self.sources[piece.source]
            rng = random.Random(piece.piece)
            programs = tuple(p for p, _ in choose_ensemble(piece.n_parts, src, rng).parts)
            bpm = sum(src.bpm_range) / 2
            start = 0
            while start < len(piece.bars):
                ids, n_prefix, n_notes = self.window(piece, start, 0, bpm, programs, src.genre_for(piece.path, rng))
                out.append((ids, n_prefix, n_notes))
                start += max(1, ids.count(self.tok.bar))
        return out


def by_source(pieces: list[Piece]) -> dict[str, list[Piece]]:
    out: dict[str, list[Piece]] = {}
    for p in pieces:
        out.setdefault(p.source, []).append(p)
    return out
