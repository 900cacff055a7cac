"""The studio's jobs, without any page: generate from text, compress audio to .mlc, decode an .mlc. Each job
writes its files into a folder of its own under the studio's work folder and returns their paths with the
figures the page shows. All model work goes through the Python API (`musiclm.lm.generation` with the notes
from `musiclm.generate.note_condition`, as `musiclm generate` does; `musiclm.compress`); errors a user can fix are
MusicLMError with one line of text.

    studio = Studio()                       # the shipped model and codec (or model=DIR, codec=DIR)
    job = studio.generate("calm piano", duration=2, seed="random")   # job.wav, job.seed, job.spectrogram
    job = studio.compress("song.flac", bandwidth=6)                  # job.mlc, job.kbps, job.decoded, job.opus
    job = studio.decompress("song.mlc")                              # job.wav
"""

from __future__ import annotations

import itertools
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from musiclm.errors import MusicLMError
from musiclm.lm.limits import MAX_SEED
from musiclm.web.uploads import AUDIO, DEFAULT_MAX_UPLOAD_MB, MIDI, MLC, upload_kind

RANDOM = "random"
KEEP_JOBS = 32  # job folders kept; older ones go (the page has its own copies of what it served)


@dataclass(frozen=True)
class Generated:
    wav: Path
    spectrogram: Path
    midi: Path | None  # the notes played (the plan, or a MIDI melody), for a note-conditioned model
    seed: int
    seconds: float  # of audio
    elapsed: float  # wall seconds for the notes (if any), the audio and its WAV; not the figure
    notes: tuple[str, ...]  # what the user should know (e.g. a melody that could not be used)


@dataclass(frozen=True)
class Compressed:
    mlc: Path
    original: Path  # the input as WAV, for the player
    decoded: Path  # what the .mlc decodes to
    opus: Path | None  # Opus at the .mlc's bitrate, decoded; None without ffmpeg
    opus_kbps: float | None  # what Opus really spent
    spectrogram: Path
    seconds: float
    size: int  # bytes of the .mlc
    kbps: float  # real bitrate: the .mlc's size over the duration
    nominal_kbps: float
    streams: int  # channels coded, each at the chosen bandwidth
    elapsed: float  # wall seconds of the compression alone


@dataclass(frozen=True)
class Decompressed:
    wav: Path
    spectrogram: Path
    seconds: float
    kbps: float
    elapsed: float


def parse_seed(text: str | int | None) -> int:
    """'random' (or empty) draws a seed; otherwise an integer in [0, 2**64)."""
    if text is None or str(text).strip().lower() in ("", RANDOM):
        return secrets.randbelow(2**31)
    try:
        seed = int(str(text).strip())
    except ValueError:
        raise MusicLMError(f"seed must be a whole number or '{RANDOM}', got {text!r}") from None
    if not 0 <= seed < MAX_SEED:
        raise MusicLMError(f"seed must be in [0, 2**64), got {seed}")
    return seed


