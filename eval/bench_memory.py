"""Peak memory of `cat X.wav | musiclm compress - x.mlc` for a short and a long input: stdin is streamed,
so a 10-minute WAV should cost about what a 1-minute one does (the issue's target: within 1.5x).

    .venv/bin/python eval/bench_memory.py [--seconds 60 600] [--channels 2] [--codec DIR]

Peak RSS is the child's own (os.wait4's rusage, ru_maxrss), the WAV is written block by block so the
benchmark itself holds little, and `cat` feeds a real pipe (no seeking, no file name).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100


def write_wav(path: Path, seconds: float, channels: int) -> None:
    """Music-like audio, one minute at a time."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", SR, channels, subtype="PCM_16") as f:
        done = 0
        while done < seconds * SR:
            n = int(min(60 * SR, seconds * SR - done))
            t = (done + np.arange(n)) / SR
            x = 0.2 * np.sin(2 * np.pi * 220 * t + 3 * np.sin(2 * np.pi * 0.3 * t))
            f.write(
                np.stack([x * (1 - 0.3 * c) for c in range(channels)], 1) + 0.01 * rng.standard_normal((n, channels))
            )
            done += n


def peak_rss(wav: Path, out: Path, codec: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of `cat wav | musiclm compress - out`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    start = time.perf_counter()
    cat = subprocess.Popen(["cat", str(wav)], stdout=subprocess.PIPE)
    cmd = [sys.executable, "-m", "musiclm.cli", "compress", "-", str(out), "-q", "-f", *codec]
    child = subprocess.Popen(cmd, stdin=cat.stdout, env=env)
    cat.stdout.close()
    _, status, usage = os.wait4(child.pid, 0)
    cat.wait()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"compress failed with status {os.waitstatus_to_exitcode(status)}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[60, 600])
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped codec)")
    args = p.parse_args()
    codec = ["--codec", args.codec] if args.codec else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            wav = Path(tmp) / f"{seconds:g}s.wav"
            write_wav(wav, seconds, args.channels)
            mb, wall = peak_rss(wav, Path(tmp) / "x.mlc", codec)
            rows.append((seconds, wav.stat().st_size / 1e6, mb, wall))
            wav.unlink()
    print(f"cat X.wav | musiclm compress - x.mlc   ({SR} Hz, {args.channels} channels, 16-bit)")
    print("| audio | WAV size | peak RSS | vs first | wall |")
    print("|---|---|---|---|---|")
    for seconds, size, mb, wall in rows:
        print(f"| {seconds:g} s | {size:.0f} MB | {mb:.0f} MB | {mb / rows[0][2]:.2f}x | {wall:.1f} s |")


if __name__ == "__main__":
    main()
