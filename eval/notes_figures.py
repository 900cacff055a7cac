"""What the note-conditioned LM plays against the notes it was given: does a harmonic line follow its note?

    .venv/bin/python eval/notes_figures.py --model DIR --out-dir train/figures

1. generated_from_plan.png: `--prompt` → the planner's plan (`musiclm.generate.note_condition`, what
   `musiclm generate` plays from) → the plan rendered by FluidSynth (GM soundfont, the corpus's renderer)
   above the LM's audio from that plan (keeping `--guide` codebooks of the render), same prompt and seed.
2. melody_following.png: one held-out clip (the synth corpus's test split, `--clip-index` after
   eval_melody's shuffle): its render, the render through the codec at the LM's codebooks (the ceiling),
   the LM from the clip's MIDI without and with the guide (as `generate --melody clip.mid`), and the LM
   from the caption alone.

Each panel is a spectrogram (log frequency, note names) over its chromagram (`dsp.chroma`, the one
`chroma_agreement` reads); dots on a chromagram mark the reference's strongest pitch class per frame, and
the title gives the melody agreement (share of frames where the strongest pitch classes match).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from eval_melody import NOTE_NAMES, held_out_clips  # eval/ is on sys.path when this script runs

from musiclm import dsp
from musiclm.evaluation import plots
from musiclm.evaluation.metrics import chroma_agreement, judged_frames

ROOT = Path(__file__).resolve().parent.parent
N_FFT, CHROMA_HOP = 4096, 2048  # 5.9 Hz bins at 24 kHz: harmonics of notes from C2 up stay apart
OCTAVES = range(2, 8)  # C2 (65 Hz) to C7 (2.1 kHz) marked; the plot spans A1 to 4 kHz


def chromagram(wav: torch.Tensor, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """wav [C, N] → chroma [12, T] scaled to 1 per frame, 0 where chroma_agreement judges nothing; mask [T]."""
    energy = dsp.chroma(wav.mean(0, keepdim=True)[None], sr, hop=CHROMA_HOP)[0]  # [12, T]
    judged = judged_frames(energy)
    return (energy / energy.amax(0).clamp(min=1e-12) * judged).numpy(), judged.numpy()


def draw(path: Path, panels: list[tuple[str, torch.Tensor]], sr: int, title: str) -> list[float]:
    """panels (label, wav [C, N]), the first the reference; one spectrogram + chromagram each → PNG;
    returns the melody agreement of each later panel with the first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = panels[0][1]
    ref_chroma, ref_judged = chromagram(ref, sr)
    specs = [plots.log_spectrogram(w, sr, N_FFT) for _, w in panels]  # [F, T] dB
    top = max(float(s.max()) for s in specs)
    freqs = np.arange(specs[0].shape[0]) * sr / N_FFT
    band = (freqs >= 50) & (freqs <= 4000)
    fig, axes = plt.subplots(
        2 * len(panels),
        1,
        figsize=(11, 4.4 * len(panels)),
        sharex=True,
        height_ratios=[2.4, 1.5] * len(panels),
        layout="constrained",
    )
    scores = []
    for i, ((label, wav), spec) in enumerate(zip(panels, specs, strict=True)):
        ax, cax = axes[2 * i], axes[2 * i + 1]
        wav = wav[:, : ref.shape[-1]]
        if i > 0:
            scores.append(float(chroma_agreement(ref, wav, sr)))
            label += f": melody agreement with the reference {scores[-1]:.2f}"
        times = np.arange(spec.shape[1]) * (N_FFT // 4) / sr
        ax.pcolormesh(times, freqs[band], spec[band], cmap="magma", vmin=top - 80, vmax=top, shading="auto")
        ax.set_yscale("log")
        ax.set_ylim(55, 4000)
        hz = [440 * 2 ** ((12 * (o + 1) - 69) / 12) for o in OCTAVES]
        ax.set_yticks(hz, [f"C{o} {f:.0f} Hz" for o, f in zip(OCTAVES, hz, strict=True)], fontsize=7)
        ax.minorticks_off()
        ax.set_title(label, fontsize=10, loc="left")
        chroma, _ = chromagram(wav, sr)
        seconds = chroma.shape[1] * CHROMA_HOP / sr
        cax.imshow(chroma, origin="lower", aspect="auto", cmap="Greys", extent=(0, seconds, -0.5, 11.5))
        if i > 0:  # where the reference's strongest pitch class lies, to read agreement frame by frame
            t = np.arange(ref_chroma.shape[1]) * CHROMA_HOP / sr
            cax.plot(t[ref_judged], ref_chroma.argmax(0)[ref_judged], ".", color="tab:orange", ms=3)
        cax.set_yticks(range(12), NOTE_NAMES, fontsize=7)
        cax.set_ylabel("chroma", fontsize=8)
    axes[-1].set_xlabel("seconds")
    axes[-1].set_xlim(0, ref.shape[-1] / sr)
    legend = "chromagrams: grey, this panel's pitch classes per frame; orange dots, the reference's strongest"
    fig.suptitle(f"{title}\n{legend}", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"wrote {path}: agreement {', '.join(f'{s:.2f}' for s in scores)}")
    return scores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="LM directory (default: the shipped one, with its codec)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "train/figures")
    p.add_argument("--prompt", default="a slow chorale for strings in D minor")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--manifest", type=Path, default=ROOT / "data/synth/manifest.jsonl")
    p.add_argument("--clip-index", type=int, default=0, help="which held-out clip (eval_melody's order)")
    p.add_argument("--soundfont", default=None, help="for the plan's render (default: the corpus's GM one)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the model's)")
    p.add_argument("--top-k", type=int, default=None, help="top-k sampling (default: the model's)")
    p.add_argument("--note-cfg", type=float, default=None, help="guidance on the notes (default: the model's)")
    p.add_argument("--guide", type=int, default=None, help="codebooks kept from the render (default: generate's)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from musiclm.data.captions import key_name
    from musiclm.data.render import DEFAULT_SOUNDFONT, check_renderer
    from musiclm.generate import note_condition
    from musiclm.lm.generation import GenerationOptions
    from musiclm.lm.model import MusicLM
    from musiclm.notes.condition import notes_features
    from musiclm.notes.guide import render_notes
    from musiclm.notes.midi import note_array

    soundfont = args.soundfont or DEFAULT_SOUNDFONT
    check_renderer(soundfont)
    model = MusicLM.from_pretrained(args.model).eval()
    codec, sr = model.codec, model.codec.sample_rate
    options = GenerationOptions(
        duration=args.seconds,
        seed=args.seed,
        temperature=args.temperature,
        top_k=args.top_k,
        note_cfg=args.note_cfg,
        guide=args.guide,
    )
    name = f"{Path(args.model).name if args.model else 'shipped LM'}, seed {args.seed}"

    notes = note_condition(model, [args.prompt], options)  # what `musiclm generate` plays from
    c = notes.plans[0].controls
    rendered = render_notes(notes.scores[0], args.seconds, sr, soundfont)  # as the guide renders it
    played = model.generate([args.prompt], options, notes=notes.features, guide=notes.guide)[0]
    kept = 0 if notes.guide is None else notes.guide.shape[1]
    plan_text = f"{len(note_array(notes.scores[0]))} notes, {key_name(c.key, c.mode)} {c.mode}, {c.meter} at "
    plan_text += f"{c.bpm:g} BPM, GM programs {list(c.programs)}"
    draw(
        args.out_dir / "generated_from_plan.png",
        [
            (f"the plan ({plan_text}) rendered by FluidSynth", torch.from_numpy(rendered)[None]),
            (f"LM, keeping {kept} of {model.config.n_q} codebooks of that render (--guide {kept})", played),
        ],
        sr,
        f"{args.prompt!r} → planner → LM ({name})",
    )

    clip = held_out_clips(args.manifest, args.clip_index + 1, args.seconds, sr)[args.clip_index]
    ref, T = clip["wav"], int(round(args.seconds * codec.frame_rate))
    with torch.inference_mode():  # the codebooks the LM models, no more
        ceiling = codec.decode(codec.encode(ref[None], n_q=model.config.n_q))[0, :, : ref.shape[-1]]
    unguided = replace(options, guide=0)
    from_midi = model.generate(
        [clip["caption"]], unguided, notes=notes_features(clip["midi_path"], T, codec.frame_rate)[None]
    )[0]
    as_melody = note_condition(model, [clip["caption"]], options, melody=clip["midi_path"])  # generate --melody
    guided = model.generate([clip["caption"]], options, notes=as_melody.features, guide=as_melody.guide)[0]
    kept = 0 if as_melody.guide is None else as_melody.guide.shape[1]
    from_text = model.generate([clip["caption"]], unguided)[0]
    draw(
        args.out_dir / "melody_following.png",
        [
            (f"reference render ({clip['id']}, {clip['piece']})", ref),
            (f"reference through the codec at {model.config.n_q} codebooks (the ceiling)", ceiling),
            ("LM from the clip's MIDI (--guide 0)", from_midi),
            (f"LM from the clip's MIDI keeping {kept} codebooks of its render (--melody, --guide {kept})", guided),
            ("LM from the caption alone", from_text),
        ],
        sr,
        f"held-out clip: {clip['caption']}\n({name})",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
