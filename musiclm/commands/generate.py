"""`musiclm generate`: text prompts → audio files, with the shipped model or `--model DIR`.

Examples:
  musiclm generate "slow melancholic string quartet in D minor" -o out.wav
  musiclm generate "calm piano" "fast folk flute" -o demo/x.wav --duration 8 --seed 1   # demo/x-1.wav, x-2.wav
  musiclm generate --prompts prompts.txt -o out/ --format flac
  musiclm generate "bright brass fanfare" -o - | aplay          # WAV on stdout, messages on stderr
  musiclm generate "the same, brighter" --continue intro.wav --duration 20 -o longer.wav
  musiclm generate "a slow chorale for strings in D minor" -o chorale.wav --midi-out chorale.mid
  musiclm generate "a bright brass quintet" --melody tune.mid -o brass.wav     # arrange a MIDI melody
  musiclm generate "a warm string quartet" --melody hummed.wav -o quartet.wav  # or one played / hummed

With a note-conditioned model (the shipped one), text goes through a plan first: the planner writes the
notes (key, meter, tempo and instruments from the prompt), then the token LM plays them; --midi-out keeps
the plan as a MIDI file any DAW opens. --melody replaces the plan with your notes: a MIDI file's notes, or
the chromagram of an audio file (any rate; MusicGen-melody's condition).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from musiclm.errors import MusicLMError

STDOUT = "-"


def register(subparsers) -> None:
    from musiclm.lm.limits import DECODE_MODES, DEFAULT_DECODE, MAX_DURATION  # no torch while the parser is built

    p = subparsers.add_parser(
        "generate",
        help="text → music",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="text description(s); one file per prompt")
    p.add_argument(
        "-o",
        "--output",
        help="output file (several prompts: NAME-1.wav, NAME-2.wav, ...), '-' for WAV on stdout (one prompt), "
        "or an existing directory / a path ending in '/' (one file per prompt, named after it); "
        "default: named after the prompt in the current directory. The extension names the format "
        "(.wav, .flac, .ogg, .mp3 where libsndfile encodes it)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of audio (with --continue: the total, prompt included), from one codec frame (0.02 s "
        f"with the shipped codec) to {MAX_DURATION:g}; longer than the model's window (10 s) continues "
        "window by window, and audio is decoded and written window by window, so memory does not grow "
        "with the duration (default 10)",
    )
    p.add_argument(
        "--seed",
        type=int,
        help="random seed, 0 to 2**64-1: the same prompt and seed give the same audio, alone or beside other "
        "prompts; a prompt repeated in one call uses seed+1, seed+2, ... for its repeats (default: random, "
        "printed)",
    )
    p.add_argument(
        "--cfg",
        type=float,
        help="classifier-free guidance, >= 0: 1 = off, higher follows the text more closely (default: the model's, 3)",
    )
    p.add_argument(
        "--note-cfg",
        type=float,
        help="guidance on the notes (plan or --melody) given the text, >= 0: higher follows the notes more "
        "closely; a value other than --cfg costs a third pass per step (default: the model's, else --cfg)",
    )
    p.add_argument("--temperature", type=float, help="sampling temperature, >= 0; 0 = greedy (default: the model's, 1)")
    p.add_argument("--top-k", type=int, help="sample among the K likeliest tokens; 0 = off (default: the model's)")
    p.add_argument("--top-p", type=float, help="nucleus sampling mass in [0, 1]; 0 = off (default: the model's)")
    p.add_argument(
        "--decode",
        choices=DECODE_MODES,
        default=None,
        help="how the LM's codes become audio: 'sample' decodes the codes drawn; 'mean' decodes each code the LM "
        "wrote as the mean of the codes it could have drawn, weighted by their probabilities (less noise where "
        "it is unsure); 'auto' is 'mean' when a guide is kept (heard more often in the asked key and tempo), "
        f"else 'sample' (default: {DEFAULT_DECODE})",
    )
    p.add_argument(
        "--model",
        metavar="DIR",
        help="model directory (default: the shipped model); a transformers MusicGen directory also works",
    )
    p.add_argument(
        "--prompts",
        dest="prompts_file",
        metavar="FILE",
        help="read prompts from FILE (UTF-8), one per line ('#' comments and blank lines skipped)",
    )
    p.add_argument("--continue", dest="continue_wav", metavar="WAV", help="continue this audio file")
    p.add_argument(
        "--melody",
        metavar="FILE",
        help="notes to play: a MIDI file (.mid/.midi: its notes, arranged as the prompt says) or audio (any "
        "rate: its melody as a chromagram); a shorter melody leaves the rest to the text, a longer one is cut",
    )
    p.add_argument(
        "--midi-out",
        metavar="MID",
        help="also write the notes the audio was made from (the plan, or the --melody MIDI cut to the "
        "duration) as a MIDI file; several prompts: NAME-1.mid, NAME-2.mid, ...",
    )
    p.add_argument(
        "--guide",
        type=int,
        metavar="N",
        help="keep the first N codebooks of a FluidSynth render of the notes (plan or MIDI melody) and let "
        "the LM write the rest: more N, closer to the notes; 0: the LM writes everything (default: 3 of the "
        "shipped LM's 4 where FluidSynth is installed, else 0)",
    )
    p.add_argument(
        "--no-plan",
        action="store_true",
        help="text only: skip the planner (a note-conditioned model then plays without notes)",
    )
    p.add_argument(
        "--format",
        choices=("wav", "flac", "ogg", "mp3"),
        help="output format when -o has no extension or names a directory (default: from the -o extension, "
        "else wav); it must agree with an -o extension",
    )
    p.add_argument(
        "--loudness",
        metavar="DB",
        help="write each file at this level, dB RMS over 0.4 s blocks (gated at -70), raised at most 24 dB and "
        "never clipped (default -20; 'off': the decoder's own level, about -29 for the shipped models)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="prompts generated together (default 8)")
    p.add_argument(
        "--fp32",
        action="store_true",
        help="sample in full fp32 (default: a bf16 KV cache and attention where the CPU or GPU computes bf16 "
        "natively, which is faster and gives slightly different tokens)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda if present")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=run)


def loudness_level(text: str | None, default: float) -> float | None:
    """--loudness: None → `default`; "off" → None (the decoder's own level); else dB in (-70, 0]."""
    if text is None:
        return default
    if text.lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        raise MusicLMError(f"--loudness: expected a level in dB (such as -20) or 'off', got {text!r}") from None
    if not -70.0 < value <= 0.0:
        raise MusicLMError(f"--loudness: a level between -70 and 0 dB, got {value:g}")
    return value


def read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = [p.strip() for p in args.prompts if p.strip()]
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise MusicLMError(f"prompts file not found: {path}")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise MusicLMError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
        except OSError as e:
            raise MusicLMError(f"cannot read {path}: {e.strerror or e}") from None
        prompts += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise MusicLMError("no prompt given: pass a text prompt or --prompts FILE")
    return prompts


def slug(text: str, limit: int = 48) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "_".join(words)[:limit].strip("_") or "music"


def output_paths(prompts: list[str], output: str | None, fmt: str | None, formats: tuple[str, ...]) -> tuple[list, str]:
    """Where each prompt's audio goes ("-": stdout), and the format to write: the -o extension names it, and
    a --format that disagrees is refused (a file's bytes always match its name)."""
    if fmt is not None and fmt not in formats:
        raise MusicLMError(f"--format {fmt}: this libsndfile cannot write it; choose one of {', '.join(formats)}")
    if output == STDOUT:
        if len(prompts) != 1:
            raise MusicLMError(f"-o - writes one prompt's audio to stdout; got {len(prompts)} prompts")
        if fmt not in (None, "wav"):
            raise MusicLMError(f"-o - writes WAV; --format {fmt} needs a file")
        return [STDOUT], "wav"
    as_dir = output is not None and (output.endswith(("/", "\\")) or Path(output).is_dir())
    if output is not None and not as_dir and Path(output).exists() and not Path(output).is_file():
        raise MusicLMError(f"{output} exists and is not a regular file; use -o - to write to stdout")
    if output is None or as_dir:
        fmt = fmt or "wav"
        folder = Path(output) if output else Path(".")
        names = [slug(p) for p in prompts]
        paths = [folder / (f"{n}.{fmt}" if names.count(n) == 1 else f"{n}-{i + 1}.{fmt}") for i, n in enumerate(names)]
        return paths, fmt
    path = Path(output)
    suffix = path.suffix.lstrip(".").lower()
    if not suffix:
        fmt = fmt or "wav"
        path = path.with_name(f"{path.name}.{fmt}")
    elif suffix not in formats:
        known = ", ".join("." + f for f in formats)
        raise MusicLMError(f"-o {output}: unknown extension .{suffix}; use one of {known}")
    elif fmt is not None and fmt != suffix:
        raise MusicLMError(f"--format {fmt} disagrees with -o {output}; name it {path.with_suffix('.' + fmt)}")
    else:
        fmt = suffix
    if len(prompts) == 1:
        return [path], fmt
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(len(prompts))], fmt


