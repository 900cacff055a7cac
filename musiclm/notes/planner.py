"""Text → notes: `plan(prompt, seconds, seed)` samples a planner sequence and returns it as MIDI.

    prompt --controls_from_prompt--> Controls --control_ids + header_ids--> prefix
    prefix --prefill--> KVCache --step, mask, draw--> body bars --decode--> Score (the exact tempo asked)

Sampling is constrained by REMI's grammar, so every plan decodes to valid notes: after a Position come a
Program (one of the instruments asked), a Pitch and a Duration; positions rise within a bar and stay inside
it; the meter and tempo are never sampled (the header states them) and neither are control tokens. Two priors
lean the planner's choices (products of experts): `key_prior` towards the asked key's pitches, `pulse_prior`
towards onsets on the beats, so the music is heard at the asked tempo.

Long plans go window by window (MusicGen's "extend", here over note tokens): when the sequence fills the
context, a new window starts with the same controls and header and the last bars so far (about half the
context), so a 60 s plan keeps its key and tempo while positions never exceed what the model was trained on.

Randomness: one generator per plan seeded with `seed` (`musiclm.lm.sample.row_generators`) and one uniform
number per sampled token, so the same prompt, seed and planner give the same MIDI.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from symusic import Score
from torch import Tensor

from musiclm.data.analysis import tempo_agrees
from musiclm.errors import MusicLMError
from musiclm.lm.sample import draw, filter_logits, row_generators
from musiclm.notes.midi import (
    bar_quarters,
    clip_seconds,
    key_from_histogram,
    note_array,
    pitch_histogram,
    save_midi,
)
from musiclm.notes.midi import pulse_bpm as score_pulse_bpm  # this module's pulse_bpm takes a Plan
from musiclm.notes.model import Planner
from musiclm.notes.prompt import controls_from_prompt
from musiclm.notes.tokens import Controls, NoteTokenizer, default_tokenizer

MAX_NOTES_PER_ONSET = 10  # a chord of more notes than this is a model stuck in a loop
MAX_SECONDS = 600.0
KEY_WEIGHT = 2.0  # plan()'s default strength of the key prior (`key_prior`)
PULSE_WEIGHT = 1.0  # plan()'s default strength of the pulse prior (`pulse_prior`)
# plan()'s default: up to 20 draws per segment (~0.05-0.25 s each for 10 s of music, the render of heard_key
# included). On eval_melody's 40 prompts 10 draws left 8 plans heard in another key, 20 leave 5; the median
# plan takes 1.0 s instead of 0.67 s, the slowest 4.4 s instead of 2.2 s (2026-11-30, one thread).
KEY_RETRIES = 19
SEGMENT_SECONDS = 10.0  # with key retries, long plans are drawn and checked this much at a time
# a redrawn plan must not fall silent (all voices resting, or not started yet) for longer than this: a sparse
# draw (6 notes in 10 s, or 3.5 s of silence before the first chord) is not the music the prompt asked for
MAX_REST_BEATS = 2.0
# ... and never longer than this in seconds: at 63 bpm two beats are 1.9 s, and the "calm piano" demo kept a
# 1.9 s hole in the middle of its 10 s
MAX_REST_SECONDS = 1.5
# and must start within a beat (a pickup): 1.4 s of silence before the first note opened the "calm piano" demo
MAX_LEAD_BEATS = 1.0


@dataclass
class Plan:
    midi: Score  # ticks; the tempo and meter asked at time 0
    controls: Controls
    seconds: float
    tokens: list[int]  # the body as one sequence (header + bars), for inspection and continuation
    attempts: int = 1  # plans drawn to find this one (`plan(key_retries=...)`)

    def save(self, path: str | Path) -> Path:
        return save_midi(self.midi, path)


def default_planner_dir() -> Path:
    from musiclm.paths import checkpoints_dir

    return checkpoints_dir() / "planner"


@functools.lru_cache(maxsize=2)
def load_planner(directory: str | None = None) -> Planner:
    """The planner in `directory` (default: the shipped checkpoints/planner), checked against the tokenizer."""
    path = Path(directory) if directory else default_planner_dir()
    if not path.is_dir():
        raise MusicLMError(f"planner directory not found: {path}")
    return Planner.from_pretrained(path, vocab=default_tokenizer().names)


def plan(
    prompt: str,
    seconds: float = 10.0,
    seed: int = 0,
    planner: Planner | str | Path | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.95,
    threads: int | None = 1,
    key_weight: float = KEY_WEIGHT,
    key_retries: int = KEY_RETRIES,
    pulse_weight: float | None = None,
    heard_key: bool | None = None,
    listen: Callable[[np.ndarray, int], np.ndarray] | None = None,
    **fields,
) -> Plan:
    """A plan of `seconds` for `prompt`: `Plan.midi` is a symusic Score (`Plan.save("plan.mid")`).

    `fields` override what the prompt says: key (pitch class 0-11), mode, bpm (beats of the meter), meter,
    programs (GM, 0-based), genre, dynamics. `planner`: a Planner, a directory, or None for the shipped one.
    `key_weight`: strength of the key prior on pitches (0: the model alone; see `key_prior`).
    `pulse_weight`: strength of the pulse prior on onsets (0: the model alone; None: PULSE_WEIGHT; see
    `pulse_prior`).
    `key_retries`: draw again (seeds derived from `seed`) while music21's key finder hears another key, the
    notes' pulse is not the asked tempo (`pulse_bpm`, octave errors allowed), the music rests longer than
    `rest_limit` (`longest_rest`) or starts later than MAX_LEAD_BEATS (`leading_rest`), at most this many
    times; a plan longer than SEGMENT_SECONDS is drawn segment by segment, each continuing the bars so far
    and checked on its own notes. `heard_key` (default: when FluidSynth is installed) also renders a draw
    that passes those checks and asks the audio estimators to hear the asked key or its relative, and the
    asked tempo, in it (`heard_as_asked`); `listen` (render, sample rate) → audio is how it is heard, e.g.
    through the codec (`musiclm.notes.guide.codec_listener`; None: the render itself). Where no draw passes,
    the one that rests least is kept, among those in the key (then those that start in time, then those at
    the asked pulse, then within the rest limit, then heard as asked) if any (a fast folk tune of 8 notes with
    1.6 s of silence first was kept before). `Plan.attempts` says how many were drawn."""
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise MusicLMError(f"a plan must be 0-{MAX_SECONDS:g} s long, got {seconds}")
    if key_retries < 0:
        raise MusicLMError(f"key_retries must be >= 0, got {key_retries}")
    controls = controls_from_prompt(prompt, seed, **fields)
    pulse_weight = PULSE_WEIGHT if pulse_weight is None else pulse_weight
    if heard_key is None:
        from musiclm.notes.guide import renderer_available

        heard_key = renderer_available()
    model = planner if isinstance(planner, Planner) else load_planner(str(planner) if planner else None)
    bar_seconds = bar_quarters(controls.meter) * 60.0 / controls.qpm
    beat = 60.0 / controls.bpm
    bars: list[list[int]] | None = None
    attempts = 0
    for segment in range(math.ceil(seconds / bar_seconds) + 1):  # each segment adds at least one bar
        remaining = seconds - (len(bars) if bars else 0) * bar_seconds
        if remaining <= 1e-6:
            break
        # with retries, a long plan goes SEGMENT_SECONDS at a time, each checked for its key
        length = min(SEGMENT_SECONDS, remaining) if key_retries else remaining
        start = seconds - remaining
        best, best_rank = None, None
        for attempt in range(key_retries + 1):
            draw_seed = seed if segment == attempt == 0 else (seed * 1_000_003 + segment * 7919 + attempt) % 2**64
            out = sample_plan(
                model,
                controls,
                length,
                draw_seed,
                temperature,
                top_k,
                top_p,
                threads,
                key_weight,
                context_bars=bars,
                pulse_weight=pulse_weight,
            )
            attempts += 1
            if key_retries == 0:
                break
            in_key, rest = in_asked_key(out, start), longest_rest(out, start)
            late = segment == 0 and leading_rest(out) > MAX_LEAD_BEATS * beat
            in_tempo = tempo_agrees(controls.bpm, pulse_bpm(out, start))
            passes = in_key and in_tempo and not late and rest <= rest_limit(beat)
            heard = passes and (not heard_key or heard_as_asked(out, start, listen=listen))  # rendered last
            if heard:
                break
            # in the key, starting in time, at the asked pulse, within the rest limit, heard in the key; then
            # the shortest silence
            rank = (not in_key, late, not in_tempo, rest > rest_limit(beat), not heard, rest)
            if best_rank is None or rank < best_rank:
                best, best_rank = out, rank
        else:
            out = best
        bars = plan_bars(out.tokens)
    out.attempts = attempts
    return out


def rest_limit(beat_seconds: float) -> float:
    """The longest silence a redrawn plan may keep: MAX_REST_BEATS beats, at most MAX_REST_SECONDS."""
    return min(MAX_REST_BEATS * beat_seconds, MAX_REST_SECONDS)


def plan_bars(tokens: list[int]) -> list[list[int]]:
    """A plan's body (header + bars, `Plan.tokens`) → its bars (REMI ids without Bar tokens), to continue it."""
    tok = default_tokenizer()
    bars: list[list[int]] = [[]]
    for t in tokens[4:]:  # after `Bar TimeSig Position_0 Tempo`
        if t == tok.bar:
            bars.append([])
        else:
            bars[-1].append(t)
    return bars


