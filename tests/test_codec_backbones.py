"""The codec's alternatives (issue 11): frame-domain backbone with an iSTFT head, Snake activations, and the
losses that see pitch and phase; plus the shared signal layer they use (`musiclm.dsp`)."""

import io
import math

import numpy as np
import pytest
import torch
from test_compress import without_levels

from musiclm import dsp
from musiclm.codec import Codec, bitstream
from musiclm.codec.framenet import FrameNetConfig, ISTFTHead, heterodyne_rotation
from musiclm.codec.seanet import Snake1d
from musiclm.codec.streaming import receptive_frames
from musiclm.compress import compress_bytes, decompress_bytes
from musiclm.training.losses import CompressedComplexSTFTLoss, MultiScaleCQTLoss, MultiScaleMelLoss

SR = 24000


def tone(midi: float, seconds: float = 1.0, phase: float = 0.0) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return (0.3 * torch.sin(2 * math.pi * float(dsp.midi_to_hz(midi)) * t + phase))[None, None]  # [1, 1, N]


@pytest.mark.parametrize("kind", ["magphase", "complex", "heterodyne"])
def test_istft_head_inverts_an_analysis_stft_exactly(kind):
    n_fft, hop = 64, 16
    heterodyne = kind == "heterodyne"
    head = ISTFTHead(n_fft, hop, channels=1, kind="magphase" if heterodyne else kind, heterodyne=heterodyne)
    wav = torch.randn(1, 16 * 50)
    pad = (n_fft - hop) // 2
    spec = torch.stft(
        torch.nn.functional.pad(wav, (pad, pad)),
        n_fft,
        hop,
        n_fft,
        torch.hann_window(n_fft),
        center=False,
        return_complex=True,
    )
    assert spec.shape[-1] == 50  # "same" framing: one frame per hop
    if heterodyne:  # the head takes phase against each bin's centre frequency, frames counted from 0
        spec = spec * heterodyne_rotation(n_fft // 2 + 1, 50, n_fft // hop, 0, -1)
    if kind != "complex":
        head_input = torch.cat([spec.abs().clamp(min=1e-12).log(), spec.angle()], dim=1)
    else:
        head_input = torch.cat([spec.real, spec.imag], dim=1)
    out = head(head_input)
    assert out.shape == (1, 1, 800)
    torch.testing.assert_close(out[0], wav, atol=1e-4, rtol=0)
    if heterodyne:  # a slice of the frames, told where it starts, gives the same samples
        part = head(head_input[..., 20:40], frame_offset=20)[0, 0]
        torch.testing.assert_close(part[hop * 4 : hop * 16], wav[0, hop * 24 : hop * 36], atol=1e-4, rtol=0)
        assert not torch.allclose(head(head_input[..., 21:41])[0, 0, hop * 4 : hop * 16], wav[0, hop * 25 : hop * 37])


def test_heterodyned_phase_of_a_steady_tone_turns_slowly_at_any_pitch():
    """Frame-local STFT phase of a steady sine turns by 2π·k/4 a frame in bin k (fast, and different per bin);
    against the bin's centre frequency it turns by 2π·(f - f_k)·hop/sr, slow wherever the pitch falls."""
    n_fft, hop, bins = 1920, 480, 961
    for midi in (60.0, 84.0, 84.37, 93.0):
        f = float(dsp.midi_to_hz(midi))
        spec = torch.stft(tone(midi)[0], n_fft, hop, n_fft, torch.hann_window(n_fft), center=False, return_complex=True)
        k = int(round(f * n_fft / SR))
        het = spec * heterodyne_rotation(bins, spec.shape[-1], 4, 0, -1)
        local_turn = torch.angle(spec[0, k, 1:] / spec[0, k, :-1])  # phase change per frame in the tone's bin
        het_turn = torch.angle(het[0, k, 1:] / het[0, k, :-1])
        expected = 2 * math.pi * (f - k * SR / n_fft) * hop / SR
        torch.testing.assert_close(het_turn, torch.full_like(het_turn, expected), atol=1e-3, rtol=0)
        assert abs(expected) <= math.pi / 4 + 1e-6  # within half a bin of the centre: at most 1/8 turn a frame
        if k % 4:
            assert local_turn.abs().mean() > 1.0  # a quarter turn or more per frame, frame-local


def test_every_backbone_streams_like_one_shot(any_tiny_codec):
    """Chunked .mlc coding (overlap-discard with a measured context) gives the one-shot codes and audio."""
    codec = any_tiny_codec
    assert 1 <= receptive_frames(codec) < 32  # finite: chunks with this context see what one-shot sees
    gen = torch.Generator().manual_seed(3)
    audio = 0.2 * torch.randn(1, 3 * 8000, generator=gen)  # [C, N] at the codec's rate
    data = compress_bytes(audio, codec, sample_rate=8000, bandwidth=12.0, chunk_seconds=0.25, band_gains=False)
    header, codes = bitstream.read_mlc(io.BytesIO(data))
    codec.set_bandwidth(12.0)
    one_shot_codes = codec.encode(audio[None])
    assert (torch.from_numpy(codes)[None] != one_shot_codes).float().mean() < 1e-3
    wav, sr = decompress_bytes(without_levels(data), codec)  # the codec's own audio, no level corrections
    one_shot_wav = codec.decode(torch.from_numpy(codes)[None], header.num_samples)[0]
    assert sr == 8000 and torch.allclose(wav, one_shot_wav, atol=1e-5)


def test_frame_codec_decoder_upsampling_keeps_lengths():
    from musiclm.codec import CodecConfig

    config = CodecConfig(
        sample_rate=8000,
        backbone="frame",
        frame=FrameNetConfig(dimension=16, hop_length=16, width=16, encoder_layers=1, decoder_layers=2, upsample=2),
        n_q=2,
        card=16,
        bandwidths=(1.0,),
    )
    codec = Codec(config).eval()
    wav = torch.randn(1, 1, 1001) * 0.1
    assert codec.decode(codec.encode(wav), 1001).shape == wav.shape
    assert codec.frame_rate == 500


def test_unknown_backbone_and_activation_are_clear_errors():
    from musiclm.codec import CodecConfig, SEANetConfig
    from musiclm.errors import MusicLMError

    with pytest.raises(MusicLMError, match="backbone"):
        Codec(CodecConfig(backbone="wavenet"))
    with pytest.raises(ValueError, match="activation"):
        Codec(CodecConfig(seanet=SEANetConfig(activation="relu")))


def test_snake_is_periodic_bias_with_learned_frequency():
    snake = Snake1d(2)
    x = torch.linspace(-3, 3, 101).expand(1, 2, 101).clone()
    y = snake(x)
    # snake(x) = x + sin²(αx)/α ≥ x, equal where sin(αx) = 0
    assert (y >= x - 1e-6).all() and torch.allclose(snake(torch.zeros(1, 2, 1)), torch.zeros(1, 2, 1))
    y.sum().backward()
    assert snake.alpha.grad.abs().sum() > 0


def test_cqt_resolves_low_semitones_and_chroma_names_the_pitch_class():
    for midi in (36, 45, 57, 69):  # C2 (65 Hz), A2, A3, A4
        spectrum = dsp.cqt_magnitude(tone(midi, 2.0), SR).mean(-1)[0]  # 24 bins per octave from C1
        # within a quarter tone even at C2, where bands (1.9 Hz) are narrower than the 8192-point bins (2.9 Hz)
        assert abs(int(spectrum.argmax()) - 2 * (midi - 24)) <= 1
        assert int(dsp.chroma(tone(midi, 2.0), SR).mean(-1)[0].argmax()) == midi % 12


def test_cqt_loss_hears_a_low_semitone_nearly_as_well_as_a_high_one():
    """Constant Q: a semitone error at A2 (110 Hz) costs the CQT loss a good share of what the same error costs
    three octaves up; for the mel loss (linear bands below 1 kHz) the low error nearly vanishes."""
    cqt, mel = MultiScaleCQTLoss(SR), MultiScaleMelLoss(SR, (2048, 1024, 512), 64)
    assert float(cqt(tone(45), tone(45))) == 0.0
    cqt_low_vs_high = float(cqt(tone(46), tone(45))) / float(cqt(tone(82), tone(81)))
    mel_low_vs_high = float(mel(tone(46), tone(45))) / float(mel(tone(82), tone(81)))
    assert cqt_low_vs_high > 1.5 * mel_low_vs_high, (cqt_low_vs_high, mel_low_vs_high)


def test_complex_loss_sees_phase_that_magnitude_losses_do_not():
    complex_loss = CompressedComplexSTFTLoss((512, 128))
    a4, a4_inverted = tone(69), tone(69, phase=math.pi)
    mel = MultiScaleMelLoss(SR, (512, 128), 32)
    assert float(complex_loss(a4, a4)) == 0.0
    assert float(mel(a4_inverted, a4)) < 1e-3  # same magnitudes: invisible to the mel loss
    assert float(complex_loss(a4_inverted, a4)) > 0.1


def test_phase_cutoff_asks_for_phase_below_it_and_only_magnitude_above():
    low, high = tone(55), tone(100)  # G3 196 Hz, E7 2637 Hz
    low_flipped, high_flipped = tone(55, phase=math.pi), tone(100, phase=math.pi)
    banded = CompressedComplexSTFTLoss((512, 128), sample_rate=SR, phase_cutoff_hz=1000.0)
    full = CompressedComplexSTFTLoss((512, 128), sample_rate=SR)
    assert float(banded(low_flipped, low)) > 0.1  # a phase error below the cutoff still costs
    assert float(full(high_flipped, high)) > 0.1
    # above it nearly free (what is left is window leakage, raised by the 0.3 power compression)
    assert float(banded(high_flipped, high)) < 0.2 * float(full(high_flipped, high))
    mixed = low + high
    kept = dsp.lowpass(mixed, SR, 1000.0)
    torch.testing.assert_close(kept[..., 2000:-2000], low[..., 2000:-2000], atol=2e-3, rtol=0)


def test_chroma_filterbank_rows_are_pitch_classes():
    fb = dsp.chroma_filterbank(SR, 4096).numpy()
    freqs = np.linspace(0, SR / 2, fb.shape[1])
    a4_bin = int(np.argmin(np.abs(freqs - 440.0)))
    assert int(fb[:, a4_bin].argmax()) == 9  # A
    assert fb[:, 0].sum() == 0  # DC belongs to no pitch class


def test_magnitude_input_widens_an_old_encoder_without_changing_it():
    """`init_from` a frame codec without magnitude input: the new channels start at zero, so the encoder
    computes what it computed before; once they are trained, a steady tone's magnitude reaches the latent."""
    from conftest import _tiny_config

    torch.manual_seed(0)
    old = Codec(_tiny_config("frame")).eval()
    config = _tiny_config("frame")
    config.frame.magnitude_input = True
    new = Codec(config).eval()
    with pytest.raises(RuntimeError, match="size mismatch"):
        new.load_state_dict(old.state_dict())
    new.load_state_dict(new.encoder.widen_with_magnitude_input(old.state_dict(), prefix="encoder."))
    x = 0.2 * torch.randn(1, 1, 800, generator=torch.Generator().manual_seed(1))
    # the zero channels change how a convolution sums on some CPUs (5e-7 of 2.1 measured on an AMD EPYC); the
    # codes, which the LM sees, stay the same
    torch.testing.assert_close(new.encoder(x), old.encoder(x), rtol=0, atol=1e-5)
    assert torch.equal(new.encode(x), old.encode(x))
    with torch.no_grad():
        new.encoder.net.embed.weight.normal_()
    assert not torch.allclose(new.encoder(x), old.encoder(x))
    with pytest.raises(ValueError, match="no magnitude input"):
        old.encoder.widen_with_magnitude_input(old.state_dict(), prefix="encoder.")


def test_transient_input_widens_an_old_encoder_and_sees_where_in_a_frame_a_click_falls():
    """`init_from` an encoder without transient input: unchanged at first (the new weights start at zero);
    its short-window features put a click in the sub-frame of the frame where it falls."""
    from conftest import _tiny_config

    torch.manual_seed(0)
    old = Codec(_tiny_config("frame")).eval()
    config = _tiny_config("frame")
    config.frame.transient_input = 4
    new = Codec(config).eval()
    new.load_state_dict(new.encoder.widen_with_transient_input(old.state_dict(), prefix="encoder."))
    x = 0.2 * torch.randn(1, 1, 803, generator=torch.Generator().manual_seed(1))  # not a whole number of hops
    torch.testing.assert_close(new.encoder(x), old.encoder(x), rtol=0, atol=1e-5)  # summation order, as above
    hop = config.frame.hop_length
    sub = hop // 4
    for j in range(4):
        click = torch.zeros(1, 1, 6 * hop)
        click[..., 3 * hop + j * sub + sub // 2] = 1.0
        energy = new.encoder.transients(click, 6).reshape(4, -1, 6).sum(1)  # [sub-frame, frame]
        assert divmod(int(energy.argmax()), 6) == (j, 3)
    with pytest.raises(ValueError, match="no transient input"):
        old.encoder.widen_with_transient_input(old.state_dict(), prefix="encoder.")


def test_head_analysis_framing_is_the_one_it_synthesises():
    """`ISTFTHead.analyze` gives the spectrum the head turns back into the same samples."""
    head = ISTFTHead(64, 16, channels=1, max_magnitude=1e6)
    wav = torch.randn(2, 1, 16 * 40)
    spec = head.analyze(wav)
    assert spec.shape == (2, 33, 40)
    head_input = torch.cat([spec.abs().clamp(min=1e-12).log(), spec.angle()], dim=1)
    torch.testing.assert_close(head(head_input), wav, atol=1e-4, rtol=0)


def test_magnitude_ceiling_caps_a_loud_sine_unless_raised():
    """Vocos' 1e2 magnitude clip caps a partial's peak bin at amplitude ~0.21 at n_fft 1920, so a 0.9-amplitude
    sine comes out ~10 dB quiet; `max_magnitude` lifts the cap."""
    loud = 3 * tone(69)  # amplitude 0.9
    for ceiling, low_db, high_db in ((1e2, -12.0, -8.0), (1e3, -0.3, 0.3)):
        head = ISTFTHead(1920, 480, channels=1, max_magnitude=ceiling)
        spec = head.analyze(loud)
        out = head(torch.cat([spec.abs().clamp(min=1e-12).log(), spec.angle()], dim=1))
        middle = slice(SR // 4, 3 * SR // 4)
        level_db = 20 * math.log10(float(out[..., middle].std() / loud[..., middle].std()))
        assert low_db < level_db < high_db, (ceiling, level_db)


def _purity_and_level(out: torch.Tensor, ref: torch.Tensor, f: float) -> tuple[float, float]:
    """Share of the middle second's energy within 5 Hz of f (Hann-windowed), and its level against ref in dB."""
    y, x = out[0, 0, SR // 2 : 3 * SR // 2].numpy(), ref[0, 0, SR // 2 : 3 * SR // 2].numpy()
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    near = np.abs(np.fft.rfftfreq(len(y), 1 / SR) - f) < 5
    return float(spectrum[near].sum() / spectrum.sum()), float(20 * np.log10(y.std() / x.std()))


@pytest.mark.parametrize("f", [452.9, 1078.0, 1812.0, 3700.0])  # all between the A440 pitches
def test_vocoder_phase_makes_a_steady_sine_coherent_at_any_pitch_from_its_magnitude(f):
    """Given only a sine's magnitudes (phase input all zero), the vocoder-phase head plays the sine back clean
    and at level; the learned-phase head, given the same constant phase, does not."""
    t = torch.arange(2 * SR) / SR
    sine = (0.1 * torch.sin(2 * math.pi * f * t))[None, None]
    learned = ISTFTHead(1920, 480, channels=1, max_magnitude=1e3)
    vocoder = ISTFTHead(1920, 480, channels=1, max_magnitude=1e3, vocoder_from_bin=0)
    spec = learned.analyze(sine)
    magnitudes_only = torch.cat([spec.abs().clamp(min=1e-9).log(), torch.zeros_like(spec.real)], dim=1)
    purity, level = _purity_and_level(vocoder(magnitudes_only), sine, f)
    assert purity > 0.95 and abs(level) < 0.5, (purity, level)
    purity, level = _purity_and_level(learned(magnitudes_only), sine, f)
    assert purity < 0.5 or level < -6.0


def test_vocoder_phase_keeps_the_learned_phase_below_its_bin():
    """Below `vocoder_from_bin` the head plays the phase it is given (a low tone comes back sample-exact);
    above it a high tone comes back clean from its magnitudes; the complex head cannot take vocoder phase."""
    low, high = tone(55), tone(98, phase=1.0)  # G3 196 Hz; D7 2349 Hz
    head = ISTFTHead(1920, 480, channels=1, max_magnitude=1e3, vocoder_from_bin=40)  # 500 Hz
    spec = head.analyze(low + high)
    out = head(torch.cat([spec.abs().clamp(min=1e-9).log(), spec.angle()], dim=1))
    kept_low = dsp.lowpass(out, SR, 500.0)[..., 4000:-4000]
    torch.testing.assert_close(kept_low, low[..., 4000:-4000], atol=3e-3, rtol=0)
    above_1k = out - dsp.lowpass(out, SR, 1000.0)  # clear of the low tone's window leakage
    purity, level = _purity_and_level(above_1k, high, float(dsp.midi_to_hz(98)))
    assert purity > 0.9 and abs(level) < 1.0, (purity, level)
    with pytest.raises(ValueError, match="vocoder phase"):
        ISTFTHead(64, 16, channels=1, kind="complex", vocoder_from_bin=4)


def test_vocoder_phase_recurrence_on_numpy_equals_the_torch_one_to_the_bit(monkeypatch):
    """The CPU runs vocoder_phase's frame-by-frame recurrence in numpy (lighter per call), other devices in
    torch: the same phases to the last bit, for a batch, a continued track (known frames) and one frame."""
    from musiclm.codec import framenet

    generator = torch.Generator().manual_seed(0)
    cases = [(1, 961, 120, 0), (3, 97, 40, 5), (2, 65, 1, 0), (2, 65, 6, 6)]
    for batch, bins, frames, known_frames in cases:
        log_mag = 2 * torch.randn(batch, bins, frames, generator=generator)
        known = torch.rand(batch, bins, known_frames, generator=generator) * 6 - 3 if known_frames else None
        on_numpy = framenet.vocoder_phase(log_mag, 480, 1920, known, frame_offset=11)
        with monkeypatch.context() as m:
            m.setattr(framenet, "_propagate_numpy", framenet._propagate_torch)
            on_torch = framenet.vocoder_phase(log_mag, 480, 1920, known, frame_offset=11)
        assert on_numpy.shape == (batch, bins, frames)
        assert torch.equal(on_numpy, on_torch)
        assert on_numpy.abs().max() <= math.pi + 1e-6
        if known is not None:
            assert torch.equal(on_numpy[..., :known_frames], known[..., :frames])


def test_a_vocoder_phase_codec_round_trips_its_config_and_decodes(tmp_path):
    from conftest import _tiny_config

    config = _tiny_config("frame")
    config.frame.vocoder_phase_hz = 1000.0
    codec = Codec(config).eval()
    assert codec.decoder.head.vocoder_from_bin == math.ceil(1000.0 * 32 / 8000)
    codec.save_pretrained(tmp_path / "voc")
    again = Codec.from_pretrained(tmp_path / "voc")
    x = 0.2 * torch.randn(1, 1, 800, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.decode(again.encode(x)), codec.decode(codec.encode(x)))
    assert again.decode(again.encode(x)).shape == (1, 1, 800)


def test_magnitude_grad_floor_changes_the_gradient_not_the_sound():
    """exp(log-magnitude) with its gradient floored: the same forward pass (train or eval), and a silent bin
    (log-magnitude -10) passes `floor` back instead of exp(-10)."""
    from musiclm.codec.framenet import exp_with_grad_floor

    x = torch.tensor([-10.0, 0.0, 2.0], requires_grad=True)
    y = exp_with_grad_floor(x, 0.1)
    torch.testing.assert_close(y, x.detach().exp())
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.1, 1.0, math.exp(2.0)]))
    plain, floored = ISTFTHead(64, 16, channels=1), ISTFTHead(64, 16, channels=1, magnitude_grad_floor=0.1)
    spectrum = torch.cat([torch.full((1, 33, 10), -10.0), torch.rand(1, 33, 10)], dim=1)
    torch.testing.assert_close(floored.train()(spectrum), plain(spectrum))
    grads = []
    for head in (plain, floored):
        s = spectrum.clone().requires_grad_()
        head.train()(s).pow(2).sum().backward()  # any loss that wants the bins louder or quieter
        grads.append(s.grad[:, :33].abs().sum())
    assert float(grads[1]) > 100 * float(grads[0])
