"""Does generated audio follow its notes, and the text's key and tempo? (issue 12, "Must show", the audio)

    python eval/eval_melody.py --model DIR --clips 16 --draws 40 --out outputs/eval_melody.json

1. Melody agreement on held-out MIDI (the synth corpus's test split: pieces never trained on): each clip's
   MIDI conditions the LM (`notes_features`, and the audio path: the render's chromagram, as `--melody
   tune.wav` would give) with the clip's caption; agreement is the share of frames whose strongest chroma
   pitch class equals that of the reference render (`metrics.chroma_agreement`, MusicGen-melody's measure).
   Beside it the same audio against a different piece's render (what chance-level following scores) and
   the codec's own ceiling (the render through the codec at the LM's bandwidth).
2. Text controls through the planner: `--draws` captions stating key and tempo → plan → LM → audio; key
   (relative major/minor allowed) and tempo (within 8 %, octave errors allowed) estimated from the audio
   (`musiclm.data.analysis`); key also from basic-pitch's transcription by the captions' own rule
   (`key_met_notes`, `musiclm.evaluation.notes.key_from_events`). The estimators' ceiling: the same
   estimators on the reference renders; and on the same plans without the LM, rendered, and rendered through
   the codec at the LM's codebooks.
3. Text alone (`--no-plan`): the share of silent half-seconds in up to 20 draws (no notes must not mean rest).
4. Speed: 10 s from text (plan + tokens + decode) in wall seconds, peak memory (max RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

NOTE_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
ALIASES = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb", "Cb": "B", "E#": "F", "Fb": "E", "B#": "C"}


def pitch_class(name: str) -> int:
    return NOTE_NAMES.index(ALIASES.get(name, name))


def key_met(asked: tuple[str, str], heard: tuple[str, str]) -> bool:
    """Same key, or its relative major/minor (the issue's rule)."""
    a, h = pitch_class(asked[0]), pitch_class(heard[0])
    if asked[1] == heard[1]:
        return a == h
    relative = (a + 9) % 12 if asked[1] == "major" else (a + 3) % 12
    return h == relative


def keys_heard(x: np.ndarray, sample_rate: int) -> dict[str, tuple[str, str]]:
    """The key heard by both estimators: "chroma" (Krumhansl-Schmuckler on the audio's chroma, the figure
    reported since stage 5) and "notes" (the captions' own rule on basic-pitch's transcription,
    `musiclm.evaluation.notes.key_from_events`)."""
    from musiclm.data.analysis import estimate_key
    from musiclm.evaluation.notes import estimate_key_from_notes

    return {"chroma": estimate_key(x, sample_rate)[:2], "notes": estimate_key_from_notes(x, sample_rate)[:2]}


def held_out_clips(manifest: Path, count: int, seconds: float, sample_rate: int, split: str = "test") -> list[dict]:
    from musiclm.audio import load_audio

    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == split and r.get("midi") and r["duration"] >= seconds]
    random.Random(0).shuffle(rows)
    clips = []
    for r in rows[:count]:
        wav, _ = load_audio(manifest.parent / r["path"], sample_rate=sample_rate, channels=1, duration=seconds)
        clips.append({**r, "wav": wav, "midi_path": manifest.parent / r["midi"]})
    return clips


