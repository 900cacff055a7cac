"""Chunked (streaming) encode and decode with bounded memory, and a streaming resampler.

A long file never sits in memory whole: audio is read in blocks, resampled block by block, encoded one chunk
of frames at a time, and the codes are written out before the next chunk is read. Decoding mirrors this.

Chunk borders are made seamless by overlap-discard: chunk i of frames [t0, t1) is computed from a window that
extends `context` frames beyond it on both sides, and only [t0, t1) is kept. When `context` covers the
network's receptive field (measured by `receptive_frames`), every kept frame sees exactly the input it sees
in the one-shot path, so streamed output equals one-shot output up to float rounding, borders included.
(With an LSTM the receptive field is unbounded; a 1-second context then makes the difference small, not nil.)

A multichannel signal whose channels are coded on their own (a mono codec, one stream per channel) goes
through the codec as a batch: blocks [S * C, L] become [S, C, L], codes are [S, K, t].

The resampler does the same trick: scipy's polyphase `resample_poly` is shift-invariant for input shifts
that are multiples of `down` (they move the output by multiples of `up`), so resampling aligned overlapping
blocks and keeping their middles reproduces resampling the whole signal.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable, Iterator
from fractions import Fraction

import numpy as np
import torch
from torch import Tensor

from musiclm.audio import convert_channels, resample_polyphase
from musiclm.codec.search import SearchSettings, search_codes


class StreamResampler:
    """Resample a stream of blocks [C, L] from `orig_sr` to `new_sr` (length rule: ceil(N * new / orig))."""

    def __init__(self, orig_sr: int, new_sr: int, total_in: int, total_out: int | None = None):
        ratio = Fraction(new_sr, orig_sr)
        self.up, self.down = ratio.numerator, ratio.denominator
        self.total_in = total_in
        # A round trip a → b → a can give a sample more than it started with (ceil twice): callers that
        # know the true length pass it as `total_out`, and the output stops there.
        natural = -(-total_in * self.up // self.down)
        self.total_out = natural if total_out is None else min(natural, total_out)
        # resample_poly's filter reaches 10 * max(up, down) upsampled samples each way (its default window).
        reach = 10 * max(self.up, self.down) / self.up + 2
        self.margin = self.down * math.ceil(reach / self.down)  # input samples, a multiple of `down`
        self.buffer: np.ndarray | None = None  # input samples from buffer_start on, [C, L]
        self.buffer_start = 0
        self.received = 0
        self.out_pos = 0  # next output sample to emit, a multiple of `up` until the end

    def push(self, block: np.ndarray) -> np.ndarray | None:
        """Add input [C, L]; return the output it completes ([C, L'] or None)."""
        if self.up == self.down == 1:
            self.received += block.shape[-1]
            self.out_pos += block.shape[-1]
            return block
        self.buffer = block if self.buffer is None else np.concatenate([self.buffer, block], axis=-1)
        self.received += block.shape[-1]
        if self.received >= self.total_in:
            return self._emit(self.total_out)
        ready_in = (self.received - self.margin) // self.down * self.down
        return self._emit(min(ready_in // self.down * self.up, self.total_out))

    def _emit(self, out_end: int) -> np.ndarray | None:
        if out_end <= self.out_pos:
            return None
        in_start = self.out_pos // self.up * self.down - self.margin  # out_pos is a multiple of `up` here
        in_stop = -(-out_end * self.down // self.up) + self.margin
        seg = self._input(in_start, in_stop)
        y = resample_polyphase(seg, self.up, self.down)
        offset = self.margin // self.down * self.up
        out = y[:, offset : offset + out_end - self.out_pos].astype(np.float32)
        self.out_pos = out_end
        keep_from = self.out_pos // self.up * self.down - self.margin
        if keep_from > self.buffer_start:  # drop input no later output needs
            self.buffer = self.buffer[:, keep_from - self.buffer_start :]
            self.buffer_start = keep_from
        return out

    def _input(self, start: int, stop: int) -> np.ndarray:
        """Input samples [start, stop), zeros outside the signal (as resample_poly pads the whole signal)."""
        C = self.buffer.shape[0]
        seg = np.zeros((C, stop - start), dtype=np.float32)
        lo, hi = max(start, self.buffer_start), min(stop, self.buffer_start + self.buffer.shape[-1], self.total_in)
        if hi > lo:
            seg[:, lo - start : hi - start] = self.buffer[:, lo - self.buffer_start : hi - self.buffer_start]
        return seg


def resampled_blocks(
    blocks: Iterator[np.ndarray], orig_sr: int, new_sr: int, total_in: int, channels: int, total_out: int | None = None
) -> Iterator[np.ndarray]:
    """Blocks [C_in, L] at orig_sr → blocks [channels, L'] at new_sr, mixed then resampled. Every mix that
    changes the channel count goes through one mono signal (`convert_channels`), so that one is resampled and
    then copied: a mono codec's output restored to 64 channels resamples once, not 64 times (same samples)."""
    resampler = StreamResampler(orig_sr, new_sr, total_in, total_out)
    for block in blocks:
        wav = torch.from_numpy(block)
        out = resampler.push((wav if wav.shape[0] == channels else convert_channels(wav, 1)).numpy())
        if out is not None and out.shape[-1]:
            yield out if out.shape[0] == channels else np.repeat(out, channels, axis=0)
    assert resampler.out_pos == resampler.total_out, "input ended before its declared length"


class BlockBuffer:
    """Random access along the last axis of a forward-only stream of blocks [..., L], keeping only what is
    still needed."""

    def __init__(self, blocks: Iterator[np.ndarray]):
        self.blocks = blocks
        self.data: np.ndarray | None = None
        self.start = 0  # absolute index of data[:, 0]

    def get(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) (fewer at the end of the stream); forgets everything before `start`."""
        while self.data is None or self.start + self.data.shape[-1] < stop:
            block = next(self.blocks, None)
            if block is None:
                break
            self.data = block if self.data is None else np.concatenate([self.data, block], axis=-1)
        assert self.data is not None, "empty stream"
        assert start >= self.start, "BlockBuffer only moves forward"
        self.data = self.data[..., start - self.start :]
        self.start = start
        return self.data[..., : stop - start]


def encode_chunks(
    codec,
    blocks: Iterator[np.ndarray],
    num_samples: int,
    chunk_frames: int,
    context: int,
    n_q: int,
    search: SearchSettings | None = None,
    on_step: Callable[[], None] | None = None,
) -> Iterator[Tensor]:
    """Audio blocks [S * C, L] at the codec rate (num_samples in all; C the codec's channels, S streams
    coded as a batch) → codes [S, n_q, t] per chunk of frames. With a `search` of steps > 0, each chunk's codes
    are searched by analysis by synthesis (musiclm.codec.search) over the chunk and its context, calling
    `on_step` before each step."""
    hop = codec.hop_length
    total = math.ceil(num_samples / hop)
    buffer = BlockBuffer(blocks)
    for t0 in range(0, total, chunk_frames):
        t1 = min(total, t0 + chunk_frames)
        w0 = max(0, t0 - context)
        wav = buffer.get(w0 * hop, min(num_samples, (t1 + context) * hop))  # [S * C, L]
        batch = torch.from_numpy(np.ascontiguousarray(wav)).reshape(-1, codec.channels, wav.shape[-1])
        if search is not None and search.steps > 0:
            codes = search_codes(codec, batch, n_q, search, frame_offset=w0, on_step=on_step)
        else:
            codes = codec.encode(batch, n_q=n_q, frame_offset=w0)  # [S, K, T']
        yield codes[..., t0 - w0 : t1 - w0]


def decode_chunks(
    codec, chunks: Iterator[Tensor], num_samples: int, chunk_frames: int, context: int
) -> Iterator[np.ndarray]:
    """Codes [S, K, t] (or [K, t]: one stream) per chunk → audio blocks [S * C, L] at the codec rate, one
    block per chunk, num_samples in all; a stream of chunks that stops early stops the blocks there too (a
    reader that can go no further: the caller fills the rest)."""
    hop = codec.hop_length
    total = math.ceil(num_samples / hop)
    # Frames on the right come from the next chunk(s): keep a small window of decoded codes.
    buffer = BlockBuffer(np.asarray(c).reshape(-1, *c.shape[-2:]) for c in chunks)
    track = codec.new_phase_track()  # a vocoder-phase decoder continues the phases of the frames kept so far
    for t0 in range(0, total, chunk_frames):
        t1 = min(total, t0 + chunk_frames)
        w0 = max(0, t0 - context)
        codes = buffer.get(w0, min(total, t1 + context))  # [S, K, T']
        if codes.shape[-1] < t1 - w0:
            return  # the stream ended before this chunk
        codes = torch.from_numpy(np.ascontiguousarray(codes))
        wav = codec.decode(codes, frame_offset=w0, phase_track=track)  # [S, C, T' * hop]
        if track is not None:
            track.keep_before(t1)
        wav = wav.reshape(-1, wav.shape[-1])  # [S * C, T' * hop]
        yield wav[:, (t0 - w0) * hop : (t1 - w0) * hop][:, : num_samples - t0 * hop].numpy()


def _changed_span(fn: Callable[[Tensor], Tensor], x: Tensor, pos: int, axis_out_scale: float) -> int:
    """How far (in output steps) a change at input position `pos` spreads in fn(x)."""
    base = fn(x)
    bumped = x.clone()
    bumped[..., pos] += 1.0
    diff = (fn(bumped) - base).abs().amax(dim=tuple(range(base.dim() - 1)))
    idx = torch.nonzero(diff > 0).flatten()
    if idx.numel() == 0:
        return 0
    centre = pos * axis_out_scale
    return int(math.ceil(max(centre - float(idx.min()), float(idx.max()) - centre)))


@torch.no_grad()
def receptive_frames(codec, window: int = 64) -> int:
    """Frames of context either side that streamed chunks need to match the one-shot path (measured by
    perturbing one input of the encoder and one frame of the decoder's latent, and seeing how far it spreads).
    Returns `window // 2` or more when the spread reaches the window's edge (e.g. with an LSTM)."""
    hop = codec.hop_length
    gen = torch.Generator().manual_seed(0)
    wav = 0.1 * torch.randn(1, codec.channels, window * hop, generator=gen)
    enc = _changed_span(codec.encoder, wav, window * hop // 2, 1 / hop)
    latent = torch.randn(1, codec.config.dimension, window, generator=gen)
    decoder = codec.decoder
    if getattr(decoder, "new_phase_track", lambda: None)() is not None:
        # vocoder phase runs on to the end of a window by design; PhaseTrack carries it across chunks, so
        # only the network's spread (the spectrum, then the iSTFT's overlap) needs context
        frames = math.ceil(_changed_span(decoder.spectrum, latent, window // 2, 1))
        return max(enc, frames + decoder.cfg.window_hops // 2 + 1) + 1
    dec = math.ceil(_changed_span(decoder, latent, window // 2, hop) / hop)
    return max(enc, dec) + 1


_context_frames: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def context_frames(codec) -> int:
    """`receptive_frames`, measured once per codec (its architecture sets it; a measurement takes ~80 ms, a
    sixth of compressing 10 s), on a CPU copy when the codec lives elsewhere."""
    if codec not in _context_frames:
        on_cpu = next(codec.parameters()).device.type == "cpu"
        _context_frames[codec] = receptive_frames(codec if on_cpu else copy.deepcopy(codec).cpu())
    return _context_frames[codec]
