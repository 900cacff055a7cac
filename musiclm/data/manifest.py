"""The manifest: a JSONL file, one audio clip per line, shared by the corpus, the catalog and tokenization.

Row schema (all keys present):
    {"id": str, "path": str (relative to the manifest's folder, or absolute), "duration": float seconds,
     "sample_rate": int, "channels": int, "piece": str (the work the clip comes from; splits are by piece),
     "split": "train"|"valid"|"test", "caption": str, "fields": {composer, era, genre, key, mode, bpm,
     tempo_word, meter, instruments, density, dynamics, mood}, "source": "synth"|"catalog"|"recorded"}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from musiclm.audio import atomic_write
from musiclm.errors import MusicLMError

REQUIRED_KEYS = ("id", "path", "duration", "sample_rate", "channels", "piece", "split", "caption", "fields", "source")
SPLITS = ("train", "valid", "test")
FIELD_KEYS = (
    "composer",
    "era",
    "genre",
    "key",
    "mode",
    "bpm",
    "tempo_word",
    "meter",
    "instruments",
    "density",
    "dynamics",
    "mood",
)


def read_manifest(path: str | Path) -> list[dict]:
    """Read a JSONL manifest. A malformed line or a row missing a required key is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise MusicLMError(f"{path}: no such manifest")
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise MusicLMError(f"{path}:{i}: not JSON ({e.msg})") from None
            missing = [k for k in REQUIRED_KEYS if k not in row]
            if missing:
                raise MusicLMError(f"{path}:{i}: missing {', '.join(missing)}")
            if row["split"] not in SPLITS:
                raise MusicLMError(f"{path}:{i}: split {row['split']!r} is not one of {SPLITS}")
            rows.append(row)
    return rows


def write_manifest(path: str | Path, rows: list[dict]) -> None:
    """Write rows atomically (temp file + rename), so a reader never sees a half-written manifest."""
    for row in rows:
        missing = [k for k in REQUIRED_KEYS if k not in row]
        assert not missing, f"manifest row {row.get('id')} misses {missing}"
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")


def resolve_path(manifest_path: str | Path, row: dict) -> Path:
    """The audio file of a row: `path` is relative to the manifest's folder unless absolute."""
    p = Path(row["path"])
    return p if p.is_absolute() else Path(manifest_path).resolve().parent / p


def split_for_piece(piece: str, valid: float = 0.05, test: float = 0.05, salt: str = "musiclm") -> str:
    """Assign a piece to a split by a stable hash of its name, so every clip of a piece lands in one split
    whatever order or subset the pieces are processed in (no leakage across splits)."""
    h = int.from_bytes(hashlib.sha1(f"{salt}:{piece}".encode()).digest()[:8], "big") / 2**64
    if h < test:
        return "test"
    if h < test + valid:
        return "valid"
    return "train"
