"""Token shards: a manifest encoded once by the codec, so the LM trains without touching audio again.

A shard directory holds
    meta.json                 the codec (fingerprint, name, rate, frame rate, n_q, card, bandwidth) and format
    shard-00000.safetensors   codes int16 [K, total_T] (clips end to end) + offsets int64 [clips + 1]
                              (v2) chroma int8 [total_T]: the audio's pitch class per frame, -1 silent
                              (v2) notes uint8 [48, total_T]: 0/1 piano-roll features of the clip's MIDI,
                              when a clip of the shard has one (zeros for the others)
    index.jsonl               one row per clip: {id, shard, offset, frames, caption, fields, split, piece,
                              duration} (v2: + chroma, notes: whether the clip has them)
Version 2 adds the note features (`musiclm.notes.features`) at the codes' frame rate, T equal to the codes'
frames: `piano_roll_features` of the manifest row's "midi" file (relative to the manifest, like "path"),
and `chroma_features` of the same audio the codec encoded. Version 1 directories still read (items without
notes), and a tokenize run resumed in one upgrades it to version 2 (old rows stay without notes).
The index is rewritten (atomically) only after the shard its rows point into is on disk, so an interrupted
run leaves a consistent directory and a rerun encodes only the clips not in the index.
`TokenShards` reads it lazily (memory-mapped safetensors slices) and refuses shards of another codec.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from musiclm.audio import atomic_write, load_audio
from musiclm.data.manifest import read_manifest, resolve_path
from musiclm.errors import MusicLMError
from musiclm.notes.features import NUM_FEATURES, chroma_features, piano_roll_features

FORMAT = "musiclm-token-shards"
VERSION = 2
READABLE_VERSIONS = (1, 2)
CHUNK_SECONDS = 60.0  # encode long files in pieces so memory stays bounded


def _read_index(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def codec_meta(codec, bandwidth: float) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "codec_fingerprint": codec.fingerprint(),
        "codec_name": codec.config.name,
        "sample_rate": codec.sample_rate,
        "channels": codec.channels,
        "frame_rate": codec.frame_rate,
        "hop_length": codec.hop_length,
        "n_q": codec.n_q,
        "card": codec.card,
        "bandwidth": bandwidth,
        "dtype": "int16",
        "note_features": NUM_FEATURES,
    }


def _same_codec(old: dict, new: dict) -> bool:
    """meta.json of an earlier run against this one's, format version and note layout aside (v1 → v2)."""
    skip = ("version", "note_features")
    return {k: v for k, v in old.items() if k not in skip} == {k: v for k, v in new.items() if k not in skip}


def chroma_index(wav: torch.Tensor, sample_rate: int, frame_rate: float, frames: int) -> torch.Tensor:
    """wav [C, N] → the audio's pitch class per frame, int8 [T] (-1: silent), from `chroma_features`."""
    chroma = chroma_features(wav, sample_rate, frame_rate, frames)  # [T, 12] one-hot or zeros
    return torch.where(chroma.sum(-1) > 0, chroma.argmax(-1), -1).to(torch.int8)


def midi_notes(manifest: str | Path, row: dict, frame_rate: float, frames: int) -> torch.Tensor | None:
    """The row's "midi" file (relative to the manifest) → 0/1 piano-roll features uint8 [48, T], or None."""
    if not row.get("midi"):
        return None
    midi = Path(row["midi"])
    midi = midi if midi.is_absolute() else Path(manifest).resolve().parent / midi
    return piano_roll_features(midi, frame_rate, frames).t().to(torch.uint8).contiguous()


