"""eval/compare_draws.py: two eval_melody reports compared draw by draw (exact McNemar on discordant draws)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "eval" / "compare_draws.py"


def report(path: Path, tempo: list[bool], captions: list[str] | None = None) -> Path:
    """A plan_ceiling section as eval_melody writes it: key always met, tempo met where asked."""
    rows = []
    for i, met in enumerate(tempo):
        result = {"heard": {}, "key_met": True, "key_met_notes": True, "tempo_met": met}
        rows.append({"caption": (captions or [f"piece {j}" for j in range(len(tempo))])[i], "codec": result})
    path.write_text(json.dumps({"plan_ceiling": {"draws": len(rows), "rows": rows}}))
    return path


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_discordant_draws_decide_and_agreement_carries_no_evidence(tmp_path):
    # 20 draws; a meets tempo on the first 12, b on the first 6: 6 discordant draws, all for a
    a = report(tmp_path / "a.json", [i < 12 for i in range(20)])
    b = report(tmp_path / "b.json", [i < 6 for i in range(20)])
    lines = {line.split()[0]: line for line in run(a, b).stdout.splitlines()}
    assert "a 60.0%  b 30.0%" in lines["tempo_met"]
    assert "by a only  6, by b only  0  McNemar p = 0.03" in lines["tempo_met"]
    assert "McNemar p = 1.00" in lines["key_met"]  # the same on every draw
    # three for a against none: what a 40-draw table calls 7.5 points is a coin's luck (p = 0.25)
    c = report(tmp_path / "c.json", [i < 9 for i in range(20)])
    assert "McNemar p = 0.25" in run(c, b).stdout.splitlines()[2]


def test_reports_of_different_draws_or_without_rows_are_refused(tmp_path):
    a = report(tmp_path / "a.json", [True, False])
    other = report(tmp_path / "o.json", [True, False], captions=["x", "y"])
    refused = run(a, other)
    assert refused.returncode != 0 and "different draws" in refused.stderr
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"plan_ceiling": {"draws": 2, "codec_tempo_met": 0.5}}))
    refused = run(a, old)
    assert refused.returncode != 0 and "no per-draw rows" in refused.stderr
