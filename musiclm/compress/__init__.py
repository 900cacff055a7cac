"""Compress audio to .mlc files and back: the Python API behind `musiclm compress` / `musiclm decompress`.

    from musiclm.compress import compress, decompress, compress_bytes, decompress_bytes
    compress("song.flac", "song.mlc", bandwidth=6.0)        # streams: bounded memory for any length
    decompress("song.mlc", "song.wav")                      # original rate and channels restored
    data = compress_bytes(wav, sample_rate=44100)           # wav [C, N] tensor (or the bytes of an audio file)
    wav, sr = decompress_bytes(data)                        # wav [C, N] at the original rate
    header, codes = read_codes(data)                        # the file's codes, not decoded

Each channel is coded on its own (the codec is mono), so stereo costs twice the bandwidth; `mono=True`
codes a downmix. Paths may be '-' for stdin/stdout. Files are written to a hidden part file and published
when complete (musiclm.files), so a failure never leaves a partial output behind.

    reader.py  audio in (files, stdin streamed, bytes, tensors)   encode.py  audio → .mlc
    writer.py  audio out (WAV stream writer, libsndfile formats)  decode.py  .mlc → audio, recovery, verify
    common.py  codec loading and checks, outputs, progress

The layers below: `musiclm.codec.bitstream` (file format), `musiclm.codec.streaming` (chunked encode/decode,
resampling), `musiclm.codec.model` (the network). This package's own import is light (its modules load on
first use), so `import musiclm` stays fast.
"""

from __future__ import annotations

import importlib

CHUNK_SECONDS = 10.0  # audio per independent chunk (encode.CHUNK_SECONDS is this)

_API = {
    "compress": "encode",
    "compress_bytes": "encode",
    "encode_to": "encode",
    "decompress": "decode",
    "decompress_bytes": "decode",
    "read_info": "decode",
    "read_codes": "decode",
    "Damage": "decode",
    "load_codec": "common",
    "codec_prior": "common",
    "check_codec": "common",
}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'musiclm.compress' has no attribute {name!r}")
    return getattr(importlib.import_module(f"musiclm.compress.{_API[name]}"), name)


__all__ = ["CHUNK_SECONDS", *_API]
