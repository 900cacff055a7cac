"""Codec vs Opus on held-out recorded music: bitrate on disk, quality, and one-thread speed.

    .venv/bin/python eval/bench_codec.py --codec checkpoints/codec            # the trained codec
    .venv/bin/python eval/bench_codec.py --random-codec --clips 3             # smoke test of the script
    .venv/bin/python eval/bench_codec.py --random-codec --random-config configs/codec/small.yaml  # speed only

Cuts `--clips` clips of `--clip-seconds` from the test split of a manifest (rows with "path" relative to the
manifest's folder and "split"), at the codec's rate and channel count (the reference for every metric).
For each codec bandwidth: the .mlc size on disk (header and CRCs included) and with --entropy, SI-SNR,
log-mel distance, multi-scale STFT distance, loudness difference, and encode/decode real-time factors of the
whole `musiclm.compress` path on one thread. Opus (ffmpeg libopus, CBR: -vbr off) at the same and twice the
nominal bitrate, same metrics, its .opus (Ogg) size on disk, and ffmpeg's one-thread speed. Prints a markdown
table and writes it to outputs/bench_codec.md.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from musiclm.audio import load_audio
from musiclm.codec import bitstream
from musiclm.compress import compress_bytes, decompress_bytes, load_codec
from musiclm.errors import MusicLMError
from musiclm.evaluation import metrics

ROOT = Path(__file__).resolve().parent.parent
METRICS = {
    "SI-SNR dB ↑": metrics.si_snr,
    "log-mel ↓": metrics.log_mel_distance,
    "MS-STFT ↓": metrics.multiscale_stft_distance,
    "loudness Δ LU ↓": metrics.loudness_difference,
}


def pick_clips(
    manifest: Path, split: str, n: int, seconds: float, sr: int, channels: int, seed: int
) -> list[tuple[str, torch.Tensor]]:
    """n clips [C, N] at (sr, channels), round-robin over the split's tracks at seeded offsets; near-silent
    clips are redrawn (silence flatters every codec)."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    tracks = [r for r in rows if r.get("split") == split and r.get("duration", 1e9) >= seconds + 1]
    if not tracks:
        raise MusicLMError(f"{manifest}: no '{split}' tracks of at least {seconds + 1:g} s")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(tracks))
    clips = []
    for i in range(n * 4):
        if len(clips) == n:
            break
        row = tracks[order[i % len(tracks)]]
        path = manifest.parent / row["path"]
        duration = row.get("duration") or sf.info(str(path)).duration
        start = float(rng.uniform(0, max(0.0, duration - seconds - 0.5)))
        wav, _ = load_audio(path, sample_rate=sr, channels=channels, start=start, duration=seconds)
        if wav.pow(2).mean().sqrt() > 0.01:
            clips.append((f"{row['path']}@{start:.0f}s", wav))
    return clips


def quality(ref: torch.Tensor, est: torch.Tensor, sr: int) -> dict[str, float]:
    return {name: float(fn(ref, est, sr)) for name, fn in METRICS.items()}


def entropy_kbps(data: bytes, seconds: float, codec, learned: bool) -> float:
    """Size of the same codes re-written with range coding (no second pass through the network): with the
    codec's learned prior as `--entropy` does (falls back to adaptive-only for an untrained codec), or
    adaptive-only."""
    from musiclm.codec.entropy import prior_hash
    from musiclm.compress import codec_prior

    header, codes = bitstream.read_mlc(io.BytesIO(data))
    prior = codec_prior(codec, header.n_q) if learned else None
    fields = {**header.__dict__, "entropy": True, "prior": prior_hash(prior) if prior is not None else ""}
    out = io.BytesIO()
    bitstream.write_mlc(out, bitstream.Header(**fields), codes, prior)
    return len(out.getvalue()) * 8 / seconds / 1000