def melody_section(model, clips: list[dict], seconds: float, seed: int, paths=("midi", "audio"), guide=None) -> dict:
    """The MIDI path goes as `musiclm generate --melody clip.mid` does (`note_condition`: the notes, arranged
    for the caption's instruments, and `guide` codebooks of their render); the audio path and text alone
    have no notes to render (guide 0)."""
    from musiclm.evaluation.metrics import chroma_agreement
    from musiclm.generate import Notes, note_condition
    from musiclm.lm.generation import GenerationOptions
    from musiclm.notes.condition import chroma_view
    from musiclm.notes.features import chroma_features

    codec, sr = model.codec, model.codec.sample_rate
    T = int(round(seconds * codec.frame_rate))
    options = GenerationOptions(duration=seconds, seed=seed, guide=guide)
    unguided = GenerationOptions(duration=seconds, seed=seed, guide=0)
    rows = []
    for i, clip in enumerate(clips):
        other = clips[(i + 1) % len(clips)]
        ref = clip["wav"]
        row = {"id": clip["id"], "caption": clip["caption"]}
        for name in (*paths, "text_only"):
            how = unguided
            if name == "midi":
                notes, how = note_condition(model, [clip["caption"]], options, melody=clip["midi_path"]), options
            elif name == "audio":
                notes = Notes(chroma_view(chroma_features(ref, sr, codec.frame_rate, T))[None])
            else:
                notes = Notes()
            out = model.generate([clip["caption"]], how, notes=notes.features, guide=notes.guide)
            out = out[0, :, : ref.shape[-1]]
            row[f"{name}_agreement"] = float(chroma_agreement(ref, out, sr))
            row[f"{name}_vs_other_piece"] = float(chroma_agreement(other["wav"][:, : out.shape[-1]], out, sr))
        row["codec_ceiling"] = codec_ceiling(codec, model.config.n_q, ref)
        rows.append(row)
        heard = ", ".join(f"{name} {row[name + '_agreement']:.2f}" for name in (*paths, "text_only"))
        print(
            f"  {clip['id']}: {heard} (other piece {row[paths[0] + '_vs_other_piece']:.2f}), "
            f"codec {row['codec_ceiling']:.2f}",
            flush=True,
        )
    keys = [k for k in rows[0] if k not in ("id", "caption")]
    return {"clips": len(rows), "mean": {k: round(float(np.mean([r[k] for r in rows])), 3) for k in keys}, "rows": rows}


def long_section(model, pieces: int, seconds: float = 60.0, window: float = 10.0) -> dict:
    """Long pieces from text (issue 12: "a 60 s piece keeps key and tempo"): each prompt (draw_prompt, another
    seed than the controls section's) → plan (window by window) → LM; every `window` seconds of the audio is
    heard for key (chroma, relative allowed) and tempo, as in the controls section."""
    from musiclm.data.analysis import estimate_tempo, tempo_agrees
    from musiclm.generate import note_condition
    from musiclm.lm.generation import GenerationOptions

    sr, rng, rows = model.codec.sample_rate, random.Random(99), []
    for i in range(pieces):
        caption, asked = draw_prompt(rng, i)
        options = GenerationOptions(duration=seconds, seed=i)
        notes = note_condition(model, [caption], options)
        x = model.generate([caption], options, notes=notes.features, guide=notes.guide)[0].mean(0).numpy()
        hop = int(window * sr)
        parts = [x[k : k + hop] for k in range(0, len(x) - hop + 1, hop)]
        key = [key_met((asked["key"], asked["mode"]), keys_heard(w, sr)["chroma"]) for w in parts]
        tempo = [tempo_agrees(asked["bpm"], estimate_tempo(w, sr)) for w in parts]
        rows.append({"caption": caption, "asked": asked, "key_met": key, "tempo_met": tempo})
        print(f"  {i}: key {sum(key)}/{len(key)} tempo {sum(tempo)}/{len(tempo)}: {caption}", flush=True)
    windows = [w for r in rows for w in zip(r["key_met"], r["tempo_met"], strict=True)]
    return {
        "pieces": pieces,
        "windows": len(windows),
        "key_met": round(float(np.mean([k for k, _ in windows])), 3),
        "tempo_met": round(float(np.mean([t for _, t in windows])), 3),
        "rows": rows,
    }


def codec_ceiling(codec, n_q: int, ref: torch.Tensor) -> float:
    """Melody agreement of `ref` [C, N] with itself through the codec at the LM's `n_q` codebooks, no more."""
    from musiclm.evaluation.metrics import chroma_agreement

    with torch.inference_mode():
        recon = codec.decode(codec.encode(ref[None], n_q=n_q))[0, :, : ref.shape[-1]]
    return float(chroma_agreement(ref, recon, codec.sample_rate))


