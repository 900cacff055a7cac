"""Does a planner check make the music heard as asked? The same prompts and seeds with and without one of
them (issue 12: key, relative allowed, and tempo within 8 %, octave errors allowed, in ≥ 80 % of draws).

    .venv/bin/python eval/eval_pulse.py --draws 200 --out outputs/pulse_ab_200.json            # plans only
    .venv/bin/python eval/eval_pulse.py --draws 100 --lm --out outputs/pulse_lm_ab_100.json    # through the LM
    .venv/bin/python eval/eval_pulse.py --check key --draws 200 --out outputs/heard_key_ab_200.json
    .venv/bin/python eval/eval_pulse.py --check through-codec --draws 100 --lm --out outputs/through_codec_lm_100.json
    .venv/bin/python eval/eval_pulse.py --check pulse-prior --draws 100 --out outputs/pulse_prior_100.json

`--check pulse` (default): "without" is the planner before 2026-11-30 (its pulse check switched off: every
draw counts as at the asked pulse). `--check key`: "without" has the heard-key check
(`planner.key_heard`) switched off; `--check heard-tempo` the tempo heard in the render
(`planner.tempo_heard`); `--check through-codec` the render heard as it is, not through the codec at the LM's
codebooks (`generate.plan_listener`, 2026-12-01); `--check pulse-prior` samples without the prior that leans
onsets towards the beat (`planner.pulse_prior`, weight 0; `--pulse-weight` sets the other side's). "with" is
the shipped planner. Prompts are eval_melody's
(`draw_prompt`, seed 4321; its 40 are the first 40 here). Plans only: the key and tempo heard in each plan's
render, and in that render through the codec at the LM's codebooks (what the best LM could give back). With
`--lm`: those heard in `generate`'s audio. Printed: the share met each way and an exact McNemar test on the
draws met one way only. Keys are heard two ways (eval_melody's `keys_heard`): from the chroma, the estimator
the heard-key check itself asks of the render, and from basic-pitch's transcription, one it never asks.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from compare_draws import discordant, write_report  # eval/ is on sys.path when this script runs
from eval_melody import draw_prompt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # --check → the planner's function switched off; "through-codec" hears the render itself, not through the codec
    checks = {
        "pulse": "tempo_agrees",
        "key": "key_heard",
        "heard-tempo": "tempo_heard",
        "through-codec": None,
        "pulse-prior": None,
    }
    p.add_argument("--check", choices=list(checks), default="pulse", help="the check switched off for 'without'")
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--lm", action="store_true", help="generate with the LM (slow) instead of rendering plans")
    p.add_argument("--model", default=None, help="LM directory (default: the shipped one)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--pulse-weight", type=float, default=None, help="the pulse prior's weight on the 'with' side (default: plan's)"
    )
    p.add_argument("--out", type=Path, default=Path("outputs/pulse_ab.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from eval_melody import key_met, keys_heard

    from musiclm.data.analysis import estimate_tempo, tempo_agrees
    from musiclm.generate import note_condition
    from musiclm.lm.generation import GenerationOptions
    from musiclm.lm.model import MusicLM
    from musiclm.notes import planner
    from musiclm.notes.guide import render_notes

    model = MusicLM.from_pretrained(args.model).eval()
    codec, sr = model.codec, model.codec.sample_rate
    if args.check == "through-codec":
        import musiclm.generate

        switched_off = mock.patch.object(musiclm.generate, "plan_listener", lambda *a: None)
    elif args.check == "pulse-prior":
        switched_off = mock.patch.object(planner, "PULSE_WEIGHT", 0.0)  # plan() reads it at each call
    else:
        switched_off = mock.patch.object(planner, checks[args.check], lambda *a, **k: True)
    measures = ("lm",) if args.lm else ("render", "codec")
    with_side = (
        mock.patch.object(planner, "PULSE_WEIGHT", args.pulse_weight)
        if args.pulse_weight is not None
        else contextlib.nullcontext()
    )
    rows, rng = [], random.Random(4321)
    for i in range(args.draws):
        caption, asked = draw_prompt(rng, i)
        row = {"caption": caption, "bpm": asked["bpm"], "key": f"{asked['key']} {asked['mode']}"}
        for name in ("without", "with"):
            options = GenerationOptions(duration=args.seconds, seed=i, guide=None if args.lm else 0)
            with switched_off if name == "without" else with_side:
                notes = note_condition(model, [caption], options)
            heard = {}
            if args.lm:
                heard["lm"] = model.generate([caption], options, notes=notes.features, guide=notes.guide)[0].mean(0)
            else:
                render = torch.from_numpy(render_notes(notes.scores[0], args.seconds, sr))
                with torch.inference_mode():
                    coded = codec.decode(codec.encode(render[None, None], n_q=model.config.n_q))
                heard["render"], heard["codec"] = render, coded[0, 0, : render.shape[0]]
            row[name] = {"attempts": notes.plans[0].attempts} if notes.plans else {}
            for m, x in heard.items():
                bpm, keys = float(estimate_tempo(x.numpy(), sr)), keys_heard(x.numpy(), sr)
                row[name][m] = {"bpm": round(bpm, 1), "met": tempo_agrees(asked["bpm"], bpm)}
                for how, key in keys.items():  # "chroma": the estimator key_heard asks; "notes": another
                    row[name][m][f"key_{how}"] = " ".join(key)
                    row[name][m][f"key_met_{how}"] = key_met((asked["key"], asked["mode"]), key)
        rows.append(row)
        if (i + 1) % 20 == 0 or i + 1 == args.draws:
            shares = {
                f"{k} {m} {what}": float(np.mean([r[k][m][what] for r in rows]))
                for k in ("without", "with")
                for m in measures
                for what in ("met", "key_met_chroma", "key_met_notes")
            }
            for k in ("without", "with"):
                shares[f"{k} attempts"] = float(np.mean([r[k].get("attempts", 0) for r in rows]))
            print(i + 1, {k: round(v, 3) for k, v in shares.items()}, flush=True)
    report = {"draws": len(rows), "rows": rows}
    for m in measures:
        for what, label in (("met", "tempo"), ("key_met_chroma", "key chroma"), ("key_met_notes", "key notes")):
            without, with_ = [r["without"][m][what] for r in rows], [r["with"][m][what] for r in rows]
            only_without, only_with, p_value = discordant(without, with_)
            report[f"{m} {label}"] = {
                "without": round(float(np.mean(without)), 3),
                "with": round(float(np.mean(with_)), 3),
                "met_without_only": only_without,
                "met_with_only": only_with,
                "mcnemar_p": round(p_value, 4),
            }
            print(f"{m} {label}: {report[f'{m} {label}']}")
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