def bench_codec(codec, clips, sr: int) -> list[dict]:
    rows = []
    for bw in codec.bandwidths:
        scores, size, ent, ent_adaptive, t_enc, t_dec, audio_s = [], 0, 0.0, 0.0, 0.0, 0.0, 0.0
        for _, ref in clips:
            seconds = ref.shape[-1] / sr
            t = time.perf_counter()
            data = compress_bytes(ref, codec, sample_rate=sr, bandwidth=bw)
            t_enc += time.perf_counter() - t
            t = time.perf_counter()
            est, _ = decompress_bytes(data, codec)
            t_dec += time.perf_counter() - t
            scores.append(quality(ref, est, sr))
            size += len(data)
            ent += entropy_kbps(data, seconds, codec, learned=True) * seconds
            ent_adaptive += entropy_kbps(data, seconds, codec, learned=False) * seconds
            audio_s += seconds
        n_q = codec.config.n_q_for_bandwidth(bw)
        rows.append(
            {
                "system": "musiclm codec",
                "nominal": bw,
                "codes": n_q * math.log2(codec.card) * codec.frame_rate / 1000,
                "disk": size * 8 / audio_s / 1000,
                "entropy": ent / audio_s,
                "adaptive": ent_adaptive / audio_s,
                **mean(scores),
                "enc_rt": audio_s / t_enc,
                "dec_rt": audio_s / t_dec,
            }
        )
        print(f"  codec {bw:g} kbps done", file=sys.stderr)
    return rows


def ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-threads", "1", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise MusicLMError(f"ffmpeg failed: {proc.stderr.strip()[-300:]}")


def bench_opus(kbps: float, clips, sr: int) -> dict:
    """libopus CBR at `kbps`; one ffmpeg process per clip and direction, so the times include process start
    (~tens of ms per 10 s clip: Opus's real-time factor is, if anything, understated)."""
    scores, size, t_enc, t_dec, audio_s = [], 0, 0.0, 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="bench-opus-") as tmp:
        src, enc, dec = Path(tmp) / "in.wav", Path(tmp) / "x.opus", Path(tmp) / "out.wav"
        for _, ref in clips:
            sf.write(src, ref.numpy().T, sr, subtype="FLOAT")
            t = time.perf_counter()
            ffmpeg("-i", str(src), "-c:a", "libopus", "-b:a", f"{kbps * 1000:.0f}", "-vbr", "off", str(enc))
            t_enc += time.perf_counter() - t
            t = time.perf_counter()
            ffmpeg("-i", str(enc), "-ar", str(sr), "-ac", str(ref.shape[0]), "-c:a", "pcm_f32le", str(dec))
            t_dec += time.perf_counter() - t
            est = torch.from_numpy(sf.read(dec, dtype="float32", always_2d=True)[0].T.copy())
            est = torch.nn.functional.pad(est, (0, max(0, ref.shape[-1] - est.shape[-1])))[..., : ref.shape[-1]]
            scores.append(quality(ref, est, sr))
            size += enc.stat().st_size
            audio_s += ref.shape[-1] / sr
    print(f"  opus {kbps:g} kbps done", file=sys.stderr)
    return {
        "system": "Opus (libopus CBR)",
        "nominal": kbps,
        "codes": None,
        "disk": size * 8 / audio_s / 1000,
        "entropy": None,
        "adaptive": None,
        **mean(scores),
        "enc_rt": audio_s / t_enc,
        "dec_rt": audio_s / t_dec,
    }


