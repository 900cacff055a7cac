"""Peak memory of `musiclm generate` against the duration: does a 600 s generation fit in what 60 s takes?

Each row is a fresh child process running the command as a user would (`musiclm generate ... -o out.wav`);
its peak resident set comes from `os.wait4` (the child's own ru_maxrss, not the largest child so far).
Long audio is generated window by window and decoded and written window by window (musiclm.lm.generation),
so the peak should not grow with the duration. `--one-shot` adds the old path for comparison: the same
codes decoded by one `codec.decode` call over the whole duration.

    .venv/bin/python eval/bench_generate_memory.py --tiny [--durations 60 600] [--one-shot]

`--tiny`: a random one-layer LM (fast to sample: the point is decode memory) on the shipped codec, whose
decoder is the real one. Without it the shipped LM samples too, which takes minutes per 600 s on a CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE_SHOT = """
import sys, torch
from musiclm.generate import load_model
from musiclm.lm.generation import GenerationOptions, generate_tokens, output_length
model = load_model(sys.argv[1], device="cpu")
options = GenerationOptions(duration=float(sys.argv[2]), seed=0)
codes = generate_tokens(model, ["calm piano"], options)
wav = model.codec.decode(codes, length=output_length(model.codec, options.duration)[1])  # the old final decode
print(wav.shape)
"""


def tiny_model(directory: Path) -> Path:
    """A random 1-layer LM with the shipped tokenizer, pointing at the shipped codec (absolute path)."""
    import torch

    from musiclm.codec import Codec
    from musiclm.lm import LMConfig, MusicLM
    from musiclm.paths import default_codec_dir, default_lm_dir
    from musiclm.text import TextConfig, TextTokenizer

    tokenizer = TextTokenizer(default_lm_dir() / "tokenizer.model")
    codec = Codec.from_pretrained(default_codec_dir())
    text = TextConfig(vocab_size=tokenizer.vocab_size, dim=16, n_layers=1, n_heads=2, ffn_dim=32)
    config = LMConfig(
        n_q=4,
        card=codec.card,
        dim=32,
        n_layers=1,
        n_heads=2,
        ffn_dim=64,
        max_frames=500,
        frame_rate=codec.frame_rate,
        sample_rate=codec.sample_rate,
        text=text,
    )
    torch.manual_seed(0)
    return MusicLM(config, tokenizer=tokenizer).save_pretrained(directory, codec_path=str(default_codec_dir()))


def measure(command: list[str]) -> tuple[float, float]:
    """Run `command`; → (peak RSS in MB, seconds)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{stderr.decode(errors='replace')[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a random 1-layer LM on the shipped codec")
    parser.add_argument("--model", metavar="DIR", help="model directory (default: the shipped model)")
    parser.add_argument("--durations", type=float, nargs="+", default=[60.0, 600.0])
    parser.add_argument("--one-shot", action="store_true", help="also the old one-call decode, for comparison")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the children inherit it
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        model = str(tiny_model(Path(tmp) / "tiny")) if args.tiny else args.model
        model_args = ["--model", model] if model else []
        print(f"model: {model or 'shipped'}; peak RSS of a fresh `musiclm generate` process per row")
        print(f"{'duration (s)':>12}  {'path':<22} {'peak RSS (MB)':>13}  {'wall (s)':>8}")
        rows = {}
        for duration in args.durations:
            out = Path(tmp) / f"out-{duration:g}.wav"
            cli = [sys.executable, "-m", "musiclm.cli", "generate", "calm piano", "--duration", f"{duration:g}"]
            rss, seconds = measure([*cli, "--seed", "0", "-o", str(out), "--device", "cpu", *model_args])
            rows[duration] = rss
            print(f"{duration:>12g}  {'windowed (generate)':<22} {rss:>13.0f}  {seconds:>8.1f}")
            if args.one_shot:
                rss, seconds = measure([sys.executable, "-c", ONE_SHOT, model or str(_shipped()), f"{duration:g}"])
                print(f"{duration:>12g}  {'one-shot decode (old)':<22} {rss:>13.0f}  {seconds:>8.1f}")
        if len(rows) > 1:
            short, long = min(rows), max(rows)
            print(f"windowed: {long:g} s peaks at {rows[long] / rows[short]:.2f}x the RSS of {short:g} s")


def _shipped() -> Path:
    from musiclm.paths import default_lm_dir

    return default_lm_dir()


if __name__ == "__main__":
    main()
