"""Optional entropy coding of a chunk of codes: a range coder driven by an adaptive frequency model.

The coder is Subbotin's carry-less range coder (32-bit, bytes out most significant first). The model is
order-0 and adaptive, one per codebook: every code starts with a count (1, or a learned prior, below) and
gains INCREMENT each time it is seen, so frequent codes get cheaper as the chunk goes on; counts are halved
when the total would exceed what the coder resolves (BOTTOM). The model restarts in each chunk, which keeps
chunks independently decodable.

A chunk is short (500 codes per codebook in 10 s at 50 Hz) next to a codebook (1024 entries), so the
learned prior gives the model a head start: each codebook's EMA usage counts from training (`cluster_size`,
kept with the weights) become its initial counts (`prior_counts`), lightly weighted (PRIOR_MASS) so the
music at hand still dominates after a few frames. The saving comes from a trained RVQ using its codebooks
unevenly; EnCodec §3.3 gets more with a small transformer predicting codes, at far more compute.

Not every codebook is uneven enough to pay for adapting: on real music the shipped codec's codebooks 1-4 use
~350 distinct codes in 500 frames, and an adaptive model spends 10.1-10.5 bits on their 10-bit codes (its
prior was learned on the training mix). So each row (stream and codebook) may instead be coded flat, every
code at 1/card (`adaptive_rows` picks, by the cost the adaptive model would have; `.mlc` version 4 stores the
choice): 9.77 → 9.45 bits a code at 1.5 kbps, 9.02 → 8.89 at 6, on 16 real 10 s clips
(`eval/entropy_rows.py`).

Pure Python: a few µs per code (~0.1 s per 10 s of audio at 12 kbps, 12,000 codes, on an idle core).
"""

from __future__ import annotations

import hashlib

import numpy as np

from musiclm.errors import MusicLMError

TOP = 1 << 24
BOTTOM = 1 << 16  # the model's total count must stay at or below this
MASK = 0xFFFFFFFF
INCREMENT = 16  # measured: broad code distributions (8-9.5 bits of 10) favour slow adaptation
MAX_ENTROPY_CARD = 4096  # one count per code must leave room to adapt under BOTTOM
# Prior counts per code on average. Measured on 60 s of held-out music with a codec checkpoint (step 1400,
# 6 kbps, 10 s chunks), bits relative to bit-packing: adaptive only 0.863, prior mass 1: 0.850, 2: 0.851,
# 4: 0.861, 16: 0.904. A light prior helps the first frames; a heavy one slows adaptation to the music.
PRIOR_MASS = 2


