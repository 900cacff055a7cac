"""Codec quality at every bandwidth next to Opus at the same requested bitrate, computed in one run.

Quality metrics lead with those that hear notes: note F1 (`musiclm.evaluation.notes`, basic-pitch
transcriptions; each reference is transcribed once), SI-SNR and chroma agreement; then the envelope distances
of `musiclm.evaluation.metrics` (log-mel, multi-scale STFT, loudness difference). Note F1 needs the [eval]
extra: without it its column is empty and `CodecResult.note` says so. ViSQOL is left out (~1.5 s per 10 s
clip and system; `eval/bench_codec.py` has it).

Our bitrate on disk is the size of the .mlc file as `musiclm compress` writes it (range-coded codes, level bytes,
header and chunk CRCs) over the clip duration, also bit-packed (`compress --no-entropy`); Opus's is the .opus (Ogg)
file's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from musiclm.audio import convert_channels, resample
from musiclm.errors import MusicLMError
from musiclm.evaluation.notes import NoteEvents, note_scores_from_events, transcribe
from musiclm.evaluation.opus import ffmpeg_available, opus_roundtrip

# note precision and recall beside F1: a codec loses F1 by adding notes as much as by dropping them
METRIC_KEYS = ("note_f1", "note_precision", "note_recall", "si_snr", "chroma", "onsets", "log_mel", "stft", "loudness")
CHUNK_SECONDS = 10.0  # musiclm.compress's default chunk length


@dataclass
class CodecResult:
    rows: list[dict]  # one per (bandwidth, system): kbps, system, kbps_on_disk and METRIC_KEYS means
    audio: list[dict[str, Tensor]] = field(default_factory=list)  # per kept clip: label → wav [C, N]
    mid_bandwidth: float = 0.0
    note: str = ""


def quality(ref: Tensor, est: Tensor, sr: int, ref_notes: NoteEvents | None = None) -> dict[str, float | None]:
    """ref, est [C, N] → METRIC_KEYS (None where unavailable); note F1, precision and recall only when the
    reference's transcription `ref_notes` (`transcribe(ref, sr)`) is given."""
    out: dict[str, float | None] = dict.fromkeys(("note_f1", "note_precision", "note_recall"))
    if ref_notes is not None:
        precision, recall, f1 = note_scores_from_events(ref_notes, transcribe(est, sr))
        out.update(note_f1=f1, note_precision=precision, note_recall=recall)
    try:
        from musiclm.evaluation import metrics
    except ImportError:
        return {**dict.fromkeys(METRIC_KEYS), **out}
    fns = {
        "si_snr": "si_snr",
        "chroma": "chroma_agreement",
        "onsets": "onset_agreement",
        "log_mel": "log_mel_distance",
        "stft": "multiscale_stft_distance",
        "loudness": "loudness_difference",
    }
    for key, name in fns.items():
        fn = getattr(metrics, name, None)
        out[key] = None if fn is None else _call_metric(fn, ref, est, sr)
    return {key: out[key] for key in METRIC_KEYS}


def transcribe_all(refs: list[Tensor], sr: int) -> tuple[list[NoteEvents] | None, str]:
    """Each reference [C, N] transcribed once → (notes per clip, "") or (None, why not)."""
    try:
        return [transcribe(ref, sr) for ref in refs], ""
    except MusicLMError as e:
        return None, f"Note F1 empty: {e}."


def _call_metric(fn, ref: Tensor, est: Tensor, sr: int) -> float:
    value = fn(ref, est, sr)  # every metric takes (ref, est, sample_rate) → [] tensor for [C, N] input
    return float(value.mean()) if isinstance(value, Tensor) else float(np.mean(value))