class Studio:
    """The model, the codec and a work folder, shared by all the page's jobs (run one at a time)."""

    def __init__(
        self,
        model: str | Path | None = None,
        codec: str | Path | None = None,
        device: str | None = None,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
        work_dir: str | Path | None = None,
    ):
        self.model_dir, self.codec_dir, self.device = model, codec, device
        self.max_upload_mb = max_upload_mb
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="musiclm-studio-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._jobs = itertools.count(1)
        self._model = self._codec = None

    @property
    def model(self):
        from musiclm.generate import load_model

        if self._model is None:
            self._model = load_model(self.model_dir, device=self.device)
        return self._model

    @property
    def codec(self):
        from musiclm.compress import load_codec

        if self._codec is None:
            self._codec = load_codec(self.codec_dir)
        return self._codec

    def load(self) -> None:
        """Load the model and the codec now, so the first job does not wait for them."""
        self.model, self.codec  # noqa: B018 - properties that load

    def takes_notes(self) -> bool:
        """Whether the model is note-conditioned: it then plays a plan of the prompt, or an uploaded melody."""
        return getattr(self.model.config, "note_features", 0) > 0

    def sampling_defaults(self) -> dict[str, float]:
        """The model's own cfg and temperature, for the page's sliders."""
        return {"cfg": float(self.model.config.cfg), "temperature": float(self.model.config.temperature)}

    def bandwidths(self) -> list[float]:
        return [float(b) for b in self.codec.bandwidths]

    def close(self) -> None:
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _job_dir(self, kind: str) -> Path:
        folder = self.work_dir / f"{next(self._jobs):05d}-{kind}"
        folder.mkdir()
        old = sorted(p for p in self.work_dir.iterdir() if p.is_dir())[:-KEEP_JOBS]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
        return folder

    def generate(
        self,
        prompt: str,
        duration: float = 10.0,
        seed: str | int | None = RANDOM,
        cfg: float | None = None,
        temperature: float | None = None,
        melody: str | Path | None = None,
        progress: bool = False,
    ) -> Generated:
        """Text (+ a melody file: MIDI or audio) → a WAV, its spectrogram, and with a note-conditioned model the
        MIDI it played (the plan of the prompt, or the melody). `progress`: a tqdm bar while sampling."""
        from musiclm.audio import save_audio
        from musiclm.evaluation.plots import spectrograms
        from musiclm.generate import DEFAULT_LOUDNESS_DB, loudness_gain
        from musiclm.lm.generation import GenerationOptions, generate_audio

        prompt = (prompt or "").strip()
        if not prompt:
            raise MusicLMError("type a prompt first, e.g. 'calm piano in C major, slow'")
        seed = parse_seed(seed)
        options = GenerationOptions(
            duration=float(duration), seed=seed, cfg=cfg, temperature=temperature, progress=progress
        )
        options.check()
        if melody is not None:
            upload_kind(melody, (AUDIO, MIDI), self.max_upload_mb)
        folder = self._job_dir("generate")
        start = time.perf_counter()
        features, score, guide, notes = self._notes(prompt, options, melody)
        wav = generate_audio(self.model, [prompt], options, notes=features, guide=guide)  # [1, C, N]
        sr = self.model.codec.sample_rate
        wav = wav * loudness_gain([wav[0]], sr, DEFAULT_LOUDNESS_DB)  # the level `musiclm generate` writes
        path = folder / f"{_slug(prompt)}-{seed}.wav"
        save_audio(path, wav[0].clamp(-1, 1), sr)
        elapsed = time.perf_counter() - start
        midi = None
        if score is not None:
            from musiclm.notes.midi import save_midi

            midi = path.with_suffix(".mid")
            save_midi(score, midi)
        png = folder / "spectrogram.png"
        spectrograms(png, [(f"{prompt!r}, seed {seed}", wav[0])], sr)
        return Generated(path, png, midi, seed, wav.shape[-1] / sr, elapsed, tuple(notes))

    def _notes(self, prompt: str, options, melody: str | Path | None) -> tuple:
        """What the model plays, through `musiclm.generate.note_condition` as `musiclm generate` does → (features
        [1, T, F] or None, the MIDI score played or None, the guide codes or None, messages for the user)."""
        from musiclm.generate import note_condition
        from musiclm.notes.condition import is_midi_file

        if not self.takes_notes():
            why = "the melody was not used: this model plays from text alone (load a note-conditioned one)"
            return None, None, None, (why,) if melody is not None else ()
        want_midi = melody is None or is_midi_file(melody)  # an audio melody is a chromagram: no MIDI to give
        notes = note_condition(self.model, [prompt], options, melody, want_midi=want_midi)
        return notes.features, notes.scores[0] if notes.scores else None, notes.guide, ()

    def compress(self, source: str | Path, bandwidth: float | None = None) -> Compressed:
        """Audio → .mlc, and for listening: the input, the .mlc decoded, and Opus at the same real bitrate."""
        from musiclm.audio import load_audio, save_audio
        from musiclm.compress import compress, decompress
        from musiclm.evaluation.opus import ffmpeg_available, opus_roundtrip
        from musiclm.evaluation.plots import spectrograms

        source = Path(source)
        if upload_kind(source, (AUDIO, MLC), self.max_upload_mb) == MLC:
            raise MusicLMError(f"{source.name} is already an .mlc file; drop it on 'decode' instead")
        folder = self._job_dir("compress")
        stem = _slug(source.stem)
        mlc, original, decoded = folder / f"{stem}.mlc", folder / f"{stem}-original.wav", folder / f"{stem}-mlc.wav"
        start = time.perf_counter()
        header = compress(source, mlc, codec=self.codec, bandwidth=bandwidth, progress=False)
        elapsed = time.perf_counter() - start
        decompress(mlc, decoded, codec=self.codec, progress=False)
        wav, sr = load_audio(source)
        save_audio(original, wav.clamp(-1, 1), sr)
        size = mlc.stat().st_size
        kbps = size * 8 / header.duration / 1000
        panels = [("original", wav), (f".mlc, {kbps:.2f} kbps", load_audio(decoded)[0])]
        opus = opus_kbps = None
        if ffmpeg_available():
            opus_wav, opus_kbps = opus_roundtrip(wav, sr, kbps)
            opus = folder / f"{stem}-opus.wav"
            save_audio(opus, opus_wav.clamp(-1, 1), sr)
            panels.append((f"Opus, {opus_kbps:.2f} kbps", opus_wav))
        png = folder / "spectrogram.png"
        spectrograms(png, panels, sr)
        return Compressed(
            mlc=mlc,
            original=original,
            decoded=decoded,
            opus=opus,
            opus_kbps=opus_kbps,
            spectrogram=png,
            seconds=header.duration,
            size=size,
            kbps=kbps,
            nominal_kbps=header.kbps,
            streams=header.streams,
            elapsed=elapsed,
        )

    def decompress(self, source: str | Path) -> Decompressed:
        """An .mlc file → WAV at its original rate and channels."""
        from musiclm.audio import load_audio
        from musiclm.compress import decompress
        from musiclm.evaluation.plots import spectrograms

        source = Path(source)
        if upload_kind(source, (AUDIO, MLC), self.max_upload_mb) == AUDIO:
            raise MusicLMError(f"{source.name} is audio; drop it on 'compress' instead")
        folder = self._job_dir("decode")
        wav_path = folder / f"{_slug(source.stem)}.wav"
        start = time.perf_counter()
        header = decompress(source, wav_path, codec=self.codec, progress=False)
        elapsed = time.perf_counter() - start
        png = folder / "spectrogram.png"
        wav, sr = load_audio(wav_path)
        spectrograms(png, [(f"{source.name} decoded", wav)], sr)
        kbps = source.stat().st_size * 8 / header.duration / 1000
        return Decompressed(wav_path, png, header.duration, kbps, elapsed)


def _slug(text: str, limit: int = 40) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "_".join(words)[:limit].strip("_") or "music"
