"""Audio → .mlc: read in blocks, resample, encode chunk by chunk, decode each chunk as the decoder will to
find its level corrections (musiclm.compress.level), write each chunk as it is done."""

from __future__ import annotations

import io
import itertools
from collections import deque
from pathlib import Path
from typing import BinaryIO

from torch import Tensor

from musiclm.codec import bitstream
from musiclm.codec.bitstream import Header, resampled_length
from musiclm.codec.search import SearchSettings
from musiclm.codec.streaming import BlockBuffer, context_frames, decode_chunks, encode_chunks, resampled_blocks
from musiclm.compress import CHUNK_SECONDS  # the one default, also used by musiclm.compress()
from musiclm.compress import band_gains as gains_module
from musiclm.compress.common import check_destination, codec_prior, load_codec, open_output, progress_bar
from musiclm.compress.level import LevelAnalyser, level_frames_for
from musiclm.compress.reader import AudioSource, Source, open_audio
from musiclm.errors import MusicLMError
from musiclm.files import check_interrupt

DEFAULT_BANDWIDTH = 6.0  # kbps per channel, when the codec offers it (EnCodec's default too)


def _check_mlc_name(destination) -> None:
    """An .mlc file is named .mlc: `compress x.wav song.flac` would write codes into a file that says FLAC."""
    if isinstance(destination, (str, Path)) and str(destination) != "-":
        if Path(destination).suffix.lower() != ".mlc":
            raise MusicLMError(f"{destination}: the output of compress is an .mlc file; name it NAME.mlc (or '-')")


def entropy_default(codec) -> bool:
    """Range coding is on unless asked off, wherever the coder supports the codebook size: with the shipped
    codec, 10 s held-out clips (real / rendered) take 0.90 / 0.85 of the bit-packed size at 6 kbps and 0.76 /
    0.70 at 12 kbps, 0.98 / 0.91 at 1.5 kbps, for ~3 % more encode time and 5-15 % more decode time
    (checkpoints/README.md, "Range coding by default")."""
    from musiclm.codec.entropy import card_supported

    return card_supported(codec.card)


def band_gains_default(codec, bandwidth: float, entropy: bool) -> bool:
    """Band gains (musiclm.compress.band_gains) are on wherever the codes are range-coded and the bandwidth is
    at least band_gains.MIN_BANDWIDTH_KBPS."""
    return entropy and bandwidth >= gains_module.MIN_BANDWIDTH_KBPS


def _header(
    src: AudioSource,
    codec,
    bandwidth: float | None,
    entropy: bool,
    mono: bool,
    chunk_seconds: float,
    band_gains: bool | None = None,
):
    if bandwidth is None:
        bandwidth = DEFAULT_BANDWIDTH if DEFAULT_BANDWIDTH in codec.bandwidths else max(codec.bandwidths)
    if bandwidth not in codec.bandwidths:
        raise MusicLMError(
            f"bandwidth {bandwidth:g} kbps not offered by this codec; choose one of "
            f"{[float(b) for b in codec.bandwidths]}"
        )
    if band_gains is None:
        band_gains = band_gains_default(codec, bandwidth, entropy)
    elif band_gains and not entropy:
        raise MusicLMError("band gains are range-coded: they need entropy coding (drop --no-entropy)")
    # with band gains, some of the bandwidth goes to them instead of the last codebooks
    gains_kbps = gains_module.settings_for(bandwidth).kbps if band_gains else 0.0
    n_q = codec.config.n_q_for_bandwidth(bandwidth - gains_kbps)
    if not 0.05 <= chunk_seconds <= 600:
        raise MusicLMError(f"chunk length {chunk_seconds} s out of range (0.05 .. 600)")
    # A mono codec codes each channel on its own (a batch of S = C streams): left and right stay apart, at
    # C times the bits. Mixing to the codec's channels (mono=True, or a codec with several) is one stream.
    streams = src.channels if codec.channels == 1 and not mono else 1
    header = Header(
        codec_name=codec.config.name,
        fingerprint=codec.fingerprint(),
        sample_rate=codec.sample_rate,
        hop_length=codec.hop_length,
        channels=codec.channels,
        orig_sample_rate=src.sample_rate,
        orig_channels=src.channels,
        num_samples=resampled_length(src.frames, src.sample_rate, codec.sample_rate),
        orig_num_samples=src.frames,
        n_q=n_q,
        card=codec.card,
        bandwidth=float(bandwidth),
        chunk_frames=max(1, round(chunk_seconds * codec.frame_rate)),
        entropy=entropy,
        streams=streams,
        level_frames=level_frames_for(codec.frame_rate),
        gain_frames=gains_module.gain_frames_for(codec.frame_rate, bandwidth) if band_gains else 0,
    )
    try:
        header.validate()
    except bitstream.FormatError as e:
        raise MusicLMError(f"{src.name}: cannot be stored ({str(e).split(': ', 1)[-1]})") from None
    return header


