"""The synthesized corpus: real compositions from the music21 corpus, rendered offline with FluidSynth.

Each *job* takes one work, picks (from a seeded RNG) General MIDI instruments, a tempo, a transposition and a
dynamic level, writes MIDI with music21, renders it with FluidSynth at the target rate, and cuts 1-3 clips of
10-30 s. Captions come from what is known (composer, era, genre, meter, instruments, tempo, dynamics) and what
is computed from the notes under each clip (key/mode by Krumhansl-Schmuckler, note density).

Determinism: job i depends only on (seed, i); the corpus of `minutes` is the shortest prefix of the job list
whose clips reach that length, whatever the number of workers. Resumability: each finished job leaves
`jobs/NNNNNN.json` (written last, atomically); a restart loads those and renders only the rest. The manifest
is rewritten atomically after every job, so a partial corpus is always a valid manifest.

Every clip keeps its notes: `audio/NNN/ID.mid` beside `ID.flac`, recorded as the row's "midi", cut from the
MIDI FluidSynth rendered and shifted so its time 0 is the clip's first sample (a note held into the clip
starts at 0). A job recorded before clips kept their MIDI is rendered again on resume: the job depends
only on (seed, index), so its audio comes out the same and its rows gain "midi".
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import random
import tempfile
import time
import warnings
import zlib
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from symusic import Score

from musiclm.audio import atomic_write
from musiclm.data.analysis import key_from_chroma
from musiclm.data.captions import density_word, dynamics_word, make_caption, mood_words, tempo_word
from musiclm.data.manifest import split_for_piece, write_manifest
from musiclm.data.render import DEFAULT_SOUNDFONT, abc_tunes, check_renderer, render_midi, strip_repeats
from musiclm.data.sources import SOURCES, Ensemble, choose_ensemble, list_pieces
from musiclm.errors import MusicLMError
from musiclm.notes.midi import clip_seconds, save_midi

# Bumped whenever the job list or a job's output changes, so a resume never mixes two recipes.
CORPUS_VERSION = 2


@dataclass
class SynthConfig:
    out: str = "data/synth"
    minutes: float = 60.0
    seed: int = 0
    workers: int = 2
    sample_rate: int = 24000
    soundfont: str = DEFAULT_SOUNDFONT
    min_clip: float = 10.0  # seconds
    max_clip: float = 30.0
    max_clips_per_job: int = 3
    audio_format: str = "flac"
    only_split: str | None = None  # render only the works of this split (e.g. a larger held-out set)


# ---------------------------------------------------------------- the job list (deterministic in the seed)


def job_list(seed: int, limit: int = 200_000, only_split: str | None = None):
    """Yield (index, source name, corpus path) forever-ish: sources drawn by weight, works shuffled per
    source and cycled (a second pass over a work gets other instruments/tempo, since job seeds differ).
    `only_split` keeps the works of one split (books of ABC tunes stay: the job picks a tune of that split)."""
    rng = random.Random(seed)
    pools = {}
    for src in SOURCES:
        paths = list_pieces(src)
        if only_split:
            paths = [
                p
                for p in paths
                if split_for_piece(src.piece_id(p)) == only_split or (p.endswith(".abc") and len(abc_tunes(p)) > 1)
            ]
        if paths:
            rng.shuffle(paths)
            pools[src.name] = deque(paths)
    names = sorted(pools)
    weights = [next(s.weight for s in SOURCES if s.name == n) for n in names]
    for i in range(limit):
        name = rng.choices(names, weights)[0]
        path = pools[name][0]
        pools[name].rotate(-1)
        yield i, name, path


def _job_rng(seed: int, index: int) -> random.Random:
    return random.Random(seed * 1_000_003 + index)


# ---------------------------------------------------------------- one job: score → MIDI → audio → clips


def render_job(cfg: SynthConfig, index: int, source_name: str, path: str) -> dict:
    """Render job `index`; return its record {index, piece, rows, error, seconds}. Never raises for a bad
    score (the record carries the error), so one broken file cannot stop the corpus."""
    t0 = time.time()
    rng = _job_rng(cfg.seed, index)
    record = {"index": index, "source": source_name, "path": path, "piece": path, "rows": [], "error": None}
    try:
        record.update(_render(cfg, index, source_name, path, rng))
    except MusicLMError:
        raise
    except Exception as e:  # a score music21 cannot read or write, an empty excerpt, ...
        record["error"] = f"{type(e).__name__}: {str(e)[:200]}"
    record["seconds"] = round(time.time() - t0, 3)
    return record


def _render(cfg: SynthConfig, index: int, source_name: str, path: str, rng: random.Random) -> dict:
    from music21 import converter, instrument, tempo

    src = next(s for s in SOURCES if s.name == source_name)
    piece = src.piece_id(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tunes = abc_tunes(path) if path.endswith(".abc") else []
        if len(tunes) > 1:  # a book of tunes: each tune is its own piece; parse only the one we play
            if cfg.only_split:
                n = rng.choice(
                    [k for k in range(len(tunes)) if split_for_piece(f"{piece}#{k}") == cfg.only_split] or [0]
                )
            else:
                n = rng.randrange(len(tunes))
            score = converter.parse(tunes[n], format="abc")
            piece = f"{piece}#{n}"
        else:
            score = converter.parse(path)
        if type(score).__name__ == "Opus":
            score = score.scores[0]
    split = split_for_piece(piece)
    if cfg.only_split and split != cfg.only_split:
        return {"piece": piece, "rows": []}
    parts = list(score.parts)
    if not parts:
        raise ValueError("score has no parts")
    ts = score.recurse().getElementsByClass("TimeSignature").first()
    meter = ts.ratioString if ts else "4/4"
    beat_ql = float(ts.beatDuration.quarterLength) if ts else 1.0

    # The variation: instruments, tempo (in beats of the meter), transposition, dynamic level.
    ensemble: Ensemble = choose_ensemble(len(parts), src, rng)
    bpm = float(rng.randint(*src.bpm_range))
    quarter_bpm = bpm * beat_ql
    while quarter_bpm > 260:  # keep renders playable; half the beat rate rather than a blur
        bpm, quarter_bpm = bpm / 2, quarter_bpm / 2
    semitones = rng.randint(-5, 6)
    velocity = rng.randint(40, 115)

    # Long works: cut a random run of measures first (music21 works in time proportional to the score),
    # enough for the clips of one job.
    bar_seconds = (float(ts.barDuration.quarterLength) if ts else 4.0) * 60.0 / quarter_bpm
    span = cfg.max_clips_per_job * cfg.max_clip
    n_measures = len(parts[0].getElementsByClass("Measure"))
    wanted = int(math.ceil(span / bar_seconds)) + 1
    if n_measures > wanted + 2:
        first_number = parts[0].getElementsByClass("Measure")[0].number
        m0 = rng.randint(first_number, first_number + n_measures - wanted)
        score = strip_repeats(score.measures(m0, m0 + wanted - 1))  # an excerpt cuts through repeats
    else:
        try:
            score = score.expandRepeats()
        except Exception:  # malformed repeat marks: play it once as written
            score = strip_repeats(score)
    if semitones:
        score = score.transpose(semitones)
    for el in list(score.recurse().getElementsByClass(("MetronomeMark", "TempoIndication", "Dynamic"))):
        el.activeSite.remove(el)
    for part, (program, _) in zip(score.parts, ensemble.parts, strict=True):
        for el in list(part.recurse().getElementsByClass("Instrument")):
            el.activeSite.remove(el)
        inst = instrument.Instrument()
        inst.midiProgram = program
        part.insert(0, inst)
    score.parts[0].insert(0, tempo.MetronomeMark(number=quarter_bpm, referent=1.0))

    notes = []  # (onset s, duration s, midi pitch) of every sounding note, for density and key per clip
    sec_per_ql = 60.0 / quarter_bpm
    for n in score.flatten().notes:
        if n.tie is not None and n.tie.type in ("continue", "stop"):
            continue
        v = int(np.clip(velocity + rng.gauss(0, 6) + (6 if float(n.beat) == 1.0 else 0), 1, 127))
        n.volume.velocity = v
        for p in n.pitches:
            notes.append((float(n.offset) * sec_per_ql, float(n.quarterLength) * sec_per_ql, p.midi))
    if not notes:
        raise ValueError("score has no notes")
    notes_arr = np.array(notes, dtype=np.float64)  # [M, 3]

    # Long works: clips come from a random stretch, not always the opening. Render only up to its end.
    piece_end = float((notes_arr[:, 0] + notes_arr[:, 1]).max())
    first = float(notes_arr[:, 0].min())
    start = first
    if piece_end - first > span + 5.0:
        onsets = np.unique(notes_arr[:, 0])
        start = float(onsets[np.searchsorted(onsets, rng.uniform(first, piece_end - span))])
    end = min(piece_end, start + span) + 1.0  # 1 s of reverb tail, no long silence

    with tempfile.TemporaryDirectory(prefix="musiclm-synth-") as tmp:
        mid = Path(tmp) / "x.mid"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score.write("midi", fp=str(mid))
        audio = render_midi(mid, cfg.soundfont, cfg.sample_rate, end, Path(tmp) / "x.raw")
        rendered = Score(str(mid))  # the notes FluidSynth played, for the MIDI kept beside each clip
    sr = cfg.sample_rate
    audio = audio[int(start * sr) :]
    if len(audio) < sr * cfg.min_clip * 0.8:
        raise ValueError(f"render too short ({len(audio) / sr:.1f} s)")

    # One gain for the whole render, from the chosen dynamic level: soft renders stay quieter than loud ones.
    rms_db = 20 * math.log10(float(np.sqrt(np.mean(audio**2))) + 1e-9)
    target_db = -32.0 + (velocity - 40) / 75.0 * 16.0
    gain = 10 ** ((target_db - rms_db) / 20)
    gain = min(gain, 0.98 / (float(np.abs(audio).max()) + 1e-9))
    audio = audio * gain

    rows = []
    out = Path(cfg.out)
    notes_arr[:, 0] -= start  # clip times below are relative to the rendered stretch
    t = 0.0
    total = len(audio) / sr
    for k in range(cfg.max_clips_per_job):
        length = rng.uniform(cfg.min_clip, cfg.max_clip)
        if total - t < cfg.min_clip * 0.8:
            break
        length = min(length, total - t)
        clip = audio[int(t * sr) : int((t + length) * sr)]
        t0, t1, t = t, t + length, t + length
        in_clip = notes_arr[(notes_arr[:, 0] < t1) & (notes_arr[:, 0] + notes_arr[:, 1] > t0)]
        if len(in_clip) == 0 or 20 * math.log10(float(np.sqrt(np.mean(clip**2))) + 1e-9) < -55:
            continue
        chroma = np.zeros(12)
        for onset, dur, pitch in in_clip:  # duration inside the window weights the pitch class
            chroma[int(pitch) % 12] += min(onset + dur, t1) - max(onset, t0)
        key, mode, _ = key_from_chroma(chroma)
        onsets = len(np.unique(np.round(in_clip[in_clip[:, 0] >= t0][:, 0], 3)))
        dyn = dynamics_word(velocity)
        tw = tempo_word(bpm)
        clip_id = f"synth-{index:06d}-{k}"
        fields = {
            "composer": src.composer,
            "era": src.era,
            "genre": src.genre_for(path, rng),
            "key": key,
            "mode": mode,
            "bpm": round(bpm, 1),
            "tempo_word": tw,
            "meter": meter,
            "instruments": ensemble.instrument_names(),
            "density": density_word(onsets / length),
            "dynamics": dyn,
            "mood": mood_words(mode, tw, dyn, rng),
            "ensemble": ensemble.label,
            "transpose": semitones,
            "velocity": velocity,
        }
        rel = f"audio/{index // 1000:03d}/{clip_id}.{cfg.audio_format}"
        with atomic_write(out / rel) as tmpf:
            sf.write(tmpf, clip, sr, format=cfg.audio_format.upper(), subtype="PCM_16")
        # the clip's notes, times relative to its first sample (the render starts at `start` of the MIDI)
        rel_midi = f"audio/{index // 1000:03d}/{clip_id}.mid"
        save_midi(clip_seconds(rendered, start + t0, start + t1), out / rel_midi)
        rows.append(
            {
                "id": clip_id,
                "path": rel,
                "duration": round(len(clip) / sr, 4),
                "sample_rate": sr,
                "channels": 1,
                "piece": piece,
                "split": split,
                "caption": make_caption(fields, zlib.crc32(f"{cfg.seed}:{clip_id}".encode())),
                "fields": fields,
                "source": "synth",
                "midi": rel_midi,
            }
        )
    return {"piece": piece, "rows": rows}


def _run_job(args: tuple) -> dict:
    cfg, index, name, path = args
    record = render_job(cfg, index, name, path)
    out = Path(cfg.out) / "jobs" / f"{index:06d}.json"
    with atomic_write(out) as tmp, open(tmp, "w") as f:
        json.dump(record, f)
    return record


# ---------------------------------------------------------------- the corpus


def build_corpus(cfg: SynthConfig, progress: bool = True, max_jobs: int | None = None) -> dict:
    """Render until the clips reach `cfg.minutes`; resume from finished jobs. Returns a summary.

    `max_jobs` stops after that many newly rendered jobs (used by tests to simulate an interruption).
    """
    from tqdm import tqdm

    check_renderer(cfg.soundfont)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "version": CORPUS_VERSION,
        "seed": cfg.seed,
        "sample_rate": cfg.sample_rate,
        "min_clip": cfg.min_clip,
        "max_clip": cfg.max_clip,
        "max_clips_per_job": cfg.max_clips_per_job,
        "audio_format": cfg.audio_format,
        "only_split": cfg.only_split,
        "soundfont": Path(cfg.soundfont).name,
    }
    settings_path = out / "synth.json"
    if settings_path.is_file():
        old = json.loads(settings_path.read_text())
        if old != settings:
            raise MusicLMError(
                f"{out} holds a corpus made with other settings or an older recipe ({old}); use another --out"
            )
    else:
        with atomic_write(settings_path) as tmp:
            Path(tmp).write_text(json.dumps(settings, indent=2))

    target = cfg.minutes * 60.0
    rows: list[dict] = []
    total, new_total, submitted, rendered, errors, t_start = 0.0, 0.0, 0, 0, 0, time.time()
    jobs = job_list(cfg.seed, only_split=cfg.only_split)
    pending: deque = deque()  # futures in job order, so the corpus does not depend on which worker is faster
    bar = tqdm(total=round(cfg.minutes, 2), unit="min", disable=not progress, desc="synth")
    pool = ProcessPoolExecutor(max_workers=cfg.workers, mp_context=mp.get_context("fork"))
    try:
        while total < target:
            # keep workers + 1 jobs ahead; finished jobs on disk are read instead of rendered (resume)
            while len(pending) < cfg.workers + 1 and (max_jobs is None or submitted < max_jobs):
                job = next(jobs, None)
                if job is None:  # every job done: the corpus is smaller than asked
                    break
                i, name, path = job
                done = out / "jobs" / f"{i:06d}.json"
                record = json.loads(done.read_text()) if done.is_file() else None
                if record is not None and all("midi" in r for r in record["rows"]):
                    pending.append((record, None))
                else:  # not rendered yet, or rendered before clips kept their MIDI: same job, same audio
                    pending.append((None, pool.submit(_run_job, (cfg, i, name, path))))
                    submitted += 1
            if not pending:
                break
            record, future = pending.popleft()
            if future is not None:
                record = future.result()
                rendered += 1
                new_total += sum(r["duration"] for r in record["rows"])
            errors += record["error"] is not None
            new = sum(r["duration"] for r in record["rows"])
            rows.extend(record["rows"])
            total += new
            bar.n = round(min(total, target) / 60, 2)
            bar.refresh()
            bar.set_postfix(jobs=record["index"] + 1, clips=len(rows))
            write_manifest(out / "manifest.jsonl", rows)
    finally:
        bar.close()
        for _, fut in pending:
            if fut is not None:
                fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    wall = time.time() - t_start
    return {
        "clips": len(rows),
        "minutes": round(total / 60, 2),
        "pieces": len({r["piece"] for r in rows}),
        "rendered_jobs": rendered,
        "failed_jobs": errors,
        "wall_minutes": round(wall / 60, 2),
        "rendered_minutes": round(new_total / 60, 2),
        "audio_minutes_per_wall_minute": round(new_total / max(wall, 1e-9), 2),
        "splits": {s: sum(r["split"] == s for r in rows) for s in ("train", "valid", "test")},
        "manifest": str(out / "manifest.jsonl"),
    }
