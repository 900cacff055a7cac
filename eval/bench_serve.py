"""Time 10 s of generation through the studio page against the API that `musiclm generate` runs.

    .venv/bin/python eval/bench_serve.py [--seconds 10] [--repeats 3] [--no-http]

Three ways, one loaded model, the same prompt and seed, taking turns; best of --repeats after a warm-up:
  api    musiclm.generate.generate_files → a WAV (what the CLI runs once its model is loaded)
  studio musiclm.web.studio.Studio.generate → WAV + spectrogram PNG (what the page's button calls)
  page   the page's Generate event over HTTP (gradio_client; `musiclm serve` in its own process): queue,
         progress events, the files fetched
Issue 14 asks the page to stay within 1.5x of the CLI; this prints the figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "calm piano in C major, slow"


def best_interleaved(ways: dict, repeats: int) -> dict[str, float]:
    """Best wall time of each way; the ways take turns, so a busy spell on a shared machine hits all of them."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, fn in ways.items():
            time.sleep(2)  # let the last way's after-work (the server's file copies, the OS) settle
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def start_server() -> tuple[subprocess.Popen, str]:
    """`musiclm serve` in its own process, as a user runs it (its threads do not share this one's GIL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "musiclm.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("musiclm studio: "):
            return proc, line.split()[2]
    raise SystemExit(f"musiclm serve exited with status {proc.wait()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-http", action="store_true", help="skip the page over HTTP")
    args = parser.parse_args()

    from musiclm.generate import generate_files
    from musiclm.lm.generation import GenerationOptions
    from musiclm.web.studio import Studio

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    studio = Studio(work_dir=tmp / "studio")
    studio.load()
    model = studio.model
    options = GenerationOptions(duration=args.seconds, seed=1)
    studio.generate(PROMPT, duration=1.0, seed=1)  # warm-up: first-call costs out of the figures

    def api() -> None:
        list(generate_files(model, [PROMPT], [tmp / "api.wav"], options, force=True))

    ways = {"api (CLI path)": api, "studio job": lambda: studio.generate(PROMPT, args.seconds, 1)}
    server = None
    if not args.no_http:
        from gradio_client import Client

        server, url = start_server()
        client = Client(url, verbose=False, download_files=str(tmp / "downloads"))
        inputs = dict(prompt=PROMPT, duration=args.seconds, seed="1", cfg=3.0, temperature=1.0, melody=None)
        client.predict(**{**inputs, "duration": 1.0}, api_name="/on_generate")  # its warm-up
        ways["page over HTTP"] = lambda: client.predict(**inputs, api_name="/on_generate")
    try:
        results = best_interleaved(ways, args.repeats)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    base = results["api (CLI path)"]
    print(f"{args.seconds:g} s of audio, best of {args.repeats}, model loaded once:")
    for name, seconds in results.items():
        ratio, speed = seconds / base, args.seconds / seconds
        print(f"  {name:16s} {seconds:6.2f} s  ({ratio:.2f}x the API; {speed:.1f}x real time)")


if __name__ == "__main__":
    main()
