"""Control adherence: does generated audio do what the prompt asked?

Prompts come in pairs that differ in one control only and are generated in one batch with one seed:

* tempo:      "... slow ..., 60 BPM"   vs "... fast ..., 144 BPM"  → met when the fast clip's estimated
              tempo is higher (ties count half). Chance: 50%.
* mode:       "... in D major ..."     vs "... in D minor ..."     → met per clip when the estimated mode is
              the requested one. Chance: 50%. (The tonic is reported too; its chance is 1/12.)
* brightness: a dark instrument family vs a bright one (guitar vs tin whistle, ...) → met when the high family's
              spectral centroid is higher. Chance: 50%.

The audio estimators are `musiclm.data.analysis` (estimate_tempo, estimate_key, brightness); a one-sided
binomial test against chance says whether a rate could be luck. Running the same probes with guidance
off (cfg=1) shows what classifier-free guidance adds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from torch import Tensor

from musiclm.errors import MusicLMError

# generate_fn(texts, cfg, seed) -> (wav [B, C, N], sample rate)
GenerateFn = Callable[[list[str], float, int], tuple[Tensor, int]]
PITCH_CLASSES = {
    "C": 0,
    "C#": 1,
    "Db": 1,
    "D": 2,
    "D#": 3,
    "Eb": 3,
    "E": 4,
    "F": 5,
    "F#": 6,
    "Gb": 6,
    "G": 7,
    "G#": 8,
    "Ab": 8,
    "A": 9,
    "A#": 10,
    "Bb": 10,
    "B": 11,
}


@dataclass(frozen=True)
class Probe:
    control: str  # "tempo" | "mode" | "brightness"
    pair: int  # probes with the same control and pair differ only in the control
    text: str
    target: str  # tempo: slow|fast; mode: major|minor; brightness: dark|bright
    tonic: str = ""  # requested tonic for mode probes


@dataclass
class ControlScore:
    control: str
    n: int  # judgements (pairs for tempo/brightness, clips for mode)
    met: float  # judgements met (ties count half)
    chance: float
    p_value: float  # one-sided binomial test of floor(met) successes against chance
    detail: dict = field(default_factory=dict)  # mean measurement per requested target, etc.

    @property
    def rate(self) -> float:
        return self.met / self.n if self.n else float("nan")


@dataclass
class Estimators:
    """Audio → measurement functions; defaults are `musiclm.data.analysis`."""

    tempo: Callable[[np.ndarray, int], float]
    key: Callable[[np.ndarray, int], tuple]
    brightness: Callable[[np.ndarray, int], float]

    @classmethod
    def default(cls) -> Estimators:
        try:
            from musiclm.data import analysis
        except ImportError as e:
            raise MusicLMError(f"adherence needs musiclm.data.analysis ({e})") from None
        return cls(analysis.estimate_tempo, analysis.estimate_key, analysis.brightness)


# Instruments and ensembles of the synthesized corpus (musiclm.data.sources), so prompts use known words.
DEFAULT_INSTRUMENTS = ("piano", "a string quartet", "classical guitar", "solo flute")
DEFAULT_TONICS = ("C", "D", "G", "A")
# (darker, brighter): the second sounds higher and/or has stronger upper partials.
DEFAULT_REGISTER_PAIRS = (
    ("classical guitar", "solo tin whistle"),
    ("marimba", "solo xylophone"),
    ("a choir", "solo music box"),
    ("a brass ensemble", "solo recorder"),
)


def default_probes(
    instruments=DEFAULT_INSTRUMENTS, tonics=DEFAULT_TONICS, register_pairs=DEFAULT_REGISTER_PAIRS
) -> list[Probe]:
    """Contrastive prompt pairs phrased like the training captions (see musiclm.data.captions)."""
    probes: list[Probe] = []
    for i, inst in enumerate(instruments):
        tonic = tonics[i % len(tonics)]
        probes += [
            Probe("tempo", i, f"a slow piece in {tonic} major played by {inst}, 60 BPM", "slow"),
            Probe("tempo", i, f"a fast piece in {tonic} major played by {inst}, 144 BPM", "fast"),
        ]
    for i, tonic in enumerate(tonics):
        inst = instruments[i % len(instruments)]
        for mode in ("major", "minor"):
            probes.append(
                Probe("mode", i, f"a moderate piece in {tonic} {mode} played by {inst}, 100 BPM", mode, tonic)
            )
    for i, (low, high) in enumerate(register_pairs):
        for inst, target in ((low, "dark"), (high, "bright")):
            probes.append(Probe("brightness", i, f"a moderate piece in C major played by {inst}, 100 BPM", target))
    return probes


def measure(
    probes: list[Probe], generate_fn: GenerateFn, cfg: float, seed: int, estimators: Estimators, batch_size: int = 8
) -> list[dict]:
    """Generate every probe (pairs share a batch and a seed) and measure the control it asks about."""
    from tqdm import tqdm

    rows = []
    order = sorted(range(len(probes)), key=lambda i: (probes[i].control, probes[i].pair))
    batch_size = max(2, batch_size - batch_size % 2)  # keep pairs in one batch
    for start in tqdm(range(0, len(order), batch_size), desc=f"adherence cfg={cfg:g}", leave=False):
        idx = order[start : start + batch_size]
        wav, sr = generate_fn([probes[i].text for i in idx], cfg, seed)  # [B, C, N]
        if wav.dim() != 3 or wav.shape[0] != len(idx):
            raise MusicLMError(f"generate_fn returned {list(wav.shape)} for {len(idx)} prompts")
        mono = wav.detach().float().mean(1).cpu().numpy()  # [B, N]
        for b, i in enumerate(idx):
            p = probes[i]
            if p.control == "tempo":
                value = float(estimators.tempo(mono[b], sr))
            elif p.control == "mode":
                tonic, mode, _conf = estimators.key(mono[b], sr)[:3]
                value = (tonic, mode)
            elif p.control == "brightness":
                value = float(estimators.brightness(mono[b], sr))
            else:
                raise MusicLMError(f"unknown control {p.control!r}")
            rows.append({"probe": p, "value": value})
    return rows


def _binom_p(successes: int, n: int, chance: float) -> float:
    from scipy.stats import binomtest

    return float(binomtest(successes, n, chance, alternative="greater").pvalue) if n else float("nan")


def _tonic_pc(tonic) -> int | None:
    if isinstance(tonic, (int, np.integer)):
        return int(tonic) % 12
    return PITCH_CLASSES.get(str(tonic).strip().replace("♯", "#").replace("♭", "b").capitalize())


def score(rows: list[dict]) -> list[ControlScore]:
    """Turn measurements into per-control met rates (see the module docstring for each rule)."""
    out = []
    by_control: dict[str, list[dict]] = {}
    for r in rows:
        by_control.setdefault(r["probe"].control, []).append(r)
    for control in ("tempo", "brightness"):
        if control not in by_control:
            continue
        low, high = ("slow", "fast") if control == "tempo" else ("dark", "bright")
        pairs: dict[int, dict[str, float]] = {}
        for r in by_control[control]:
            pairs.setdefault(r["probe"].pair, {})[r["probe"].target] = r["value"]
        complete = [p for p in pairs.values() if low in p and high in p]
        met = sum(1.0 if p[high] > p[low] else 0.5 if math.isclose(p[high], p[low]) else 0.0 for p in complete)
        detail = {
            f"mean {t}": float(np.mean([p[t] for p in complete])) if complete else float("nan") for t in (low, high)
        }
        out.append(ControlScore(control, len(complete), met, 0.5, _binom_p(int(met), len(complete), 0.5), detail))
    if "mode" in by_control:
        rs = by_control["mode"]
        met = sum(1.0 for r in rs if str(r["value"][1]).lower() == r["probe"].target)
        tonic_ok = sum(1 for r in rs if _tonic_pc(r["value"][0]) == _tonic_pc(r["probe"].tonic))
        detail = {
            "tonic right": tonic_ok / len(rs),
            "tonic chance": 1 / 12,
            "measured major share": sum(str(r["value"][1]).lower() == "major" for r in rs) / len(rs),
        }
        out.append(ControlScore("mode", len(rs), met, 0.5, _binom_p(int(met), len(rs), 0.5), detail))
    return out


def evaluate_adherence(
    generate_fn: GenerateFn,
    cfg: float = 3.0,
    seed: int = 0,
    probes: list[Probe] | None = None,
    estimators: Estimators | None = None,
    batch_size: int = 8,
    compare_unguided: bool = True,
    seeds: int = 1,
) -> dict[float, list[ControlScore]]:
    """Scores at `cfg` and, when `compare_unguided`, at cfg=1 (no guidance): {cfg: [ControlScore, ...]}.
    `seeds` > 1 generates every probe that many times (seed, seed + 1, ...), each draw its own pair:
    n grows with it, so a rate can be told from chance."""
    if seeds < 1:
        raise MusicLMError(f"seeds must be >= 1, got {seeds}")
    probes = probes if probes is not None else default_probes()
    estimators = estimators or Estimators.default()
    stride = 1 + max((p.pair for p in probes), default=0)
    results = {}
    for c in dict.fromkeys([cfg] + ([1.0] if compare_unguided else [])):
        rows = []
        for r in range(seeds):
            drawn = [replace(p, pair=p.pair + r * stride) for p in probes]
            rows += measure(drawn, generate_fn, c, seed + r, estimators, batch_size)
        results[c] = score(rows)
    return results


def estimator_ceiling(clips: list[tuple[np.ndarray, int, dict]], estimators: Estimators) -> list[ControlScore]:
    """How well the estimators read *real* clips whose fields are known: [(mono [N], sr, fields)] →
    mode accuracy and tempo ordering (pairs whose BPM differ by at least 1.5x). A generated set cannot be
    judged more reliably than this, so it is the ceiling to read adherence rates against."""
    out = []
    moded = [(x, sr, f) for x, sr, f in clips if f.get("mode") in ("major", "minor")]
    if moded:
        met = sum(str(estimators.key(x, sr)[1]).lower() == f["mode"] for x, sr, f in moded)
        out.append(
            ControlScore(
                "mode",
                len(moded),
                float(met),
                0.5,
                _binom_p(met, len(moded), 0.5),
                {"what": "real clips, estimated vs labelled mode"},
            )
        )
    timed = [(float(estimators.tempo(x, sr)), float(f["bpm"])) for x, sr, f in clips if f.get("bpm")]
    pairs = [(a, b) for i, a in enumerate(timed) for b in timed[i + 1 :] if max(a[1], b[1]) >= 1.5 * min(a[1], b[1])]
    if pairs:
        met = sum(1.0 if (a[0] - b[0]) * (a[1] - b[1]) > 0 else 0.5 if a[0] == b[0] else 0.0 for a, b in pairs)
        out.append(
            ControlScore(
                "tempo",
                len(pairs),
                met,
                0.5,
                _binom_p(int(met), len(pairs), 0.5),
                {"what": "real clip pairs (BPM ratio >= 1.5), estimated order vs labels"},
            )
        )
    return out
