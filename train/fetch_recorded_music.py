"""Assemble the project's set of real recorded music from freely licensed Debian packages.

    python train/fetch_recorded_music.py --out data/recorded

Downloads the packages with `apt-get download` (no installation), unpacks them, pulls the tracks out (some
ship inside .pk3 zip archives), converts each track to 24 kHz mono FLAC with ffmpeg, and writes
`manifest.jsonl` (rows: id, path, duration, sample_rate, channels, piece, split, caption, fields, source).
Splits are by track and deterministic (a hash of the track name), so no track leaks across splits; the
test tracks are the held-out set for every codec figure. Package list and licences: shared/NOTES.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

PACKAGES = {  # package -> licence as its debian/copyright file states it
    "drascula-music": "Drascula-License (free redistribution)",
    "planetblupi-music-ogg": "GPL-3+ / Expat",
    "singularity-music": "CC-BY-SA",
    "nexuiz-music": "GPL-2+",
    "ufoai-music": "CC-BY-3.0 / CC-BY-SA-3.0 / GPL-2",
    "asc-music": "GPL-2+",
}
AUDIO = (".ogg", ".mp3", ".flac", ".wav")
MIN_SECONDS = 20.0  # jingles and sound effects are not music to evaluate on


def split_of(track_id: str, test_percent: int = 15, valid_percent: int = 5) -> str:
    bucket = int(hashlib.sha256(track_id.encode()).hexdigest(), 16) % 100
    if bucket < test_percent:
        return "test"
    return "valid" if bucket < test_percent + valid_percent else "train"


def collect_tracks(package_dir: Path, extract_dir: Path) -> list[Path]:
    # Some packages ship the same tracks again under symlinked folders (one per game language): skip those.
    tracks = [
        p
        for p in package_dir.rglob("*")
        if p.suffix.lower() in AUDIO and p.is_file() and not any(q.is_symlink() for q in (p, *p.parents))
    ]
    for archive in package_dir.rglob("*.pk3"):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if name.lower().endswith(AUDIO):
                    tracks.append(Path(zf.extract(name, extract_dir / archive.stem)))
    return sorted(tracks)


def convert(src: Path, dst: Path, sample_rate: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".part.flac")
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(src),
            "-ac",
            "1",
            "-ar",
            str(sample_rate),
            "-sample_fmt",
            "s16",
            str(tmp),
        ],
        check=True,
    )
    tmp.replace(dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/recorded"))
    parser.add_argument("--sample-rate", type=int, default=24000)
    parser.add_argument("--debs", type=Path, help="folder that already holds the .deb files")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        debs = args.debs or tmp / "debs"
        debs.mkdir(exist_ok=True)
        missing = [p for p in PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
        if missing:
            subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
        jobs = []
        for package in PACKAGES:
            (deb,) = debs.glob(f"{package}_*.deb")
            unpacked = tmp / package
            subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
            for track in collect_tracks(unpacked, tmp / "pk3" / package):
                track_id = f"{package}/{track.stem}"
                jobs.append((package, track_id, track, out / package / f"{track.stem}.flac"))
        todo = [j for j in jobs if not j[3].exists()]
        with ThreadPoolExecutor(2) as pool:
            list(
                tqdm(
                    pool.map(lambda j: convert(j[2], j[3], args.sample_rate), todo),
                    total=len(todo),
                    desc="converting",
                    unit="track",
                )
            )
    rows = []
    for package, track_id, _, dst in jobs:
        info = sf.info(str(dst))
        if info.duration < MIN_SECONDS:
            continue
        rows.append(
            {
                "id": track_id,
                "path": str(dst.relative_to(out)),
                "duration": round(info.duration, 3),
                "sample_rate": info.samplerate,
                "channels": info.channels,
                "piece": track_id,
                "split": split_of(track_id),
                "caption": "",
                "fields": {"licence": PACKAGES[package]},
                "source": "recorded",
            }
        )
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    hours = {s: sum(r["duration"] for r in rows if r["split"] == s) / 3600 for s in ("train", "valid", "test")}
    print(f"{len(rows)} tracks; hours: " + ", ".join(f"{k} {v:.2f}" for k, v in hours.items()))
    print("test tracks:", ", ".join(r["id"] for r in rows if r["split"] == "test"))
    shutil.copy(__file__, out / "fetch_recorded_music.py")


if __name__ == "__main__":
    main()