def draw_prompt(rng: random.Random, index: int) -> tuple[str, dict]:
    """A caption that states key, mode and tempo (what the planner and the LM read)."""
    from eval_planner import draw_fields  # eval/ is on sys.path when this script runs

    from musiclm.data.captions import make_caption, parse_controls

    for attempt in range(100):
        fields = draw_fields(rng)
        caption = make_caption(fields, seed=index * 100 + attempt)
        stated = parse_controls(caption)
        if {"key", "mode", "bpm"} <= set(stated):
            return caption, {"key": fields["key"], "mode": fields["mode"], "bpm": fields["bpm"]}
    raise RuntimeError("the captioner never stated key and tempo")


def controls_section(model, draws: int, seconds: float, guide=None) -> dict:
    from musiclm.data.analysis import estimate_tempo, tempo_agrees
    from musiclm.generate import note_condition
    from musiclm.lm.generation import GenerationOptions

    sr, rng, rows = model.codec.sample_rate, random.Random(4321), []
    for i in range(draws):
        caption, asked = draw_prompt(rng, i)
        options = GenerationOptions(duration=seconds, seed=i, guide=guide)
        notes = note_condition(model, [caption], options)  # the plan, as `musiclm generate` makes it
        wav = model.generate([caption], options, notes=notes.features, guide=notes.guide)[0]
        x = wav.mean(0).numpy()
        keys = keys_heard(x, sr)
        (tonic, mode), bpm = keys["chroma"], estimate_tempo(x, sr)
        rows.append(
            {
                "caption": caption,
                "asked": asked,
                "heard": {"key": tonic, "mode": mode, "bpm": round(bpm, 1), "key_notes": " ".join(keys["notes"])},
                "key_met": key_met((asked["key"], asked["mode"]), (tonic, mode)),
                "key_met_notes": key_met((asked["key"], asked["mode"]), keys["notes"]),
                "tempo_met": tempo_agrees(asked["bpm"], bpm),
            }
        )
        row = rows[-1]
        print(f"  {i}: key {row['key_met']}/{row['key_met_notes']} tempo {row['tempo_met']}: {caption}", flush=True)
    return {
        "draws": len(rows),
        "key_met": round(float(np.mean([r["key_met"] for r in rows])), 3),
        "key_met_notes": round(float(np.mean([r["key_met_notes"] for r in rows])), 3),
        "tempo_met": round(float(np.mean([r["tempo_met"] for r in rows])), 3),
        "rows": rows,
    }


def plan_ceiling_section(model, draws: int, seconds: float) -> dict:
    """The controls section's plans (same captions and seeds) without the LM: key and tempo heard on each
    plan's render (`musiclm.notes.guide.render_notes`, the guide's synthesizer), and on that render through
    the codec at the LM's codebooks (what the best LM could give back)."""
    from musiclm.data.analysis import estimate_tempo, tempo_agrees
    from musiclm.generate import note_condition
    from musiclm.lm.generation import GenerationOptions
    from musiclm.notes.guide import render_notes

    codec, sr = model.codec, model.codec.sample_rate
    rng, rows = random.Random(4321), []
    for i in range(draws):
        caption, asked = draw_prompt(rng, i)
        notes = note_condition(model, [caption], GenerationOptions(duration=seconds, seed=i, guide=0))
        render = torch.from_numpy(render_notes(notes.scores[0], seconds, sr))
        with torch.inference_mode():
            coded = codec.decode(codec.encode(render[None, None], n_q=model.config.n_q))[0, 0, : render.shape[0]]
        row = {"caption": caption, "asked": asked}
        for name, x in (("render", render.numpy()), ("codec", coded.numpy())):
            keys, bpm = keys_heard(x, sr), estimate_tempo(x, sr)
            asked_key = (asked["key"], asked["mode"])
            row[name] = {
                "heard": {"key": " ".join(keys["chroma"]), "key_notes": " ".join(keys["notes"]), "bpm": round(bpm, 1)},
                "key_met": key_met(asked_key, keys["chroma"]),
                "key_met_notes": key_met(asked_key, keys["notes"]),
                "tempo_met": tempo_agrees(asked["bpm"], bpm),
            }
        rows.append(row)
    out = {"draws": draws}
    for name in ("render", "codec"):
        for measure in ("key_met", "key_met_notes", "tempo_met"):
            out[f"{name}_{measure}"] = round(float(np.mean([r[name][measure] for r in rows])), 3)
    # per draw, so two codecs (`--codec`) can be compared on the same plans (eval/compare_draws.py)
    out["rows"] = rows
    return out


