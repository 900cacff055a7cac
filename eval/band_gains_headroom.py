"""Would fine band gains as side information keep more notes than codebooks at the same bitrate? A measurement
before any format change.

    .venv/bin/python eval/band_gains_headroom.py checkpoints/codec --clips 48 --out outputs/band_gains48.jsonl

Diagnosis (train/README.md, twenty-fourth session): given the reference's STFT magnitudes with its own phases, the
shipped decoder's output transcribes at note F1 ~0.72 on real music against ~0.48 as decoded. Its notes are
lost in the magnitudes, not the phase, and the autoencoder without a quantizer keeps hardly more (0.47): spending
the bits on more codebooks does not bring them back (12 kbps: 0.471 against 6 kbps: 0.465 on 48 real clips).
Codecs have long sent band energies beside the fine structure (Opus/CELT: RFC 6716 §4.3.2). Here the encoder,
which already decodes its own codes to send level corrections (musiclm.compress.level), sends per cell of
BAND_FRAMES STFT frames × one band (semitones to SPLIT_HZ, then BANDS_PER_OCTAVE_HIGH a octave) the gain, in
STEP_DB steps, that brings the decoding's energy to the original's. The decoder would multiply its STFT by
them. The cost is what the project's range coder (musiclm.codec.entropy, one adaptive model) spends on the
gains' changes from cell to cell in each band.

Each clip goes through the real compressor (`compress_bytes` → `decompress_bytes`) at each bandwidth; "+gains"
rows add the side information and count its bytes into the bitrate. Rows: one JSON line per clip and system
(`--out`), then a table with paired differences against the plain 6 kbps row.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from bench_codec import pick_clips  # eval/ is on sys.path when this script runs
from tqdm import tqdm

from musiclm.codec import Codec
from musiclm.codec.entropy import encode_codes
from musiclm.compress import compress_bytes, decompress_bytes
from musiclm.dsp import stft
from musiclm.evaluation import metrics, stats
from musiclm.evaluation.codec_eval import quality
from musiclm.evaluation.notes import transcribe

ROOT = Path(__file__).resolve().parent.parent
SETS = {"real": ROOT / "data/recorded/manifest.jsonl", "rendered": ROOT / "data/synth_test/manifest.jsonl"}
N_FFT, HOP = 2048, 512  # 11.7 Hz bins at 24 kHz: a semitone is one bin or more from ~200 Hz
BAND_FRAMES = 4  # a cell is 4 hops: 85 ms
F_MIN = 32.7  # C1
SPLIT_HZ = 2000.0  # semitone bands below; few fundamentals lie above
BANDS_PER_OCTAVE_HIGH = 2
STEP_DB = 4.0
MIN_DB, MAX_DB = -24.0, 12.0
QUIET_DB = -40.0  # cells this far under the chunk's loudest cell (both signals) get no gain


def band_of_bin(sample_rate: int) -> np.ndarray:
    """[n_fft // 2 + 1] band index of each STFT bin."""
    freqs = np.linspace(0, sample_rate / 2, N_FFT // 2 + 1)
    octaves = np.log2(np.maximum(freqs, F_MIN) / F_MIN)
    split = math.log2(SPLIT_HZ / F_MIN)
    low = np.floor(12 * octaves)
    high = math.ceil(12 * split) + np.floor(BANDS_PER_OCTAVE_HIGH * (octaves - split))
    return np.where(octaves < split, low, high).astype(np.int64)


def cell_energies_db(spec: torch.Tensor, bands: np.ndarray) -> np.ndarray:
    """spec [F, T] complex → energy per (band, cell) in dB [B, ceil(T / BAND_FRAMES)]."""
    power = spec.abs().pow(2).double().numpy()
    per_band = np.zeros((bands.max() + 1, power.shape[1]))
    np.add.at(per_band, bands, power)
    cells = math.ceil(power.shape[1] / BAND_FRAMES)
    padded = np.pad(per_band, ((0, 0), (0, cells * BAND_FRAMES - power.shape[1])))
    return 10 * np.log10(padded.reshape(len(per_band), cells, BAND_FRAMES).sum(-1) + 1e-12)


def band_gains(original: torch.Tensor, decoded: torch.Tensor, sample_rate: int) -> tuple[np.ndarray, bytes]:
    """[1, N] each → (decoded with the gains applied [1, N], the gains' range-coded bytes)."""
    bands = band_of_bin(sample_rate)
    window = torch.hann_window(N_FFT)
    spec_o = stft(original, N_FFT, HOP)[0]
    spec_d = stft(decoded, N_FFT, HOP)[0]
    db_o, db_d = cell_energies_db(spec_o, bands), cell_energies_db(spec_d, bands)
    quiet = np.maximum(db_o, db_d) < max(db_o.max(), db_d.max()) + QUIET_DB
    steps = np.round(np.clip(db_o - db_d, MIN_DB, MAX_DB) / STEP_DB).astype(np.int64)
    steps[quiet] = 0
    lowest, span = int(round(MIN_DB / STEP_DB)), int(round((MAX_DB - MIN_DB) / STEP_DB))
    # one adaptive model per band (a row): on 6 + 6 clips at 4 dB, 1.52 / 1.49 kbps, against 1.78 / 1.51 for
    # one model over all cells or over the cell-to-cell changes
    coded = encode_codes(steps - lowest, span + 1)
    gain = 10 ** (steps * STEP_DB / 20)  # [B, cells]
    per_frame = np.repeat(gain, BAND_FRAMES, axis=1)[:, : spec_d.shape[1]][bands]  # [F, T]
    spec = spec_d * torch.from_numpy(per_frame).to(spec_d.dtype)
    out = torch.istft(spec, N_FFT, HOP, window=window, length=decoded.shape[-1])
    return out[None], coded


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("codec", type=Path)
    p.add_argument("--clips", type=int, default=12, help="clips per set")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--plain", type=float, nargs="+", default=[6.0], help="kbps coded without gains")
    p.add_argument("--with-gains", type=float, nargs="+", default=[4.0, 5.0], help="kbps of codes beside gains")
    p.add_argument("--visqol", action="store_true")
    p.add_argument("--sets", nargs="+", choices=sorted(SETS), default=sorted(SETS))
    p.add_argument("--out", type=Path, default=ROOT / "outputs/band_gains.jsonl")
    args = p.parse_args()
    torch.set_num_threads(1)
    codec = Codec.from_pretrained(args.codec).eval()
    # the compressor codes the bandwidths a codec lists; any prefix of codebooks decodes (quantizer dropout)
    codec.config.bandwidths = tuple(sorted({*codec.config.bandwidths, *args.plain, *args.with_gains}))
    sr = codec.sample_rate
    done = {}
    if args.out.is_file():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            done[(row["set"], row["clip"], row["system"])] = row
    systems = [(f"codec {k:g} kbps", k, False) for k in args.plain]
    systems += [(f"codec {k:g} kbps + gains", k, True) for k in args.with_gains]
    with args.out.open("a") as out:
        for name in args.sets:
            clips = pick_clips(SETS[name], "test", args.clips, args.seconds, sr, 1, seed=0)
            for i, (_, wav) in enumerate(tqdm(clips, desc=name, unit="clip")):
                if all((name, i, label) in done for label, _, _ in systems):
                    continue
                reference = transcribe(wav, sr)
                for label, kbps, gains in systems:
                    if (name, i, label) in done:
                        continue
                    mlc = compress_bytes(wav, codec, sample_rate=sr, bandwidth=kbps)
                    decoded = decompress_bytes(mlc, codec)[0]
                    side = b""
                    if gains:
                        decoded, side = band_gains(wav, decoded, sr)
                        side += bytes(4)  # a CRC, as a chunk's codes have
                    row = {
                        "set": name,
                        "clip": i,
                        "system": label,
                        "kbps_on_disk": (len(mlc) + len(side)) * 8 / args.seconds / 1000,
                        "side_kbps": len(side) * 8 / args.seconds / 1000,
                    }
                    row.update(quality(wav, decoded, sr, reference))
                    if args.visqol:
                        row["visqol"] = metrics.visqol(wav, decoded, sr)
                    done[(name, i, label)] = row
                    out.write(json.dumps(row) + "\n")
                    out.flush()
    for name in args.sets:
        rows = [r for r in done.values() if r["set"] == name and r["clip"] < args.clips]
        base = {r["clip"]: r for r in rows if r["system"] == systems[0][0]}
        print(
            f"\n{name}, {len(base)} clips | on disk kbps | gains kbps | note F1 | P | R | SI-SNR dB | chroma "
            f"| ViSQOL | F1 − {systems[0][0]}"
        )
        for label, _, _ in systems:
            mine = {r["clip"]: r for r in rows if r["system"] == label}
            common = sorted(set(mine) & set(base))
            if not common:
                continue

            def mean(key, mine=mine, common=common):
                values = [mine[c][key] for c in common if mine[c].get(key) is not None]
                return sum(values) / len(values) if values else float("nan")

            diff = stats.paired_difference([mine[c]["note_f1"] for c in common], [base[c]["note_f1"] for c in common])
            print(
                f"| {label} | {mean('kbps_on_disk'):.2f} | {mean('side_kbps'):.2f} | {mean('note_f1'):.3f} "
                f"| {mean('note_precision'):.3f} "
                f"| {mean('note_recall'):.3f} | {mean('si_snr'):.2f} | {mean('chroma'):.3f} | {mean('visqol'):.2f} "
                f"| {diff} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
