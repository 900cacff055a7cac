"""Level corrections (.mlc versions 3 and up): the encoder sends, per stream and block of frames, the gain that brings
its own decoding back to the original's level; the decoder applies it.

The codec's decoder does not hold the level: on held-out real music its output is 2.45 LU off on average
(rendered MIDI 4.6 LU, one bagpipe clip 20 dB quiet), and the error changes from clip to clip and over
time, so no fixed gain fixes it. Codecs send level as side information for this reason: EnCodec with
`normalize=True` a scale per segment (Défossez et al. 2022, §3.1), Opus/CELT the energy of each band
(RFC 6716 §4.3.2). Here one signed byte per block of `level_frames` frames (LEVEL_SECONDS = 0.4 s, the
gating block of ITU-R BS.1770-4 §2.8, so corrections work on the time scale the loudness meter sees), in
LEVEL_STEP_DB = 0.25 dB steps (a quarter of the ~1 dB just-noticeable level difference, so the steps are
inaudible) up to ±31.75 dB (the worst error measured, 20 dB, with room). 8 bits per 0.4 s is 20 bit/s, 0.3 %
of 6 kbps (1.3 % of the lowest 1.5 kbps).

Energies are K-weighted (BS.1770-4 §2.1: its high shelf and RLB high-pass), the weighting integrated
loudness uses, so a block's correction aims at its loudness, not at bass energy the ear hardly weighs.
The decoder's gain is a curve, linear in dB between block centres and flat before the first and after the
last centre of the file: it moves smoothly (no zipper noise) and runs on across chunk borders (no clicks;
the decoder holds a chunk back until the next one's first gain is known).

Analysis by synthesis: the encoder decodes its own codes exactly as the decoder does (`decode_chunks` with
the same context, so chunk i is decoded with chunk i+1's first frames) and compares energies block by block.
The first guess is each block's own ratio; two more passes correct it for what the interpolated curve
actually gives (neighbouring blocks pull each other). Blocks where both signals are below FLOOR_DB get 0 dB;
otherwise each energy is floored there, so a near-silent original never lifts the decoder's noise above
its own level.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.signal import sosfilt

from musiclm.codec.bitstream import LEVEL_STEP_DB, Header
from musiclm.dsp import k_weighting

LEVEL_SECONDS = 0.4  # one correction per BS.1770 gating block
FLOOR_DB = -70.0  # K-weighted mean square of a silent block: BS.1770's absolute gate (-70 LUFS)
MAX_STEPS = 127  # ±31.75 dB
REFINE = 2  # passes that correct the first guess for the interpolated curve


def level_frames_for(frame_rate: float) -> int:
    return max(1, round(LEVEL_SECONDS * frame_rate))


def block_bounds(header: Header, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunk `index`'s level blocks as absolute sample ranges at the codec rate → (starts [B], ends [B]); the
    last block of a chunk may be shorter, the file's last ends at num_samples."""
    hop, t0 = header.hop_length, index * header.chunk_frames
    starts = (t0 + np.arange(0, header.chunk_length(index), header.level_frames)) * hop
    ends = np.minimum(
        starts + header.level_frames * hop, min((t0 + header.chunk_length(index)) * hop, header.num_samples)
    )
    return starts, ends


def gain_curve(start: int, stop: int, centres: np.ndarray, gains_db: np.ndarray) -> np.ndarray:
    """Linear gain [S, stop - start] for samples [start, stop): gains_db [S, M] at centres [M] (ascending,
    in samples), linear in dB between them, flat outside."""
    x = np.arange(start, stop) + 0.5  # sample n spans [n, n + 1)
    return 10 ** (np.stack([np.interp(x, centres, g) for g in gains_db]) / 20)


def _joined(before, centres: np.ndarray, gains: np.ndarray, after) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's centres and gains [S, B] with the neighbouring chunks' nearest ((centre, gains [S]) or None)."""
    xs, gs = [centres], [gains]
    if before is not None:
        xs.insert(0, [before[0]])
        gs.insert(0, before[1][:, None])
    if after is not None:
        xs.append([after[0]])
        gs.append(after[1][:, None])
    return np.concatenate(xs), np.concatenate(gs, axis=1)


def _per_stream(x: np.ndarray, streams: int) -> np.ndarray:
    """[S * C, L] → [S, L], the mean over each stream's channels."""
    return x.reshape(streams, -1, x.shape[-1]).mean(axis=1)


