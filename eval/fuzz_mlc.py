"""Long-running fuzzer for the .mlc reader (the suite runs a few thousand cases; this runs millions).

    .venv/bin/python eval/fuzz_mlc.py --minutes 480            # overnight
    .venv/bin/python eval/fuzz_mlc.py --cases 100000 --seed 7  # a fixed budget
    .venv/bin/python eval/fuzz_mlc.py --minutes 5 --decode     # also run a tiny neural decoder on survivors
    .venv/bin/python eval/fuzz_mlc.py --minutes 5 --recover    # decode as `decompress --recover` does

Each case is a valid .mlc file (random header fields, bit-packed or range-coded chunks, band gains) mutated by
`tests/test_bitstream.py:mutate` (flips, truncation, insertion, deletion, forged fields with re-sealed CRCs,
garbage payloads with valid CRCs). Every case must either parse or raise MusicLMError, within --max-seconds,
allocating under --max-mb (checked with tracemalloc on one case in --trace-every). When decoding, both grow
with the audio the header declares (a forged length is self-consistent in version 4, and a file cut short is
decoded to its declared length with silence): 1/20 of its duration, and three times its float32 size. A
failure writes the offending file to outputs/fuzz_failures/ and is reported at the end; exit status 1 if any.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import traceback
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_bitstream import mutate  # noqa: E402

from musiclm.codec import bitstream  # noqa: E402
from musiclm.codec.bitstream import Header  # noqa: E402
from musiclm.codec.entropy import prior_counts, prior_hash  # noqa: E402
from musiclm.errors import MusicLMError  # noqa: E402


def random_file(rng: np.random.Generator) -> tuple[bytes, np.ndarray | None]:
    """A valid .mlc with random, plausible header fields and skewed codes → (bytes, entropy prior or None)."""
    sr = int(rng.choice([16000, 24000, 32000, 48000]))
    hop = int(rng.choice([160, 320, 512, 640]))
    orig_sr = int(rng.choice([8000, 22050, 44100, 48000, sr]))
    orig_n = int(rng.integers(1, 5 * orig_sr))
    card = int(rng.choice([2, 17, 256, 1000, 1024, 4096]))
    header = Header(
        codec_name="fuzz" * int(rng.integers(1, 4)),
        fingerprint=rng.bytes(8).hex(),
        sample_rate=sr,
        hop_length=hop,
        channels=int(rng.integers(1, 3)),
        orig_sample_rate=orig_sr,
        orig_channels=int(rng.integers(1, 7)),
        num_samples=bitstream.resampled_length(orig_n, orig_sr, sr),
        orig_num_samples=orig_n,
        n_q=int(rng.integers(1, 9)),
        card=card,
        bandwidth=float(rng.uniform(0.5, 24)),
        chunk_frames=int(rng.integers(1, 200)),
        entropy=bool(rng.integers(0, 2)),
        level_frames=int(rng.integers(0, 40)),  # 0: no level bytes
        version=int(rng.choice([3, bitstream.VERSION])),  # the last two writers' layouts
    )
    p = rng.dirichlet(np.full(card, 0.3))
    codes = rng.choice(card, size=(header.n_q, header.num_frames), p=p)
    flat = rng.random(header.n_q) < 0.5  # rows a version-4 writer codes flat
    codes[flat] = rng.integers(0, card, size=(int(flat.sum()), header.num_frames))
    prior = None
    if header.entropy and rng.integers(0, 2):  # half the range-coded files start from a learned prior
        prior = prior_counts(rng.dirichlet(np.full(card, 0.3), size=header.n_q))
        header = Header(**{**header.__dict__, "prior": prior_hash(prior)})
    out = io.BytesIO()
    if header.version >= 5 and header.entropy and rng.integers(0, 2):  # half of them with band gains
        from test_bitstream import with_band_gains

        header = Header(**{**header.__dict__, "level_frames": 0, "gain_frames": int(rng.integers(1, 9))})
        if prior is None:
            return with_band_gains(header, codes, int(rng.integers(0, 1 << 30))), prior
    bitstream.write_mlc(out, header, codes, prior)
    return out.getvalue(), prior


def declared_output(data: bytes) -> tuple[float, float]:
    """(seconds, MB as float32) of the audio a file's header declares; zeros where the header does not parse."""
    try:
        header = bitstream.read_header(io.BytesIO(data))
    except MusicLMError:
        return 0.0, 0.0
    return header.duration, header.orig_num_samples * header.orig_channels * 4 / 1e6


