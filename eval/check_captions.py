"""Do rendered clips sound like their captions say? Measure tempo and key from the audio and compare.

    .venv/bin/python eval/check_captions.py data/synth/manifest.jsonl [--split valid] [--limit N]

Tempo: Acc1 = within 4% of the caption's BPM; Acc2 also accepts the octave errors (x2, x1/2, x3, x1/3) that
every beat tracker makes (the MIREX tempo metrics). Key: exact tonic+mode; MIREX weighted score (1 exact,
0.5 fifth, 0.3 relative, 0.2 parallel). The caption's key is computed from the score under the clip, the
estimate from the audio alone (musiclm.data.analysis), so agreement checks both the labels and the analyser.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from musiclm.audio import load_audio
from musiclm.data.analysis import estimate_key, estimate_tempo
from musiclm.data.captions import MINOR_NAMES, NOTE_NAMES
from musiclm.data.manifest import read_manifest, resolve_path


def pitch_class(name: str) -> int:
    return NOTE_NAMES.index(name) if name in NOTE_NAMES else MINOR_NAMES.index(name)


def key_score(ref: tuple[str, str], est: tuple[str, str]) -> tuple[float, str]:
    """MIREX key weighting: (score, relation)."""
    r, e = pitch_class(ref[0]), pitch_class(est[0])
    if ref[1] == est[1] and r == e:
        return 1.0, "exact"
    if ref[1] == est[1] and (e - r) % 12 in (5, 7):
        return 0.5, "fifth"
    if ref[1] == "major" and est[1] == "minor" and (e - r) % 12 == 9:
        return 0.3, "relative"
    if ref[1] == "minor" and est[1] == "major" and (e - r) % 12 == 3:
        return 0.3, "relative"
    if r == e:
        return 0.2, "parallel"
    return 0.0, "other"


def tempo_match(ref: float, est: float, tol: float = 0.04) -> tuple[bool, bool]:
    acc1 = abs(est - ref) <= tol * ref
    acc2 = any(abs(est - ref * f) <= tol * ref * f for f in (1.0, 2.0, 0.5, 3.0, 1 / 3))
    return acc1, acc2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest")
    p.add_argument("--split", default="valid", help="train, valid, test or all (default: valid)")
    p.add_argument("--limit", type=int, default=None, help="check at most N clips")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    rows = [r for r in read_manifest(args.manifest) if args.split == "all" or r["split"] == args.split]
    rows = rows[: args.limit] if args.limit else rows
    if not rows:
        print(f"no clips in split {args.split!r}", file=sys.stderr)
        return 1
    acc1, acc2, key_exact, key_mirex, relations, per_clip = [], [], [], [], {}, []
    for row in tqdm(rows, desc="check", unit="clip"):
        wav, sr = load_audio(resolve_path(args.manifest, row), channels=1)
        f = row["fields"]
        bpm = estimate_tempo(wav, sr)
        tonic, mode, conf = estimate_key(wav, sr)
        a1, a2 = tempo_match(float(f["bpm"]), bpm)
        score, rel = key_score((f["key"], f["mode"]), (tonic, mode))
        acc1.append(a1)
        acc2.append(a2)
        key_exact.append(rel == "exact")
        key_mirex.append(score)
        relations[rel] = relations.get(rel, 0) + 1
        per_clip.append(
            {
                "id": row["id"],
                "bpm": f["bpm"],
                "est_bpm": round(bpm, 1),
                "key": f"{f['key']} {f['mode']}",
                "est_key": f"{tonic} {mode}",
                "relation": rel,
            }
        )
    n = len(rows)
    summary = {
        "manifest": args.manifest,
        "split": args.split,
        "clips": n,
        "tempo_acc1": round(float(np.mean(acc1)), 3),
        "tempo_acc2": round(float(np.mean(acc2)), 3),
        "key_exact": round(float(np.mean(key_exact)), 3),
        "key_mirex": round(float(np.mean(key_mirex)), 3),
        "key_relations": relations,
        "caption_states_key": round(
            float(np.mean([("major" in r["caption"] or "minor" in r["caption"]) for r in rows])), 3
        ),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "clips": per_clip}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