class LevelAnalyser:
    """The encoder's half: called once per chunk, in order, with the original and its decoding [S * C, L]
    at the codec rate → the chunk's level corrections [S, B] int8 in LEVEL_STEP_DB steps."""

    def __init__(self, header: Header):
        assert header.level_frames, "a header without level corrections"
        self.header, self.sos = header, k_weighting(header.sample_rate)
        self.state: dict[str, np.ndarray] = {}  # K-filter state per signal, carried across chunks
        self.before: tuple[float, np.ndarray] | None = None  # the last block of the chunk before, as written

    def _power(self, key: str, x: np.ndarray) -> np.ndarray:  # [S * C, L] → K-weighted power [S, L]
        zi = self.state.get(key, np.zeros((self.sos.shape[0], x.shape[0], 2)))
        y, self.state[key] = sosfilt(self.sos, x.astype(np.float64), axis=-1, zi=zi)
        return _per_stream(y**2, self.header.streams)

    def __call__(self, index: int, original: np.ndarray, decoded: np.ndarray) -> np.ndarray:
        assert original.shape == decoded.shape, f"original {original.shape} vs decoded {decoded.shape}"
        starts, ends = block_bounds(self.header, index)
        first = int(starts[0])
        assert ends[-1] - first == decoded.shape[-1], "decoded chunk and level blocks disagree"
        po, pd = self._power("original", original), self._power("decoded", decoded)

        def energy(p: np.ndarray) -> np.ndarray:  # [S, L] → mean per block [S, B]
            return np.add.reduceat(p, starts - first, axis=-1) / (ends - starts)

        floor = 10 ** (FLOOR_DB / 10)
        eo, ed = energy(po), energy(pd)
        silent = (eo < floor) & (ed < floor)
        eo = np.maximum(eo, floor)
        gains = 10 * np.log10(eo / np.maximum(ed, floor))  # first guess: each block's own ratio
        centres = (starts + ends) / 2
        for done in range(REFINE + 1):
            steps = np.where(silent, 0, np.clip(np.round(gains / LEVEL_STEP_DB), -MAX_STEPS, MAX_STEPS))
            if done == REFINE:
                break
            # what the decoder's curve gives (the next chunk's first gain is not known yet: flat after the
            # last centre), and the correction of each block toward the original's energy
            xs, gs = _joined(self.before, centres, steps * LEVEL_STEP_DB, None)
            heard = energy(pd * gain_curve(first, int(ends[-1]), xs, gs) ** 2)
            gains = steps * LEVEL_STEP_DB + 10 * np.log10(eo / np.maximum(heard, floor))
        self.before = (float(centres[-1]), steps[:, -1] * LEVEL_STEP_DB)
        return steps.astype(np.int8)


def apply_levels(chunks: Iterator[tuple[np.ndarray, np.ndarray | None]], header: Header) -> Iterator[np.ndarray]:
    """The decoder's half: per chunk (audio [S * C, L] at the codec rate, its levels [S, B] int8, or None for
    a damaged chunk) → the audio with the gain curve applied, one block per chunk. A chunk comes out when the
    next chunk's first gain is known, so the curve runs on across the border. A damaged chunk (silence) has
    no gains: its neighbours' curves stay flat toward it."""
    before = None  # (centre, gains [S]) of the last block of the chunk before the held one
    held = None  # (index, audio, centres [B], gains dB [S, B] or None)
    for i, (audio, levels) in enumerate(chunks):
        starts, ends = block_bounds(header, i)
        centres = (starts + ends) / 2
        gains = None if levels is None else levels.astype(np.float64) * LEVEL_STEP_DB
        if held is not None:
            yield _apply(held, header, before, None if gains is None else (centres[0], gains[:, 0]))
            before = None if held[3] is None else (float(held[2][-1]), held[3][:, -1])
        held = (i, audio, centres, gains)
    if held is not None:
        yield _apply(held, header, before, None)


def _apply(held, header: Header, before, after) -> np.ndarray:
    index, audio, centres, gains = held
    if gains is None:
        return audio
    first = index * header.chunk_frames * header.hop_length
    xs, gs = _joined(before, centres, gains, after)
    curve = gain_curve(first, first + audio.shape[-1], xs, gs)  # [S, L]
    channels = audio.shape[0] // header.streams
    return (audio * np.repeat(curve, channels, axis=0)).astype(np.float32)
