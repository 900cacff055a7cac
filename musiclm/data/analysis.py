"""Music analysis with numpy/scipy only: tempo, key/mode, brightness, loudness.

Used to caption the user's untagged files and, by evaluation, to check that generated audio follows its
prompt (control adherence). Key: Krumhansl-Schmuckler — correlate a 12-bin chroma with the Krumhansl-Kessler
major/minor probe-tone profiles rotated to each tonic (Krumhansl 1990, "Cognitive Foundations of Musical
Pitch", ch. 4).
"""

from __future__ import annotations

import numpy as np

from musiclm.data.captions import key_name

# Krumhansl-Kessler probe-tone profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def key_from_chroma(chroma: np.ndarray) -> tuple[str, str, float]:
    """12-bin pitch-class weights (C first) → (tonic, mode, confidence = best correlation - runner-up)."""
    chroma = np.asarray(chroma, dtype=np.float64)
    if chroma.sum() <= 0:
        return "C", "major", 0.0
    scores = []
    for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]
            scores.append((0.0 if np.isnan(r) else float(r), tonic, mode))
    scores.sort(reverse=True)
    best, second = scores[0], scores[1]
    return key_name(best[1], best[2]), best[2], round(best[0] - second[0], 4)