def tiny_decoder():
    import torch

    from musiclm.codec.model import Codec, CodecConfig
    from musiclm.codec.seanet import SEANetConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return Codec(
        CodecConfig(
            name="fuzz", seanet=SEANetConfig(n_filters=4, dimension=16), n_q=8, card=64, bandwidths=(0.9, 1.8, 3.6)
        )
    ).eval()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--cases", type=int, default=0, help="stop after this many cases (0: use --minutes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=10.0, help="per case; generous for loaded machines")
    p.add_argument("--max-mb", type=float, default=64.0)
    p.add_argument("--trace-every", type=int, default=50)
    p.add_argument("--decode", action="store_true", help="decode mutated files of a tiny codec end to end")
    p.add_argument(
        "--recover",
        action="store_true",
        help="as --decode, recovering: damaged chunks silent, the next one searched for",
    )
    p.add_argument("--failures", type=Path, default=ROOT / "outputs/fuzz_failures")
    args = p.parse_args()

    rng = np.random.default_rng(args.seed)
    codec = tiny_decoder() if args.decode or args.recover else None
    on_damage = (lambda damage: None) if args.recover else None
    if codec is not None:
        from musiclm.compress import compress_bytes, decompress_bytes

        t = np.arange(24000 * 2) / 24000
        wav = np.sin(2 * np.pi * 440 * t)[None].astype(np.float32)
        import torch

        seeds = [
            compress_bytes(torch.from_numpy(wav), codec, sample_rate=24000, chunk_seconds=0.4, entropy=bool(e))
            for e in (0, 1)
        ]
    deadline = time.monotonic() + args.minutes * 60
    stats = {"cases": 0, "parsed": 0, "refused": 0, "failed": 0}
    base, prior = random_file(rng)
    while (stats["cases"] < args.cases) if args.cases else (time.monotonic() < deadline):
        i = stats["cases"]
        if i % 100 == 0:
            base, prior = random_file(rng) if codec is None else (seeds[(i // 100) % 2], None)
        data = mutate(base, rng)
        traced = i % args.trace_every == 0
        if traced:
            tracemalloc.start()
        t = time.perf_counter()
        problem = None
        try:
            if codec is None:
                bitstream.read_mlc(io.BytesIO(data), prior)
            else:
                decompress_bytes(data, codec, on_damage=on_damage)
            stats["parsed"] += 1
        except MusicLMError:
            stats["refused"] += 1
        except Exception:
            problem = traceback.format_exc(limit=3).strip().splitlines()[-1]
        elapsed = time.perf_counter() - t
        # decoding writes what the header declares (a file cut short is filled with silence to its length), so
        # the limits grow with that: 20x real time, and the decoded audio held whole by decompress_bytes
        seconds, megabytes = declared_output(data) if codec is not None else (0.0, 0.0)
        if elapsed > args.max_seconds + seconds / 20:
            problem = f"took {elapsed:.1f} s for {seconds:.0f} s of declared audio"
        if traced:
            peak = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
            if peak > args.max_mb + 3 * megabytes:
                problem = f"allocated {peak:.0f} MB"
        if problem:
            stats["failed"] += 1
            args.failures.mkdir(parents=True, exist_ok=True)
            path = args.failures / f"case_{args.seed}_{i}.mlc"
            path.write_bytes(data)
            print(f"FAIL case {i}: {problem} → {path}", file=sys.stderr)
        stats["cases"] += 1
        if stats["cases"] % 10000 == 0:
            print(stats, file=sys.stderr)
    print(stats)
    return 1 if stats["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
