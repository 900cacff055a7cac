"""Score → MIDI → audio helpers for the synthesized corpus: ABC books, repeats, a bounded FluidSynth call."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from musiclm.errors import MusicLMError

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


def abc_tunes(path: str) -> list[str]:
    """The tunes of an ABC file, each with the file's header lines (a book of tunes opens with `X:` lines;
    music21 would parse all of them, minutes for a 300-tune book)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    chunks = re.split(r"(?m)^(?=X:)", text)
    header, tunes = (chunks[0], chunks[1:]) if not chunks[0].startswith("X:") else ("", chunks)
    return [header + t for t in tunes if t.strip()]


def strip_repeats(score):
    """Remove repeat barlines and jumps (D.C., segno, ...) so music21's MIDI export, which expands repeats,
    cannot fail on an excerpt or a badly formed score; the music is then played once as written."""
    from music21 import bar, repeat, spanner

    for m in score.recurse().getElementsByClass("Measure"):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = None
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = bar.Barline("regular")
    for el in list(score.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
        el.activeSite.remove(el)
    for sp in list(score.recurse().getElementsByClass(spanner.RepeatBracket)):
        sp.activeSite.remove(sp)
    return score


def render_midi(
    midi: Path, soundfont: str, sample_rate: int, seconds: float, scratch: Path, timeout: float = 600.0
) -> np.ndarray:
    """FluidSynth `midi` → mono float32 [N] of at most `seconds`. FluidSynth renders until every voice has
    died, and a note-off lost in a MIDI file keeps a sustained voice (organ, strings) alive forever: so it
    writes headerless PCM that we watch, and it is stopped once it has written `seconds` of audio."""
    need = int(seconds * sample_rate) * 2 * 2  # bytes: stereo, 16 bit
    cmd = [
        "fluidsynth",
        "-ni",
        "-q",
        "-g",
        "0.5",
        "-r",
        str(sample_rate),
        "-T",
        "raw",
        "-O",
        "s16",
        "-E",
        "little",
        "-F",
        str(scratch),
        soundfont,
        str(midi),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    try:
        while proc.poll() is None:
            if scratch.is_file() and scratch.stat().st_size >= need:
                break
            if time.time() > deadline:
                raise RuntimeError(f"fluidsynth took more than {timeout:g} s")
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    if not scratch.is_file() or scratch.stat().st_size == 0:
        raise RuntimeError(f"fluidsynth wrote nothing: {err.decode(errors='replace')[:200]}")
    pcm = np.fromfile(scratch, dtype="<i2")[: need // 2]
    pcm = pcm[: len(pcm) // 2 * 2].reshape(-1, 2).astype(np.float32) / 32768.0  # [N, 2]
    return pcm.mean(1)  # mono: the codec is mono; FluidSynth's stereo is only reverb and pan


def check_renderer(soundfont: str) -> None:
    if shutil.which("fluidsynth") is None:
        raise MusicLMError("fluidsynth is not installed (run `make system-deps` or apt-get install fluidsynth)")
    if not Path(soundfont).is_file():
        raise MusicLMError(
            f"soundfont {soundfont} not found (run `make system-deps` or apt-get install "
            "fluid-soundfont-gm, or pass --soundfont)"
        )