def mlc_kbps(codec, codes: Tensor, num_samples: int, entropy: bool = False) -> float:
    """Bitrate of the .mlc file holding codes [K, T] for `num_samples` samples at the codec rate, laid out
    as `musiclm compress` writes it (10 s chunks, a level byte per 0.4 s); `entropy` range-codes chunks where
    that is smaller."""
    from musiclm.codec import bitstream
    from musiclm.compress.level import level_frames_for

    header = bitstream.Header(
        codec_name=codec.config.name[:64],
        fingerprint=codec.fingerprint(),
        sample_rate=codec.sample_rate,
        hop_length=codec.hop_length,
        channels=codec.channels,
        orig_sample_rate=codec.sample_rate,
        orig_channels=codec.channels,
        num_samples=num_samples,
        orig_num_samples=num_samples,
        n_q=codes.shape[0],
        card=codec.card,
        bandwidth=float(codec.bandwidth),
        chunk_frames=max(1, int(round(CHUNK_SECONDS * codec.frame_rate))),
        entropy=entropy,
        level_frames=level_frames_for(codec.frame_rate),
    )
    buf = io.BytesIO()
    bitstream.write_mlc(buf, header, codes.cpu().numpy().astype(np.int64))
    return len(buf.getvalue()) * 8 / 1000 / (num_samples / codec.sample_rate)


@torch.no_grad()
def evaluate(codec, clips: list[tuple[Tensor, int]], keep_audio: int = 2) -> CodecResult:
    """clips [(wav [C, N], sr)] → per-bandwidth means for the codec and for Opus at the same kbps.

    The codec's audio is what `musiclm decompress` gives: its codes written as an .mlc file (with the level
    corrections the encoder finds, FORMAT.md version 3) and read back, so loudness is the compressor's."""
    from tqdm import tqdm

    from musiclm.compress import compress_bytes, decompress_bytes, read_codes

    refs = [resample(convert_channels(w, codec.channels), sr, codec.sample_rate) for w, sr in clips]
    bandwidths = list(codec.bandwidths)
    mid = bandwidths[len(bandwidths) // 2]
    have_opus = ffmpeg_available()
    audio: list[dict[str, Tensor]] = [{} for _ in refs[:keep_audio]]
    rows, notes = [], []
    ref_notes, why = transcribe_all(refs, codec.sample_rate)
    if why:
        notes.append(why)
    previous = codec.bandwidth
    try:
        for kbps in tqdm(bandwidths, desc="codec bandwidths", leave=False):
            codec.set_bandwidth(kbps)
            per_system: dict[str, list[dict]] = {"musiclm codec": [], "opus": []}
            for i, ref in enumerate(refs):
                mlc = compress_bytes(ref, codec, sample_rate=codec.sample_rate, bandwidth=kbps)
                dec = decompress_bytes(mlc, codec)[0][:, : ref.shape[-1]]  # [C, N], level corrections applied
                disk = len(mlc) * 8 / 1000 / (ref.shape[-1] / codec.sample_rate)
                frames = read_codes(mlc, codec)[1].shape[-1]
                # what --no-entropy writes: every codebook of the bandwidth bit-packed (no band gains), whose size
                # does not depend on the codes' values
                every = torch.zeros(codec.config.n_q_for_bandwidth(kbps), frames, dtype=torch.long)
                packed = mlc_kbps(codec, every, ref.shape[-1], entropy=False)
                heard = None if ref_notes is None else ref_notes[i]
                per_system["musiclm codec"].append(
                    {"kbps_on_disk": disk, "kbps_bit_packed": packed, **quality(ref, dec, codec.sample_rate, heard)}
                )
                if i < keep_audio:
                    audio[i][f"codec {kbps:g} kbps"] = dec
                if have_opus:
                    opus, opus_kbps = opus_roundtrip(ref, codec.sample_rate, kbps)
                    per_system["opus"].append(
                        {
                            "kbps_on_disk": opus_kbps,
                            "kbps_bit_packed": None,
                            **quality(ref, opus, codec.sample_rate, heard),
                        }
                    )
                    if i < keep_audio and kbps == mid:
                        audio[i][f"opus {kbps:g} kbps"] = opus
            for system, items in per_system.items():
                if items:
                    rows.append({"kbps": kbps, "system": system, **_means(items)})
    finally:
        codec.bandwidth = previous
    if not have_opus:
        notes.append("Opus rows missing: ffmpeg with libopus is not installed.")
    if all(r.get("si_snr") is None for r in rows):
        notes.append("Quality columns empty: musiclm.evaluation.metrics is not available.")
    return CodecResult(rows, audio, mid, " ".join(notes))


def _means(items: list[dict]) -> dict:
    out = {}
    for key in items[0]:
        values = [it[key] for it in items if it[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    return out
