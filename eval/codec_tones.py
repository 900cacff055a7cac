"""Which held tones survive a codec: decoded level against input, per pitch and tone kind.

    .venv/bin/python eval/codec_tones.py checkpoints/codec runs/codec-tones/export --kbps 6 --opus 12

For every MIDI pitch from --low to --high (C2-C7 by default) and each kind (sine; 6-partial harmonic; the
harmonic tone with vibrato), a 1.5 s tone at -20 dBFS peak goes through codec.encode → codec.decode at --kbps
(and through Opus at each --opus).
Printed per codec: the share of tones more than 6 dB down ("lost"), per kind and per octave, and the pitches
lost. A codec that keeps the notes keeps held tones at every pitch a melody uses (musiclm.evaluation.tones).
Then the same sines a quarter-tone off the equal-tempered grid (a detuned recording, a glide, another
tuning): the shipped codec lost far more of those. With --sweep PNG, steady sines from 100 Hz to 4 kHz at
1/8 semitone steps are plotted for every system (a codec that keeps any note is flat there).
Results also go to outputs/codec_tones.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from musiclm.codec import Codec
from musiclm.evaluation.opus import opus_roundtrip
from musiclm.evaluation.tones import TONE_KINDS, codec_roundtrip, lost_share, sweep_levels, tone_levels

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    return f"{NAMES[pitch % 12]}{pitch // 12 - 1}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("codecs", nargs="+", help="codec directories (config.json + model.safetensors)")
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--low", type=int, default=36, help="lowest MIDI pitch (36 = C2)")
    parser.add_argument("--high", type=int, default=96, help="highest MIDI pitch (96 = C7)")
    parser.add_argument("--opus", type=float, nargs="*", default=[], help="also Opus CBR at these kbps")
    parser.add_argument("--sweep", metavar="PNG", help="also plot a sine sweep, 100 Hz-4 kHz, of every system")
    parser.add_argument("--out", default=str(ROOT / "outputs/codec_tones.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    pitches = list(range(args.low, args.high + 1))
    report = {}
    systems = {}
    for path in args.codecs:
        codec = Codec.from_pretrained(path).eval()
        systems[f"{path} at {args.kbps:g} kbps"] = (
            codec_roundtrip(codec, codec.config.n_q_for_bandwidth(args.kbps)),
            codec.sample_rate,
        )
    for kbps in args.opus:
        systems[f"opus {kbps:g} kbps"] = (
            lambda x, kbps=kbps: opus_roundtrip(torch.from_numpy(x)[None], 24000, kbps)[0][0].numpy(),
            24000,
        )
    for name, (roundtrip, sample_rate) in systems.items():
        levels = tone_levels(roundtrip, sample_rate, pitches, TONE_KINDS)
        print(f"\n{name}: {lost_share(levels):.0%} of {len(levels)} tones lost (> 6 dB down)")
        print(
            f"  in the fundamental's band (a noise wash at the right level keeps the level, not the band): "
            f"{lost_share(levels, band=True):.0%} lost"
        )
        for kind in TONE_KINDS:
            mine = [lv for lv in levels if lv.kind == kind]
            octaves = []
            for lo in range(args.low, args.high + 1, 12):
                band = [lv for lv in mine if lo <= lv.pitch < lo + 12]
                octaves.append(f"{note_name(lo)} {lost_share(band):4.0%}")
            median = float(np.median([lv.level_db for lv in mine]))
            print(f"  {kind:9s} lost {lost_share(mine):4.0%}  median level {median:+6.1f} dB  | " + "  ".join(octaves))
        lost = [note_name(int(lv.pitch)) for lv in levels if lv.kind == "harmonic" and lv.level_db < -6.0]
        print(f"  harmonic tones lost: {' '.join(lost) or 'none'}")
        in_tune = [lv for lv in levels if lv.kind == "sine"]
        off = tone_levels(roundtrip, sample_rate, [p + 0.5 for p in pitches], ("sine",))
        print(f"  sines lost in tune {lost_share(in_tune):4.0%}, a quarter-tone off {lost_share(off):4.0%}")
        in_band, off_band = lost_share(in_tune, band=True), lost_share(off, band=True)
        print(f"  in band: in tune {in_band:4.0%}, a quarter-tone off {off_band:4.0%}")
        report[name] = {
            "lost_share": lost_share(levels),
            "lost_share_band": lost_share(levels, band=True),
            "sine_lost_quarter_tone_off_band": lost_share(off, band=True),
            "sine_lost_in_tune": lost_share(in_tune),
            "sine_lost_quarter_tone_off": lost_share(off),
            "levels": [
                {"kind": lv.kind, "pitch": lv.pitch, "level_db": round(lv.level_db, 2), "band_db": round(lv.band_db, 2)}
                for lv in levels
            ],
        }
    if args.sweep:
        plot_sweeps(systems, Path(args.sweep))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    out.write_text(json.dumps({**previous, **report}, indent=1))
    print(f"\nwrote {out}")


def plot_sweeps(systems: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(14, 5))
    for name, (roundtrip, sample_rate) in systems.items():
        freqs, levels = sweep_levels(roundtrip, sample_rate)
        print(f"sweep {name}: {np.mean(levels < -6.0):.0%} of sines 100 Hz-4 kHz lost")
        ax.plot(freqs, levels, lw=0.8, label=name)
    ax.set(xscale="log", xlabel="frequency (Hz)", ylabel="decoded level (dB)", ylim=(-60, 10))
    ax.set_title("steady sines at 1/8-semitone steps through each system (flat = every pitch kept)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90, bbox_inches="tight")
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