def silence_section(
    model, draws: int, seconds: float, block: float = 0.5, floor_db: float = -50.0, dead_db: float = -80.0
) -> dict:
    """Text alone (`generate --no-plan`: no notes, no guide): the share of `block`-second blocks quieter than
    `floor_db` dBFS RMS (quiet), and of those under `dead_db` (digital silence: one silent frame held to the
    end), over captions drawn as in the controls section."""
    from musiclm.lm.generation import GenerationOptions

    rng, shares, dead = random.Random(99), [], []
    for i in range(draws):
        caption, _ = draw_prompt(rng, i)
        wav = model.generate([caption], GenerationOptions(duration=seconds, seed=i, guide=0))[0].mean(0)
        n = int(block * model.codec.sample_rate)
        blocks = wav[: wav.shape[0] // n * n].reshape(-1, n)
        db = 10 * torch.log10(blocks.square().mean(1) + 1e-12)
        shares.append(float((db < floor_db).float().mean()))
        dead.append(float((db < dead_db).float().mean()))
    return {
        "draws": draws,
        "silent_block_share": round(float(np.mean(shares)), 3),
        "draws_half_silent": round(float(np.mean([s >= 0.5 for s in shares])), 3),
        "dead_block_share": round(float(np.mean(dead)), 3),
    }


def ceiling_section(clips: list[dict], sample_rate: int) -> dict:
    """The same estimators on the reference renders, against the fields the renders were made with."""
    from musiclm.data.analysis import estimate_tempo, tempo_agrees

    keys, keys_notes, tempi = [], [], []
    for clip in clips:
        x, f = clip["wav"].mean(0).numpy(), clip["fields"]
        heard = keys_heard(x, sample_rate)
        keys.append(key_met((f["key"], f["mode"]), heard["chroma"]))
        keys_notes.append(key_met((f["key"], f["mode"]), heard["notes"]))
        tempi.append(tempo_agrees(float(f["bpm"]), estimate_tempo(x, sample_rate)))
    return {
        "clips": len(clips),
        "key_met": round(float(np.mean(keys)), 3),
        "key_met_notes": round(float(np.mean(keys_notes)), 3),
        "tempo_met": round(float(np.mean(tempi)), 3),
    }


def speed_section(model, seconds: float = 10.0, guide=None) -> dict:
    from musiclm.generate import note_condition
    from musiclm.lm.generation import GenerationOptions

    caption = "a calm chorale for strings in C major, 80 BPM"
    model.generate([caption], GenerationOptions(duration=1.0, seed=0))  # warm-up (allocations, kernels)
    options = GenerationOptions(duration=seconds, seed=0, guide=guide)
    t0 = time.perf_counter()
    notes = note_condition(model, [caption], options)  # plan, and the render of the guide
    t1 = time.perf_counter()
    model.generate([caption], options, notes=notes.features, guide=notes.guide)
    t2 = time.perf_counter()
    return {
        "seconds": seconds,
        "plan_and_guide_s": round(t1 - t0, 2),
        "tokens_and_decode_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
        "threads": torch.get_num_threads(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="LM directory (default: the shipped one)")
    p.add_argument("--manifest", default="data/synth/manifest.jsonl", help="corpus with a test split and MIDI")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument(
        "--split", default="test", choices=["test", "valid"], help="held-out clips to score (tune settings on valid)"
    )
    p.add_argument("--draws", type=int, default=40)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--note-cfg", type=float, default=None, help="guidance on the notes (default: the model's)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the model's)")
    p.add_argument("--top-k", type=int, default=None, help="top-k sampling (default: the model's)")
    p.add_argument(
        "--guide",
        type=int,
        default=None,
        help="codebooks kept from a render of the notes, as `generate --guide` (default: generate's default)",
    )
    p.add_argument(
        "--paths",
        nargs="+",
        default=["midi", "audio"],
        choices=["midi", "audio"],
        help="note paths scored in the melody section (text only is always scored)",
    )
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["melody", "controls", "plans", "silence", "ceiling", "speed", "long"],
    )
    p.add_argument("--long", type=int, default=3, help="long section: this many 60 s pieces from text")
    p.add_argument(
        "--codec",
        default=None,
        help="a candidate codec in place of the model's: scores only what needs no LM sampling (the codec's "
        "melody ceiling at the LM's codebooks, the plans through it, the estimators)",
    )
    p.add_argument("--out", default="outputs/eval_melody.json")
    args = p.parse_args(argv)
    if args.codec:  # the LM was trained on another codec's tokens: nothing it samples would mean anything
        args.skip = sorted({*args.skip, "melody", "controls", "silence", "speed", "long"})
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    from musiclm.lm.model import MusicLM
    from musiclm.lm.sample import SamplingParams

    model = MusicLM.from_pretrained(args.model).eval()
    if args.codec:
        from musiclm.codec import Codec

        object.__setattr__(model, "codec", Codec.from_pretrained(args.codec).eval())  # not a submodule (MusicLM)
    for name in ("note_cfg", "temperature", "top_k"):  # every section generates with the model's defaults
        if getattr(args, name) is not None:
            setattr(model.config, name, getattr(args, name))
    sr = model.codec.sample_rate
    report: dict = {
        "model": args.model or "shipped",
        "note_features": model.config.note_features,
        "sampling": {f.name: getattr(model.config, f.name) for f in fields(SamplingParams)},
        "guide": args.guide,
        "codec": args.codec or "the model's",
    }
    clips = held_out_clips(Path(args.manifest), args.clips, args.seconds, sr, args.split)
    if args.codec:
        ceilings = [codec_ceiling(model.codec, model.config.n_q, clip["wav"]) for clip in clips]
        report["codec_melody_ceiling"] = round(float(np.mean(ceilings)), 3)
        print(f"melody agreement through the codec at {model.config.n_q} codebooks:", report["codec_melody_ceiling"])
    if "speed" not in args.skip:  # first: its peak RSS is the process's, before basic-pitch is loaded
        report["speed"] = speed_section(model, guide=args.guide)
        print("speed:", report["speed"], flush=True)
    if "ceiling" not in args.skip:
        report["estimator_ceiling"] = ceiling_section(clips, sr)
        print("estimators on reference renders:", report["estimator_ceiling"], flush=True)
    if "melody" not in args.skip:
        print(f"melody agreement on {len(clips)} held-out clips:", flush=True)
        report["melody"] = melody_section(model, clips, args.seconds, 7, tuple(args.paths), args.guide)
        print("mean:", report["melody"]["mean"], flush=True)
    if "controls" not in args.skip:
        print(f"text controls over {args.draws} draws (plan → LM → audio):", flush=True)
        report["controls"] = controls_section(model, args.draws, args.seconds, args.guide)
        print({k: v for k, v in report["controls"].items() if k != "rows"}, flush=True)
    if "plans" not in args.skip:
        report["plan_ceiling"] = plan_ceiling_section(model, args.draws, args.seconds)
        summary = {k: v for k, v in report["plan_ceiling"].items() if k != "rows"}
        print("the same plans without the LM (render; render through the codec):", summary, flush=True)
    if "long" not in args.skip and args.long > 0:
        report["long"] = long_section(model, args.long)
        print("60 s from text, 10 s windows heard as asked:", {k: v for k, v in report["long"].items() if k != "rows"})
    if "silence" not in args.skip:
        report["text_alone_silence"] = silence_section(model, min(args.draws, 20), args.seconds)
        print("text alone, silent 0.5 s blocks:", report["text_alone_silence"], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
