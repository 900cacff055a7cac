"""Codecs vs Opus on held-out recorded music: bitrate on disk, quality, and one-thread speed.

    .venv/bin/python eval/bench_codec.py --codec checkpoints/codec            # the trained codec
    .venv/bin/python eval/bench_codec.py --codec runs/a/export --codec runs/b/export --no-visqol  # two recipes
    .venv/bin/python eval/bench_codec.py --random-codec --clips 3             # smoke test of the script
    .venv/bin/python eval/bench_codec.py --random-codec --random-config configs/codec/small.yaml  # speed only

Cuts `--clips` clips of `--clip-seconds` from the test split of a manifest (rows with "path" relative to the
manifest's folder and "split"), at the first codec's rate and channel count (the reference for every metric;
other codecs resample inside the compress path). `--codec DIR` may be repeated: each codec's rows are labelled
by its directory name. For each codec bandwidth: the .mlc size on disk as compress writes it (range-coded; header
and CRCs included) and bit-packed (--no-entropy); quality led by the metrics that hear notes (note F1 from
basic-pitch transcriptions, SI-SNR, chroma agreement, ViSQOL), then the envelope ones (log-mel distance,
multi-scale STFT distance, loudness difference); and encode/decode real-time factors of the whole
`musiclm.compress` path on one thread. Opus (ffmpeg libopus,
CBR: -vbr off) at the same and twice the nominal bitrates, same metrics, its .opus (Ogg) size on disk, and
ffmpeg's one-thread speed. Each reference clip is transcribed once. Prints a markdown table, writes it to
outputs/bench_codec.md and the per-clip scores to outputs/bench_codec.json (beside --out).

Note F1 and ViSQOL need the [eval] extra (`make install`); without it their columns stay empty and the report
says why. ViSQOL costs ~1.5 s per 10 s clip and system (--no-visqol skips it).
"""

from __future__ import annotations

import argparse
import io
import itertools
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

from musiclm.audio import convert_channels, load_audio, resample
from musiclm.codec import bitstream
from musiclm.codec.search import SearchSettings
from musiclm.compress import compress_bytes, decompress_bytes, load_codec, read_codes
from musiclm.errors import MusicLMError
from musiclm.evaluation import metrics, notes

