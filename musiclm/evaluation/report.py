"""`musiclm eval report`: one static HTML page (no external JS/CSS) with every figure people ask for.

    out/index.html   tables, <img> and <audio> elements with relative paths
    out/img/*.png    spectrograms (reference vs decoded vs Opus), training curves
    out/audio/*.wav  clips, their codec and Opus versions, and generations
    out/audio/*.mid  the plan each generation was played from (a note-conditioned model)
    out/figures.json the numbers in the tables, for scripts

Every section degrades on its own: a missing codec, model, test set, run folder or tool (ffmpeg) turns into a
sentence saying what is missing; an unexpected error in one section is shown in that section and the page
is still written.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import os
import platform
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from musiclm.audio import load_audio, save_audio
from musiclm.errors import MusicLMError
from musiclm.evaluation import plots


@dataclass
class ReportConfig:
    out: Path
    codec: Path | None = None  # codec directory; None → the shipped one if present
    model: Path | None = None  # LM directory; None → the shipped one if present
    runs: Path | None = None  # folder searched for Lightning CSVLogger metrics.csv files
    manifests: tuple[Path, ...] = ()  # manifests whose test split gives reference clips (first found wins)
    lm_manifest: Path | None = None  # real clips the generations are compared with (FD)
    shards: Path | None = None  # token shards for held-out perplexity (else the lm_manifest's test split)
    clips: int = 3  # reference clips for codec figures
    clip_seconds: float = 6.0
    players: int = 2  # clips with spectrograms and audio players
    speed_threads: tuple[int, ...] = (1, 2)
    speed_seconds: float = 10.0
    gen_seconds: float = 6.0
    cfg: float = 3.0
    seeds: int = 3  # seeds per prompt for the diversity figure
    adherence_seeds: int = 1  # draws per adherence probe (n per control grows with it)
    force: bool = False


@dataclass
class Page:
    """Accumulates sections and the figures behind them."""

    out: Path
    sections: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def add(self, title: str, body: str) -> None:
        anchor = title.lower().replace(" ", "-")
        self.sections.append(f'<section id="{anchor}"><h2>{esc(title)}</h2>\n{body}\n</section>')

    def audio(self, name: str, wav: torch.Tensor, sr: int) -> str:
        """Write wav [C, N] as 16-bit WAV under audio/ and return a player."""
        rel = f"audio/{name}.wav"
        save_audio(self.out / rel, wav.clamp(-1, 1), sr, subtype="PCM_16")
        return f'<audio controls preload="none" src="{rel}"></audio>'

    def midi(self, name: str, score) -> str:
        """Write a symusic Score as audio/<name>.mid (beside its WAV) and return its relative path."""
        from musiclm.notes.midi import save_midi

        rel = f"audio/{name}.mid"
        save_midi(score, self.out / rel)
        return rel

    def image(self, rel: str, alt: str) -> str:
        return f'<img src="{rel}" alt="{esc(alt)}">'


def esc(text) -> str:
    return html.escape(str(text))


def fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        # tiny values (learning rates, p-values) keep 3 significant digits instead of rounding to 0
        return f"{x:.3g}" if 0 < abs(x) < 10**-digits else f"{x:.{digits}f}"
    return esc(x)


def table(header: list[str], rows: list[list], digits: int = 2) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)

    def cell(c) -> str:  # text reads left-aligned, numbers right-aligned
        left = isinstance(c, str) and not c.rstrip("%").replace(".", "", 1).lstrip("-").isdigit()
        return f'<td class="t">{fmt(c, digits)}</td>' if left else f"<td>{fmt(c, digits)}</td>"

    body = "".join("<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


# ---- inputs -----------------------------------------------------------------------------------------------
def resolve_model_dir(path: Path | None, name: str) -> Path | None:
    """An explicit directory, else the shipped checkpoints/<name> when it exists, else None."""
    from musiclm.paths import checkpoints_dir

    if path is not None:
        return Path(path)
    shipped = checkpoints_dir() / name
    return shipped if (shipped / "config.json").is_file() else None


def test_clips(manifests: tuple[Path, ...], count: int, seconds: float) -> tuple[list[tuple], str]:
    """Up to `count` clips (id, wav [C, N], sr) from the middle of distinct test-split pieces of the first
    manifest that has any; plus a sentence saying where they came from."""
    from musiclm.data.manifest import read_manifest, resolve_path

    for manifest in manifests:
        if not Path(manifest).is_file():
            continue
        rows = [r for r in read_manifest(manifest) if r["split"] == "test"]
        clips, pieces = [], set()
        for r in _spread(rows):
            if r["piece"] in pieces or len(clips) >= count:
                continue
            start = max(0.0, (float(r["duration"]) - seconds) / 2)
            wav, sr = load_audio(resolve_path(manifest, r), start=start, duration=seconds)
            clips.append((r["id"], wav, sr))
            pieces.add(r["piece"])
        if clips:
            return clips, f"{len(clips)} test-split clips of {seconds:g} s from {manifest}"
    return [], "no test clips: none of these manifests exists or has a test split: " + ", ".join(
        str(m) for m in manifests
    )


def _system_label(row: dict) -> str:
    """Flag a baseline that could not keep to the requested bitrate (libopus bottoms out near 6 kbps)."""
    over = row["kbps_on_disk"] is not None and row["kbps_on_disk"] > 1.25 * row["kbps"]
    return f"{row['system']} (over budget)" if over else row["system"]


def _spread(rows: list[dict]) -> list[dict]:
    """Rows sorted by id, interleaved across collections (the id's first path part), so a few clips
    cover several sources instead of one album."""
    groups: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        groups.setdefault(r["id"].split("/")[0], []).append(r)
    out = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        out += [g[i] for g in groups.values() if i < len(g)]
    return out


# ---- sections ---------------------------------------------------------------------------------------------
def environment_section(page: Page, cfg: ReportConfig) -> None:
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
            ).stdout.strip()
            or "unknown"
        )
    except OSError:
        commit = "unknown"
    info = {
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no CUDA"),
        "command": " ".join(["musiclm"] + sys.argv[1:]) if sys.argv else "",
    }
    page.figures["environment"] = info
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in info.items())
    page.add("Environment", f'<table class="kv"><tbody>{rows}</tbody></table>')


def codec_section(page: Page, cfg: ReportConfig) -> None:
    from musiclm.evaluation import codec_eval

    codec_dir = resolve_model_dir(cfg.codec, "codec")
    if codec_dir is None:
        page.add("Codec", note("No codec: pass --codec DIR (or ship one under checkpoints/codec)."))
        return
    from musiclm.codec import Codec

    codec = Codec.from_pretrained(codec_dir)
    clips, source = test_clips(cfg.manifests, cfg.clips, cfg.clip_seconds)
    body = [
        note(
            f"Codec {codec.config.name} from {codec_dir} ({codec.sample_rate} Hz, "
            f"{codec.frame_rate:g} frames/s, {codec.card} entries per codebook). {source}."
        )
    ]
    if clips:
        result = codec_eval.evaluate(codec, [(w, sr) for _, w, sr in clips], keep_audio=cfg.players)
        page.figures["codec"] = result.rows
        body.append(
            table(
                [
                    "requested kbps",
                    "system",
                    "kbps on disk",
                    "kbps bit-packed",
                    "note F1 ↑",
                    "SI-SNR dB ↑",
                    "chroma agreement ↑",
                    "onset agreement ↑",
                    "log-mel dist ↓",
                    "MS-STFT dist ↓",
                    "loudness diff LU ↓",
                ],
                [
                    [
                        r["kbps"],
                        _system_label(r),
                        r["kbps_on_disk"],
                        r.get("kbps_bit_packed"),
                        r.get("note_f1"),
                        r.get("si_snr"),
                        r.get("chroma"),
                        r.get("onsets"),
                        r.get("log_mel"),
                        r.get("stft"),
                        r.get("loudness"),
                    ]
                    for r in result.rows
                ],
            )
        )
        body.append(
            note(
                "Means over the clips. Note F1: notes transcribed by basic-pitch in the reference and the "
                "decoded clip, matched when onsets are within 50 ms and pitches within 50 cents. SI-SNR: "
                "scale-invariant signal-to-noise ratio. Chroma agreement: share of the reference's non-silent "
                "frames whose strongest pitch class the decoded clip keeps. Onset agreement: correlation of "
                "the onset envelopes (the spectral flux tempo is read from): attacks kept where they were. "
                "log-mel and MS-STFT: L1 distances of log spectra (lower is closer); they see the spectral "
                "envelope only, so a codec that loses every note can still score well on them. ViSQOL is not "
                "computed here (slow: ~1.5 s per clip and system); eval/bench_codec.py has it. Opus: ffmpeg "
                "libopus CBR (-vbr off) at the same requested bitrate; its Ogg file adds ~0.5-0.8 kbps (kbps on "
                "disk), and below ~4 kbps it keeps almost no notes. "
                "kbps on disk: the .mlc as `musiclm compress` writes it (range-coded); bit-packed: with "
                "`--no-entropy`, the nominal rate plus header, level and CRC bytes. " + result.note
            )
        )
        mid = result.mid_bandwidth
        for i, (clip_id, wav, sr) in enumerate(clips[: cfg.players]):
            decoded = result.audio[i]
            panels = [("reference", wav)] + [
                (k, decoded[k]) for k in (f"codec {mid:g} kbps", f"opus {mid:g} kbps") if k in decoded
            ]
            rel = f"img/spectrogram_clip{i}.png"
            plots.spectrograms(page.out / rel, panels, codec.sample_rate, title=clip_id)
            players = [
                f"<figure>{page.audio(f'clip{i}_reference', wav, sr)}<figcaption>reference</figcaption></figure>"
            ]
            for k, w in decoded.items():
                slug = k.replace(" ", "_").replace(".", "p")
                players.append(
                    f"<figure>{page.audio(f'clip{i}_{slug}', w, codec.sample_rate)}"
                    f"<figcaption>{esc(k)}</figcaption></figure>"
                )
            body.append(
                f"<h3>{esc(clip_id)}</h3>{page.image(rel, 'spectrograms of ' + clip_id)}"
                f'<div class="players">{"".join(players)}</div>'
            )
    else:
        body.append(note(source))
    speed_rows = []
    for threads in cfg.speed_threads:
        from musiclm.evaluation.speed import measure_codec_subprocess

        row = measure_codec_subprocess(str(codec_dir), cfg.speed_seconds, threads)
        speed_rows.append(asdict(row))
    if torch.cuda.is_available():
        from musiclm.evaluation.speed import measure_codec

        speed_rows.append(asdict(measure_codec(codec, cfg.speed_seconds, 1, "cuda")))
    page.figures["codec_speed"] = speed_rows
    if not speed_rows:
        body.append("<h3>Speed</h3>" + note("Not measured (no thread counts given)."))
        page.add("Codec", "\n".join(body))
        return
    body.append(
        "<h3>Speed</h3>"
        + table(
            ["device", "threads", "kbps", "audio s", "encode × real time", "decode × real time", "peak memory MB"],
            [
                [
                    r["device"],
                    r["threads"],
                    r["bandwidth"],
                    r["seconds"],
                    r["encode_x_realtime"],
                    r["decode_x_realtime"],
                    r["peak_memory_mb"],
                ]
                for r in speed_rows
            ],
            digits=1,
        )
    )
    body.append(
        note(
            "× real time = audio seconds per wall second (higher is faster), best of 2 runs, codec "
            "at its highest bandwidth. CPU peak memory: peak RSS of a fresh process that imports "
            "torch, loads the codec and codes the audio. Other jobs on the machine slow these down, "
            "more so with more threads."
        )
    )
    page.add("Codec", "\n".join(body))


def training_section(page: Page, cfg: ReportConfig) -> None:
    runs = Path(cfg.runs) if cfg.runs else None
    files = sorted(runs.rglob("metrics.csv")) if runs and runs.is_dir() else []
    if not files:
        where = f"under {runs}" if runs else "(pass --runs DIR)"
        page.add("Training curves", note(f"No Lightning CSVLogger metrics.csv files found {where}."))
        return
    body, summary = [], []
    for i, path in enumerate(files):
        name = str(path.parent.relative_to(runs))
        rel = f"img/curves_{i}.png"
        last = plots.training_curves(path, page.out / rel, title=name)
        if last is None:
            body.append(note(f"{name}: metrics.csv has no numeric columns yet."))
            continue
        summary.append({"run": name, **last})
        finals = sorted(last.items())[:16]
        body.append(
            f"<h3>{esc(name)}</h3>{page.image(rel, 'training curves of ' + name)}"
            + table(["last logged", "value"], [[k, v] for k, v in finals], digits=4)
        )
    page.figures["training"] = summary
    page.add("Training curves", "\n".join(body))


def lm_section(page: Page, cfg: ReportConfig) -> None:
    from musiclm.evaluation import lm_eval

    model_dir = resolve_model_dir(cfg.model, "musiclm")
    if model_dir is None:
        page.add("Text-to-music model", note("No LM: pass --model DIR (or ship one under checkpoints/musiclm)."))
        return
    page.add("Text-to-music model", lm_eval.lm_report(page, cfg, model_dir))


SECTIONS = (
    ("Environment", environment_section),
    ("Codec", codec_section),
    ("Text-to-music model", lm_section),
    ("Training curves", training_section),
)

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0} th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee} .note{color:#555;font-size:.92em}
.error{background:#fee;border:1px solid #e99;padding:.5em;white-space:pre-wrap;font-family:monospace}
.players{display:flex;flex-wrap:wrap;gap:.8em} figure{margin:.3em} figcaption{font-size:.85em;color:#555}
nav a{margin-right:1em} table.kv td,td.t{text-align:left}
"""


def build_report(cfg: ReportConfig) -> Path:
    """Write cfg.out/index.html (and its images, audio and figures.json); returns the page's path."""
    out = Path(cfg.out)
    index = out / "index.html"
    if index.exists() and not cfg.force:
        raise MusicLMError(f"{index} exists; pass --force to overwrite")
    (out / "img").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    page = Page(out)
    for title, section in SECTIONS:
        try:
            section(page, cfg)
        except MusicLMError as e:
            page.add(title, note(f"Skipped: {e}"))
        except Exception as e:  # one broken section must not cost the whole page
            print(f"musiclm: warning: report section {title!r} failed: {e}", file=sys.stderr)
            page.add(title, f'<div class="error">{esc(traceback.format_exc(limit=3))}</div>')
    nav = "".join(f'<a href="#{t.lower().replace(" ", "-")}">{esc(t)}</a>' for t, _ in SECTIONS)
    doc = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>musiclm evaluation</title>'
        f"<style>{STYLE}</style></head><body>\n<h1>musiclm evaluation report</h1><nav>{nav}</nav>\n"
        + "\n".join(page.sections)
        + "\n</body></html>\n"
    )
    (out / "figures.json").write_text(json.dumps(page.figures, indent=2, default=str) + "\n")
    index.write_text(doc, encoding="utf-8")
    return index