class AdaptiveModel:
    """Counts of `card` symbols in a Fenwick tree: O(log card) cumulative lookups and updates."""

    def __init__(self, card: int, init: list[int] | None = None):
        self.card = card
        self.freq = [1] * card if init is None else list(init)
        self.total = sum(self.freq)
        assert len(self.freq) == card and min(self.freq) >= 1 and self.total <= BOTTOM // 2, "bad initial counts"
        self.step = 1 << (card.bit_length() - 1)
        self._rebuild()

    def _rebuild(self) -> None:
        tree = [0] * (self.card + 1)
        for i, f in enumerate(self.freq, start=1):
            tree[i] += f
            parent = i + (i & -i)
            if parent <= self.card:
                tree[parent] += tree[i]
        self.tree = tree

    def cumulative(self, symbol: int) -> int:
        """Sum of the counts of symbols below `symbol`."""
        total, i, tree = 0, symbol, self.tree
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def find(self, target: int) -> tuple[int, int]:
        """The symbol s whose interval [cum(s), cum(s) + freq(s)) holds `target` → (s, cum(s))."""
        pos, cum, step, tree, card = 0, 0, self.step, self.tree, self.card
        while step:
            nxt = pos + step
            if nxt <= card and cum + tree[nxt] <= target:
                pos, cum = nxt, cum + tree[nxt]
            step >>= 1
        return pos, cum

    def update(self, symbol: int) -> None:
        if self.total + INCREMENT > BOTTOM:
            self.freq = [(f + 1) // 2 for f in self.freq]
            self.total = sum(self.freq)
            self._rebuild()
        self.freq[symbol] += INCREMENT
        self.total += INCREMENT
        i, tree, card = symbol + 1, self.tree, self.card
        while i <= card:
            tree[i] += INCREMENT
            i += i & -i


class FlatModel:
    """Every one of `card` symbols at count 1, never updated: a code costs log2(card) bits, as bit-packed."""

    def __init__(self, card: int):
        self.card = self.total = card
        self.freq = [1] * card

    def cumulative(self, symbol: int) -> int:
        return symbol

    def find(self, target: int) -> tuple[int, int]:
        return target, target

    def update(self, symbol: int) -> None:
        pass


def adaptive_rows(codes: np.ndarray, card: int, prior: np.ndarray | None = None) -> list[bool]:
    """For each row of codes [R, t]: whether the adaptive model (started from prior[r] when given) would code it
    in fewer bits than the flat one. Its cost is computed in closed form, without the halving of counts (which
    a row of t ≤ (BOTTOM - card - prior mass) / INCREMENT ≈ 3,800 codes never reaches): code i costs
    log2(total_i / count_i) with total_i = total_0 + INCREMENT i and count_i = initial count of its code plus
    INCREMENT per earlier occurrence in the row."""
    codes = np.asarray(codes, dtype=np.int64)
    choice = []
    for r, row in enumerate(codes):
        init = np.ones(card) if prior is None else np.asarray(prior[r], dtype=np.float64)
        order = np.argsort(row, kind="stable")
        ranked = row[order]
        starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        earlier = np.empty_like(row)
        earlier[order] = np.arange(len(row)) - np.repeat(starts, np.diff(np.r_[starts, len(row)]))
        totals = init.sum() + INCREMENT * np.arange(len(row))
        bits = np.log2(totals).sum() - np.log2(init[row] + INCREMENT * earlier).sum()
        choice.append(bool(bits < len(row) * np.log2(card)))
    return choice


def card_supported(card: int) -> bool:
    """Whether the range coder takes codebooks of `card` entries."""
    return 2 <= card <= MAX_ENTROPY_CARD


def _check_card(card: int) -> None:
    if not card_supported(card):
        raise MusicLMError(f"entropy coding supports codebooks of 2..{MAX_ENTROPY_CARD} entries, not {card}")


def prior_counts(usage: np.ndarray) -> np.ndarray:
    """Usage statistics [K, card] (any non-negative scale) → initial counts [K, card] int64, each ≥ 1."""
    usage = np.clip(np.nan_to_num(np.asarray(usage, dtype=np.float64)), 0, None)
    card = usage.shape[-1]
    _check_card(card)
    p = usage / np.maximum(usage.sum(-1, keepdims=True), 1e-12)
    mass = min(PRIOR_MASS * card, BOTTOM // 2 - card)
    return 1 + np.floor(p * mass).astype(np.int64)


def prior_hash(counts: np.ndarray) -> str:
    """16 hex chars naming a prior (stored in the .mlc header so a decoder can check it has the same one)."""
    counts = np.ascontiguousarray(counts, dtype="<u4")
    return hashlib.sha256(str(counts.shape).encode() + counts.tobytes()).hexdigest()[:16]


def _models(
    card: int, n_q: int, prior: np.ndarray | None, adaptive: list[bool] | None
) -> list[AdaptiveModel | FlatModel]:
    if prior is not None and (prior.ndim != 2 or prior.shape[1] != card or prior.shape[0] < n_q):
        raise MusicLMError(f"entropy prior shaped {list(prior.shape)} does not fit {n_q} codebooks of {card}")
    if adaptive is not None and len(adaptive) != n_q:
        raise MusicLMError(f"{len(adaptive)} row models for {n_q} rows")
    return [
        AdaptiveModel(card, None if prior is None else prior[k].tolist())
        if adaptive is None or adaptive[k]
        else FlatModel(card)
        for k in range(n_q)
    ]


def encode_codes(
    codes: np.ndarray, card: int, prior: np.ndarray | None = None, adaptive: list[bool] | None = None
) -> bytes:
    """codes [K, t] in [0, card) → range-coded bytes (codebook-major, one adaptive model per codebook,
    started from `prior` [≥K, card] initial counts when given; rows whose `adaptive` is False are coded flat)."""
    _check_card(card)
    out = bytearray()
    low, rng = 0, MASK
    rows = np.asarray(codes, dtype=np.int64).tolist()
    for row, model in zip(rows, _models(card, len(rows), prior, adaptive), strict=True):
        for s in row:
            r = rng // model.total
            low += model.cumulative(s) * r
            rng = r * model.freq[s]
            while True:  # emit settled top bytes; force them out when the range gets too small
                if (low ^ (low + rng)) >= TOP:
                    if rng >= BOTTOM:
                        break
                    rng = -low & (BOTTOM - 1)
                out.append(low >> 24)
                low = (low << 8) & MASK
                rng = (rng << 8) & MASK
            model.update(s)
    for _ in range(4):
        out.append(low >> 24)
        low = (low << 8) & MASK
    return bytes(out)


def decode_codes(
    data: bytes,
    n_q: int,
    frames: int,
    card: int,
    prior: np.ndarray | None = None,
    adaptive: list[bool] | None = None,
) -> np.ndarray:
    """Inverse of encode_codes → codes [n_q, frames] int64. Garbage input gives garbage codes in range,
    never an exception other than MusicLMError or a loop longer than n_q * frames steps."""
    _check_card(card)
    size, pos = len(data), 4
    code = int.from_bytes(data[:4].ljust(4, b"\0"), "big")
    low, rng = 0, MASK
    out = np.empty((n_q, frames), dtype=np.int64)
    for k, model in enumerate(_models(card, n_q, prior, adaptive)):
        row = out[k]
        for t in range(frames):
            r = rng // model.total
            target = min(((code - low) & MASK) // r, model.total - 1)
            s, cum = model.find(target)
            low += cum * r
            rng = r * model.freq[s]
            while True:
                if (low ^ (low + rng)) >= TOP:
                    if rng >= BOTTOM:
                        break
                    rng = -low & (BOTTOM - 1)
                code = ((code << 8) | (data[pos] if pos < size else 0)) & MASK
                pos += 1
                low = (low << 8) & MASK
                rng = (rng << 8) & MASK
            row[t] = s
            model.update(s)
    return out
