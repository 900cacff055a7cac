"""Codec speed: how many times faster than real time encode and decode run, per thread count, and the
peak memory they need.

Speed is reported as "x real time" = audio seconds / wall seconds (higher is faster; 1.0 keeps up).
Peak memory on CPU is the peak resident set size of a fresh child process that imports torch, loads
the codec and codes the clip (`resource.getrusage`), so it is what a user's process would need; on CUDA
it is `torch.cuda.max_memory_allocated` during coding (weights and activations, not the CUDA context).

    python -m musiclm.evaluation.speed --codec DIR --threads 1 --seconds 10   # one JSON line
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch

from musiclm.errors import MusicLMError


@dataclass
class SpeedRow:
    device: str
    threads: int
    bandwidth: float  # kbps
    seconds: float  # audio length coded
    encode_x_realtime: float
    decode_x_realtime: float
    peak_memory_mb: float | None  # see the module docstring for what this measures


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def measure_codec(
    codec,
    seconds: float = 10.0,
    threads: int = 1,
    device: str = "cpu",
    bandwidth: float | None = None,
    repeats: int = 2,
) -> SpeedRow:
    """Time encode and decode of `seconds` of audio in this process (best of `repeats`, after a warm-up)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise MusicLMError("CUDA requested but not available")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        codec = codec.to(device).eval()
        if bandwidth is not None:
            codec.set_bandwidth(bandwidth)
        gen = torch.Generator().manual_seed(0)
        n = int(seconds * codec.sample_rate)
        wav = (0.1 * torch.randn(1, codec.channels, n, generator=gen)).to(device)  # [B, C, N]
        codes = codec.encode(wav[..., : codec.hop_length * 4])  # warm-up (allocator, kernels)
        codec.decode(codes)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t_enc = _best_time(lambda: codec.encode(wav), repeats)
        codes = codec.encode(wav)
        t_dec = _best_time(lambda: codec.decode(codes, length=n), repeats)
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
        return SpeedRow(device, threads, codec.bandwidth, seconds, seconds / t_enc, seconds / t_dec, peak)
    finally:
        torch.set_num_threads(previous)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_codec_subprocess(
    codec_dir: str,
    seconds: float = 10.0,
    threads: int = 1,
    device: str = "cpu",
    bandwidth: float | None = None,
    timeout: float = 600,
) -> SpeedRow:
    """`measure_codec` in a fresh Python process, so peak memory is that of coding alone (plus imports)."""
    cmd = [
        sys.executable,
        "-m",
        "musiclm.evaluation.speed",
        "--codec",
        str(codec_dir),
        "--seconds",
        str(seconds),
        "--threads",
        str(threads),
        "--device",
        device,
    ]
    if bandwidth is not None:
        cmd += ["--bandwidth", str(bandwidth)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise MusicLMError(f"speed measurement failed: {proc.stderr.strip().splitlines()[-1:]}")
    return SpeedRow(**json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    from musiclm.codec import Codec

    p = argparse.ArgumentParser(description="time one codec; prints a JSON SpeedRow")
    p.add_argument("--codec", required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bandwidth", type=float, default=None)
    args = p.parse_args(argv)
    row = measure_codec(Codec.from_pretrained(args.codec), args.seconds, args.threads, args.device, args.bandwidth)
    if row.peak_memory_mb is None:
        row.peak_memory_mb = peak_rss_mb()
    print(json.dumps(asdict(row)))


if __name__ == "__main__":
    main()
