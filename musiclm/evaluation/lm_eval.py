"""The report's text-to-music section: sample generations, control adherence with and without guidance,
a Fréchet distance to real clips, diversity across seeds, and per-codebook perplexity.

Every generation goes the way `musiclm generate` goes (`musiclm.generate.note_condition`): a note-conditioned
model plays each prompt's plan (text → planner → notes → LM), a text-only one the text alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from musiclm.errors import MusicLMError
from musiclm.evaluation import plots
from musiclm.evaluation.adherence import Estimators, estimator_ceiling, evaluate_adherence
from musiclm.evaluation.embedding import CodecEmbedding, embed_clips, feature_embedding
from musiclm.evaluation.fad import diversity, frechet_distance

if TYPE_CHECKING:
    from musiclm.generate import Notes
    from musiclm.lm import MusicLM

DEMO_PROMPTS = (
    "calm piano in C major, slow",
    "a slow, melancholic string ensemble in D minor",
    "a fast, bright folk tune on flute in G major",
)
DIVERSITY_PROMPT = "a moderate piece in G major played by piano, 100 BPM"


@dataclass
class Generator:
    """generate_fn(texts, cfg, seed) -> (wav [B, C, N], sample rate), through the same text → plan → notes
    path as `musiclm generate`; `last` keeps the notes of the latest call (their plans, when planned)."""

    model: MusicLM
    seconds: float
    sample_rate: int
    last: Notes | None = None

    @property
    def planned(self) -> bool:
        """True when the model plays notes, so each prompt is first planned (text → notes)."""
        return self.model.config.note_features > 0

    @torch.no_grad()
    def __call__(self, texts: list[str], cfg: float, seed: int):
        from musiclm.generate import note_condition
        from musiclm.lm import GenerationOptions

        options = GenerationOptions(duration=self.seconds, seed=seed, cfg=cfg)
        self.last = note_condition(self.model, list(texts), options)  # a text-only model: no notes
        wav = self.model.generate(list(texts), options, notes=self.last.features, guide=self.last.guide)  # [B, C, N]
        return wav.float().cpu(), self.sample_rate


def load_generate_fn(model_dir: Path, seconds: float):
    """→ (Generator (texts, cfg, seed) -> (wav [B, C, N], sr), description, model) for a MusicLM directory."""
    try:
        from musiclm.lm import MusicLM
    except ImportError as e:
        raise MusicLMError(f"the LM package is not available ({e})") from None
    model = MusicLM.from_pretrained(model_dir).eval()
    sr = int(model.codec.sample_rate) if model.codec is not None else int(model.config.sample_rate)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    generator = Generator(model, seconds, sr)
    notes = "note-conditioned" if generator.planned else "text only"
    return generator, f"{model_dir} ({params:.2f} M LM parameters, {sr} Hz, {notes})", model


def real_clips(manifest: Path | None, split: str, count: int, seconds: float, with_fields: bool = False) -> list[tuple]:
    """Up to `count` clips (wav [C, N], sr[, fields]) of `seconds` from distinct pieces of one split."""
    from musiclm.audio import load_audio
    from musiclm.data.manifest import read_manifest, resolve_path

    if manifest is None or not Path(manifest).is_file():
        return []
    rows = sorted((r for r in read_manifest(manifest) if r["split"] == split), key=lambda r: r["id"])
    out, pieces = [], set()
    for r in rows:
        if len(out) >= count:
            break
        if r["piece"] in pieces or float(r["duration"]) < seconds / 2:
            continue
        start = max(0.0, (float(r["duration"]) - seconds) / 2)
        wav, sr = load_audio(resolve_path(manifest, r), start=start, duration=seconds)
        out.append((wav, sr, r.get("fields") or {}) if with_fields else (wav, sr))
        pieces.add(r["piece"])
    return out


def lm_report(page, cfg, model_dir: Path) -> str:
    from musiclm.evaluation.report import esc, note, table

    generate_fn, description, model = load_generate_fn(model_dir, cfg.gen_seconds)
    body = [note(f"Model {description}; {cfg.gen_seconds:g} s per generation, guidance cfg={cfg.cfg:g}.")]
    figures: dict = {}

    # Sample generations, one seed; a note-conditioned model's plans are kept beside the audio as MIDI.
    wav, sr = generate_fn(list(DEMO_PROMPTS), cfg.cfg, 0)
    plans = generate_fn.last.scores or []  # a plan per prompt from a note-conditioned model, else none
    figures["generation"] = {
        "notes": "plan" if generate_fn.planned else "none",
        "midi": [f"audio/generation_{i}.mid" for i in range(len(plans))],
    }
    players = []
    for i, text in enumerate(DEMO_PROMPTS):
        caption = esc(text)
        if i < len(plans):
            caption += f' · <a href="{page.midi(f"generation_{i}", plans[i])}">plan (MIDI)</a>'
        player = page.audio(f"generation_{i}", wav[i], sr)
        players.append(f"<figure>{player}<figcaption>{caption}</figcaption></figure>")
    if generate_fn.planned:
        played = (
            "Played from a plan, as musiclm generate does: each prompt is first planned as notes (the planner, "
            "the prompt's own seed) and the LM plays those notes with the text; every generation below "
            "(adherence, Fréchet distance, diversity) goes the same way. The plans are linked as MIDI."
        )
    else:
        played = "Played from the text alone: this model takes no notes (note_features 0)."
    plots.spectrograms(page.out / "img/generations.png", [(t, wav[i]) for i, t in enumerate(DEMO_PROMPTS)], sr)
    body.append(
        "<h3>Generations</h3>"
        + page.image("img/generations.png", "spectrograms of generations")
        + f'<div class="players">{"".join(players)}</div>'
        + note(played)
    )

    # Control adherence, guided vs unguided; keep the audio for the Fréchet distance.
    generated: dict[float, list] = {}

    def recording_fn(texts, c, seed):
        w, rate = generate_fn(texts, c, seed)
        generated.setdefault(c, []).extend((w[b], rate) for b in range(w.shape[0]))
        return w, rate

    try:
        estimators = Estimators.default()
    except MusicLMError as e:
        estimators = None
        body.append("<h3>Control adherence</h3>" + note(f"Skipped: {e}"))
    if estimators is not None:
        results = evaluate_adherence(recording_fn, cfg=cfg.cfg, estimators=estimators, seeds=cfg.adherence_seeds)
        rows = []
        for c, scores in results.items():
            for s in scores:
                detail = ", ".join(f"{k} {v:.0f}" if abs(v) >= 10 else f"{k} {v:.2f}" for k, v in s.detail.items())
                rows.append(
                    [s.control, f"{c:g}", s.n, f"{100 * s.rate:.0f}%", f"{100 * s.chance:.0f}%", s.p_value, detail]
                )
        figures["adherence"] = [
            {
                "cfg": c,
                "control": s.control,
                "n": s.n,
                "rate": s.rate,
                "chance": s.chance,
                "p_value": s.p_value,
                **s.detail,
            }
            for c, scores in results.items()
            for s in scores
        ]
        body.append(
            "<h3>Control adherence</h3>"
            + table(["control", "cfg", "judgements", "met", "chance", "p (vs chance)", "measured"], rows, digits=3)
        )
        body.append(
            note(
                "Prompt pairs differ in one control and are generated in one batch with one seed. "
                "tempo: the fast prompt's estimated BPM is higher; mode: estimated mode equals the "
                "requested one; brightness: the brighter instrument's spectral centroid (Hz) is "
                "higher. cfg=1 is guidance off. p: one-sided binomial test against chance."
            )
        )
        labelled = real_clips(cfg.lm_manifest, "test", 24, cfg.gen_seconds, with_fields=True)
        ceiling = estimator_ceiling([(w.mean(0).numpy(), r, f) for w, r, f in labelled], estimators)
        if ceiling:
            figures["estimator_ceiling"] = [{"control": s.control, "n": s.n, "rate": s.rate} for s in ceiling]
            body.append(
                table(
                    ["control", "judgements", "estimator agrees with labels", "chance"],
                    [[s.control, s.n, f"{100 * s.rate:.0f}%", "50%"] for s in ceiling],
                )
            )
            body.append(
                note(
                    "The same estimators on labelled real test clips of the same length: the "
                    "ceiling the rates above can reach."
                )
            )

    # Fréchet distance and diversity over hand-made features (see musiclm.evaluation.embedding).
    body.append("<h3>Fréchet distance and diversity</h3>")
    n_gen = max((len(v) for v in generated.values()), default=0)
    real = real_clips(cfg.lm_manifest, "test", max(n_gen, 8), cfg.gen_seconds)
    if not generated:
        body.append(note("No generated set to compare (adherence was skipped)."))
    elif len(real) < 2:
        body.append(note(f"No real test clips to compare with (manifest: {cfg.lm_manifest})."))
    else:
        embedders = [("hand-made features", feature_embedding)]
        if getattr(model, "codec", None) is not None:
            embedders.append(("codec latents", CodecEmbedding(model.codec)))
        sets = []
        reference = real_clips(cfg.lm_manifest, "valid", len(real), cfg.gen_seconds)
        if len(reference) >= 2:
            sets.append(("real clips (valid split): the floor", reference))
        sets += [(f"generated, cfg={c:g}", clips) for c, clips in generated.items()]
        fds = {name: [] for name, _ in sets}
        for _, embed in embedders:
            real_emb = embed_clips(real, embed)
            for name, clips in sets:
                fds[name].append(frechet_distance(embed_clips(clips, embed), real_emb))
        rows = [[name, len(clips)] + fds[name] for name, clips in sets]
        figures["frechet"] = [
            {
                "set": name,
                "n": len(clips),
                "fd": fds[name][0],
                **({"fd_codec": fds[name][1]} if len(embedders) > 1 else {}),
            }
            for name, clips in sets
        ]
        body.append(table(["set", "clips"] + [f"FD over {e} ↓" for e, _ in embedders], rows))
        body.append(note(f"Each set against {len(real)} real test clips of {cfg.gen_seconds:g} s."))
    seeds_wav = [generate_fn([DIVERSITY_PROMPT], cfg.cfg, s) for s in range(cfg.seeds)]
    div_rows = [[f"one prompt, {cfg.seeds} seeds", diversity(embed_clips([(w[0], r) for w, r in seeds_wav]))]]
    if len(real) >= 2:
        div_rows.append([f"{len(real)} different real clips", diversity(embed_clips(real))])
    figures["diversity"] = [{"set": r[0], "mean_pairwise_distance": r[1]} for r in div_rows]
    body.append(table(["set", "mean pairwise feature distance"], div_rows))
    body.append(
        note(
            f"Embedding: {feature_embedding.__module__}.feature_embedding — 166 hand-made statistics (log-mel "
            "mean/std, chroma, onset-strength tempo profile, spectral centroid, level) at 16 kHz, because the "
            "VGGish/CLAP weights of the usual FAD cannot be downloaded here. It is not trained on human "
            "judgements, so FD only ranks along spectral balance, harmony and rhythm; values are not comparable "
            "with published FAD numbers, and only between sets of equal size (FD is biased upward with few "
            "clips). The codec-latent FD (mean and std over time of the LM's codec encoder output) follows what "
            "that codec encodes and changes whenever it is retrained; compare it only within one model. "
            f"Diversity uses the hand-made features; its prompt: “{DIVERSITY_PROMPT}”."
        )
    )

    # Perplexity on held-out music (test split, encoded with the model's codec).
    body.append("<h3>Per-codebook perplexity</h3>")
    try:
        from musiclm.evaluation.lm_perplexity import manifest_perplexity, shard_perplexity

        if cfg.shards is not None:
            ppl, where = shard_perplexity(model, cfg.shards)
        else:
            ppl, where = manifest_perplexity(model, cfg.lm_manifest)
        figures["perplexity"] = {"per_codebook": ppl, "source": where}
        rows = [["perplexity, own caption"] + ppl]
        if cfg.shards is not None:  # does the model use its text? the same tokens with no / a wrong caption
            for captions in ("none", "other"):
                other, _ = shard_perplexity(model, cfg.shards, captions=captions)
                figures["perplexity"][f"per_codebook_{captions}_caption"] = other
                rows.append([f"perplexity, {captions} caption"] + other)
        body.append(table(["codebook"] + [str(k) for k in range(len(ppl))], rows))
        body.append(
            note(
                f"Held-out tokens: {where}. Uniform guessing would give {model.card}; the delay "
                "pattern lets later codebooks see earlier ones of the same frame. With no caption (the null "
                "condition) or another clip's caption the same tokens should score worse: the gap is what "
                "the model takes from its text."
            )
        )
    except MusicLMError as e:
        body.append(note(f"Not available: {e}"))
    page.figures["lm"] = figures
    return "\n".join(body)