def in_asked_key(p: Plan, start: float = 0.0) -> bool:
    """music21's default key finder (Aarden-Essen, `midi.key_from_histogram`) hears the asked key in the
    plan from `start` seconds on."""
    notes = note_array(clip_seconds(p.midi, start, p.seconds) if start > 0 else p.midi)
    tonic, mode, _ = key_from_histogram(pitch_histogram(notes))
    return (tonic, mode) == (p.controls.key, p.controls.mode)


def heard_as_asked(
    p: Plan,
    start: float = 0.0,
    sample_rate: int = 24000,
    listen: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> bool:
    """The plan's render from `start` seconds on, heard as `listen` plays it (None: as rendered), is in the
    asked key or its relative (`key_heard`) and at the asked tempo (`tempo_heard`), by the audio estimators
    the evaluation uses."""
    from musiclm.notes.guide import render_notes

    clip = clip_seconds(p.midi, start, p.seconds) if start > 0 else p.midi
    audio = render_notes(clip, p.seconds - start, sample_rate)
    if listen is not None:
        audio = listen(audio, sample_rate)
    return key_heard(p.controls, audio, sample_rate) and tempo_heard(p.controls, audio, sample_rate)


def key_heard(c: Controls, audio, sample_rate: int) -> bool:
    """The audio key finder (`musiclm.data.analysis.estimate_key`) hears key `c.key` `c.mode` or its relative
    major/minor in `audio`. The notes' own key finder and the ear disagree on ~1 in 4 plans (2026-11-30,
    eval_melody's 40 prompts: notes in the asked key 96 %, their renders heard so 72.5 %), mostly as the
    parallel mode or a fifth away: notes that weigh the dominant or the major third, which the ear, hearing
    harmonics too, takes for another key."""
    from musiclm.data.analysis import estimate_key
    from musiclm.data.captions import key_name
    from musiclm.notes.metrics import RELATIVE

    heard = estimate_key(audio, sample_rate)[:2]  # (spelling as captions.key_name writes it, mode)
    rel_mode, offset = RELATIVE[c.mode]
    return heard in ((key_name(c.key, c.mode), c.mode), (key_name(c.key + offset, rel_mode), rel_mode))


def tempo_heard(c: Controls, audio, sample_rate: int) -> bool:
    """The audio tempo estimator hears `c.bpm` in `audio` (within 8 %, octave errors allowed): the notes'
    pulse (`pulse_bpm`) and the render's tempo disagreed on 5 of 40 plans (2026-11-30, thirteenth session)."""
    from musiclm.data.analysis import estimate_tempo

    return tempo_agrees(c.bpm, estimate_tempo(audio, sample_rate))


def pulse_bpm(p: Plan, start: float = 0.0) -> float:
    """The tempo the plan's notes carry from `start` seconds on (`musiclm.notes.midi.pulse_bpm`)."""
    clip = clip_seconds(p.midi, start, p.seconds) if start > 0 else p.midi
    return score_pulse_bpm(clip, p.seconds - start)


def longest_rest(p: Plan, start: float = 0.0) -> float:
    """Seconds of the longest stretch from `start` to the plan's end in which no note sounds: before the
    first note, between notes, or after the last."""
    length = p.seconds - start
    notes = note_array(clip_seconds(p.midi, start, p.seconds) if start > 0 else p.midi)
    longest, reach = 0.0, 0.0  # `reach`: where the notes so far stop sounding
    for onset, duration in notes[:, :2]:  # by onset
        longest = max(longest, onset - reach)
        reach = max(reach, onset + duration)
    return max(longest, length - reach)


def leading_rest(p: Plan) -> float:
    """Seconds before the plan's first note (all of it when there is none)."""
    notes = note_array(p.midi)
    return float(notes[:, 0].min()) if len(notes) else p.seconds


class _Grammar:
    """Which tokens may follow, from REMI's syntax and the controls; state kept per plan."""

    def __init__(self, tok: NoteTokenizer, c: Controls):
        self.tok = tok
        V = len(tok)
        kinds = torch.as_tensor(
            [
                ["Bar", "Position", "Program", "Pitch", "Duration"].index(k)
                if k in ("Bar", "Position", "Program", "Pitch", "Duration")
                else -1
                for k in tok.kind
            ]
        )
        self.is_kind = {k: kinds == i for i, k in enumerate(["Bar", "Position", "Program", "Pitch", "Duration"])}
        allowed_programs = torch.zeros(V, dtype=torch.bool)
        for p in c.programs:
            allowed_programs[tok.ids[f"Program_{p}"]] = True
        self.program = allowed_programs
        self.position_of = torch.as_tensor(tok.position_of)
        self.bar_positions = int(c.meter.split("/")[0]) * 8  # REMI: 8 positions per beat of the denominator
        self.last_kind, self.position, self.notes_here = "Position", 0, 0  # the header ends at Position_0 (+Tempo)

    def mask(self) -> Tensor:
        """[V] bool: the tokens allowed next."""
        k = self.last_kind
        later = self.is_kind["Position"] & (self.position_of > self.position) & (self.position_of < self.bar_positions)
        if k == "Bar":
            return later | (self.position_of == 0) | self.is_kind["Bar"]
        if k == "Header":  # after `Position_0 Tempo`: a note at 0, a later first note, or an empty bar
            return self.program | later | self.is_kind["Bar"]
        if k == "Position":
            return self.program
        if k == "Program":
            return self.is_kind["Pitch"]
        if k == "Pitch":
            return self.is_kind["Duration"]
        # after a Duration: another note here, a later position, or the next bar
        more = self.program if self.notes_here < MAX_NOTES_PER_ONSET else torch.zeros_like(self.program)
        return more | later | self.is_kind["Bar"]

    def update(self, token: int) -> None:
        kind = self.tok.kind[token]
        if kind == "Bar":
            self.position, self.notes_here = -1, 0
        elif kind == "Position":
            self.position, self.notes_here = int(self.tok.position_of[token]), 0
        elif kind == "Pitch":
            self.notes_here += 1
        self.last_kind = kind

    def start(self, first_tokens: list[int]) -> None:
        """Follow the grammar through tokens already written (a continued window's context)."""
        for t in first_tokens:
            if self.tok.kind[t] in self.is_kind:
                self.update(t)
        if first_tokens and self.tok.kind[first_tokens[-1]] == "Tempo":
            self.last_kind = "Header"


@torch.inference_mode()
def sample_plan(
    model: Planner,
    c: Controls,
    seconds: float,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.95,
    threads: int | None = 1,
    key_weight: float = 0.0,
    context_bars: list[list[int]] | None = None,
    pulse_weight: float = 0.0,
) -> Plan:
    """Sample bars until they cover `seconds` at the controls' tempo; `context_bars` (REMI ids per bar, no Bar
    token) continue an earlier plan: they are kept and the new bars follow them. `key_weight`, `pulse_weight`:
    strengths of the key and pulse priors (`key_prior`, `pulse_prior`; 0 = the model alone)."""
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise MusicLMError(f"temperature must be a finite number >= 0, got {temperature}")
    tok = default_tokenizer()
    c.check()
    if model.config.vocab_size != len(tok):
        raise MusicLMError(f"the planner has {model.config.vocab_size} tokens, the tokenizer {len(tok)}")
    bar_seconds = bar_quarters(c.meter) * 60.0 / c.qpm
    bars: list[list[int]] = [list(b) for b in (context_bars or [])]
    n_context = len(bars)
    wanted = n_context + max(1, math.ceil(seconds / bar_seconds - 1e-9))
    generator = row_generators(seed, 1, model.device)[0]
    grammar = _Grammar(tok, c)
    prior = key_prior(tok, c, key_weight).to(model.device)
    pulse = pulse_prior(tok, c, pulse_weight).to(model.device)  # [bar positions + 1, V], by the grammar's position
    max_len = model.config.max_len
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model.eval()
        if not bars:
            bars = [[]]
        ids = tok.window(c, bars)
        if len(ids) >= max_len:
            ids, _ = _rewindow(tok, c, bars, max_len)
        grammar.start(ids[len(tok.control_ids(c)) :])
        cache = model.new_cache(1)
        logits = model.step(
            torch.tensor([ids], device=model.device), cache, torch.arange(len(ids), device=model.device)
        )
        budget = 400 * (wanted - n_context) + 1000  # tokens; a bar of 100 notes is already extreme
        while budget > 0:
            budget -= 1
            allowed = grammar.mask().to(logits.device)
            bias = prior + pulse[grammar.position + 1]
            token = _sample(logits[0] + bias, allowed, temperature, top_k, top_p, generator)
            if tok.kind[token] == "Bar":
                if len(bars) >= wanted:
                    break
                bars.append([])
            else:
                bars[-1].append(token)
            grammar.update(token)
            ids.append(token)
            if len(ids) >= max_len:  # the window is full: continue in a new one from the last bars
                ids, _ = _rewindow(tok, c, bars, max_len)
                cache = model.new_cache(1)
                positions = torch.arange(len(ids), device=model.device)
                logits = model.step(torch.tensor([ids], device=model.device), cache, positions)
                continue
            logits = model.step(torch.tensor([[token]], device=model.device), cache, torch.tensor([len(ids) - 1]))
        else:
            raise MusicLMError("the planner did not finish its bars (a model that never moves on); try another seed")
    finally:
        torch.set_num_threads(before)
    body = tok.window(c, bars)[len(tok.control_ids(c)) :]
    score = tok.decode(body, c)
    offset = n_context * bar_seconds
    total = offset + seconds
    midi = clip_seconds(score, 0.0, total) if any(len(t.notes) for t in score.tracks) else score
    return Plan(midi=midi, controls=c, seconds=total, tokens=body)


def key_prior(tok: NoteTokenizer, c: Controls, weight: float) -> Tensor:
    """[V] logit bias: weight · log(profile[pitch class - tonic] / profile max) on Pitch tokens, 0 elsewhere.

    A product of experts (Hinton 2002) of the planner with the Krumhansl-Kessler key profile of the asked key
    (Krumhansl 1990; the profiles `musiclm.data.analysis` uses): at weight 1 a chromatic note is ~2.8x less
    likely relative to the tonic than the model alone says, at 2 ~8x. It holds a plan in its key when the
    model has learned little of its key control (the shipped planner had a few CPU minutes); the evaluation
    judges keys with music21's other (Aarden-Essen) profiles."""
    from musiclm.data.analysis import KK_MAJOR, KK_MINOR

    if not (weight >= 0 and math.isfinite(weight)):
        raise MusicLMError(f"key weight must be a finite number >= 0, got {weight}")
    bias = torch.zeros(len(tok))
    if weight == 0:
        return bias
    profile = torch.as_tensor(KK_MAJOR if c.mode == "major" else KK_MINOR, dtype=torch.float32)
    log_profile = weight * torch.log(profile / profile.max())  # [12], 0 at the tonic
    pitches = torch.as_tensor(tok.pitch_of)
    is_pitch = pitches >= 0
    bias[is_pitch] = log_profile[(pitches[is_pitch] - c.key) % 12]
    return bias


def pulse_prior(tok: NoteTokenizer, c: Controls, weight: float) -> Tensor:
    """[P + 1, V] logit bias on where the next onset goes, by the position the plan stands at (row 0: a bar
    just opened, no position yet; row p + 1: at position p of P per bar). For each later Position token:
    -weight per beat it skips with no onset, -weight if it falls between the beat's subdivisions (eighths in
    4/4, the eighths of a dotted-quarter beat in 6/8) and -weight/2 on a subdivision that is not a beat; the Bar
    token pays for the beats left in the bar. 0 elsewhere.

    Why: the tempo is heard from onsets (Ellis 2007: the autocorrelation of an onset envelope). A plan whose
    beats carry onsets pulses at its tempo; one of dotted figures and held notes across beats pulses at 2/3
    or 1/3 of it (a triple bar), and so did ~half the plans heard at another tempo through the codec
    (2026-12-01). A product of experts as `key_prior` is: the planner still chooses, the prior leans it
    towards onsets on the beat."""
    from musiclm.notes.midi import beat_quarters

    if not (weight >= 0 and math.isfinite(weight)):
        raise MusicLMError(f"pulse weight must be a finite number >= 0, got {weight}")
    numerator, denominator = (int(x) for x in c.meter.split("/"))
    P = numerator * 8  # REMI: 8 positions per note of the denominator (as `_Grammar`)
    bias = torch.zeros(P + 1, len(tok))
    if weight == 0:
        return bias
    beat = max(1, round(beat_quarters(c.meter) * 2 * denominator))  # positions per beat
    sub = beat // 3 if beat % 3 == 0 else max(1, beat // 2)  # compound beats divide in three
    q = np.arange(P)
    cost = np.where(q % beat == 0, 0.0, np.where(q % sub == 0, 0.5, 1.0))
    beats_before = -(-q // beat)  # beats at positions < q
    here = np.arange(-1, P)[:, None]  # the row's position (-1: none yet in this bar)
    skipped = beats_before[None, :] - (here // beat + 1)  # beats strictly between `here` and q
    table = np.where(q[None, :] > here, -weight * (skipped + cost[None, :]), 0.0)
    bias[:, [tok.ids[f"Position_{k}"] for k in range(P)]] = torch.as_tensor(table, dtype=torch.float32)
    bias[:, tok.bar] = torch.as_tensor(-weight * (-(-P // beat) - (here[:, 0] // beat + 1)), dtype=torch.float32)
    return bias


def _rewindow(tok: NoteTokenizer, c: Controls, bars: list[list[int]], max_len: int) -> tuple[list[int], int]:
    """A fresh window: controls + header + the last bars that fit in half the context (the current bar,
    perhaps unfinished, always among them)."""
    budget = max_len // 2 - len(tok.control_ids(c)) - 4
    keep, used = 0, 0
    for bar in reversed(bars):
        if keep and used + len(bar) + 1 > budget:
            break
        used += len(bar) + 1
        keep += 1
    kept = bars[-keep:]
    ids = tok.window(c, kept)
    if len(ids) >= max_len:  # one bar longer than the context: keep its end
        ids = ids[: len(tok.control_ids(c)) + 4] + ids[-(max_len // 2) :]
    return ids, keep


def _sample(logits: Tensor, allowed: Tensor, temperature: float, top_k: int, top_p: float, generator) -> int:
    """logits [V] → one token among `allowed` (greedy at temperature 0), by `musiclm.lm.sample`'s filters."""
    logits = logits.float().masked_fill(~allowed, float("-inf"))
    if temperature == 0:
        return int(logits.argmax())
    probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
    u = torch.rand((1,), generator=generator, device=logits.device)
    return int(draw(probs, u)[0])
