"""Metrics: identities, invariances and orderings that hold for any signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musiclm.dsp import mel_filterbank
from musiclm.errors import MusicLMError
from musiclm.evaluation.metrics import (
    integrated_loudness,
    log_mel_distance,
    loudness_difference,
    multiscale_stft_distance,
    si_snr,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 16000


@pytest.fixture(scope="module")
def x() -> torch.Tensor:  # [B=2, C=2, N]
    torch.manual_seed(0)
    t = torch.arange(SR) / SR
    tone = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    return torch.stack([torch.stack([tone, 0.5 * tone]), 0.2 * torch.randn(2, SR)])


def test_identical_signals_are_at_distance_zero(x):
    assert torch.all(log_mel_distance(x, x, SR) == 0)
    assert torch.all(multiscale_stft_distance(x, x, SR) == 0)
    assert torch.all(loudness_difference(x, x, SR) == 0)
    assert torch.all(si_snr(x, x) > 80)


def test_shapes_batched_and_single(x):
    for fn in (si_snr, log_mel_distance, multiscale_stft_distance, loudness_difference):
        batched = fn(x, x * 0.9, SR)
        assert batched.shape == (2,)
        assert torch.allclose(fn(x[1], x[1] * 0.9, SR), batched[1], atol=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        si_snr(x, x[..., :-1])


def test_si_snr_is_scale_invariant_and_tracks_noise(x):
    noise = 0.01 * torch.randn_like(x)
    assert torch.allclose(si_snr(x, 3.0 * (x + noise)), si_snr(x, x + noise), atol=1e-3)
    assert torch.all(si_snr(x, x + noise) > si_snr(x, x + 10 * noise) + 15)  # 20 dB less noise ≈ +20 dB


def test_distances_grow_with_degradation(x):
    mild, strong = x + 0.003 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)
    for fn in (log_mel_distance, multiscale_stft_distance):
        assert torch.all(fn(x, mild, SR) < fn(x, strong, SR))


def test_loudness_difference_of_a_gain_is_the_gain_in_db(x):
    assert torch.allclose(loudness_difference(x, 0.5 * x, SR), torch.full((2,), 6.02), atol=0.05)
    assert integrated_loudness(torch.zeros(1, SR), SR) == -70.0


def test_mel_filterbank_covers_the_spectrum():
    fb = mel_filterbank(SR, 1024, 64, scale="htk")  # the scale log_mel_distance uses
    assert fb.shape == (64, 513) and torch.all(fb >= 0)
    assert torch.all(fb.sum(1) > 0)  # no empty band


# ---- paired bootstrap over clips ---------------------------------------------------------------------------
def test_paired_difference_tells_a_real_gap_from_clip_noise():
    from musiclm.evaluation.stats import paired_difference

    rng = np.random.default_rng(0)
    clip_difficulty = rng.uniform(0.2, 0.8, size=32)  # clips differ far more than the systems
    better = clip_difficulty + 0.05 + rng.normal(0, 0.02, size=32)
    same = clip_difficulty + rng.normal(0, 0.02, size=32)
    gap = paired_difference(better, clip_difficulty)
    assert gap.decided and gap.low > 0.03 and abs(gap.mean - 0.05) < 0.01
    assert not paired_difference(same, clip_difficulty).decided
    assert paired_difference(better, clip_difficulty) == gap  # seeded: the same interval every run
    # four times the clips (the same spread), half the interval
    many = paired_difference(np.tile(better, 4), np.tile(clip_difficulty, 4))
    assert many.high - many.low < 0.6 * (gap.high - gap.low)
    with pytest.raises(MusicLMError):
        paired_difference([0.1, 0.2], [0.1])
