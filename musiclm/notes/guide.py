"""Notes → the codes of their sound, which the LM keeps for its coarsest codebooks (`generate_codes(guide=)`).

    plan / tune.mid --arrange (the prompt's instruments)--> Score --render_notes (FluidSynth, General MIDI)-->
    wav [N] --codec.encode--> codes [1, K, T] --first G codebooks--> guide [1, G, T]

Why: the note-conditioned LM, a 10 M model trained for a few CPU hours, follows its notes at a melody
agreement of ~0.19 and writes a noise band; the codec's coarse codebooks of a render of the same notes keep
most of their pitch (agreement 0.26 / 0.47 / 0.52 with 1 / 2 / 3 of the LM's 4 codebooks given, the LM writing
the rest; eval/eval_melody.py --guide). This is MusicLM's hierarchy (Agostinelli et al. 2023, §3.3: semantic
→ coarse acoustic → fine acoustic tokens) with the coarse stage played by a synthesizer, the one the training
corpus was rendered with (`musiclm.data.synth`), so the codes are of the kind the LM learnt from.

Arrangement: when the prompt names instruments (`parse_prompt`), a MIDI melody's pitched tracks are given them
in turn, so "--melody tune.mid 'for string quartet'" is played by strings; drums stay drums. A plan already
has the prompt's instruments.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from musiclm.data.render import DEFAULT_SOUNDFONT, check_renderer, render_midi
from musiclm.errors import MusicLMError
from musiclm.notes.midi import Score, save_midi

# The render's level: the middle of the corpus's range (-32 to -16 dB RMS by dynamic, musiclm.data.synth).
GUIDE_RMS_DB = -24.0
SILENT_DB = -60.0  # a render this quiet (a plan that rests) is left as it is, not boosted


def renderer_available(soundfont: str = DEFAULT_SOUNDFONT) -> bool:
    """FluidSynth and the General MIDI soundfont are installed (`make system-deps`)."""
    try:
        check_renderer(soundfont)
    except MusicLMError:
        return False
    return True


def arrange(score: Score, programs: list[int] | tuple[int, ...]) -> Score:
    """A copy of `score` whose pitched tracks play `programs` in turn (track i gets programs[i % n]); drum
    tracks are kept. No programs: the score unchanged."""
    if not programs:
        return score
    out = score.copy()
    pitched = [t for t in out.tracks if not t.is_drum]
    for i, track in enumerate(pitched):
        track.program = int(programs[i % len(programs)])
    return out


def render_notes(score: Score, seconds: float, sample_rate: int, soundfont: str = DEFAULT_SOUNDFONT) -> np.ndarray:
    """`score` → mono float32 [round(seconds * sample_rate)] rendered by FluidSynth at the corpus's level
    (padded with silence after the last note's release, cut at `seconds`)."""
    check_renderer(soundfont)
    n = round(seconds * sample_rate)
    with tempfile.TemporaryDirectory(prefix="musiclm-guide-") as tmp:
        midi = save_midi(score, Path(tmp) / "notes.mid")
        try:
            audio = render_midi(midi, soundfont, sample_rate, seconds, Path(tmp) / "notes.raw", timeout=60.0)
        except RuntimeError as e:
            raise MusicLMError(f"rendering the notes failed: {e}") from None
    audio = np.pad(audio[:n], (0, max(0, n - len(audio))))
    rms_db = 20 * math.log10(float(np.sqrt(np.mean(audio**2))) + 1e-12)
    if rms_db > SILENT_DB:
        gain = 10 ** ((GUIDE_RMS_DB - rms_db) / 20)
        audio = audio * min(gain, 0.98 / (float(np.abs(audio).max()) + 1e-9))
    return audio.astype(np.float32)


@torch.inference_mode()
def guide_codes(
    codec, scores: list[Score], seconds: float, codebooks: int, soundfont: str = DEFAULT_SOUNDFONT
) -> Tensor:
    """One score per prompt → guide codes [B, codebooks, T] (T covers `seconds` at the codec's frame rate):
    the first `codebooks` codebooks of the codec's encoding of each score's render."""
    if codebooks < 1:
        raise MusicLMError(f"a guide needs at least one codebook, got {codebooks}")
    device = next(codec.parameters()).device
    out = []
    for score in scores:
        wav = torch.from_numpy(render_notes(score, seconds, codec.sample_rate, soundfont))
        wav = wav.to(device)[None, None].expand(1, codec.channels, -1)
        out.append(codec.encode(wav, n_q=codebooks)[:, :codebooks])
    return torch.cat(out)


def codec_listener(codec, codebooks: int) -> Callable[[np.ndarray, int], np.ndarray]:
    """How the planner's heard checks listen (`plan(listen=)`): a render [N] at `sample_rate` → the same through
    `codec` at its first `codebooks` codebooks, as the generated audio will sound. The codec loses beats a
    render keeps: of 200 plans, 91 % of the renders were heard at the asked tempo, 76 % of the same through the
    codec at the LM's 4 codebooks (checkpoints/README.md, "Plans heard through the codec")."""
    from musiclm.audio import resample

    if not 1 <= codebooks <= codec.config.n_q:
        raise MusicLMError(f"the planner listens through 1-{codec.config.n_q} codebooks, got {codebooks}")

    def listen(audio: np.ndarray, sample_rate: int) -> np.ndarray:
        device = next(codec.parameters()).device
        wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        wav = resample(wav, sample_rate, codec.sample_rate)
        with torch.inference_mode():
            out = codec.decode(codec.encode(wav.to(device)[None].expand(1, codec.channels, -1), n_q=codebooks))
        out = resample(out[0].mean(0, keepdim=True).float().cpu(), codec.sample_rate, sample_rate)[0]
        return np.pad(out.numpy()[: len(audio)], (0, max(0, len(audio) - out.shape[-1])))

    return listen