def encode_to(
    out,
    src: AudioSource,
    codec,
    bandwidth: float | None = None,
    entropy: bool | None = None,
    mono: bool = False,
    chunk_seconds: float = CHUNK_SECONDS,
    progress: bool | None = None,
    search: SearchSettings | None = None,
    band_gains: bool | None = None,
) -> Header:
    """Encode `src` with `codec` and write the .mlc bytes to `out` (anything with `write(bytes)`). `entropy`:
    range-code the codes (None: wherever the codec's codebook size allows, `entropy_default`). A `search` of
    steps > 0: analysis-by-synthesis encoding (musiclm.codec.search), slower, the same format. `band_gains`:
    send band gains in place of 1-2 kbps of codes (`band_gains.settings_for`; None: `band_gains_default`)."""
    if entropy is None:
        entropy = entropy_default(codec)
    search_steps = search.steps if search is not None else 0
    header = _header(src, codec, bandwidth, entropy, mono, chunk_seconds, band_gains)
    prior = None
    if entropy:
        from musiclm.codec.entropy import _check_card, prior_hash

        _check_card(codec.card)
        prior = codec_prior(codec, header.n_q)
        if prior is not None:
            header = Header(**{**header.__dict__, "prior": prior_hash(prior)})
    out.write(header.pack())
    channels = header.streams * codec.channels
    blocks = resampled_blocks(src.blocks(), src.sample_rate, codec.sample_rate, src.frames, channels)
    # Analysis by synthesis: the chunks' codes are decoded as musiclm.compress.decode does (same context,
    # so chunk i waits for chunk i+1's codes) and compared with the original at the codec rate. tee holds
    # only the blocks between the encoder's read position and the analysis's (about a chunk).
    to_encode, to_compare = itertools.tee(blocks)
    context = context_frames(codec)
    coded: deque = deque()  # codes [S, K, t] of the chunks encoded but not yet written
    with progress_bar(header, progress, "compress") as bar:
        searching = 0  # the chunk being searched; a searched chunk takes a minute or more, so the bar moves per step

        def on_step():
            check_interrupt()  # Ctrl-C is heard between a chunk's search steps
            bar.update(header.chunk_length(searching) / header.frame_rate / search_steps)

        def encoded():
            nonlocal searching
            chunks = encode_chunks(
                codec,
                to_encode,
                header.num_samples,
                header.chunk_frames,
                context,
                header.n_q,
                search,
                on_step,
            )
            for codes in chunks:
                coded.append(codes)
                searching += 1
                yield codes

        decoded = decode_chunks(codec, encoded(), header.num_samples, header.chunk_frames, context)
        original = BlockBuffer(to_compare)
        levels_of = LevelAnalyser(header)
        gains_of = gains_module.GainAnalyser(header) if header.gain_frames else None
        for i, wav in enumerate(decoded):  # wav [S * C, L]: the decoder's output for chunk i
            check_interrupt()
            start = i * header.chunk_frames * header.hop_length
            reference, codes = original.get(start, start + wav.shape[-1]), coded.popleft().numpy()
            if gains_of is not None:
                # the gains get what the chunk's codes and levels leave of its nominal size (range-coded codes
                # take less); the levels are then found against what the gains make of the decoding
                frames, coded_codes = codes.shape[-1], bitstream.encode_payload(header, codes, prior)
                nominal = header.kbps * 125 * frames / header.frame_rate  # bytes
                budget = int(nominal) - len(bitstream.chunk_bytes(header, frames, *coded_codes)) - 4  # size field
                gains = gains_of(i, reference, wav, budget)
                heard = gains_module.apply_to_chunk(header, i, wav, gains_of.last_steps)
                out.write(bitstream.chunk_bytes(header, frames, *coded_codes, levels_of(i, reference, heard), gains))
            else:
                bitstream.write_chunk(out, header, codes, prior, levels_of(i, reference, wav))
            if not search_steps:
                bar.update(header.chunk_length(i) / header.frame_rate)
    return header


def compress(
    source: Source,
    destination: str | Path | BinaryIO,
    codec=None,
    bandwidth: float | None = None,
    entropy: bool | None = None,
    mono: bool = False,
    force: bool = False,
    chunk_seconds: float = CHUNK_SECONDS,
    progress: bool | None = None,
    search: SearchSettings | None = None,
    band_gains: bool | None = None,
) -> Header:
    """Compress an audio file (path, '-', bytes or file object) to .mlc at `destination` (a path ending in
    .mlc, '-' or a binary file object). `bandwidth`: kbps per channel (default 6 when offered); each channel
    is coded on its own, so a stereo file takes twice that, unless `mono` codes a downmix. The codes are
    range-coded (smaller files) unless `entropy` is False; None: wherever the codec allows. A file at
    `destination` is replaced only with `force`, even one that appears meanwhile. `search`
    (`musiclm.codec.search.SearchSettings`, steps > 0): codes chosen by analysis by synthesis, slower to encode,
    the same format and decoder; None: the encoder's codes. `band_gains`: send band gains (musiclm.compress.
    band_gains) in place of 1-2 kbps of codes; None: at 6 kbps and up when range-coding (`band_gains_default`)."""
    _check_mlc_name(destination)
    check_destination(source, destination, force)
    src = open_audio(source)  # bad input fails before the codec loads
    try:
        codec = load_codec(codec)
        with open_output(destination, force) as out:
            return encode_to(out, src, codec, bandwidth, entropy, mono, chunk_seconds, progress, search, band_gains)
    finally:
        src.close()


def compress_bytes(
    audio: bytes | Tensor,
    codec=None,
    sample_rate: int | None = None,
    bandwidth: float | None = None,
    entropy: bool | None = None,
    mono: bool = False,
    chunk_seconds: float = CHUNK_SECONDS,
    search: SearchSettings | None = None,
    band_gains: bool | None = None,
) -> bytes:
    """Audio file bytes, or wav [C, N] with its `sample_rate` → .mlc bytes (`search`, `band_gains`: as
    `compress`)."""
    src = open_audio(audio, sample_rate)
    out = io.BytesIO()
    try:
        encode_to(out, src, load_codec(codec), bandwidth, entropy, mono, chunk_seconds, False, search, band_gains)
    finally:
        src.close()
    return out.getvalue()