def headline(figures: dict) -> list[str]:
    """A few one-line figures from figures.json for a terminal or a README."""
    lines = []
    for r in figures.get("codec", []):
        if r.get("si_snr") is not None:
            lines.append(
                f"{r['system']:>13} @ {r['kbps']:g} kbps (on disk {r['kbps_on_disk']:.2f}): "
                + (f"note F1 {r['note_f1']:.3f}, " if r.get("note_f1") is not None else "")
                + f"SI-SNR {r['si_snr']:.2f} dB, log-mel {r['log_mel']:.3f}"
            )
    for r in figures.get("codec_speed", []):
        lines.append(
            f"codec speed {r['device']} {r['threads']} thread(s): encode {r['encode_x_realtime']:.1f}x, "
            f"decode {r['decode_x_realtime']:.1f}x real time, peak {r['peak_memory_mb'] or 0:.0f} MB"
        )
    lm = figures.get("lm", {})
    for r in lm.get("adherence", []):
        lines.append(
            f"adherence {r['control']} cfg={r['cfg']:g}: {100 * r['rate']:.0f}% met "
            f"(chance {100 * r['chance']:.0f}%, n={r['n']}, p={r['p_value']:.3g})"
        )
    for r in lm.get("frechet", []):
        lines.append(f"FD {r['set']}: {r['fd']:.1f} (n={r['n']})")
    if "perplexity" in lm:
        lines.append("perplexity per codebook: " + ", ".join(f"{p:.1f}" for p in lm["perplexity"]["per_codebook"]))
        for captions in ("none", "other"):
            if f"per_codebook_{captions}_caption" in lm["perplexity"]:
                values = lm["perplexity"][f"per_codebook_{captions}_caption"]
                lines.append(f"  with {captions} caption: " + ", ".join(f"{p:.1f}" for p in values))
    return lines