def border_errors(codec, clip: torch.Tensor, chunk_seconds: float = 2.0) -> str:
    """Streamed vs one-shot decode of one clip, split at chunk borders (±2 frames) and inside chunks, for no
    context, a little, and the measured receptive field (what the compressor uses)."""
    from musiclm.codec.streaming import decode_chunks, encode_chunks, receptive_frames

    n_q = codec.config.n_q_for_bandwidth(max(codec.bandwidths))
    N, hop = clip.shape[-1], codec.hop_length
    chunk = max(1, round(chunk_seconds * codec.frame_rate))
    codes = codec.encode(clip[None], n_q=n_q)[0]
    ref = codec.decode(codes[None], N)[0].numpy()
    border = np.zeros(N, bool)
    for b in range(chunk * hop, N, chunk * hop):
        border[max(0, b - 2 * hop) : b + 2 * hop] = True
    rf = receptive_frames(codec)
    lines = [
        f"Streaming vs one-shot on a {N / codec.sample_rate:.0f} s clip, {chunk_seconds:g} s chunks, "
        f"{n_q} codebooks; receptive field {rf} frames. Errors are max |streamed − one-shot| "
        "(full scale 1).",
        "",
        "| context frames | decode error at borders | decode error inside chunks | codes differing (encode) |",
        "|---|---|---|---|",
    ]
    for context in sorted({0, max(1, rf // 4), rf}):
        wav = np.concatenate(list(decode_chunks(codec, iter(codes.split(chunk, -1)), N, chunk, context)), -1)
        err = np.abs(wav - ref)
        enc = torch.cat(list(encode_chunks(codec, iter(clip.split(1 << 15, -1)), N, chunk, context, n_q)), -1)
        lines.append(
            f"| {context} | {err[:, border].max():.2e} | {err[:, ~border].max():.2e} | "
            f"{float((enc != codes).float().mean()):.2%} |"
        )
    return "\n".join(lines)


def mean(scores: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}


def table(rows: list[dict]) -> str:
    def fmt(v, spec=".2f"):
        return "–" if v is None else format(v, spec)

    head = [
        "system",
        "nominal kbps",
        "codes kbps",
        "on disk kbps",
        "with --entropy",
        "adaptive only",
        *METRICS,
        "encode ×RT",
        "decode ×RT",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (r["nominal"], r["system"])):
        cells = [
            r["system"],
            fmt(r["nominal"], "g"),
            fmt(r["codes"]),
            fmt(r["disk"]),
            fmt(r["entropy"]),
            fmt(r["adaptive"]),
            *(fmt(r[m], ".2f" if "SI-SNR" in m or "LU" in m else ".3f") for m in METRICS),
            fmt(r["enc_rt"], ".1f"),
            fmt(r["dec_rt"], ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def random_codec(config_yaml: Path | None):
    """Untrained weights: quality numbers mean nothing, speed and bitrate are those of the architecture."""
    from musiclm.codec.model import Codec, CodecConfig
    from musiclm.codec.seanet import SEANetConfig
    from musiclm.config import from_dict, load_yaml

    torch.manual_seed(0)
    if config_yaml is not None:
        data = load_yaml(config_yaml)
        return Codec(from_dict(CodecConfig, data.get("codec", data))).eval()
    return Codec(CodecConfig(name="random-tiny", seanet=SEANetConfig(n_filters=8, dimension=32))).eval()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, default=ROOT / "data/recorded/manifest.jsonl")
    p.add_argument("--split", default="test")
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped codec)")
    p.add_argument("--random-codec", action="store_true", help="a random tiny codec: checks the script only")
    p.add_argument(
        "--random-config",
        type=Path,
        default=None,
        help="with --random-codec: build it from this YAML (e.g. configs/codec/small.yaml) to time "
        "the real architecture",
    )
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--clip-seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-opus", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "outputs/bench_codec.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    codec = random_codec(args.random_config) if args.random_codec else load_codec(args.codec)
    sr = codec.sample_rate
    clips = pick_clips(args.manifest, args.split, args.clips, args.clip_seconds, sr, codec.channels, args.seed)
    print(f"{len(clips)} clips of {args.clip_seconds:g} s from the '{args.split}' split", file=sys.stderr)
    rows = bench_codec(codec, clips, sr)
    use_opus = not args.no_opus and shutil.which("ffmpeg")
    if use_opus:
        for kbps in sorted({k for bw in codec.bandwidths for k in (bw, 2 * bw)}):
            rows.append(bench_opus(kbps, clips, sr))
    streaming = border_errors(codec, torch.cat([c for _, c in clips[:3]], dim=-1))
    name = (
        f"a RANDOM untrained codec '{codec.config.name}': speed and bitrate only"
        if args.random_codec
        else f"codec '{codec.config.name}' ({args.codec or 'shipped'}, fingerprint {codec.fingerprint()})"
    )
    report = "\n".join(
        [
            f"### Codec vs Opus on held-out recorded music ({name})",
            "",
            f"{len(clips)} clips × {args.clip_seconds:g} s from the '{args.split}' split of "
            f"{args.manifest.relative_to(ROOT) if args.manifest.is_relative_to(ROOT) else args.manifest}, "
            f"at {sr} Hz, {codec.channels} channel(s); {torch.get_num_threads()} thread(s), "
            f"`{' '.join(sys.argv[1:])}`.",
            "",
            table(rows),
            "",
            "nominal = requested bitrate; codes = n_q × log2(card) × frame rate; on disk = .mlc (header, chunk "
            "CRCs) or .opus (Ogg) size over duration; with --entropy = the same codes range-coded from the codec's "
            "learned code-usage prior (10 s chunks), adaptive only = without that prior. Opus rows use "
            "`-vbr off`; ×RT = audio seconds per "
            "second of compute (ours: the whole compress_bytes/decompress_bytes path incl. resampling; Opus: one "
            "ffmpeg process per clip). Clips: " + ", ".join(c for c, _ in clips) + ".",
            "" if use_opus else "Opus rows missing: ffmpeg not found or --no-opus.",
            "",
            streaming,
        ]
    )
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report + "\n")
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MusicLMError as e:
        print(f"bench_codec: error: {e}", file=sys.stderr)
        sys.exit(2)
