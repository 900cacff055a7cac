"""Text → music, the Python API: `generate(["calm piano in C major"], duration=8, seed=1) -> wav [B, C, N]`,
and `generate_files`, what `musiclm generate` runs: each caption's audio into its own file (or WAV on
stdout), decoded and written window by window so memory does not grow with the duration.

    captions --GenerationOptions--> musiclm.lm.generation: codes [B, K, T] --decode_windows--> blocks [C, L]
             --write_audio--> a temporary file beside the destination, renamed there when complete

`MusicLM.generate` is the same call on a loaded model; `generate(model=None)` loads the shipped one.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from musiclm.errors import MusicLMError
from musiclm.files import StdoutOutput, atomic_path
from musiclm.lm.generation import (
    GenerationOptions,
    decode_windows,
    generate_audio,
    generate_for_decoding,
    item_seeds,
    output_length,
)
from musiclm.lm.model import MusicLM

STDOUT = "-"
# extension → libsndfile format; mp3 only where the installed libsndfile encodes it (1.1+)
_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}

_loaded: dict[str, MusicLM] = {}


def output_formats() -> tuple[str, ...]:
    """File extensions `write_audio` can write here."""
    import soundfile as sf

    available = sf.available_formats()
    return tuple(ext for ext, name in _FORMATS.items() if name in available)


def load_model(model: str | Path | MusicLM | None = None, device: str | None = None) -> MusicLM:
    """A MusicLM: as given, loaded from a directory, or the shipped one (None); loads are cached."""
    if isinstance(model, MusicLM):
        return model
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = f"{Path(model).resolve() if model is not None else '<shipped>'}@{device}"
    if key not in _loaded:
        _loaded[key] = MusicLM.from_pretrained(model, map_location=device)
    return _loaded[key]


def generate(
    texts: list[str] | str,
    model: str | Path | MusicLM | None = None,
    options: GenerationOptions | None = None,
    prompt_wav: Tensor | None = None,
    **changes,
) -> Tensor:
    """Captions → wav [B, C, N] with the shipped model (or `model`: a directory or a loaded MusicLM).

    `options` or its fields by name (`duration=8, seed=1`); see `GenerationOptions`."""
    return generate_audio(load_model(model), texts, replace(options or GenerationOptions(), **changes), prompt_wav)


@dataclass
class Notes:
    """What a note-conditioned LM plays from: features [B, T, F] (None: text alone), the MIDI score of each
    prompt when there is one (a plan, or a MIDI melody cut to the duration), the plans themselves, and the
    guide codes rendered from those scores."""

    features: Tensor | None = None
    scores: list | None = None
    plans: list | None = None
    guide: Tensor | None = None  # [B, G, T] codes of a render of each prompt's notes (musiclm.notes.guide)


def note_condition(
    model: MusicLM,
    prompts: Sequence[str],
    options: GenerationOptions,
    melody: str | Path | None = None,
    plan: bool = True,
    want_midi: bool = False,
) -> Notes:
    """The notes each prompt's audio is made from: `melody` (a MIDI file's notes, or an audio file's
    chromagram) for all prompts; else, with a note-conditioned model and `plan`, one plan per prompt
    (`musiclm.notes.planner`, the prompt's own seed); else none. `want_midi`: refuse (MusicLMError) when
    there would be no MIDI to give back (an audio melody, a text-only model, plan=False). Where there are
    notes (a plan or a MIDI melody, arranged for the instruments each prompt names), `options.guide`
    codebooks of their render come with them (`guide_for`)."""
    from musiclm.lm.generation import item_seeds
    from musiclm.notes.condition import is_midi_file, melody_features, notes_features, plan_features

    frames, _ = output_length(model.codec, options.duration)
    conditioned = model.config.note_features > 0
    if melody is not None:
        if not conditioned:
            raise MusicLMError("--melody: this model takes no notes (a text-only LM); use a note-conditioned one")
        if not is_midi_file(melody):
            features = melody_features(melody, frames, model.codec.frame_rate)
            if want_midi:
                raise MusicLMError("--midi-out with an audio --melody: there are no notes to write, only a chromagram")
            if options.guide:
                raise MusicLMError("--guide: an audio --melody has no notes to render (give a MIDI file, or --guide 0)")
            return Notes(features[None].expand(len(prompts), -1, -1))
        from musiclm.notes.guide import arrange
        from musiclm.notes.midi import clip_seconds, load_midi, note_array
        from musiclm.notes.prompt import parse_prompt

        # One read of the file; the LM's note features are those of the arrangement, so the instrument
        # families it is told are the ones the guide is rendered with.
        score = load_midi(melody)
        played = clip_seconds(score, 0.0, options.duration)
        if len(note_array(played)) == 0:  # the file has notes (load_midi checked), none in the part used
            first = float(note_array(score)[0, 0])
            raise MusicLMError(
                f"{melody}: no notes in the first {options.duration:g} s (the first starts at {first:.1f} s); "
                "give a longer --duration or a MIDI that starts sooner"
            )
        scores = [arrange(played, parse_prompt(p).get("programs") or ()) for p in prompts]
        features = torch.stack([notes_features(s, frames, model.codec.frame_rate) for s in scores])
        guide = guide_for(model, scores, options)
        return Notes(features, scores if want_midi else None, guide=guide)
    if not conditioned or not plan:
        if want_midi:
            why = "--no-plan" if not plan else "this model plays from text alone (no notes)"
            raise MusicLMError(f"--midi-out: {why}, so there is no plan to write")
        if options.guide:
            raise MusicLMError("--guide: there are no notes to render (--no-plan, or a text-only model)")
        return Notes()
    seeds = item_seeds(list(prompts), options.seed)
    features, plans = plan_features(
        list(prompts), options.duration, seeds, model.codec.frame_rate, listen=plan_listener(model, options.guide)
    )
    scores = [p.midi for p in plans]
    return Notes(features, scores, plans, guide_for(model, scores, options))


def plan_listener(model: MusicLM, guide: int | None = None):
    """How the planner hears a plan's render before keeping it (`musiclm.notes.guide.codec_listener`): through
    the model's codec at the guide's codebooks (`GenerationOptions.guide`; None: the default count), the part
    of `generate`'s sound that the render fixes, or at every codebook the LM writes when there is no guide.
    On 100 prompts through plan → LM, the tempo heard at the asked one rose 65 → 73 % listening at the
    guide's 3 codebooks, 65 → 70 % at all 4 (checkpoints/README.md, "Plans heard through the codec")."""
    from musiclm.notes.guide import codec_listener

    codebooks = default_guide_count(model) if guide is None else min(guide, model.n_q)
    return codec_listener(model.codec, codebooks or model.n_q)


def default_guide_count(model: MusicLM) -> int:
    """The guide's codebooks when none are asked for: GUIDE_CODEBOOKS, leaving the LM at least its last one."""
    from musiclm.lm.generation import GUIDE_CODEBOOKS

    return max(0, min(GUIDE_CODEBOOKS, model.n_q - 1))


def guide_for(model: MusicLM, scores: list, options: GenerationOptions) -> Tensor | None:
    """Guide codes [B, G, T] of `scores` for `options.guide` codebooks: None when 0; by default (None)
    GUIDE_CODEBOOKS, at most all but the model's last codebook, where FluidSynth and its soundfont are
    installed, and a warning when they are not; an explicit count without them is a MusicLMError."""
    from musiclm.notes.guide import guide_codes, renderer_available

    count = options.guide
    if count is None:
        if not renderer_available():
            warnings.warn(
                "FluidSynth is not installed: no guide, the LM writes every codebook (make system-deps)", stacklevel=2
            )
            return None
        count = default_guide_count(model)
    if count == 0:
        return None
    if count > model.n_q:
        raise MusicLMError(f"--guide {count}: this model writes {model.n_q} codebooks")
    return guide_codes(model.codec, scores, options.duration, count)


# Files are written at this level (gated RMS, `musiclm.data.analysis.loudness_db`) unless asked otherwise: the
# codec's decoder plays 4-7 dB under its input at the LM's bandwidth, so raw outputs sat near -29 dB, far under
# what music players expect (MusicGen's audio_write normalizes loudness too).
DEFAULT_LOUDNESS_DB = -20.0
MAX_GAIN_DB = 24.0  # a near-silent output is raised at most this much, not turned into loud noise
PEAK_CEILING = 0.99  # and never past this peak: normalizing never clips


def loudness_gain(blocks: Iterable[Tensor], sample_rate: int, target_db: float) -> float:
    """The linear gain that brings audio (blocks [C, L]) to `target_db` gated RMS: at most +MAX_GAIN_DB, and
    no more than keeps the peak at PEAK_CEILING. Digital silence gets 1."""
    from musiclm.data.analysis import loudness_db

    mono, peak = [], 0.0
    for block in blocks:
        block = block.detach().float().cpu()
        if block.numel():
            peak = max(peak, float(block.abs().max()))
        mono.append(block.mean(0).numpy())
    level = loudness_db(np.concatenate(mono), sample_rate) if mono else float("-inf")
    if not np.isfinite(level) or peak == 0.0:
        return 1.0
    return min(10 ** (min(target_db - level, MAX_GAIN_DB) / 20), PEAK_CEILING / peak)


@dataclass
class Written:
    destination: str  # a path, or "-" for stdout
    text: str
    seconds: float


def generate_files(
    model: MusicLM,
    texts: Sequence[str],
    destinations: Sequence[str | Path],
    options: GenerationOptions,
    fmt: str = "wav",
    prompt_wav: Tensor | None = None,
    batch_size: int = 8,
    force: bool = False,
    notes: Tensor | None = None,
    guide: Tensor | None = None,
    loudness_db: float | None = DEFAULT_LOUDNESS_DB,
) -> Iterator[Written]:
    """Generate `texts[i]` into `destinations[i]` (a path, or "-": WAV on stdout), `batch_size` captions at
    a time; yields each file once written. Seeds as `item_seeds(texts, options.seed)`: a caption's audio is
    the same whatever batch it falls in. `notes` [len(texts) or 1, T, F]: note features per codec frame for
    a note-conditioned model (`MusicLM.generate`); `guide` [len(texts) or 1, G, T]: codes kept for the first
    G codebooks (`note_condition`). `loudness_db`: each file's level (`loudness_gain`: the audio is decoded
    twice, once to measure it, holding only its mono mix, 4 bytes a sample, ~58 MB for 10 minutes at 24 kHz);
    None writes the decoder's own level."""
    assert len(texts) == len(destinations), "one destination per caption"
    if batch_size < 1:
        raise MusicLMError(f"batch size must be >= 1, got {batch_size}")
    seeds = item_seeds(texts, options.seed)
    for first in range(0, len(texts), batch_size):
        batch = list(texts[first : first + batch_size])
        rows = None if notes is None else notes if notes.shape[0] == 1 else notes[first : first + len(batch)]
        kept = None if guide is None else guide if guide.shape[0] == 1 else guide[first : first + len(batch)]
        codes, latents = generate_for_decoding(
            model, batch, options, prompt_wav, seeds[first : first + len(batch)], rows, kept
        )
        codec = model.codec
        _, n_samples = output_length(codec, options.duration)
        for i, text in enumerate(batch):
            destination = destinations[first + i]
            blocks = decode_windows(codec, codes[i], n_samples, latent=latents[i])
            if loudness_db is not None:
                gain = loudness_gain(blocks, codec.sample_rate, loudness_db)
                blocks = (block * gain for block in decode_windows(codec, codes[i], n_samples, latent=latents[i]))
            write_audio(destination, blocks, codec.sample_rate, codec.channels, n_samples, fmt, force)
            yield Written(str(destination), text, n_samples / codec.sample_rate)


def check_destination(path: str | Path, force: bool) -> None:
    """Refuse early what `write_audio` would refuse late: an existing file without `force`, something that
    is not a regular file, a parent that is a file or not writable."""
    if str(path) == STDOUT:
        return
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise MusicLMError(f"{path} exists and is not a regular file; use -o - to write to stdout")
        if not force:
            raise MusicLMError(f"{path} exists; pass --force to overwrite")
    folder = path.parent
    while not folder.exists():  # created on writing
        folder = folder.parent
    if not folder.is_dir():
        raise MusicLMError(f"cannot write {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MusicLMError(f"cannot write {path}: {folder} is not writable")


def write_audio(
    destination: str | Path,
    blocks: Iterable[Tensor],
    sample_rate: int,
    channels: int,
    num_samples: int,
    fmt: str = "wav",
    force: bool = False,
) -> None:
    """Blocks [C, L] (num_samples in all) → a `fmt` file, or 16-bit WAV on stdout for "-". A file is written
    as a part file beside it (`musiclm.files`: the umask's mode) and published only once complete: without
    `force` it never replaces a file, not even one that appeared meanwhile. Samples outside [-1, 1] are
    clipped, with one warning."""
    if fmt not in output_formats():
        raise MusicLMError(f"cannot write {fmt!r} audio here; choose one of {', '.join(output_formats())}")
    peak = 0.0

    def frames() -> Iterator[np.ndarray]:  # [L, C] float32, clipped
        nonlocal peak
        for block in blocks:
            data = block.detach().float().cpu().numpy().T
            if data.size:
                peak = max(peak, float(np.abs(data).max()))
            yield np.clip(data, -1.0, 1.0)

    if str(destination) == STDOUT:
        if fmt != "wav":
            raise MusicLMError(f"-o - writes WAV, not {fmt}")
        _write_wav_stdout(frames(), sample_rate, channels, num_samples)
    else:
        _write_file(Path(destination), frames(), sample_rate, channels, fmt, force)
    if peak > 1.0:
        warnings.warn(f"audio clips (peak {peak:.2f} > 1.0); clipped to [-1, 1]", stacklevel=2)


def _write_file(path: Path, frames: Iterator[np.ndarray], sample_rate: int, channels: int, fmt: str, force: bool):
    import soundfile as sf

    check_destination(path, force)
    with atomic_path(path, replace=force) as part:  # created with the umask's mode; linked, not renamed
        try:
            with sf.SoundFile(part, "w", sample_rate, channels, format=_FORMATS[fmt]) as f:
                for data in frames:
                    try:
                        f.write(data)
                    except AssertionError:  # soundfile asserts on a short write
                        raise MusicLMError(f"{path}: short write (is the disk full?)") from None
        except (OSError, sf.SoundFileError) as e:
            raise MusicLMError(f"{path}: cannot write ({e})") from None


def _write_wav_stdout(frames: Iterator[np.ndarray], sample_rate: int, channels: int, num_samples: int) -> None:
    """16-bit PCM WAV with its length known up front, so a pipe needs no seek (as libsndfile would write)."""
    size = num_samples * channels * 2
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, channels, sample_rate),
        *(sample_rate * channels * 2, channels * 2, 16, b"data", size),
    )
    with StdoutOutput() as out:  # errors in one line, BrokenPipeError as itself, nothing left to flush at exit
        out.write(header)
        for data in frames:
            # the same integers as libsndfile 1.2 writes for these floats (so `-o -` equals `-o x.wav`)
            out.write(np.clip(np.floor(data * 32768.0), -32768, 32767).astype("<i2").tobytes())
