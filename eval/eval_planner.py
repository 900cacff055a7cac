"""Does the planner honour its fields, and are its plans new music? (issue 12, "Must show", the planner)

    python eval/eval_planner.py --planner checkpoints/planner --cache data/planner/cache --draws 50

1. Held-out note-event perplexity: every bar of the test pieces (the synth corpus's test split), untransposed,
   per token (REMI Position/Program/Pitch/Duration/Bar) and per note (the NLL of all tokens over the notes).
2. Adherence over `--draws` prompts: fields drawn at random (key, mode, BPM, meter, instruments, genre),
   phrased by the captioner (`make_caption`); what a caption leaves out is passed as a field, so the asked
   values are always the drawn ones. Key by music21's analyzer on the plan's MIDI (strict, and with the
   relative major/minor allowed), meter and tempo from the MIDI file, and the pulse its notes carry
   (`musiclm.notes.midi.pulse_bpm`, the audio tempo rule: within 8 %, octave errors allowed).
3. Novelty: the longest run of consecutive notes each plan shares with any training piece (intervals, so
   any transposition counts), melody and all notes; the median over the plans, beside the same figure for
   the held-out pieces' openings (real unseen music against the same training pieces).
4. Long plans: `--long` plans of 60 s; the key of each 10 s stretch against the asked one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch


def perplexity(model, maker, pieces, batch: int = 8) -> dict:
    from musiclm.training.planner_module import collate

    windows = maker.held_out(pieces)
    nll = tokens = notes = 0.0
    with torch.inference_mode():
        for i in range(0, len(windows), batch):
            chunk = windows[i : i + batch]
            b = collate([(ids, n) for ids, n, _ in chunk], maker.tok.pad)
            loss, count = model.loss(b["ids"], b["target_mask"])
            nll += float(loss) * float(count)
            tokens += float(count)
            notes += sum(n for _, _, n in chunk)
    return {
        "pieces": len(pieces),
        "windows": len(windows),
        "tokens": int(tokens),
        "notes": int(notes),
        "ppl_token": round(math.exp(nll / tokens), 3),
        "ppl_note": round(math.exp(nll / notes), 2),
        "bits_per_note": round(nll / notes / math.log(2), 2),
    }


def draw_fields(rng: random.Random) -> dict:
    from musiclm.data.captions import key_name
    from musiclm.data.sources import GM, POLY_ENSEMBLES

    mode = rng.choice(["major", "minor"])
    label, programs = rng.choice(POLY_ENSEMBLES) if rng.random() < 0.5 else (None, (rng.choice(sorted(GM)),))
    names = list(dict.fromkeys(GM[p] for p in programs))
    return {
        "key": key_name(rng.randrange(12), mode),
        "mode": mode,
        "bpm": float(rng.randint(50, 150)),
        "meter": rng.choice(["4/4", "3/4", "2/4", "6/8", "2/2", "3/2"]),
        "instruments": names,
        "ensemble": label or f"solo {names[0]}",
        "genre": rng.choice(["chorale", "folk song", "fiddle tune", "madrigal", "folk waltz", "motet"]),
        "tempo_word": "",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--planner", default="checkpoints/planner")
    p.add_argument("--cache", default="data/planner/cache")
    p.add_argument("--draws", type=int, default=50)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--long", type=int, default=3, help="plans of 60 s to check for key over time")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--key-weight", type=float, default=None, help="plan(key_weight=...); default: plan()'s")
    p.add_argument("--key-retries", type=int, default=None, help="plan(key_retries=...); default: plan()'s")
    p.add_argument("--pulse-weight", type=float, default=None, help="plan(pulse_weight=...); default: plan()'s")
    p.add_argument("--out", default="outputs/planner_eval.json")
    p.add_argument("--midi-dir", default="outputs/planner_plans", help="where the plans are written (.mid)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from musiclm.data.captions import NOTE_NAMES, make_caption, parse_controls
    from musiclm.notes.corpus import WindowMaker, load_cache
    from musiclm.notes.metrics import adherence, longest_shared_runs, music21_key, note_lines
    from musiclm.notes.midi import clip_seconds
    from musiclm.notes.planner import KEY_RETRIES, KEY_WEIGHT, PULSE_WEIGHT, load_planner, plan
    from musiclm.notes.tokens import default_tokenizer

    args.key_weight = KEY_WEIGHT if args.key_weight is None else args.key_weight
    args.pulse_weight = PULSE_WEIGHT if args.pulse_weight is None else args.pulse_weight
    args.key_retries = KEY_RETRIES if args.key_retries is None else args.key_retries
    tok = default_tokenizer()
    model = load_planner(args.planner)
    maker = WindowMaker(tok, model.config.max_len)
    report: dict = {"planner": args.planner, "params": sum(p.numel() for p in model.parameters())}
    train = load_cache(args.cache, splits=("train",))
    test = load_cache(args.cache, splits=("test",))
    report["perplexity_test"] = perplexity(model, maker, test)
    print("held-out perplexity (test pieces):", report["perplexity_test"], flush=True)

    rng = random.Random(1234)
    midi_dir = Path(args.midi_dir)
    midi_dir.mkdir(parents=True, exist_ok=True)
    rows, plans, seconds = [], [], []
    for i in range(args.draws):
        fields = draw_fields(rng)
        caption = make_caption(fields, seed=i)
        stated = parse_controls(caption)
        given = {}  # what the caption does not say is passed as a field: the asked values are the drawn ones
        if "key" not in stated or "mode" not in stated:
            given.update(key=NOTE_NAMES.index(fields["key"][0]) + {"b": -1, "#": 1}.get(fields["key"][1:], 0))
            given.update(mode=fields["mode"])
        if "bpm" not in stated:
            given["bpm"] = fields["bpm"]
        if "meter" not in stated:
            given["meter"] = fields["meter"]
        t0 = time.time()
        out = plan(
            caption,
            args.seconds,
            seed=i,
            planner=model,
            temperature=args.temperature,
            top_p=args.top_p,
            key_retries=args.key_retries,
            key_weight=args.key_weight,
            pulse_weight=args.pulse_weight,
            **given,
        )
        seconds.append(time.time() - t0)
        out.save(midi_dir / f"plan{i:03d}.mid")
        a = adherence(out.midi, out.controls, args.seconds)
        c = out.controls
        asked = {"key": c.key, "mode": c.mode, "bpm": c.bpm, "meter": c.meter}
        checks = {k: a[k] for k in ("key", "key_relative", "meter", "tempo", "pulse")}
        rows.append(
            {"caption": caption, "stated": sorted(stated), **checks, "asked": asked, "measured": a["measured"],
             "attempts": out.attempts}
        )  # fmt: skip
        plans.append(out)
    n = len(rows)
    report["adherence"] = {
        k: round(sum(r[k] for r in rows) / n, 3) for k in ("key", "key_relative", "meter", "tempo", "pulse")
    }
    report["adherence"]["draws"] = n
    report["adherence"]["key_retries"] = args.key_retries
    report["adherence"]["key_weight"] = args.key_weight
    report["adherence"]["pulse_weight"] = args.pulse_weight
    report["adherence"]["mean_attempts"] = round(sum(r["attempts"] for r in rows) / n, 2)
    report["plan_seconds_wall"] = {"median": round(float(np.median(seconds)), 3), "max": round(max(seconds), 3)}
    print("adherence:", report["adherence"], "plan time:", report["plan_seconds_wall"], flush=True)

    corpus = [note_lines(tok, np.concatenate([[tok.bar, *b] for b in p.bars])) for p in train]
    runs = {}
    for k, name in enumerate(("melody", "all_notes")):
        lines = [note_lines(tok, pl.tokens)[k] for pl in plans]
        shared = longest_shared_runs(lines, [c[k] for c in corpus])
        real = [note_lines(tok, maker.held_out([p])[0][0])[k] for p in test]
        shared_real = longest_shared_runs(real, [c[k] for c in corpus])
        runs[name] = {
            "plans_median": float(np.median(shared)),
            "plans_max": int(max(shared)),
            "plans_notes_median": float(np.median([len(x) for x in lines])),
            "heldout_pieces_median": float(np.median(shared_real)),
        }
    report["novelty_longest_shared_run"] = runs
    report["train_pieces"] = len(train)
    print("novelty (longest run of notes shared with a training piece):", runs, flush=True)

    longs = []
    for j in range(args.long):
        fields = draw_fields(rng)
        caption = make_caption({**fields, "key": fields["key"]}, seed=1000 + j)
        out = plan(
            caption,
            60.0,
            seed=1000 + j,
            planner=model,
            temperature=args.temperature,
            top_p=args.top_p,
            key_retries=args.key_retries,
            key_weight=args.key_weight,
            pulse_weight=args.pulse_weight,
        )
        out.save(midi_dir / f"long{j}.mid")
        c = out.controls
        keys = [music21_key(clip_seconds(out.midi, s, s + 10.0)) for s in range(0, 60, 10)]
        longs.append(
            {
                "caption": caption,
                "asked": [c.key, c.mode],
                "segments_key": sum(k == (c.key, c.mode) for k in keys),
                "segments": len(keys),
                "tempi": len(out.midi.tempos),
                "meters": len(out.midi.time_signatures),
                "end_s": round(float(out.midi.to("second").end()), 2),
            }
        )
    report["long_plans"] = longs
    print("60 s plans (key of each 10 s stretch = asked):", [(x["segments_key"], x["segments"]) for x in longs])
    report["draws"] = rows
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out} and {n + len(longs)} plans to {midi_dir}/")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(main())
