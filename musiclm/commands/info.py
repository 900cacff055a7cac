"""`musiclm info`: what a codec or LM directory, or a compressed .mlc file, holds.

For an .mlc file, every chunk's length and checksum and the end of the file are checked too (no audio is
decoded): "verified", or exit 2 naming the first problem. --no-verify reads the header only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="describe a model directory or a .mlc file",
        description=__doc__,
        epilog="Examples: `musiclm info` (the shipped codec), `musiclm info song.mlc`, "
        "`musiclm info checkpoints/musiclm`",
    )
    p.add_argument("path", nargs="?", help="model directory or .mlc file (default: the shipped codec)")
    p.add_argument("--no-verify", action="store_true", help=".mlc: read the header only, skip the chunk checks")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.path) if args.path else None
    if path is not None and path.is_file() and path.suffix != ".th":
        return _describe_mlc(path, verify=not getattr(args, "no_verify", False))
    if path is not None and (path / "config.json").is_file():
        meta = json.loads((path / "config.json").read_text())
        if meta.get("model_type") not in ("musiclm-codec", "encodec", "musicgen", "musicgen_melody"):
            print(json.dumps(meta, indent=2))
            return 0
    return _describe_codec(path)


def _describe_codec(path: Path | None) -> int:
    from musiclm.codec import Codec

    codec = Codec.from_pretrained(path)
    params = sum(p.numel() for p in codec.parameters())
    print(f"codec {codec.config.name}  fingerprint {codec.fingerprint()}")
    print(f"  sample rate {codec.sample_rate} Hz, {codec.channels} channel(s), frame rate {codec.frame_rate:g} Hz")
    print(f"  {codec.config.n_q} codebooks x {codec.card} entries, bandwidths {list(codec.bandwidths)} kbps")
    print(f"  parameters {params / 1e6:.2f} M")
    return 0


def _describe_mlc(path: Path, verify: bool) -> int:
    from musiclm.compress import read_info
    from musiclm.errors import MusicLMError

    try:
        h = read_info(path, verify=verify)
    except MusicLMError as e:
        raise MusicLMError(f"{path}: {e}") from None
    seconds = h.duration
    kbps = path.stat().st_size * 8 / seconds / 1000 if seconds else 0.0
    print(f"{path}: {seconds:.2f} s of audio, originally {h.orig_sample_rate} Hz x {h.orig_channels} channel(s)")
    print(f"  codec {h.codec_name} ({h.fingerprint}), {h.sample_rate} Hz, {h.frame_rate:g} frames/s")
    coding = (
        f"each of {h.streams} channels coded separately: {h.bandwidth:g} kbps per channel, {h.kbps:g} kbps nominal"
        if h.streams > 1
        else f"{h.bandwidth:g} kbps nominal{' (channels mixed to one)' if h.orig_channels > h.channels else ''}"
    )
    print(f"  {h.n_q} codebooks x {h.card}, {coding}, {kbps:.2f} kbps on disk{', entropy coded' if h.entropy else ''}")
    levels = "no level corrections"
    if h.level_frames:  # one byte per stream and block
        bits = 8 * h.streams * h.frame_rate / h.level_frames
        levels = f"level corrections every {h.level_frames / h.frame_rate:.2f} s ({bits:.0f} bit/s of the size on disk)"
    if h.gain_frames:
        levels = f"band gains every {h.gain_frames / h.frame_rate * 1000:.0f} ms, {levels}"
    print(f"  .mlc version {h.version}, {levels}")
    print(f"  {h.num_chunks} chunks: {'verified (lengths and checksums intact)' if verify else 'not verified'}")
    return 0
