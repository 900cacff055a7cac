"""Two eval_melody reports compared draw by draw on the same plans: which draws each one meets, and whether the
difference is more than chance (exact McNemar test on the discordant draws).

    python eval/compare_draws.py outputs/eval_melody_a.json outputs/eval_melody_b.json [--section plan_ceiling]

At 40 draws a rate moves by 2.5 points per draw, and two codecs scored on the same plans agree on most of
them: only the draws where they disagree carry evidence (McNemar 1947). With 3 discordant draws against 0 the
two-sided p is 0.25, so such a difference is noise; it takes 6 against 0 (p = 0.03) to say more.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scipy.stats import binomtest

MEASURES = ("key_met", "key_met_notes", "tempo_met")


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: under no difference each discordant draw is a fair coin."""
    n = only_a + only_b
    return 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)


def discordant(a: list[bool], b: list[bool]) -> tuple[int, int, float]:
    """(draws met by a only, by b only, McNemar's p) for two judgements of the same draws."""
    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    return only_a, only_b, mcnemar_p(only_a, only_b)


def write_report(path: Path | str, report: dict) -> None:
    """An eval script's JSON report, its folder made if need be, and one line saying where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")


def draw_results(report: dict, section: str, path: str) -> tuple[list[str], list[dict]]:
    """(captions, per-draw results) of one section: plan_ceiling rows keep "render" and "codec" results,
    controls rows their own."""
    rows = report.get(section, {}).get("rows")
    if not rows:
        raise SystemExit(f"no per-draw rows in section {section!r} (reports before 2026-11-30 lack them)")
    return [row["caption"] for row in rows], [row[path] if section == "plan_ceiling" else row for row in rows]


def compare(a: tuple[list[str], list[dict]], b: tuple[list[str], list[dict]]) -> dict[str, dict]:
    """Per measure: each report's rate, the draws only one of them meets, and McNemar's p."""
    (captions_a, a), (captions_b, b) = a, b
    if captions_a != captions_b:
        raise SystemExit("the two reports scored different draws (captions differ)")
    out = {}
    for measure in MEASURES:
        only_a, only_b, p = discordant([x[measure] for x in a], [y[measure] for y in b])
        out[measure] = {
            "a": sum(x[measure] for x in a) / len(a),
            "b": sum(y[measure] for y in b) / len(b),
            "only_a": only_a,
            "only_b": only_b,
            "p": p,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--section", default="plan_ceiling", choices=["plan_ceiling", "controls"])
    parser.add_argument("--path", default="codec", choices=["codec", "render"], help="plan_ceiling only")
    args = parser.parse_args(argv)
    results = [draw_results(json.loads(Path(p).read_text()), args.section, args.path) for p in (args.a, args.b)]
    for measure, r in compare(*results).items():
        print(
            f"{measure:14s} a {r['a']:.1%}  b {r['b']:.1%}  met by a only {r['only_a']:2d}, by b only "
            f"{r['only_b']:2d}  McNemar p = {r['p']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