@torch.no_grad()
def encode_clip(codec, wav: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """wav [C, N] at the codec's rate → codes [K, T], T = ceil(N / hop); long audio in hop-aligned chunks."""
    chunk = int(CHUNK_SECONDS * codec.sample_rate) // codec.hop_length * codec.hop_length
    parts = []
    for start in range(0, wav.shape[-1], chunk):
        piece = wav[:, start : start + chunk].unsqueeze(0).to(device)  # [1, C, n]
        parts.append(codec.encode(piece, frame_offset=start // codec.hop_length)[0].cpu())  # [K, t]
    return torch.cat(parts, dim=-1)


def tokenize_manifest(
    manifest: str | Path,
    codec_dir: str | Path | None,
    out_dir: str | Path,
    bandwidth: float | None = None,
    shard_frames: int = 1_000_000,
    device: str = "cpu",
    flush_seconds: float = 120.0,
    progress: bool = True,
    max_clips: int | None = None,
) -> dict:
    """Encode every clip of `manifest` into shards under `out_dir`; resume where an earlier run stopped.

    A shard is written when it reaches `shard_frames` frames or `flush_seconds` of work, whichever first.
    `max_clips` stops after that many newly encoded clips (tests use it to simulate an interruption).
    Returns a summary: clips, hours, tokens, skipped (with reasons), seconds.
    """
    from tqdm import tqdm

    from musiclm.codec import Codec

    rows = read_manifest(manifest)
    codec = Codec.from_pretrained(codec_dir).to(device).eval()
    if bandwidth is not None:
        codec.set_bandwidth(bandwidth)
    meta = codec_meta(codec, codec.bandwidth)
    if codec.card > 32767:
        raise MusicLMError(f"codebook size {codec.card} does not fit the int16 shard format")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    old = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if old is not None and (not _same_codec(old, meta) or old.get("version") not in READABLE_VERSIONS):
        raise MusicLMError(
            f"{out} holds shards of another codec, bandwidth or format "
            f"({old.get('codec_name')} {old.get('codec_fingerprint')}, "
            f"{old.get('bandwidth')} kbps, v{old.get('version')}); use another --out"
        )
    if old != meta:  # a new directory, or a version 1 one continued in version 2
        with atomic_write(meta_path) as tmp:
            Path(tmp).write_text(json.dumps(meta, indent=2))

    index_path = out / "index.jsonl"
    index = _read_index(index_path)
    done = {r["id"] for r in index}
    next_shard = 1 + max((int(r["shard"].split("-")[1].split(".")[0]) for r in index), default=-1)
    skipped_path = out / "skipped.jsonl"
    skipped = _read_index(skipped_path)
    skipped_ids = {s["id"] for s in skipped}

    todo = [r for r in rows if r["id"] not in done and r["id"] not in skipped_ids]
    buffer: list[tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []  # row, codes, chroma, notes
    buffered_frames, last_flush, encoded, t0 = 0, time.time(), 0, time.time()
    notes_skipped: list[str] = []

    def flush() -> None:
        nonlocal buffer, buffered_frames, next_shard, last_flush
        if not buffer:
            return
        name = f"shard-{next_shard:05d}.safetensors"
        codes = torch.cat([c for _, c, _, _ in buffer], dim=-1).to(torch.int16)  # [K, total_T]
        lengths = torch.tensor([c.shape[-1] for _, c, _, _ in buffer], dtype=torch.int64)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])  # [clips + 1]
        tensors = {"codes": codes.contiguous(), "offsets": offsets, "chroma": torch.cat([h for _, _, h, _ in buffer])}
        if any(n is not None for *_, n in buffer):
            tensors["notes"] = torch.cat(
                [
                    n if n is not None else torch.zeros((NUM_FEATURES, c.shape[-1]), dtype=torch.uint8)
                    for _, c, _, n in buffer
                ],
                dim=-1,
            )  # [48, total_T]
        with atomic_write(out / name) as tmp:
            save_file(tensors, tmp, metadata={"format": FORMAT, "codec_fingerprint": meta["codec_fingerprint"]})
        for (row, _, _, notes), off, frames in zip(buffer, offsets[:-1].tolist(), lengths.tolist(), strict=True):
            index.append(
                {
                    "id": row["id"],
                    "shard": name,
                    "offset": off,
                    "frames": frames,
                    "caption": row["caption"],
                    "fields": row.get("fields", {}),
                    "split": row["split"],
                    "piece": row["piece"],
                    "duration": row.get("duration"),
                    "chroma": True,
                    "notes": notes is not None,
                }
            )
        _write_jsonl(index_path, index)  # after the shard: the index never points at a missing file
        buffer, buffered_frames, next_shard, last_flush = [], 0, next_shard + 1, time.time()

    bar = tqdm(todo, desc="tokenize", unit="clip", disable=not progress)
    for row in bar:
        if max_clips is not None and encoded >= max_clips:
            break
        try:
            wav, _ = load_audio(
                resolve_path(manifest, row), sample_rate=codec.sample_rate, channels=codec.channels
            )  # [C, N]
            codes = encode_clip(codec, wav, device)  # [K, T]
        except MusicLMError as e:
            skipped.append({"id": row["id"], "reason": str(e)})
            _write_jsonl(skipped_path, skipped)
            continue
        chroma = chroma_index(wav, codec.sample_rate, codec.frame_rate, codes.shape[-1])  # the audio encoded
        try:
            notes = midi_notes(manifest, row, codec.frame_rate, codes.shape[-1])
        except MusicLMError as e:  # a bad MIDI file: the clip still trains, without notes
            notes_skipped.append(f"{row['id']}: {e}")
            notes = None
        buffer.append((row, codes, chroma, notes))
        buffered_frames += codes.shape[-1]
        encoded += 1
        if buffered_frames >= shard_frames or time.time() - last_flush > flush_seconds:
            flush()
    flush()
    bar.close()

    frames = sum(r["frames"] for r in index)
    return {
        "shard_dir": str(out),
        "clips": len(index),
        "clips_with_notes": sum(bool(r.get("notes")) for r in index),
        "notes_skipped": notes_skipped[:20],  # clips whose MIDI did not read: kept without notes
        "encoded_now": encoded,
        "hours": round(frames / meta["frame_rate"] / 3600, 4),
        "tokens": frames * meta["n_q"],
        "n_q": meta["n_q"],
        "frame_rate": meta["frame_rate"],
        "codec": meta["codec_fingerprint"],
        "skipped": len(skipped),
        "skipped_reasons": [f"{s['id']}: {s['reason']}" for s in skipped[:20]],
        "seconds": round(time.time() - t0, 1),
    }


class TokenShards:
    """Clips of a shard directory: `shards[i]` → {codes LongTensor [K, T], caption, fields, id, split,
    piece, notes uint8 [T, 48] (0/1) or None, chroma int8 [T] (pitch class, -1 silent) or None}.
    Shard files open lazily (memory-mapped), once per process, so DataLoader workers can share it.

    `expect_fingerprint` (or `check_codec(codec)`) refuses shards made with another codec.
    """

    def __init__(self, shard_dir: str | Path, split: str | None = None, expect_fingerprint: str | None = None):
        self.dir = Path(shard_dir)
        meta_path = self.dir / "meta.json"
        if not meta_path.is_file():
            raise MusicLMError(f"{shard_dir}: not a token shard directory (no meta.json)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT or self.meta.get("version") not in READABLE_VERSIONS:
            raise MusicLMError(
                f"{shard_dir}: unsupported shard format {self.meta.get('format')} "
                f"v{self.meta.get('version')} (expected {FORMAT} v{'/'.join(map(str, READABLE_VERSIONS))})"
            )
        if expect_fingerprint is not None:
            self._check(expect_fingerprint)
        rows = _read_index(self.dir / "index.jsonl")
        self.rows = [r for r in rows if split is None or r["split"] == split]
        self._handles: dict[str, object] = {}

    @property
    def frame_rate(self) -> float:
        return float(self.meta["frame_rate"])

    @property
    def n_q(self) -> int:
        return int(self.meta["n_q"])

    @property
    def card(self) -> int:
        return int(self.meta["card"])

    @property
    def fingerprint(self) -> str:
        return self.meta["codec_fingerprint"]

    def _check(self, fingerprint: str) -> None:
        if fingerprint != self.fingerprint:
            raise MusicLMError(
                f"{self.dir}: shards were made with codec {self.meta.get('codec_name')} "
                f"({self.fingerprint}), not this one ({fingerprint}); re-run "
                "`musiclm data tokenize` with this codec"
            )

    def check_codec(self, codec) -> None:
        self._check(codec.fingerprint())

    def __len__(self) -> int:
        return len(self.rows)

    def _handle(self, shard: str):
        h = self._handles.get(shard)
        if h is None:
            h = safe_open(str(self.dir / shard), framework="pt")
            self._handles[shard] = h
        return h

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        handle, a, b = self._handle(row["shard"]), row["offset"], row["offset"] + row["frames"]
        codes = handle.get_slice("codes")[:, a:b]
        notes = handle.get_slice("notes")[:, a:b].t().contiguous() if row.get("notes") else None  # [T, 48]
        chroma = handle.get_slice("chroma")[a:b] if row.get("chroma") else None  # [T]
        return {
            "codes": codes.long(),
            "notes": notes,
            "chroma": chroma,
            "caption": row["caption"],
            "fields": row["fields"],
            "id": row["id"],
            "split": row["split"],
            "piece": row["piece"],
        }

    def __getstate__(self) -> dict:  # open handles do not pickle; workers reopen their own
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state