ROOT = Path(__file__).resolve().parent.parent
OPUS = "Opus (libopus CBR)"
# key → (column, format): the metrics that hear notes lead, the envelope distances follow
METRICS = {
    "note_f1": ("note F1 ↑", ".3f"),
    "note_precision": ("note P ↑", ".3f"),
    "note_recall": ("note R ↑", ".3f"),
    "si_snr": ("SI-SNR dB ↑", ".2f"),
    "chroma": ("chroma agr. ↑", ".3f"),
    "onsets": ("onset agr. ↑", ".3f"),
    "visqol": ("ViSQOL ↑", ".2f"),
    "log_mel": ("log-mel ↓", ".3f"),
    "stft": ("MS-STFT ↓", ".3f"),
    "loudness": ("loudness Δ LU ↓", ".2f"),
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


class Scorer:
    """Quality of a decoded clip against reference clip i. Each reference is transcribed once, here; a missing
    [eval] extra empties the note F1 / ViSQOL columns and is said in `missing`."""

    def __init__(self, clips: list[tuple[str, torch.Tensor]], sr: int, use_visqol: bool):
        self.sr, self.use_visqol, self.missing = sr, use_visqol, []
        self.seconds = {"transcribe": 0.0, "visqol": 0.0}  # compute time
        self.audio = {"transcribe": 0.0, "visqol": 0.0}  # audio seconds it was spent on
        self.ref_notes: list[notes.NoteEvents] | None = None
        try:
            self.ref_notes = [notes.transcribe(wav, sr) for _, wav in clips[:1]]  # loads the model: not timed
            self.ref_notes += [self._timed("transcribe", wav, notes.transcribe, wav, sr) for _, wav in clips[1:]]
        except MusicLMError as e:
            self.ref_notes = None
            self.missing.append(f"Note F1 missing: {e}.")
        if use_visqol:
            try:  # also compiles ViSQOL's numba kernels (~8 s the first time on a machine), so it is not timed
                metrics.visqol(clips[0][1], clips[0][1], sr)
            except MusicLMError as e:
                self.use_visqol = False
                self.missing.append(f"ViSQOL missing: {e}.")

    def _timed(self, what: str, wav: torch.Tensor, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        self.seconds[what] += time.perf_counter() - t
        self.audio[what] += wav.shape[-1] / self.sr
        return out

    def __call__(self, i: int, ref: torch.Tensor, est: torch.Tensor) -> dict[str, float | None]:
        sr = self.sr
        precision = recall = f1 = None
        if self.ref_notes is not None:
            est_notes = self._timed("transcribe", est, notes.transcribe, est, sr)
            precision, recall, f1 = notes.note_scores_from_events(self.ref_notes[i], est_notes)
        return {
            "note_f1": f1,
            "note_precision": precision,
            "note_recall": recall,
            "si_snr": float(metrics.si_snr(ref, est)),
            "chroma": float(metrics.chroma_agreement(ref, est, sr)),
            "onsets": float(metrics.onset_agreement(ref, est, sr)),
            "visqol": self._timed("visqol", est, metrics.visqol, ref, est, sr) if self.use_visqol else None,
            "log_mel": float(metrics.log_mel_distance(ref, est, sr)),
            "stft": float(metrics.multiscale_stft_distance(ref, est, sr)),
            "loudness": float(metrics.loudness_difference(ref, est, sr)),
        }

    def seconds_per_10s(self) -> dict[str, float | None]:
        """Compute seconds per 10 s of audio: one transcription, one ViSQOL pair (None where not run)."""
        return {what: 10 * self.seconds[what] / self.audio[what] if self.audio[what] else None for what in self.seconds}


def recoded_kbps(data: bytes, seconds: float, codec) -> tuple[float | None, float | None]:
    """The same codes re-written two other ways (no second pass through the network) → kbps bit-packed, as
    `--no-entropy` writes them, and range-coded without the codec's learned prior ("adaptive only"). None for a
    file with band gains: `--no-entropy` sends all the bandwidth's codebooks and level corrections instead."""
    header, codes = read_codes(data, codec)
    if header.gain_frames:
        return None, None
    sizes = []
    for entropy in (False, True):
        out = io.BytesIO()
        bitstream.write_mlc(out, bitstream.Header(**{**header.__dict__, "entropy": entropy, "prior": ""}), codes)
        sizes.append(len(out.getvalue()) * 8 / seconds / 1000)
    return sizes[0], sizes[1]


def bench_codec(
    codec, label: str, clips, sr: int, score: Scorer, bandwidths: list[float], search: SearchSettings | None = None
) -> tuple[list[dict], list[dict]]:
    """→ (one row per bandwidth, one score dict per bandwidth and clip); a `search` of steps > 0 encodes by
    analysis-by-synthesis (`musiclm compress --search`)."""
    rows, per_clip = [], []
    for bw in bandwidths:
        scores, size, packed, ent_adaptive, t_enc, t_dec, audio_s = [], 0, 0.0, 0.0, 0.0, 0.0, 0.0
        n_q = codec.config.n_q_for_bandwidth(bw)
        for i, (clip_id, ref) in enumerate(clips):
            seconds = ref.shape[-1] / sr
            t = time.perf_counter()
            data = compress_bytes(ref, codec, sample_rate=sr, bandwidth=bw, search=search)
            t_enc += time.perf_counter() - t
            t = time.perf_counter()
            est, _ = decompress_bytes(data, codec)
            t_dec += time.perf_counter() - t
            scores.append(score(i, ref, est))
            per_clip.append({"system": label, "nominal": bw, "clip": clip_id, **scores[-1]})
            size += len(data)
            n_q = read_codes(data, codec)[0].n_q  # fewer than the bandwidth's with band gains
            packed_kbps, adaptive_kbps = recoded_kbps(data, seconds, codec)
            packed = None if packed_kbps is None or packed is None else packed + packed_kbps * seconds
            ent_adaptive = (
                None if adaptive_kbps is None or ent_adaptive is None else ent_adaptive + adaptive_kbps * seconds
            )
            audio_s += seconds
        rows.append(
            {
                "system": label,
                "nominal": bw,
                "codes": n_q * math.log2(codec.card) * codec.frame_rate / 1000,
                "disk": size * 8 / audio_s / 1000,
                "packed": None if packed is None else packed / audio_s,
                "adaptive": None if ent_adaptive is None else ent_adaptive / audio_s,
                **mean(scores),
                "enc_rt": audio_s / t_enc,
                "dec_rt": audio_s / t_dec,
            }
        )
        print(f"  {label} {bw:g} kbps done", file=sys.stderr)
    return rows, per_clip


def ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-threads", "1", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise MusicLMError(f"ffmpeg failed: {proc.stderr.strip()[-300:]}")


def bench_opus(kbps: float, clips, sr: int, score: Scorer) -> tuple[dict, list[dict]]:
    """libopus CBR at `kbps`; one ffmpeg process per clip and direction, so the times include process start
    (~tens of ms per 10 s clip: Opus's real-time factor is, if anything, understated)."""
    scores, per_clip, size, t_enc, t_dec, audio_s = [], [], 0, 0.0, 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="bench-opus-") as tmp:
        src, enc, dec = Path(tmp) / "in.wav", Path(tmp) / "x.opus", Path(tmp) / "out.wav"
        for i, (clip_id, ref) in enumerate(clips):
            sf.write(src, ref.numpy().T, sr, subtype="FLOAT")
            t = time.perf_counter()
            ffmpeg("-i", str(src), "-c:a", "libopus", "-b:a", f"{kbps * 1000:.0f}", "-vbr", "off", str(enc))
            t_enc += time.perf_counter() - t
            t = time.perf_counter()
            ffmpeg("-i", str(enc), "-ar", str(sr), "-ac", str(ref.shape[0]), "-c:a", "pcm_f32le", str(dec))
            t_dec += time.perf_counter() - t
            est = torch.from_numpy(sf.read(dec, dtype="float32", always_2d=True)[0].T.copy())
            est = torch.nn.functional.pad(est, (0, max(0, ref.shape[-1] - est.shape[-1])))[..., : ref.shape[-1]]
            scores.append(score(i, ref, est))
            per_clip.append({"system": OPUS, "nominal": kbps, "clip": clip_id, **scores[-1]})
            size += enc.stat().st_size
            audio_s += ref.shape[-1] / sr
    print(f"  opus {kbps:g} kbps done", file=sys.stderr)
    row = {
        "system": OPUS,
        "nominal": kbps,
        "codes": None,
        "disk": size * 8 / audio_s / 1000,
        "packed": None,
        "adaptive": None,
        **mean(scores),
        "enc_rt": audio_s / t_enc,
        "dec_rt": audio_s / t_dec,
    }
    return row, per_clip


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
    if not border.any():
        return f"Streaming not checked: the {N / codec.sample_rate:.1f} s clip fits in one {chunk_seconds:g} s chunk."
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


def mean(scores: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Per-key mean over clips; None where a metric was not computed."""
    out = {}
    for k in scores[0]:
        values = [s[k] for s in scores if s[k] is not None]
        out[k] = float(np.mean(values)) if values else None
    return out


def table(rows: list[dict]) -> str:
    def fmt(v, spec=".2f"):
        return "–" if v is None else format(v, spec)

    head = [
        "system",
        "nominal kbps",
        "codes kbps",
        "on disk kbps",
        "bit-packed (--no-entropy)",
        "adaptive only",
        *(column for column, _ in METRICS.values()),
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
            fmt(r["packed"]),
            fmt(r["adaptive"]),
            *(fmt(r[key], spec) for key, (_, spec) in METRICS.items()),
            fmt(r["enc_rt"], ".1f"),
            fmt(r["dec_rt"], ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


PAIRED_METRICS = ("note_f1", "si_snr")


def paired_table(per_clip: list[dict]) -> str:
    """Paired over the clips, the mean per-clip difference and its 95 % bootstrap interval
    (`musiclm.evaluation.stats`), "yes" where the interval excludes 0 (the clips tell the two apart): each
    codec bandwidth against Opus at the same and at twice its bitrate, and against the codec's next lower
    bandwidth (does more bandwidth help?)."""
    from musiclm.evaluation.stats import paired_difference

    by_system: dict[tuple[str, float], dict[str, dict]] = {}
    for row in per_clip:
        by_system.setdefault((row["system"], row["nominal"]), {})[row["clip"]] = row
    pairs = []  # (label, a's clips, b's clips)
    codecs = sorted({system for system, _ in by_system if system != OPUS})
    for system in codecs:
        rates = sorted(nominal for s, nominal in by_system if s == system)
        for nominal in rates:
            for opus_kbps in (nominal, 2 * nominal):
                if (OPUS, opus_kbps) in by_system:
                    label = f"{system} {nominal:g} − Opus {opus_kbps:g} kbps"
                    pairs.append((label, by_system[system, nominal], by_system[OPUS, opus_kbps]))
        for lower, higher in itertools.pairwise(rates):
            label = f"{system} {higher:g} − {system} {lower:g} kbps"
            pairs.append((label, by_system[system, higher], by_system[system, lower]))
    lines = [
        "| a − b | " + " | ".join(f"{m} difference [95 % interval] | decided" for m in PAIRED_METRICS) + " |",
        "|---|" + "---|---|" * len(PAIRED_METRICS),
    ]
    for label, a, b in pairs:
        cells = []
        for metric in PAIRED_METRICS:
            shared = [c for c in a if c in b and a[c][metric] is not None and b[c][metric] is not None]
            if not shared:
                cells += ["–", "–"]
                continue
            d = paired_difference([a[c][metric] for c in shared], [b[c][metric] for c in shared])
            cells += [str(d), "yes" if d.decided else "no"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if pairs else ""


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


def codec_labels(dirs: list[str | None]) -> list[str]:
    """Each codec's label: its directory's name, or the path as given where two names collide."""
    names = [Path(d).name if d else "shipped codec" for d in dirs]
    return [n if names.count(n) == 1 else str(d) for n, d in zip(names, dirs, strict=True)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, default=ROOT / "data/recorded/manifest.jsonl")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--codec",
        action="append",
        default=None,
        metavar="DIR",
        help="codec directory; repeat to compare several (rows labelled by directory name; default: the shipped codec)",
    )
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
    p.add_argument(
        "--bandwidths", nargs="+", type=float, default=None, help="kbps to score (default: every one the codec has)"
    )
    p.add_argument(
        "--search",
        type=int,
        default=0,
        metavar="STEPS",
        help="encode with this many analysis-by-synthesis steps (musiclm compress --search); "
        "rows get '+searchNlrLR' (SearchSettings.label, at its default rate and objective)",
    )
    p.add_argument("--no-opus", action="store_true")
    p.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (~1.5 s per 10 s clip and system)")
    p.add_argument(
        "--out", type=Path, default=ROOT / "outputs/bench_codec.md", help="markdown; per-clip JSON beside it"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.random_codec and args.codec:
        raise MusicLMError("--random-codec and --codec exclude each other")

    if args.random_codec:
        codecs = [random_codec(args.random_config)]
        labels = [f"random {codecs[0].config.name}"]
    else:
        dirs = args.codec or [None]
        codecs, labels = [load_codec(d) for d in dirs], codec_labels(dirs)
    sr, channels = codecs[0].sample_rate, codecs[0].channels
    clips = pick_clips(args.manifest, args.split, args.clips, args.clip_seconds, sr, channels, args.seed)
    print(f"{len(clips)} clips of {args.clip_seconds:g} s from the '{args.split}' split", file=sys.stderr)
    score = Scorer(clips, sr, use_visqol=not args.no_visqol)
    rows, per_clip = [], []
    search = SearchSettings(steps=args.search)
    if search.steps:
        labels = [f"{label}+{search.label}" for label in labels]
    bandwidths = []
    for codec in codecs:
        unknown = sorted(set(args.bandwidths or []) - set(codec.bandwidths))
        if unknown:
            raise MusicLMError(f"--bandwidths {unknown}: {codec.config.name} offers {codec.bandwidths} kbps")
        bandwidths.append(args.bandwidths or codec.bandwidths)
    for codec, label, bws in zip(codecs, labels, bandwidths, strict=True):
        codec_rows, codec_clips = bench_codec(codec, label, clips, sr, score, bws, search)
        rows += codec_rows
        per_clip += codec_clips
    use_opus = not args.no_opus and shutil.which("ffmpeg")
    if use_opus:
        for kbps in sorted({k for bws in bandwidths for bw in bws for k in (bw, 2 * bw)}):
            row, opus_clips = bench_opus(kbps, clips, sr, score)
            rows.append(row)
            per_clip += opus_clips
    streaming = []
    for codec, label in zip(codecs, labels, strict=True):
        joined = torch.cat([c for _, c in clips[:3]], dim=-1)  # [C, N] at the first codec's rate
        joined = resample(convert_channels(joined, codec.channels), sr, codec.sample_rate)
        streaming += [f"**{label}**: " + border_errors(codec, joined), ""]
    if args.random_codec:
        name = f"a RANDOM untrained codec '{codecs[0].config.name}': speed and bitrate only"
    else:
        name = ", ".join(
            f"'{label}' = {c.config.name} ({d or 'shipped'}, fingerprint {c.fingerprint()})"
            for label, c, d in zip(labels, codecs, args.codec or [None], strict=True)
        )
    timing = score.seconds_per_10s()
    report = "\n".join(
        [
            f"### Codec vs Opus on held-out recorded music ({name})",
            "",
            f"{len(clips)} clips × {args.clip_seconds:g} s from the '{args.split}' split of "
            f"{args.manifest.relative_to(ROOT) if args.manifest.is_relative_to(ROOT) else args.manifest}, "
            f"at {sr} Hz, {channels} channel(s); {torch.get_num_threads()} thread(s), "
            f"`{' '.join(sys.argv[1:])}`.",
            "",
            table(rows),
            "",
            "nominal = requested bitrate; codes = n_q × log2(card) × frame rate; on disk = .mlc as `musiclm "
            "compress` writes it (codes range-coded from the codec's learned code-usage prior, 10 s chunks; header, "
            "chunk CRCs) or .opus (Ogg) size over duration; bit-packed = the same codes with --no-entropy, adaptive "
            "only = range-coded without the learned prior. Opus rows use "
            "`-vbr off`; ×RT = audio seconds per "
            "second of compute (ours: the whole compress_bytes/decompress_bytes path incl. resampling; Opus: one "
            "ffmpeg process per clip). Clips: " + ", ".join(c for c, _ in clips) + ".",
            "",
            "Note F1: notes transcribed by basic-pitch in the reference and the decoded clip, matched by "
            "mir_eval (onset within 50 ms, pitch within 50 cents, offsets ignored). Chroma agr.: share of the "
            "reference's non-silent frames whose strongest pitch class the decoded clip keeps. ViSQOL: v3 audio "
            "mode MOS-LQO (1-5) at 48 kHz; its bands are too coarse to hear harmonics, so read it beside note F1. "
            "log-mel, MS-STFT and loudness see the spectral envelope only.",
            " ".join(
                [
                    *score.missing,
                    "" if use_opus else "Opus rows missing: ffmpeg not found or --no-opus.",
                    "ViSQOL not run (--no-visqol)." if args.no_visqol else "",
                ]
            ).strip(),
            "",
            *(
                [
                    "Paired over the clips (the mean per-clip difference, its 95 % bootstrap interval, and whether "
                    "that interval excludes 0):",
                    "",
                    paired,
                    "",
                ]
                if (paired := paired_table(per_clip))
                else []
            ),
            *streaming,
        ]
    )
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report + "\n")
    figures = {
        "command": sys.argv[1:],
        "sample_rate": sr,
        "channels": channels,
        "clips": [
            {"clip": c, "ref_notes": None if score.ref_notes is None else len(score.ref_notes[i])}
            for i, (c, _) in enumerate(clips)
        ],
        "codecs": [
            {"label": label, "dir": d, "name": c.config.name, "fingerprint": c.fingerprint()}
            for label, c, d in zip(labels, codecs, args.codec or [None], strict=True)
        ],
        "metric_seconds_per_10s": timing,
        "rows": rows,
        "per_clip": per_clip,
    }
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"written to {args.out} and {args.out.with_suffix('.json').name}", file=sys.stderr)
    print(
        "metric compute per 10 s of audio: " + ", ".join(f"{k} {v:.2f} s" for k, v in timing.items() if v is not None),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MusicLMError as e:
        print(f"bench_codec: error: {e}", file=sys.stderr)
        sys.exit(2)
