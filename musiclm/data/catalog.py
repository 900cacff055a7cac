"""The user's own catalog: a folder of audio files → a manifest with captions (`musiclm data index DIR`).

Where a caption comes from, first match wins:
  1. a sidecar beside the file: `song.txt` (the caption) or `song.json` ({"caption": ..., fields...});
  2. a `captions.csv` (columns file + caption, other columns are fields) or `metadata.jsonl` (rows with
     file_name/file/path + caption/text) in the file's folder or any folder above it;
  3. embedded tags read with mutagen (title, artist, album, genre, BPM, key, mood);
  4. nothing given: the analysis of musiclm.data.analysis (tempo, key/mode, loudness, brightness).
Analysis always fills the structured fields a caption or tags leave out (key, mode, bpm, ...), so every
row can be checked for control adherence the same way as the synthesized corpus.

Files that cannot be decoded, are silent or are too short are skipped and listed in a report with the
reason; one bad file never stops the run. Rows (and skips) are keyed by path + size + mtime, so a rerun
after an interruption only reads files it has not seen.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
import zlib
from pathlib import Path

from musiclm.audio import AUDIO_EXTENSIONS, atomic_write, load_audio
from musiclm.data.analysis import analyze
from musiclm.data.captions import key_name, make_caption, mood_words, tempo_word
from musiclm.data.manifest import split_for_piece, write_manifest
from musiclm.errors import MusicLMError

ANALYSIS_SECONDS = 60.0  # analyse at most this much from the middle of a long track
SAVE_EVERY_SECONDS = 10.0  # how often the manifest is rewritten during a run (what an interruption keeps)
_KEY_TAG = re.compile(r"^\s*([A-Ga-g])\s*(#|b|♯|♭|sharp|flat)?\s*(m|min|minor|maj|major)?\s*$", re.I)


def parse_key_tag(text: str) -> tuple[str, str] | None:
    """ "Am", "F#m", "Db major", "e minor" → (tonic, mode); None for anything else (e.g. Camelot codes)."""
    m = _KEY_TAG.match(text or "")
    if not m:
        return None
    from musiclm.data.captions import NOTE_NAMES

    acc = (m.group(2) or "").lower()
    shift = -1 if acc in ("b", "♭", "flat") else 1 if acc in ("#", "♯", "sharp") else 0
    mode = "minor" if (m.group(3) or "").lower() in ("m", "min", "minor") else "major"
    return key_name((NOTE_NAMES.index(m.group(1).upper()) + shift) % 12, mode), mode


def read_tags(path: Path) -> dict:
    """Embedded tags as plain strings: title, artist, album, genre, bpm, key, mood, composer."""
    import mutagen

    try:
        f = mutagen.File(str(path), easy=True)
    except Exception:
        return {}
    if f is None or not f.tags:
        return {}
    out = {}
    for name in ("title", "artist", "album", "genre", "bpm", "mood", "composer", "key", "initialkey"):
        try:
            value = f.tags.get(name)
        except Exception:  # easy tag wrappers raise for keys they do not map
            value = None
        if value:
            out["key" if name == "initialkey" else name] = str(value[0] if isinstance(value, list) else value)
    if path.suffix.lower() == ".mp3" and "key" not in out:  # ID3 TKEY has no EasyID3 name
        try:
            from mutagen.id3 import ID3

            tkey = ID3(str(path)).get("TKEY")
            if tkey and tkey.text:
                out["key"] = str(tkey.text[0])
        except Exception:
            pass
    return out


def _folder_tables(root: Path) -> dict[Path, dict[str, dict]]:
    """captions.csv / metadata.jsonl of every folder: {folder: {relative path or name: {caption, ...}}}."""
    tables: dict[Path, dict[str, dict]] = {}
    for table in sorted(list(root.rglob("captions.csv")) + list(root.rglob("metadata.jsonl"))):
        entries = tables.setdefault(table.parent, {})
        try:
            if table.suffix == ".csv":
                with open(table, newline="", encoding="utf-8") as f:
                    records = list(csv.DictReader(f))
            else:
                records = [json.loads(line) for line in table.read_text(encoding="utf-8").splitlines() if line.strip()]
        except Exception as e:
            raise MusicLMError(f"{table}: unreadable ({e})") from None
        for rec in records:
            name = next((rec[k] for k in ("file_name", "file", "filename", "path", "audio") if rec.get(k)), None)
            text = next((rec[k] for k in ("caption", "text", "description") if rec.get(k)), None)
            if name is None:
                raise MusicLMError(f"{table}: a row has no file/file_name column: {rec}")
            fields = {
                k: v
                for k, v in rec.items()
                if k not in ("file_name", "file", "filename", "path", "audio", "caption", "text", "description")
                and v not in (None, "")
            }
            entries[str(name)] = {"caption": text, "fields": fields, "via": table.name}
    return tables


def _given(path: Path, root: Path, tables: dict) -> tuple[str | None, dict, str | None]:
    """(caption, fields, where from) from sidecars or folder tables; (None, {}, None) if nothing."""
    txt, js = path.with_suffix(".txt"), path.with_suffix(".json")
    if js.is_file():
        try:
            meta = json.loads(js.read_text(encoding="utf-8"))
        except Exception as e:
            raise ValueError(f"sidecar {js.name} is not JSON ({e})") from None
        caption = meta.pop("caption", None) or meta.pop("text", None)
        if caption is None and txt.is_file():
            caption = txt.read_text(encoding="utf-8").strip()
        return caption, meta, "sidecar"
    if txt.is_file():
        return txt.read_text(encoding="utf-8").strip() or None, {}, "sidecar"
    folder = path.parent
    while True:  # the nearest table that names the file (by path relative to the table, or by file name)
        entries = tables.get(folder)
        if entries:
            rel = path.relative_to(folder).as_posix()
            hit = entries.get(rel) or entries.get(path.name)
            if hit:
                return hit["caption"], dict(hit["fields"]), hit["via"]
        if folder == root or folder.parent == folder:
            return None, {}, None
        folder = folder.parent


def _fields(given: dict, tags: dict, measured: dict, seed: int) -> dict:
    """Structured fields: what the user gave, then tags, then measurements."""
    import random

    f: dict = {}
    for k, v in given.items():
        f[k] = v
    if tags.get("genre") and "genre" not in f:
        f["genre"] = tags["genre"].lower()
    if tags.get("artist") and "composer" not in f:
        f["composer"] = tags.get("composer") or tags["artist"]
    for k in ("title", "artist", "album"):
        if tags.get(k):
            f.setdefault(k, tags[k])
    if tags.get("mood") and "mood" not in f:
        f["mood"] = [m.strip().lower() for m in re.split(r"[,;/]", tags["mood"]) if m.strip()]
    if "bpm" in f:
        try:
            f["bpm"] = float(f["bpm"])
        except (TypeError, ValueError):
            f.pop("bpm")
    if "bpm" not in f and tags.get("bpm"):
        try:
            f["bpm"] = float(tags["bpm"])
        except ValueError:
            pass
    if "key" not in f and tags.get("key"):
        parsed = parse_key_tag(tags["key"])
        if parsed:
            f["key"], f["mode"] = parsed
    elif isinstance(f.get("key"), str) and "mode" not in f:
        parsed = parse_key_tag(f["key"])
        if parsed:
            f["key"], f["mode"] = parsed
    if "bpm" not in f and measured.get("bpm"):
        f["bpm"] = measured["bpm"]
    if "key" not in f and measured.get("key"):
        f["key"], f["mode"] = measured["key"], measured["mode"]
    if f.get("bpm"):
        f.setdefault("tempo_word", tempo_word(float(f["bpm"])))
    for k in ("density", "dynamics", "brightness"):
        if measured.get(k):
            f.setdefault(k, measured[k])
    if "mood" not in f and f.get("mode") and f.get("tempo_word") and f.get("dynamics"):
        f["mood"] = mood_words(f["mode"], f["tempo_word"], f["dynamics"], random.Random(seed))
    f.setdefault("instruments", [])
    f.setdefault("genre", "music")
    return f


def index_file(path: Path, root: Path, tables: dict, min_duration: float = 2.0) -> dict:
    """One manifest row for `path`; raises ValueError/MusicLMError with the reason to skip it."""
    from musiclm.audio import audio_info

    info = audio_info(path)
    duration = info.frames / info.samplerate if info.samplerate else 0.0
    if duration < min_duration:
        raise ValueError(f"too short ({duration:.2f} s < {min_duration:g} s)")
    start = max(0.0, duration / 2 - ANALYSIS_SECONDS / 2)
    wav, sr = load_audio(path, start=start, duration=min(duration, ANALYSIS_SECONDS))  # [C, N]
    measured = analyze(wav, sr)
    if measured["silent"]:
        raise ValueError(f"silent (level {measured['loudness_db']} dBFS)")
    caption, given, via = _given(path, root, tables)
    tags = read_tags(path)
    piece = path.relative_to(root).with_suffix("").as_posix()
    seed = zlib.crc32(piece.encode())
    fields = _fields(given, tags, measured, seed)
    if caption is None:
        via = "tags" if tags else "analysis"
        caption = make_caption(fields, seed)
        if tags.get("title"):
            caption = f"{tags['title']}: {caption}"
    return {
        "id": piece,
        "duration": round(duration, 4),
        "sample_rate": int(info.samplerate),
        "channels": int(info.channels),
        "piece": piece,
        "caption": caption,
        "fields": fields,
        "source": "catalog",
        "caption_source": via,
        "analysis": {
            k: measured[k]
            for k in ("bpm", "key", "mode", "key_confidence", "loudness_db", "brightness_hz")
            if k in measured
        },
    }


def _same_file(old: dict, new: dict) -> bool:
    return old.get("size") == new["size"] and old.get("mtime") == new["mtime"] and "sha1" in old


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def index_catalog(
    directory: str | Path,
    out_manifest: str | Path,
    min_duration: float = 2.0,
    force: bool = False,
    progress: bool = True,
    valid: float = 0.05,
    test: float = 0.05,
) -> dict:
    """Index every audio file under `directory` into `out_manifest`; return the report (also written to
    `<manifest>.report.json`): counts, minutes, caption sources and the skipped files with reasons."""
    from tqdm import tqdm

    root = Path(directory).resolve()
    if not root.is_dir():
        raise MusicLMError(f"{directory}: not a folder")
    out = Path(out_manifest)
    if out.is_dir():
        raise MusicLMError(f"{out} is a folder; name the manifest file to write, e.g. {out / 'catalog.jsonl'}")
    report_path = out.with_name(out.name + ".report.json")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise MusicLMError(f"{directory}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    tables = _folder_tables(root)

    # Resume: rows and skips from an earlier run, reused when the file has not changed since.
    previous: dict[str, dict] = {}
    old_skips: dict[str, dict] = {}
    if not force:
        previous = {row.get("stat", {}).get("file", ""): row for row in _earlier(out, lines=True)}
        old_skips = {s["stat"]["file"]: s for s in _earlier(report_path, lines=False) if "stat" in s}

    rows, skipped, reused, t0 = [], [], 0, time.time()
    last_write = time.time()
    # The same recording twice (a copy per language folder, a re-download) is one piece: it must not land
    # in train and test at once. The first path (sorted order) names the piece.
    piece_of: dict[str, str] = {}
    for path in tqdm(files, desc="index", unit="file", disable=not progress):
        st = path.stat()
        stat = {"file": str(path), "size": st.st_size, "mtime": round(st.st_mtime, 3)}
        old = previous.get(str(path))
        if old is not None and old.get("stat", {}).get("file") == stat["file"] and _same_file(old["stat"], stat):
            piece_of.setdefault(old["stat"]["sha1"], old["piece"])
            rows.append(old)
            reused += 1
            continue
        if str(path) in old_skips and old_skips[str(path)]["stat"] == stat:
            skipped.append(old_skips[str(path)])
            continue
        try:
            row = index_file(path, root, tables, min_duration)
        except (MusicLMError, ValueError, OSError, RuntimeError) as e:
            reason = str(e).split(": ", 1)[-1] if str(e).startswith(str(path)) else str(e)
            skipped.append({"path": str(path), "reason": reason, "stat": stat})
            continue
        stat["sha1"] = _sha1(path)
        row["piece"] = piece_of.setdefault(stat["sha1"], row["piece"])
        row["path"] = os.path.relpath(path, out.resolve().parent)
        row["split"] = split_for_piece(row["piece"], valid, test)
        row["stat"] = stat
        rows.append(row)
        if time.time() - last_write >= SAVE_EVERY_SECONDS:  # an interrupted run keeps what it has done
            write_manifest(out, rows)
            last_write = time.time()
    write_manifest(out, rows)
    sources: dict[str, int] = {}
    for r in rows:
        sources[r.get("caption_source", "?")] = sources.get(r.get("caption_source", "?"), 0) + 1
    report = {
        "manifest": str(out),
        "files": len(files),
        "indexed": len(rows),
        "reused": reused,
        "skipped_count": len(skipped),
        "minutes": round(sum(r["duration"] for r in rows) / 60, 2),
        "caption_sources": sources,
        "seconds": round(time.time() - t0, 1),
        "skipped": skipped,
    }
    with atomic_write(report_path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2))
    return report


def _earlier(path: Path, lines: bool) -> list[dict]:
    """What an earlier run left at `path` (the manifest's rows, lines=True; else the report's skips), or []
    when there is nothing; a file that is neither is refused rather than overwritten."""
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
        if lines:
            found = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            found = json.loads(text).get("skipped", [])
        if all(isinstance(x, dict) for x in found):
            return found
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, IsADirectoryError):
        pass
    raise MusicLMError(f"{path} exists and is not an index this command wrote; name another --out or pass --force")
