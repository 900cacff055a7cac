"""The shared signal layer (`musiclm.dsp`): one mel filterbank with two scales, one STFT, used by the training
losses, the metrics and the music analysis alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musiclm import dsp

SR = 16000
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_mel_scale_round_trips_and_anchors(scale):
    f = np.array([0.0, 100.0, 999.0, 1000.0, 4321.0, 12000.0])
    np.testing.assert_allclose(dsp.mel_to_hz(dsp.hz_to_mel(f, scale), scale), f, atol=1e-6)
    # 1 kHz is 15 mel on Slaney's scale (linear, 200/3 Hz per mel, below it) and ~1000 mel on HTK's
    assert float(dsp.hz_to_mel(1000.0, scale)) == pytest.approx(15.0 if scale == "slaney" else 1000.0, abs=0.1)
    with pytest.raises(ValueError, match="mel scale"):
        dsp.hz_to_mel(f, "bark")


@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_mel_filterbank_equals_librosa(scale):
    """Same triangles and area normalisation as librosa.filters.mel(norm="slaney"), on either scale."""
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels in [(SR, 512, 40), (24000, 2048, 80), (24000, 512, 40)]:
        ours = dsp.mel_filterbank(sr, n_fft, n_mels, scale=scale).numpy()
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, htk=scale == "htk", norm="slaney")
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-9)


def test_mel_filterbank_norms_and_tone_lands_in_its_band():
    area = dsp.mel_filterbank(SR, 1024, 64, scale="htk")
    summed = dsp.mel_filterbank(SR, 1024, 64, f_min=30.0, scale="htk", norm="sum")
    assert area.shape == summed.shape == (64, 513) and bool((area >= 0).all())
    torch.testing.assert_close(summed.sum(1), torch.ones(64))
    wide = area[-10:]  # bands many bins wide integrate to 1 over Hz
    torch.testing.assert_close(wide.sum(1) * (SR / 1024), torch.ones(10), rtol=0.02, atol=0.0)
    t = torch.arange(SR) / SR
    for hz in (300.0, 2500.0):
        mel = area @ dsp.stft_magnitude(torch.sin(2 * torch.pi * hz * t)[None, None], 1024, 256)[0]
        centres = dsp.mel_to_hz(np.linspace(0, dsp.hz_to_mel(SR / 2, "htk"), 66)[1:-1], "htk")
        assert int(mel.mean(-1).argmax()) == int(np.abs(centres - hz).argmin())
    with pytest.raises(ValueError, match="norm"):
        dsp.mel_filterbank(SR, 1024, 64, norm="max")


def test_stft_padding_modes_and_short_inputs():
    x = torch.randn(2, 3, 4000)
    spec = dsp.stft(x, 512, 128)
    assert spec.shape == (6, 257, 4000 // 128 + 1) and spec.dtype == torch.complex64
    # the modes differ only in the frames that reach into the padding
    zeros = dsp.stft(x, 512, 128, pad_mode="constant")
    torch.testing.assert_close(spec[..., 2:-2], zeros[..., 2:-2])
    assert not torch.allclose(spec[..., 0], zeros[..., 0])
    assert dsp.stft_magnitude(torch.randn(1, 1, 100), 512, 128).shape == (1, 257, 1)  # shorter than n_fft / 2


def test_losses_and_metrics_use_the_shared_layer():
    """The mel loss keeps Slaney (the shipped codec was trained with it), the log-mel metric HTK (its
    published figures): both are dsp.mel_filterbank, so the scale is the only difference."""
    from musiclm.evaluation.metrics import log_mel_distance
    from musiclm.training.losses import MelSpectrogram

    torch.testing.assert_close(MelSpectrogram(SR, 512, 40).fbank, dsp.mel_filterbank(SR, 512, 40, scale="slaney"))
    torch.manual_seed(0)
    ref, est = 0.1 * torch.randn(1, SR), 0.1 * torch.randn(1, SR)
    fb = dsp.mel_filterbank(SR, 2048, 80, scale="htk")

    def log_mel(x):
        return (fb @ dsp.stft(x[None], 2048, 512, pad_mode="constant").abs()).clamp(min=1e-5).log10()

    torch.testing.assert_close(log_mel_distance(ref, est, SR), (log_mel(ref) - log_mel(est)).abs().mean())
