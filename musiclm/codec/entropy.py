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

Pure Python with numpy: the encoder finds every code's interval at once (`_intervals`, closed form) and
codes at ~1 µs a code; the decoder walks each model's Fenwick tree, a few µs a code (~0.1 s per 10 s of audio
at 12 kbps, 12,000 codes, on an idle core).
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
    earlier = _earlier_occurrences(codes, card)
    choice = []
    for r, row in enumerate(codes):
        init = np.ones(card) if prior is None else np.asarray(prior[r], dtype=np.float64)
        totals = init.sum() + INCREMENT * np.arange(len(row))
        bits = np.log2(totals).sum() - np.log2(init[row] + INCREMENT * earlier[r]).sum()
        choice.append(bool(bits < len(row) * np.log2(card)))
    return choice


def _earlier_occurrences(codes: np.ndarray, card: int) -> np.ndarray:
    """codes [K, t] in [0, card) → [K, t]: how often each code occurred before it in its row (a stable sort of
    (row, code) keeps each group's members in order, so a member's rank in its group is the count)."""
    keys = (codes + card * np.arange(codes.shape[0])[:, None]).ravel()
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    earlier = np.empty_like(keys)
    earlier[order] = np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    return earlier.reshape(codes.shape)


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


def _check_models(card: int, n_q: int, prior: np.ndarray | None, adaptive: list[bool] | None) -> None:
    if prior is not None and (prior.ndim != 2 or prior.shape[1] != card or prior.shape[0] < n_q):
        raise MusicLMError(f"entropy prior shaped {list(prior.shape)} does not fit {n_q} codebooks of {card}")
    if adaptive is not None and len(adaptive) != n_q:
        raise MusicLMError(f"{len(adaptive)} row models for {n_q} rows")


def _models(
    card: int, n_q: int, prior: np.ndarray | None, adaptive: list[bool] | None
) -> list[AdaptiveModel | FlatModel]:
    _check_models(card, n_q, prior, adaptive)
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
    codes = np.asarray(codes, dtype=np.int64)
    cums, freqs, totals = _intervals(codes, card, prior, adaptive)
    for cum, freq, total in zip(cums.ravel().tolist(), freqs.ravel().tolist(), totals.ravel().tolist(), strict=True):
        r = rng // total
        low += cum * r
        rng = r * freq
        while True:  # emit settled top bytes; force them out when the range gets too small
            if (low ^ (low + rng)) >= TOP:
                if rng >= BOTTOM:
                    break
                rng = -low & (BOTTOM - 1)
            out.append(low >> 24)
            low = (low << 8) & MASK
            rng = (rng << 8) & MASK
    for _ in range(4):
        out.append(low >> 24)
        low = (low << 8) & MASK
    return bytes(out)


BLOCK = 32  # codes per block in the closed form: earlier blocks by histogram, the block itself pairwise


def _intervals(
    codes: np.ndarray, card: int, prior: np.ndarray | None, adaptive: list[bool] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coder's interval for each code [K, t] as its row's model gives it, updated code by code: (count
    below the code, the code's count, the total), each [K, t]. The encoder knows every code in advance, so
    where no halving of counts intervenes (total + INCREMENT · t ≤ BOTTOM, rows up to ~4,000 codes) they come
    in closed form for all rows at once: code i's count is its initial one plus INCREMENT per earlier
    occurrence, the count below it the initial ones below plus INCREMENT per earlier code below it. The
    decoder has to walk the models' Fenwick trees code by code (it learns a code only by decoding it); this
    falls back to that where the closed form does not hold."""
    _check_models(card, len(codes), prior, adaptive)
    K, t = codes.shape
    init = np.ones((K, card), np.int64) if prior is None else np.asarray(prior[:K], dtype=np.int64)
    start_totals = init.sum(1)
    if not (start_totals + INCREMENT * t <= BOTTOM).all():
        cums, freqs, totals = np.empty((3, K, t), dtype=np.int64)
        for k, (row, model) in enumerate(zip(codes.tolist(), _models(card, K, prior, adaptive), strict=True)):
            for i, s in enumerate(row):
                cums[k, i], freqs[k, i], totals[k, i] = model.cumulative(s), model.freq[s], model.total
                model.update(s)
        return cums, freqs, totals
    # earlier codes below each code: blocks of BLOCK codes, the earlier blocks' by running histograms
    # [K, blocks, card + 1], the block's own by pairs
    blocks = -(-t // BLOCK)
    padded = np.pad(codes, ((0, 0), (0, blocks * BLOCK - t)), constant_values=card).reshape(K, blocks, BLOCK)
    slot = (np.arange(K)[:, None, None] * blocks + np.arange(blocks)[None, :, None]) * (card + 1) + padded
    hist = np.bincount(slot.ravel(), minlength=K * blocks * (card + 1)).reshape(K, blocks, card + 1)
    before = np.cumsum(hist, axis=1) - hist  # in earlier blocks, per symbol
    below_before = np.cumsum(before, axis=2) - before  # in earlier blocks, of smaller symbols
    earlier = np.tri(BLOCK, k=-1, dtype=bool)  # [i, j]: j came before i within the block
    pairs = (padded[..., None, :] < padded[..., :, None]) & earlier  # [K, blocks, i, j]: code j below code i
    below = (np.take_along_axis(below_before, padded, 2) + pairs.sum(-1)).reshape(K, -1)[:, :t]
    same = _earlier_occurrences(codes, card)
    cums = np.take_along_axis(np.cumsum(init, axis=1) - init, codes, 1) + INCREMENT * below
    freqs = np.take_along_axis(init, codes, 1) + INCREMENT * same
    totals = start_totals[:, None] + INCREMENT * np.arange(t)
    if adaptive is not None:  # flat rows: every code at count 1 of card
        flat = ~np.asarray(adaptive, dtype=bool)[:, None]
        cums, freqs, totals = np.where(flat, codes, cums), np.where(flat, 1, freqs), np.where(flat, card, totals)
    return cums, freqs, totals


def ideal_bits(codes: np.ndarray, card: int) -> float:
    """The information content of codes [K, t] under encode_codes' adaptive models (no prior, every row
    adaptive): Σ log2(total / count). encode_codes writes no fewer than ideal_bits / 8 - 4 bytes (the coder
    starts from a 32-bit range), so a size budget can be checked before coding."""
    codes = np.asarray(codes, dtype=np.int64)
    _, freqs, totals = _intervals(codes, card, None, None)
    return float(np.log2(totals / freqs).sum())


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
