"""What does the LM's own codebook add? With the guide (`musiclm generate`'s default), the first codebooks
come from a render of the plan and the LM writes the finest one. The same plans, decoded four ways:

- `lm`: the LM's codes as `generate` decodes them (guide codebooks + the LM's);
- `guide`: the guide's codebooks alone, the LM's dropped (a lower bitrate, nothing sampled);
- `soft`: the guide's codebooks + the LM's expected embedding for its own codebook, the mean of the codes it
  would draw (`musiclm.lm.generation.soft_latent`; minimum mean-square error where it is unsure);
- `render`: the plan's render through the codec at the LM's codebooks (what the best LM could give back).

Each is heard for key (chroma and transcribed notes; relative allowed) and tempo (8 %, octave errors allowed),
as issue 12 asks, and compared with the plan's render by melody agreement (chroma). Prompts and seeds are
eval_melody's controls (`draw_prompt`, seed 4321); exact McNemar on the draws met one way only.

    .venv/bin/python eval/eval_finest.py --draws 100 --out outputs/finest_100.json
    .venv/bin/python eval/eval_finest.py --draws 100 --decoder runs/RUN/export   # a decoder trained further
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
from compare_draws import discordant, write_report  # eval/ is on sys.path when this script runs
from eval_melody import draw_prompt, key_met, keys_heard

WAYS = ("lm", "soft", "guide", "render")
MEASURES = ("key_met", "key_met_notes", "tempo_met", "agreement")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--draws", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--model", default=None, help="LM directory (default: the shipped one)")
    p.add_argument(
        "--decoder",
        default=None,
        help="a codec trained further from the model's, decoder only (the same fingerprint: the LM's tokens stay "
        "valid), to decode with in place of the model's",
    )
    p.add_argument(
        "--pulse-weight", type=float, default=None, help="the planner's pulse prior (default: plan()'s PULSE_WEIGHT)"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("outputs/finest.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from musiclm.data.analysis import estimate_tempo, tempo_agrees
    from musiclm.evaluation.metrics import chroma_agreement
    from musiclm.generate import note_condition
    from musiclm.lm.generation import GenerationOptions, generate_tokens, soft_latent
    from musiclm.lm.model import MusicLM
    from musiclm.notes.guide import render_notes

    if args.pulse_weight is not None:
        from musiclm.notes import planner

        planner.PULSE_WEIGHT = args.pulse_weight  # read by plan() at each call
    model = MusicLM.from_pretrained(args.model).eval()
    if args.decoder:
        from musiclm.codec import Codec

        decoder = Codec.from_pretrained(args.decoder).eval()
        if decoder.fingerprint() != model.codec.fingerprint():
            sys.exit(f"eval_finest.py: {args.decoder} codes another token space than the model's codec")
        object.__setattr__(model, "codec", decoder)  # not a submodule (MusicLM)
    codec, sr, K = model.codec, model.codec.sample_rate, model.config.n_q
    rows, rng = [], random.Random(4321)
    for i in range(args.draws):
        caption, asked = draw_prompt(rng, i)
        options = GenerationOptions(duration=args.seconds, seed=i)
        notes = note_condition(model, [caption], options)
        G = notes.guide.shape[1]
        render = torch.from_numpy(render_notes(notes.scores[0], args.seconds, sr))[None]  # [1, N]
        n = render.shape[-1]
        soft: dict = {}
        codes = generate_tokens(model, [caption], options, notes=notes.features, guide=notes.guide, soft=soft)
        with torch.inference_mode():
            latent_guide = codec.quantizer.decode(codes[:, :G])
            heard = {
                "lm": codec.decode(codes)[0, :, :n],
                "guide": codec._decode_latent(latent_guide, 0)[0, :, :n],
                "soft": codec._decode_latent(soft_latent(codec, soft), 0)[0, :, :n],
                "render": codec.decode(codec.encode(render[None], n_q=K))[0, :, :n],
            }
        row = {"caption": caption, "asked": asked}
        for way, x in heard.items():
            mono = x.mean(0).numpy()
            keys, bpm = keys_heard(mono, sr), estimate_tempo(mono, sr)
            row[way] = {
                "key": " ".join(keys["chroma"]),
                "key_notes": " ".join(keys["notes"]),
                "bpm": round(float(bpm), 1),
                "key_met": key_met((asked["key"], asked["mode"]), keys["chroma"]),
                "key_met_notes": key_met((asked["key"], asked["mode"]), keys["notes"]),
                "tempo_met": tempo_agrees(asked["bpm"], bpm),
                "agreement": round(float(chroma_agreement(render, x, sr)), 3),
            }
        rows.append(row)
        if (i + 1) % 10 == 0 or i + 1 == args.draws:
            print(
                i + 1,
                {w: [round(float(np.mean([r[w][m] for r in rows])), 3) for m in MEASURES] for w in WAYS},
                flush=True,
            )
    report: dict = {"draws": len(rows), "measures": MEASURES, "mean": {}, "against_lm": {}, "rows": rows}
    for way in WAYS:
        report["mean"][way] = {m: round(float(np.mean([r[way][m] for r in rows])), 3) for m in MEASURES}
        if way == "lm":
            continue
        for m in MEASURES[:3]:
            only_lm, only_way, p_value = discordant([r["lm"][m] for r in rows], [r[way][m] for r in rows])
            report["against_lm"][f"{way} {m}"] = {
                "only_lm": only_lm,
                f"only_{way}": only_way,
                "mcnemar_p": round(p_value, 4),
            }
    print(json.dumps({k: report[k] for k in ("mean", "against_lm")}, indent=1))
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
