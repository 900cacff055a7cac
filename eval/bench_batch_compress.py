"""Start-up cost of `musiclm compress`: N one-second files in one call vs N separate calls.

Each call pays the torch import and the codec load (seconds, hundreds of MB) before the first sample;
`musiclm compress *.wav --out-dir DIR` pays it once for the whole library. Both ways write the same files.

    .venv/bin/python eval/bench_batch_compress.py [--files 100] [--seconds 1] [--codec DIR]

Prints both wall times and their ratio. Run it on an idle machine: a loaded one stretches every start-up.
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

CLI = [sys.executable, "-m", "musiclm.cli"]


def music(seconds: float, sr: int, seed: int) -> np.ndarray:
    """[N, 2]: a few partials with vibrato and a little noise, different for each file."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
    x = sum(0.1 * np.sin(2 * np.pi * f0 * k * t + 2 * np.sin(2 * np.pi * 0.5 * t)) for k in (1, 2, 3))
    return np.stack([x, 0.7 * x], 1) + 0.01 * rng.standard_normal((len(t), 2))


def timed(commands: list[list[str]]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    start = time.perf_counter()
    for cmd in commands:
        subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped codec)")
    args = p.parse_args()
    codec = ["--codec", args.codec] if args.codec else []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wavs = []
        for i in range(args.files):
            wavs.append(folder / f"clip{i:03d}.wav")
            sf.write(wavs[-1], music(args.seconds, 44100, i), 44100)
        one = timed([CLI + ["compress", *map(str, wavs), "--out-dir", str(folder / "one"), "-q", *codec]])
        each = timed([CLI + ["compress", str(w), str(folder / "each" / (w.stem + ".mlc")), "-q", *codec] for w in wavs])
        same = all(
            (folder / "one" / f"{w.stem}.mlc").read_bytes() == (folder / "each" / f"{w.stem}.mlc").read_bytes()
            for w in wavs
        )
    print(f"{args.files} files of {args.seconds:g} s (44.1 kHz stereo), {os.cpu_count()} CPUs")
    print(f"  one call (--out-dir):  {one:7.1f} s  ({one / args.files:.2f} s per file)")
    print(f"  separate calls:        {each:7.1f} s  ({each / args.files:.2f} s per file)")
    print(f"  one call is {each / one:.1f}x faster; outputs identical: {same}")


if __name__ == "__main__":
    main()
