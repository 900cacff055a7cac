"""Captions from structured fields, with varied phrasing; and the reverse: controls parsed from text.

The LM should learn words, not one template: each caption picks a template, synonyms, field order and which
optional fields to omit from a seeded RNG, so the same fields give the same caption for the same seed.
Key and tempo are kept far more often than the rest because they are the controls evaluation checks.
`parse_controls` reads key/mode/BPM/meter/tempo words back out of any caption or user prompt.
"""

from __future__ import annotations

import random
import re

# Tempo categories in beats per minute (upper bounds), with words a listener would use for each.
TEMPO_WORDS = (
    (66.0, "slow", ("slow", "very slow", "largo", "unhurried", "adagio")),
    (92.0, "moderately slow", ("moderately slow", "andante", "relaxed", "walking-pace")),
    (120.0, "moderate", ("moderate", "moderato", "medium-tempo", "steady")),
    (152.0, "fast", ("fast", "allegro", "brisk", "quick", "upbeat")),
    (1e9, "very fast", ("very fast", "presto", "rapid", "racing")),
)
DYNAMICS_WORDS = {
    "soft": ("soft", "quiet", "gentle", "pianissimo", "hushed"),
    "moderate": ("moderately loud", "mezzo-forte", "medium-loud", "balanced"),
    "loud": ("loud", "forte", "powerful", "bold"),
}
DENSITY_WORDS = {
    "sparse": ("sparse", "spare", "airy", "with few notes"),
    "moderate": ("flowing", "moderately busy", "even"),
    "dense": ("dense", "busy", "intricate", "full of notes"),
}
BRIGHTNESS_WORDS = {
    "dark": ("dark-toned", "mellow", "muted"),
    "warm": ("warm", "rounded"),
    "bright": ("bright", "brilliant", "sparkling"),
}
# Moods follow from mode, tempo and dynamics (a rough music-psychology mapping: major/fast → happy,
# minor/slow → sad; loudness adds arousal).
MOODS = {
    ("major", "slow", "soft"): ("calm", "peaceful", "serene", "tender"),
    ("major", "slow", "loud"): ("majestic", "stately", "solemn", "warm"),
    ("major", "mid", "soft"): ("gentle", "graceful", "lyrical", "pastoral"),
    ("major", "mid", "loud"): ("cheerful", "bright", "confident", "warm"),
    ("major", "fast", "soft"): ("playful", "light", "lively", "carefree"),
    ("major", "fast", "loud"): ("joyful", "energetic", "festive", "triumphant"),
    ("minor", "slow", "soft"): ("melancholic", "sad", "mournful", "wistful"),
    ("minor", "slow", "loud"): ("sombre", "solemn", "dramatic", "grave"),
    ("minor", "mid", "soft"): ("pensive", "reflective", "mysterious", "bittersweet"),
    ("minor", "mid", "loud"): ("dark", "brooding", "serious", "tense"),
    ("minor", "fast", "soft"): ("restless", "anxious", "mysterious", "urgent"),
    ("minor", "fast", "loud"): ("agitated", "intense", "stormy", "fiery"),
}
NOTE_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


def tempo_word(bpm: float) -> str:
    for upper, word, _ in TEMPO_WORDS:
        if bpm < upper:
            return word
    raise AssertionError("unreachable")


def dynamics_word(velocity: float) -> str:
    """MIDI velocity (1-127) → soft / moderate / loud."""
    return "soft" if velocity < 60 else "moderate" if velocity < 90 else "loud"


def density_word(onsets_per_second: float) -> str:
    return "sparse" if onsets_per_second < 3.0 else "moderate" if onsets_per_second < 8.0 else "dense"


def mood_words(mode: str, tempo: str, dynamics: str, rng: random.Random, n: int = 2) -> list[str]:
    speed = "slow" if tempo in ("slow", "moderately slow") else "fast" if tempo in ("fast", "very fast") else "mid"
    level = "loud" if dynamics == "loud" else "soft"
    pool = MOODS[(mode if mode in ("major", "minor") else "major", speed, level)]
    return rng.sample(pool, k=min(n, len(pool)))


def key_name(pitch_class: int, mode: str) -> str:
    """Conventional spelling of a tonic: flats for most major keys, C#/G# for minor ones."""
    return (MINOR_NAMES if mode == "minor" else NOTE_NAMES)[pitch_class % 12]


