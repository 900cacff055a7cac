"""Band gains (.mlc version 5): the encoder sends, per stream, band and cell of `gain_frames` frames, the gain in
STEP_DB steps that brings its own decoding's energy in that band to the original's; the decoder multiplies its
short-time spectrum by them, before the broadband level corrections (musiclm.compress.level), which the encoder
then finds against its estimate of the gains' result and which keep the loudness where coarse gain steps miss.

Why: the shipped decoder loses its notes in the magnitudes, not the phase. Given the reference's STFT magnitudes
with its own phases, its output transcribes at note F1 ~0.72 on real music against ~0.48 as decoded, and more
codebooks hardly help (6 → 12 kbps: 0.465 → 0.471 on 48 real clips). Codecs have long sent band energies beside the
fine structure (Opus/CELT: RFC 6716 §4.3.2, ~21 bands a 20 ms frame). Notes need finer bands: semitones up to
SPLIT_HZ (one or more 11.7 Hz bins each from ~200 Hz), BANDS_PER_OCTAVE_HIGH above, 80 ms cells (4 frames at 50 Hz;
40 ms at 12 kbps and up, SETTINGS_BY_BANDWIDTH). On 48 + 48 held-out clips at 6 kbps through the compressor
(eval/codec_curve.py, train/README.md, "Band gains"): note F1 0.465 → 0.552 on real music and 0.569 → 0.617 on
renders (Opus CBR 12 kbps: 0.500 / 0.575), ViSQOL 3.15 → 3.46 and 3.44 → 3.72, SI-SNR +0.3 / +0.1 dB, against 12
codebooks and level corrections.

The gains are 10 symbols (-24 .. +12 dB in 4 dB steps; cells where both signals lie QUIET_DB under the chunk's
loudest cell, or below SILENT_DB, get 0 dB) range-coded with one adaptive model per stream and band
(musiclm.codec.entropy): ~1.4 kbps on music. They need range coding, so a file has them only when its codes
are range-coded too.

Analysis by synthesis: the encoder decodes its own codes exactly as the decoder does (`decode_chunks`, same
context) and compares band energies cell by cell, each chunk's frames analysed on that chunk alone (zeros
beyond its ends, in both signals). The decoder applies them to the whole stream with a streaming weighted
overlap-add (Hann window of N_FFT_SECONDS, hop = the codec's frame), so chunk borders leave no seam; a damaged
chunk's cells get 0 dB.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from musiclm.codec.bitstream import Header
from musiclm.codec.entropy import decode_codes, encode_codes, ideal_bits
from musiclm.errors import MusicLMError

N_FFT_SECONDS = 0.085  # 2048 points at 24 kHz: 11.7 Hz bins, a semitone a bin or more from ~200 Hz
F_MIN_HZ = 32.7  # C1: the bins below join the first band
SPLIT_HZ = 2000.0  # semitone bands below; few fundamentals lie above
BANDS_PER_OCTAVE_HIGH = 2
STEP_DB = 4.0
MIN_STEP, MAX_STEP = -6, 3  # -24 .. +12 dB: the decoder is seldom too quiet by more than 12 dB in a band
QUIET_DB = -40.0  # cells this far under the chunk's loudest (both signals) get 0 dB: their notes are inaudible
# Where the gains would take the chunk over its nominal size, quieter cells are let go until they fit
QUIET_LADDER_DB = (-40.0, -36.0, -32.0, -28.0, -24.0, -20.0, -16.0, -12.0)
SILENT_DB = -100.0  # energy per cell (dB re full-scale sine) under which a cell is silence
SYMBOLS = MAX_STEP - MIN_STEP + 1


@dataclasses.dataclass(frozen=True)
class GainSettings:
    """How an encoder spends band gains at a bandwidth: a gain's span in time (`cell_seconds`, the header's
    gain_frames) and the kbps of codes given over to them (codebooks dropped; the gains take what the chunk's
    codes and levels leave of its nominal size)."""

    cell_seconds: float
    kbps: float


# From each bandwidth up (kbps, highest first). 6 kbps: 80 ms cells for the two last codebooks (50 Hz, 10-bit
# codes). 12 kbps: codebooks beyond 6 kbps add little (note F1 0.465 → 0.471 without gains), so 40 ms cells
# for four: on 48 + 48 held-out clips note F1 0.562 → 0.592 / 0.621 → 0.633 against 80 ms cells for two,
# above 6 kbps on both sets (train/README.md, "Band gains at 12 kbps").
SETTINGS_BY_BANDWIDTH = ((12.0, GainSettings(cell_seconds=0.04, kbps=2.0)), (6.0, GainSettings(0.08, 1.0)))
MIN_BANDWIDTH_KBPS = SETTINGS_BY_BANDWIDTH[-1][0]  # below, the gains would take a large share of the bits


def settings_for(bandwidth: float) -> GainSettings:
    """The settings for `bandwidth` kbps (below the lowest entry, when asked for: the lowest entry's)."""
    return next((s for low, s in SETTINGS_BY_BANDWIDTH if bandwidth >= low), SETTINGS_BY_BANDWIDTH[-1][1])


def gain_frames_for(frame_rate: float, bandwidth: float) -> int:
    return max(1, round(settings_for(bandwidth).cell_seconds * frame_rate))


def n_fft_for(sample_rate: int) -> int:
    return 1 << round(math.log2(N_FFT_SECONDS * sample_rate))


@functools.lru_cache(maxsize=4)
def band_of_bin(sample_rate: int) -> np.ndarray:
    """[n_fft // 2 + 1] the band of each STFT bin: semitones from F_MIN_HZ to SPLIT_HZ, then
    BANDS_PER_OCTAVE_HIGH to the top; every band holds at least one bin (empty ones are merged away)."""
    n_fft = n_fft_for(sample_rate)
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    octaves = np.log2(np.maximum(freqs, F_MIN_HZ) / F_MIN_HZ)
    split = math.log2(SPLIT_HZ / F_MIN_HZ)
    low = np.floor(12 * octaves)
    high = math.ceil(12 * split) + np.floor(BANDS_PER_OCTAVE_HIGH * (octaves - split))
    raw = np.where(octaves < split, low, high).astype(np.int64)
    bands = np.unique(raw, return_inverse=True)[1]  # renumbered 0..B-1, in order, without gaps
    bands.setflags(write=False)  # cached: every chunk of every file reads the same layout
    return bands


def num_bands(sample_rate: int) -> int:
    return int(band_of_bin(sample_rate).max()) + 1


def cells(header: Header, frames: int) -> int:
    """Gain cells per stream and band in a chunk of `frames` frames (the last may be shorter)."""
    return -(-frames // header.gain_frames)


def _window(n_fft: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float64)  # periodic Hann


def _frames(audio: np.ndarray, start: int, first: int, count: int, hop: int, n_fft: int) -> np.ndarray:
    """audio [R, L] holding samples [start, start + L) (zeros outside) → windowed frames [R, count, n_fft] of
    frames first .. first + count - 1, frame t centred on sample t * hop."""
    lo = first * hop - n_fft // 2 - start
    hi = (first + count - 1) * hop + n_fft // 2 - start
    padded = np.pad(audio, ((0, 0), (max(0, -lo), max(0, hi - audio.shape[-1]))))
    offset = max(0, lo)
    strided = sliding_window_view(padded[:, offset : offset + (count - 1) * hop + n_fft], n_fft, axis=-1)[:, ::hop]
    return strided * _window(n_fft)  # the one copy


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """frames [R, count, n] → their sum [R, (count - 1) * hop + n], frame k starting at sample k * hop: each
    frame cut in hop-long pieces, the pieces added in ceil(n / hop) shifted passes instead of count."""
    rows, count, n = frames.shape
    pieces = -(-n // hop)
    out = np.zeros((rows, count + pieces - 1, hop))
    for p in range(pieces):
        width = min(hop, n - p * hop)
        out[:, p : p + count, :width] += frames[:, :, p * hop : p * hop + width]
    return out.reshape(rows, -1)[:, : (count - 1) * hop + n]


def _band_energies(spec: np.ndarray, band_starts: np.ndarray, gain_frames: int) -> np.ndarray:
    """spec [S, T, F] complex → energy per band and cell [S, n_bands, ceil(T / gain_frames)]; `band_starts`: each
    band's first bin (bands are runs of neighbouring bins)."""
    power = spec.real**2 + spec.imag**2  # [S, T, F]
    per_band = np.add.reduceat(power, band_starts, axis=-1)  # [S, T, n_bands]
    n_bands = len(band_starts)
    n_cells = -(-spec.shape[1] // gain_frames)
    per_band = np.pad(per_band, ((0, 0), (0, n_cells * gain_frames - spec.shape[1]), (0, 0)))
    return per_band.reshape(spec.shape[0], n_cells, gain_frames, n_bands).sum(2).transpose(0, 2, 1)


class GainAnalyser:
    """The encoder's half: called once per chunk, in order, with the original and its decoding [S * C, L] at
    the codec rate → the chunk's gains, range-coded (bytes)."""

    def __init__(self, header: Header):
        assert header.gain_frames, "a header without band gains"
        self.header = header
        self.n_fft = n_fft_for(header.sample_rate)
        bands = band_of_bin(header.sample_rate)
        self.band_starts = np.searchsorted(bands, np.arange(int(bands.max()) + 1))
        # a full-scale sine's energy in one frame's spectrum, so SILENT_DB reads in dB re full scale
        self.full_scale = (np.sum(_window(self.n_fft)) / 2) ** 2 * header.gain_frames

    def steps(self, index: int, original: np.ndarray, decoded: np.ndarray, quiet_db: float = QUIET_DB) -> np.ndarray:
        """→ the chunk's gains in STEP_DB steps [S, bands, cells] int64; 0 where both signals lie `quiet_db`
        under the chunk's loudest cell."""
        return self._steps(*self._energies_db(index, original, decoded), quiet_db)

    def _energies_db(self, index: int, original: np.ndarray, decoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert original.shape == decoded.shape, f"original {original.shape} vs decoded {decoded.shape}"
        h = self.header
        frames = h.chunk_length(index)
        first = index * h.chunk_frames
        start = first * h.hop_length
        energies = []
        for audio in (original, decoded):
            spec = np.fft.rfft(_frames(audio.astype(np.float64), start, first, frames, h.hop_length, self.n_fft))
            spec = spec.reshape(h.streams, -1, frames, spec.shape[-1])  # [S, C, T, F]
            power = _band_energies(spec.reshape(-1, frames, spec.shape[-1]), self.band_starts, h.gain_frames)
            energies.append(power.reshape(h.streams, -1, *power.shape[1:]).sum(1) / self.full_scale)
        db_o, db_d = (10 * np.log10(e + 1e-30) for e in energies)
        return db_o, db_d

    @staticmethod
    def _steps(db_o: np.ndarray, db_d: np.ndarray, quiet_db: float) -> np.ndarray:
        louder = np.maximum(db_o, db_d)
        quiet = (louder < louder.max(axis=(1, 2), keepdims=True) + quiet_db) | (louder < SILENT_DB)
        steps = np.clip(np.round((db_o - db_d) / STEP_DB), MIN_STEP, MAX_STEP).astype(np.int64)
        steps[quiet] = 0
        return steps

    def __call__(self, index: int, original: np.ndarray, decoded: np.ndarray, budget: int | None = None) -> bytes:
        """→ the chunk's coded gains, in at most `budget` bytes when given: quieter cells are let go (0 dB,
        QUIET_LADDER_DB) until they fit, and none are sent if even the loudest do not."""
        energies = self._energies_db(index, original, decoded)
        for quiet_db in QUIET_LADDER_DB:
            steps = self._steps(*energies, quiet_db)
            if budget is not None and steps.any() and ideal_bits(_rows(steps), SYMBOLS) / 8 - 4 > budget:
                continue  # cannot fit: skip the coding
            coded = encode_steps(steps) if steps.any() else b""  # silence: 0 dB throughout, in no bytes
            if budget is None or len(coded) <= budget:
                self.last_steps = steps  # what the decoder will read back from `coded`
                return coded
        self.last_steps = np.zeros_like(steps)
        return b""


def encode_steps(steps: np.ndarray) -> bytes:
    """[S, bands, cells] in MIN_STEP..MAX_STEP → bytes: one adaptive model per stream and band (on 6 + 6 clips at
    4 dB steps, 1.52 / 1.49 kbps against 1.78 / 1.51 for one model over all cells or their changes)."""
    return encode_codes(_rows(steps), SYMBOLS)


def _rows(steps: np.ndarray) -> np.ndarray:
    """[S, bands, cells] steps → the coder's symbols, one row per stream and band."""
    return steps.reshape(-1, steps.shape[-1]) - MIN_STEP


def decode_steps(data: bytes, header: Header, frames: int) -> np.ndarray:
    """Inverse of encode_steps for a chunk of `frames` frames → [S, bands, cells] int64 (garbage in gives
    steps in range, never an exception: the chunk's CRC is what catches damage). No bytes: 0 dB throughout."""
    bands, n_cells = num_bands(header.sample_rate), cells(header, frames)
    if not data:
        return np.zeros((header.streams, bands, n_cells), np.int64)
    rows = decode_codes(data, header.streams * bands, n_cells, SYMBOLS)
    return rows.reshape(header.streams, bands, n_cells) + MIN_STEP


def apply_to_chunk(header: Header, index: int, audio: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The encoder's estimate of what the decoder makes of chunk `index` [S * C, L] with its gains (steps, as
    `GainAnalyser.last_steps`): the chunk alone (zeros beyond its ends, where the decoder has its neighbours),
    for the level analysis."""
    alone = dataclasses.replace(header, num_samples=audio.shape[-1], chunk_frames=header.chunk_length(index))
    return np.concatenate(list(apply_gains([(audio, steps)], alone)), axis=1)


def apply_gains(chunks: Iterator[tuple[np.ndarray, np.ndarray | None]], header: Header) -> Iterator[np.ndarray]:
    """The decoder's half: per chunk (audio [S * C, L] at the codec rate, its steps [S, bands, cells], or None
    for a damaged chunk: 0 dB) → the audio with the gains applied, one block per chunk, num_samples in all.

    A weighted overlap-add over the whole stream (frame t centred on sample t * hop, Hann window, zeros
    outside the file; with every gain 0 dB it gives the input back): a chunk comes out when the next chunk's
    first frames are in, so it lags one chunk."""
    hop, n_fft, total = header.hop_length, n_fft_for(header.sample_rate), header.num_samples
    half, bands = n_fft // 2, band_of_bin(header.sample_rate)
    window = _window(n_fft)
    last_frame = math.ceil(total / hop)  # frames 0 .. last_frame cover every sample
    audio = np.zeros((0, 0))  # the input not yet out of reach of frames still to come: samples [kept, ...)
    kept = 0
    out_sum = np.zeros((0, 0))  # overlap-add numerator and window² envelope for samples [done, ...)
    envelope = np.zeros(0)
    done = 0
    next_frame = 0
    gains: dict[int, np.ndarray] = {}  # chunk → linear gain per stream and bin [S, F, cells]
    received = 0  # samples received
    for index, (block, steps) in enumerate(chunks):
        rows = block.shape[0]
        if index == 0:
            audio, out_sum = np.zeros((rows, 0)), np.zeros((rows, 0))
        audio = np.concatenate([audio, block.astype(np.float64)], axis=1)
        received += block.shape[-1]
        if steps is not None:
            gains[index] = 10 ** (steps[:, bands, :] * STEP_DB / 20)  # [S, F, cells]
        end = received >= total
        # frames whose windows lie in what is received (all that are left, at the end)
        upto = last_frame if end else (received - half) // hop
        if upto >= next_frame:
            count = upto - next_frame + 1
            spec = np.fft.rfft(_frames(audio, kept, next_frame, count, hop, n_fft))  # [R, count, F]
            per_stream = spec.reshape(header.streams, -1, count, spec.shape[-1])  # a view: [S, C, count, F]
            per_stream *= _frame_gains(gains, header, next_frame, count)[:, None]  # each stream's over its channels
            frames = np.fft.irfft(spec, n_fft) * window  # [R, count, n_fft]
            lo = next_frame * hop - half  # first sample the frames touch
            hi = upto * hop + half
            need = hi - done
            if out_sum.shape[1] < need:
                out_sum = np.pad(out_sum, ((0, 0), (0, need - out_sum.shape[1])))
                envelope = np.pad(envelope, (0, need - envelope.shape[0]))
            # the frames span samples [lo, hi): from `done` on, but for the file's first frames (lo < 0 = done)
            skip = done - lo
            out_sum[:, :need] += _overlap_add(frames, hop)[:, skip:]
            envelope[:need] += _overlap_add(np.broadcast_to(window**2, (1, count, n_fft)), hop)[0, skip:]
            next_frame = upto + 1
        # samples no frame still to come will touch
        ready = total if end else min(received, next_frame * hop - half)
        if ready > done:
            n = ready - done
            # where the envelope is ~0 (only at the file's edges, under no window) the input passes through
            env = envelope[:n]
            safe = env > 1e-8
            chunk_out = np.where(safe, out_sum[:, :n] / np.where(safe, env, 1.0), audio[:, done - kept : ready - kept])
            yield chunk_out.astype(np.float32)
            out_sum, envelope, done = out_sum[:, n:], envelope[n:], ready
        # keep the input later frames still read
        drop = min(done, next_frame * hop - half) - kept
        if drop > 0:
            audio, kept = audio[:, drop:], kept + drop
        for old in [i for i in gains if (i + 1) * header.chunk_frames <= next_frame]:
            del gains[old]
    if done < total:
        raise MusicLMError("band gains: the stream of chunks ended early")


def _frame_gains(gains: dict[int, np.ndarray], header: Header, first: int, count: int) -> np.ndarray:
    """Linear gain per stream, frame and bin [S, count, F] for frames first .. first + count - 1 (1 where a
    chunk's gains are missing: damaged, or past the last frame)."""
    out = np.ones((header.streams, count, n_fft_for(header.sample_rate) // 2 + 1))
    frames = np.arange(first, first + count)
    chunk_of = np.minimum(frames // header.chunk_frames, header.num_chunks - 1)
    for chunk in np.unique(chunk_of).tolist():
        g = gains.get(chunk)
        if g is not None:
            mine = chunk_of == chunk
            cell = np.minimum((frames[mine] - chunk * header.chunk_frames) // header.gain_frames, g.shape[-1] - 1)
            out[:, mine, :] = g[:, :, cell].transpose(0, 2, 1)  # [S, frames, F]
    return out
