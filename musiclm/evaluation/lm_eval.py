"""The report's text-to-music section: sample generations, control adherence with and without guidance,
a Fréchet distance to real clips, diversity across seeds, and per-codebook perplexity."""

from __future__ import annotations

from pathlib import Path

import torch

from musiclm.errors import MusicLMError
from musiclm.evaluation import plots
from musiclm.evaluation.adherence import Estimators, estimator_ceiling, evaluate_adherence
from musiclm.evaluation.embedding import CodecEmbedding, embed_clips, feature_embedding
from musiclm.evaluation.fad import diversity, frechet_distance

DEMO_PROMPTS = (
    "calm piano in C major, slow",
    "a slow, melancholic string ensemble in D minor",
    "a fast, bright folk tune on flute in G major",
)
DIVERSITY_PROMPT = "a moderate piece in G major played by piano, 100 BPM"


def load_generate_fn(model_dir: Path, seconds: float):
    """→ (generate_fn(texts, cfg, seed) -> (wav [B, C, N], sr), description, model) for a MusicLM directory."""
    try:
        from musiclm.lm import GenerationOptions, MusicLM
    except ImportError as e:
        raise MusicLMError(f"the LM package is not available ({e})") from None
    model = MusicLM.from_pretrained(model_dir).eval()
    sr = int(model.codec.sample_rate) if model.codec is not None else int(model.config.sample_rate)

    @torch.no_grad()
    def generate_fn(texts: list[str], cfg: float, seed: int):
        wav = model.generate(list(texts), GenerationOptions(duration=seconds, seed=seed, cfg=cfg))  # [B, C, N]
        return wav.float().cpu(), sr

    params = sum(p.numel() for p in model.parameters()) / 1e6
    return generate_fn, f"{model_dir} ({params:.2f} M LM parameters, {sr} Hz)", model


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

    # Sample generations, one seed.
    wav, sr = generate_fn(list(DEMO_PROMPTS), cfg.cfg, 0)
    players = []
    for i, text in enumerate(DEMO_PROMPTS):
        players.append(
            f"<figure>{page.audio(f'generation_{i}', wav[i], sr)}<figcaption>{esc(text)}</figcaption></figure>"
        )
    plots.spectrograms(page.out / "img/generations.png", [(t, wav[i]) for i, t in enumerate(DEMO_PROMPTS)], sr)
    body.append(
        "<h3>Generations</h3>"
        + page.image("img/generations.png", "spectrograms of generations")
        + f'<div class="players">{"".join(players)}</div>'
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