def midi_paths(midi_out: str | None, count: int) -> list[Path]:
    """Where --midi-out writes each prompt's notes: the path itself for one prompt, else NAME-i.mid."""
    if midi_out is None:
        return []
    path = Path(midi_out)
    if path.suffix.lower() not in (".mid", ".midi"):
        raise MusicLMError(f"--midi-out {midi_out}: name it .mid or .midi")
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(count)]


def note_condition(args: argparse.Namespace, model, prompts: list[str], options, count: int):
    """`musiclm.generate.note_condition` for the CLI's flags; refuses an existing --midi-out before slow work."""
    from musiclm.data.captions import key_name
    from musiclm.generate import note_condition as condition

    for path in midi_paths(args.midi_out, count):
        if path.exists() and not args.force:
            raise MusicLMError(f"{path} exists; pass --force to overwrite")
    notes = condition(model, prompts, options, melody=args.melody, plan=not args.no_plan, want_midi=bool(args.midi_out))
    for prompt, plan in zip(prompts, notes.plans or [], strict=False):  # no plans: nothing to say
        c = plan.controls
        print(
            f"plan: {key_name(c.key, c.mode)} {c.mode}, {c.meter} at {c.bpm:g} BPM, "
            f"{len(plan.midi.tracks)} instrument(s) for {prompt!r}",
            file=sys.stderr,
        )
    return notes