def _key_text(key: str, mode: str, rng: random.Random) -> str:
    """ "Eb minor" / "E flat minor", "F# major" / "F sharp major"."""
    rng.random()  # kept so captions of existing corpora stay reproducible (an earlier draw was unused)
    sharp = " sharp" if rng.random() < 0.3 else "#"
    if len(key) > 1 and key[1] == "b":
        return f"{key[0]}{' flat' if rng.random() < 0.5 else 'b'} {mode}"
    return f"{key.replace('#', sharp)} {mode}"


def _bpm_text(bpm: float, rng: random.Random) -> str:
    b = int(round(bpm))
    return rng.choice((f"{b} BPM", f"{b} bpm", f"at {b} BPM", f"around {b} beats per minute", f"tempo {b}"))


def _a(phrase: str) -> str:
    """The indefinite article for `phrase` ("an allegro ...", "a slow ...")."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _instrument_text(fields: dict, rng: random.Random) -> tuple[str, str]:
    """(who plays, e.g. "a string quartet"; a phrase for after the noun, e.g. "played by a string quartet")."""
    ensemble = fields.get("ensemble") or ""
    names = list(fields.get("instruments") or [])
    if ensemble and (not names or rng.random() < 0.6):
        label = ensemble
    elif len(names) == 1:
        label = names[0]
    else:
        label = ", ".join(names[:-1]) + " and " + names[-1] if names else "instruments"
    who = label if label.startswith("solo") or "," in label or " and " in label else _a(label)
    return who, rng.choice(
        (f"played by {who}", f"for {label}", f"on {label}", f"performed on {label}", f"with {label}")
    )


def make_caption(fields: dict, seed: int) -> str:
    """A caption for `fields` (see manifest.FIELD_KEYS; optional `ensemble`), deterministic in `seed`."""
    rng = random.Random(seed)
    tw = fields.get("tempo_word") or (tempo_word(fields["bpm"]) if fields.get("bpm") else "")
    tempo_syn = next((rng.choice(syn) for _, w, syn in TEMPO_WORDS if w == tw), tw)
    keep = {
        name: rng.random() < p
        for name, p in (
            ("key", 0.9),
            ("bpm", 0.85),
            ("tempo", 0.8),
            ("mood", 0.7),
            ("era", 0.6),
            ("genre", 0.85),
            ("composer", 0.35),
            ("meter", 0.5),
            ("instruments", 0.9),
            ("density", 0.35),
            ("dynamics", 0.45),
        )
    }
    key = _key_text(fields["key"], fields["mode"], rng) if fields.get("key") and fields.get("mode") else ""
    bpm = _bpm_text(fields["bpm"], rng) if fields.get("bpm") else ""
    mood = list(fields.get("mood") or [])[: rng.choice((1, 1, 2))]
    dyn = rng.choice(DYNAMICS_WORDS[fields["dynamics"]]) if fields.get("dynamics") in DYNAMICS_WORDS else ""
    dens = rng.choice(DENSITY_WORDS[fields["density"]]) if fields.get("density") in DENSITY_WORDS else ""
    era = fields.get("era") or ""
    genre = fields.get("genre") or "piece"
    meter = fields.get("meter") or ""
    meter_text = rng.choice((f"{meter}", f"in {meter} time", f"{meter} meter")) if meter else ""
    composer = fields.get("composer") or ""
    has_composer = composer and composer != "traditional"
    composer_text = rng.choice((f"by {composer}", f"in the style of {composer}")) if has_composer else ""
    who, instr = _instrument_text(fields, rng) if fields.get("instruments") or fields.get("ensemble") else ("", "")

    if fields.get("brightness") in BRIGHTNESS_WORDS:  # measured on catalog audio; synth fields lack it
        keep["brightness"] = rng.random() < 0.4
        bright = rng.choice(BRIGHTNESS_WORDS[fields["brightness"]])
        dens = f"{dens}, {bright}" if dens and keep["density"] else bright
        keep["density"] = keep["density"] or keep["brightness"]
    adjs = [
        a
        for a, k in ((tempo_syn, "tempo"), (", ".join(mood), "mood"), (dyn, "dynamics"), (dens, "density"))
        if a and keep[k]
    ]
    rng.shuffle(adjs) if rng.random() < 0.3 else None
    genre = genre if keep["genre"] else "piece"
    noun = genre if not era or era in genre.split() or not keep["era"] else f"{era} {genre}"
    t = rng.randrange(5)
    if t == 0:  # "a slow, melancholic baroque chorale in D minor played by a string ensemble, 60 BPM, 4/4"
        parts = [_a(f"{', '.join(adjs) + ' ' if adjs else ''}{noun}")]
        if keep["composer"] and composer_text:
            parts[0] += f" {composer_text}"
        if keep["key"] and key:
            parts[0] += f" in {key}"
        if keep["instruments"] and instr:
            parts[0] += f" {instr}"
        tail = [x for x, k in ((bpm, "bpm"), (meter, "meter")) if x and keep[k]]
        rng.shuffle(tail)
        return ", ".join(parts + tail)
    if t == 1:  # comma-separated tags in shuffled order
        tags = [
            x
            for x, k in (
                (noun, "genre"),
                (key, "key"),
                (bpm, "bpm"),
                (tempo_syn, "tempo"),
                (", ".join(mood), "mood"),
                (dyn, "dynamics"),
                (dens, "density"),
                (meter_text, "meter"),
                (composer_text, "composer"),
                (who, "instruments"),
            )
            if x and keep[k]
        ]
        rng.shuffle(tags)
        return ", ".join(tags) if tags else noun
    if t == 2:  # instrument first
        s = f"{who or 'an ensemble'} playing {_a((', '.join(adjs) + ' ' if adjs else '') + noun)}"
        extras = [
            x
            for x, k in (
                (f"in {key}" if key else "", "key"),
                (bpm, "bpm"),
                (meter_text, "meter"),
                (composer_text, "composer"),
            )
            if x and keep[k]
        ]
        return s + (", " + ", ".join(extras) if extras else "")
    if t == 3:  # full sentences
        head = _a(f"{dyn + ' ' if dyn and keep['dynamics'] else ''}{noun}")
        s = [
            head[0].upper()
            + head[1:]
            + (f" {instr}" if instr and keep["instruments"] else "")
            + (f" in {key}" if key and keep["key"] else "")
            + "."
        ]
        if keep["tempo"] or keep["bpm"]:
            tempo_bits = [x for x, k in ((tempo_syn, "tempo"), (bpm, "bpm")) if x and keep[k]]
            s.append(f"The tempo is {' '.join(tempo_bits)}.") if tempo_bits else None
        if mood and keep["mood"]:
            s.append(f"It sounds {' and '.join(mood)}.")
        if meter and keep["meter"]:
            s.append(f"In {meter} time.")
        return " ".join(s)
    # t == 4: mood first, short
    head = ", ".join(mood) if mood and keep["mood"] else tempo_syn
    s = f"{head} {noun}"
    if keep["key"] and key:
        s += f" in {key}"
    if keep["instruments"] and instr:
        s += f" {instr}"
    if keep["bpm"] and bpm:
        s += f" ({bpm})" if rng.random() < 0.5 else f", {bpm}"
    return s


_KEY_RE = re.compile(r"\b([A-G])(\s?(?:#|b|flat|sharp|♭|♯))?\s+(major|minor)\b", re.IGNORECASE)
_BPM_RE = re.compile(r"\b(\d{2,3})\s*(?:bpm|beats per minute)\b|\btempo\s+(\d{2,3})\b", re.IGNORECASE)
_METER_RE = re.compile(r"\b(\d{1,2})/(2|4|8|16)\b")


def parse_controls(text: str) -> dict:
    """Controls stated in a caption or prompt: key ("D", "Eb", "F#"), mode, bpm, meter, tempo_word.
    Only what the text states is returned."""
    out: dict = {}
    m = _KEY_RE.search(text)
    if m:
        acc = (m.group(2) or "").strip().lower()
        acc = "b" if acc in ("b", "flat", "♭") else "#" if acc in ("#", "sharp", "♯") else ""
        pc = (NOTE_NAMES.index(m.group(1).upper()) + (-1 if acc == "b" else 1 if acc == "#" else 0)) % 12
        out["mode"] = m.group(3).lower()
        out["key"] = key_name(pc, out["mode"])
    m = _BPM_RE.search(text)
    if m:
        out["bpm"] = float(m.group(1) or m.group(2))
    m = _METER_RE.search(text)
    if m:
        out["meter"] = f"{m.group(1)}/{m.group(2)}"
    low = text.lower()
    for _, word, syn in sorted(TEMPO_WORDS, key=lambda t: -len(t[1])):
        if any(re.search(rf"\b{re.escape(s)}\b", low) for s in (word, *syn)):
            out["tempo_word"] = word
            break
    return out