def run(args: argparse.Namespace) -> int:
    import torch

    from musiclm.audio import load_audio
    from musiclm.generate import DEFAULT_LOUDNESS_DB, check_destination, generate_files, load_model, output_formats
    from musiclm.lm.generation import GenerationOptions, output_length
    from musiclm.notes.midi import save_midi

    prompts = read_prompts(args)
    seed = args.seed if args.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
    options = GenerationOptions(
        duration=args.duration,
        seed=seed,
        cfg=args.cfg,
        note_cfg=args.note_cfg,
        guide=args.guide,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        **({"decode": args.decode} if args.decode else {}),
        fp32=args.fp32,
        progress=True,
    )
    options.check()
    loudness = loudness_level(args.loudness, DEFAULT_LOUDNESS_DB)
    if args.batch_size < 1:
        raise MusicLMError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths, fmt = output_paths(prompts, args.output, args.format, output_formats())
    for path in paths:  # refuse before any slow work
        check_destination(path, args.force)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise MusicLMError("--device cuda: no CUDA device available")
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.model is not None and not Path(args.model).exists():
        raise MusicLMError(f"model directory not found: {args.model}")
    model = load_model(args.model, device=device)
    codec = model.codec
    output_length(codec, options.duration)  # at least one codec frame
    notes = note_condition(args, model, prompts, options, len(paths))
    prompt_wav = None
    if args.continue_wav:
        wav, _ = load_audio(args.continue_wav, sample_rate=codec.sample_rate, channels=codec.channels)
        prompt_wav = wav[None]  # [1, C, N]
    if args.seed is None:
        print(f"seed {seed}", file=sys.stderr)

    log = sys.stderr if paths == [STDOUT] else sys.stdout  # stdout carries the audio alone
    start = time.perf_counter()
    written = generate_files(
        model,
        prompts,
        paths,
        options,
        fmt,
        prompt_wav,
        args.batch_size,
        args.force,
        notes.features,
        notes.guide,
        loudness_db=loudness,
    )
    for w in written:
        where = "stdout" if w.destination == STDOUT else w.destination
        print(f"wrote {where} ({w.seconds:.2f} s, {codec.sample_rate} Hz): {w.text!r}", file=log)
    for path, score in zip(midi_paths(args.midi_out, len(prompts)), notes.scores or [], strict=False):
        save_midi(score, path)
        print(f"wrote {path} (the notes played)", file=log)
    elapsed = time.perf_counter() - start
    total = args.duration * len(prompts)
    print(f"generated {total:.1f} s of audio in {elapsed:.1f} s ({total / elapsed:.2f}x real time)", file=sys.stderr)
    return 0
