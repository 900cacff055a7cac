"""Metrics that hear notes: note F1 (basic-pitch + mir_eval) and chroma agreement.

Synthetic piano-like notes (five harmonics, 5 ms attack, exponential decay) stand in for music: an identity
"codec" keeps every note, a semitone shift keeps none, and noise shaped like the music's spectral envelope
(what a codec that loses harmonics and phase produces) fools log-mel but not these metrics.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from musiclm.errors import MusicLMError
from musiclm.evaluation import metrics, notes
from musiclm.evaluation.notes import NoteEvents, note_f1, note_f1_from_events, note_scores_from_events, transcribe

SR = 24000  # the codec's rate: basic-pitch resamples to 22050 Hz itself
CHORALE = [[60, 64, 67, 72], [65, 69, 72, 77], [67, 71, 74, 79], [60, 64, 67, 72], [57, 60, 64, 69]]


def piano(pitches: list[int], start: float, length: float, total: float) -> np.ndarray:
    """A chord of decaying harmonic notes from `start` for `length` seconds in `total` seconds → [N]."""
    t = np.arange(int(total * SR)) / SR
    local = t - start
    on = (local >= 0) & (local < length)
    envelope = np.where(on, np.minimum(local / 0.005, 1.0) * np.exp(-3.0 * np.clip(local, 0, None)), 0.0)
    out = np.zeros_like(t)
    for pitch in pitches:
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        for k in range(1, 6):
            out += envelope * np.sin(2 * np.pi * k * f0 * local) / k
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def chorale(shift: int = 0, step: float = 0.5) -> np.ndarray:
    total = step * len(CHORALE) + 0.5
    out = sum(piano([p + shift for p in chord], i * step, step, total) for i, chord in enumerate(CHORALE))
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def envelope_noise(x: np.ndarray, smooth_bins: int = 15, seed: int = 0) -> np.ndarray:
    """Random-phase noise with x's STFT magnitude smoothed over ~350 Hz: the envelope stays, harmonics go."""
    window = torch.hann_window(1024)
    spec = torch.stft(torch.from_numpy(x), 1024, 256, window=window, return_complex=True)  # [F, T]
    mag = torch.nn.functional.avg_pool1d(
        spec.abs().T[:, None], smooth_bins, 1, smooth_bins // 2, count_include_pad=False
    )[:, 0].T
    phase = 2 * torch.pi * torch.rand(mag.shape, generator=torch.Generator().manual_seed(seed))
    return torch.istft(torch.polar(mag, phase), 1024, 256, window=window, length=len(x)).numpy()


@pytest.fixture(scope="module")
def extra():
    pytest.importorskip("basic_pitch", reason="note F1 needs the [eval] extra and basic-pitch (make install)")
    pytest.importorskip("mir_eval", reason="note F1 needs the [eval] extra (make install)")
    pytest.importorskip("onnxruntime", reason="note F1 needs the [eval] extra (make install)")


def test_a_tone_keeps_its_note_through_an_identity_codec(extra):
    t = np.arange(3 * SR) / SR
    tone = np.where(t < 1.0, 0.5 * np.sin(2 * np.pi * 440.0 * t), 0.0).astype(np.float32)  # A4, then silence
    events = transcribe(tone, SR)
    assert list(events.pitches) == [69]
    assert events.onsets[0] < 0.05 and 0.9 < events.offsets[0] < 1.1
    assert note_f1(tone, tone.copy(), SR) == 1.0
    silence = np.zeros(SR, np.float32)
    assert len(transcribe(silence, SR)) == 0 and note_f1(silence, silence, SR) == 1.0
    assert note_f1(tone, np.zeros_like(tone), SR) == 0.0
    # [C, N] tensors are mixed to mono: the same notes
    stereo = torch.from_numpy(np.stack([tone, tone]))
    assert note_f1_from_events(events, transcribe(stereo, SR)) == 1.0


def test_a_chord_keeps_its_notes_and_a_semitone_shift_loses_them(extra):
    chord = piano([60, 67], 0.1, 1.5, 2.0)  # C4 + G4
    shifted = piano([61, 68], 0.1, 1.5, 2.0)
    ref = transcribe(chord, SR)
    assert {60, 67} <= set(ref.pitches.tolist())
    assert note_f1_from_events(ref, transcribe(chord.copy(), SR)) == 1.0
    assert note_f1_from_events(ref, transcribe(shifted, SR)) == 0.0  # same onsets, pitch off by 100 cents


def test_an_added_note_costs_precision_and_a_lost_one_recall(extra):
    """A codec loses note F1 by adding notes (a partial heard as its own note) as much as by losing them;
    precision and recall say which."""
    t = np.arange(3 * SR) / SR

    def tone(hz: float, start: float) -> np.ndarray:  # a 0.8 s sine from `start`
        return np.where((t >= start) & (t < start + 0.8), 0.5 * np.sin(2 * np.pi * hz * t), 0.0).astype(np.float32)

    ref = transcribe(tone(440.0, 0.1) + tone(523.25, 1.1), SR)  # A4, then C5
    assert list(ref.pitches) == [69, 72]
    added = transcribe(tone(440.0, 0.1) + tone(523.25, 1.1) + tone(659.26, 2.1), SR)  # and an E5 after
    lost = transcribe(tone(440.0, 0.1), SR)  # C5 gone
    precision, recall, f1 = note_scores_from_events(ref, added)
    assert recall == 1.0 and precision < 1.0 and f1 == note_f1_from_events(ref, added)
    precision, recall, _ = note_scores_from_events(ref, lost)
    assert precision == 1.0 and recall < 1.0
    empty = transcribe(np.zeros(SR, np.float32), SR)
    assert note_scores_from_events(ref, empty) == (1.0, 0.0, 0.0)
    assert note_scores_from_events(empty, ref) == (0.0, 1.0, 0.0)
    assert note_scores_from_events(empty, empty) == (1.0, 1.0, 1.0)


def test_noise_with_the_music_envelope_fools_log_mel_but_not_note_f1(extra):
    music = chorale()
    shaped = envelope_noise(music)
    white = (0.2 * np.random.default_rng(0).standard_normal(music.size)).astype(np.float32)
    ref = transcribe(music, SR)
    assert len(ref) >= 4 * len(CHORALE)
    assert note_f1_from_events(ref, transcribe(white, SR)) < 0.1
    assert note_f1_from_events(ref, transcribe(shaped, SR)) < 0.1
    as_tensor = [torch.from_numpy(x)[None] for x in (music, shaped, white)]  # [1, N]
    assert metrics.log_mel_distance(as_tensor[0], as_tensor[1], SR) < metrics.log_mel_distance(
        as_tensor[0], as_tensor[2], SR
    )
    assert metrics.chroma_agreement(as_tensor[0], as_tensor[1], SR) < 0.3


def test_note_f1_edge_cases_and_partial_matches():
    none = NoteEvents(np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
    two = NoteEvents(np.array([0.0, 1.0]), np.array([0.5, 1.5]), np.array([60, 64]))
    assert note_f1_from_events(none, none) == 1.0  # nothing lost, nothing invented
    assert note_f1_from_events(two, none) == 0.0
    assert note_f1_from_events(none, two) == 0.0
    pytest.importorskip("mir_eval", reason="note F1 needs the [eval] extra (make install)")
    late = NoteEvents(np.array([0.04, 1.06]), np.array([0.3, 2.0]), np.array([60, 64]))
    assert note_f1_from_events(two, late) == pytest.approx(0.5)  # 40 ms is on time, 60 ms is not
    one = NoteEvents(np.array([0.0]), np.array([0.5]), np.array([60]))
    assert note_f1_from_events(two, one) == pytest.approx(2 / 3)  # precision 1, recall 1/2


def test_chroma_agreement_is_one_for_identity_and_near_zero_a_semitone_off():
    music, up = chorale(), chorale(shift=1)
    ref = torch.from_numpy(np.stack([music, up]))[:, None]  # [B=2, C=1, N]
    assert torch.all(metrics.chroma_agreement(ref, ref.clone(), SR) == 1.0)
    off = metrics.chroma_agreement(ref, torch.from_numpy(np.stack([up, music]))[:, None], SR)
    assert off.shape == (2,) and torch.all(off < 0.1)
    silence = torch.zeros(1, SR)
    assert metrics.chroma_agreement(silence, silence, SR) == 1.0  # no frame to judge: both silent agree
    assert metrics.chroma_agreement(silence, ref[0, :, :SR], SR) == 0.0


def test_onset_agreement_hears_attacks_kept_smeared_or_gone():
    """The chorale against itself: 1; against itself with every attack smeared into a 200 ms swell, or
    against a steady noise wash at its level: far lower; silence against silence agrees, music against
    silence does not."""
    music = chorale()
    ref = torch.from_numpy(music)[None]  # [1, N]
    assert metrics.onset_agreement(ref, ref.clone(), SR) == pytest.approx(1.0)
    ramp = np.convolve(np.abs(music), np.ones(int(0.2 * SR)) / int(0.2 * SR), mode="same")
    smeared = np.random.default_rng(0).standard_normal(len(music)) * ramp  # the envelope, no attacks
    wash = np.random.default_rng(1).standard_normal(len(music)) * np.sqrt(np.mean(music**2))
    for other in (smeared, wash):
        assert float(metrics.onset_agreement(ref, torch.from_numpy(other)[None].float(), SR)) < 0.5
    silence = torch.zeros(1, SR)
    assert metrics.onset_agreement(silence, silence, SR) == 1.0
    assert metrics.onset_agreement(ref[:, :SR], silence, SR) == 0.0


def test_codec_eval_leads_with_the_metrics_that_hear_notes(extra, tiny_codec):
    from musiclm.evaluation import codec_eval

    clip = torch.from_numpy(chorale()[: 2 * SR])[None]  # [1, N] at 24 kHz; the tiny codec runs at 8 kHz
    result = codec_eval.evaluate(tiny_codec, [(clip, SR)], keep_audio=0)
    assert codec_eval.METRIC_KEYS[:5] == ("note_f1", "note_precision", "note_recall", "si_snr", "chroma")
    for row in result.rows:
        assert list(row)[-len(codec_eval.METRIC_KEYS) :] == list(codec_eval.METRIC_KEYS)
        assert 0.0 <= row["note_f1"] <= 1.0 and 0.0 <= row["chroma"] <= 1.0
        assert 0.0 <= row["note_precision"] <= 1.0 and 0.0 <= row["note_recall"] <= 1.0
    assert "Note F1" not in result.note


def test_codec_eval_scores_what_decompress_gives_level_included(extra, tiny_codec):
    """A decoder 12 dB too quiet: the report's loudness difference is the compressor's (level corrections),
    not the bare decoder's."""
    from musiclm.audio import resample
    from musiclm.evaluation import codec_eval

    clip = torch.from_numpy(0.5 * chorale()[: 2 * SR])[None]
    ref = resample(clip, SR, tiny_codec.sample_rate)  # the codec's rate, as evaluate scores it
    decode = tiny_codec.decode
    with torch.no_grad():
        bare = decode(tiny_codec.encode(ref[None]), ref.shape[-1])[0]
    gain = float(ref.pow(2).mean().sqrt() / bare.pow(2).mean().sqrt()) * 10 ** (-12 / 20)
    assert codec_eval.quality(ref, gain * bare, tiny_codec.sample_rate)["loudness"] > 6  # what the model gives
    tiny_codec.decode = lambda codes, length=None, **kw: gain * decode(codes, length, **kw)
    rows = codec_eval.evaluate(tiny_codec, [(clip, SR)], keep_audio=0).rows
    for row in (r for r in rows if r["system"] == "musiclm codec"):
        assert row["loudness"] < 1.5, row
        assert row["kbps_on_disk"] > 0


def test_the_core_package_imports_without_the_extra():
    code = (
        "import sys\n"
        "import musiclm.evaluation.metrics, musiclm.evaluation.notes\n"
        "loaded = [m for m in ('basic_pitch', 'onnxruntime', 'mir_eval', 'librosa', 'visqol') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_missing_extra_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "basic_pitch", None)  # `import basic_pitch` now raises ImportError
    with pytest.raises(MusicLMError, match=r"\[eval\] extra"):
        transcribe(np.zeros(SR, np.float32), SR)
    from musiclm.evaluation import codec_eval

    heard, why = codec_eval.transcribe_all([torch.zeros(1, SR)], SR)  # the report's table degrades instead
    assert heard is None and why.startswith("Note F1 empty: note F1 needs the [eval] extra")
    monkeypatch.setitem(sys.modules, "visqol", None)
    metrics._visqol_api.cache_clear()
    try:
        with pytest.raises(MusicLMError, match=r"\[eval\] extra"):
            metrics.visqol(torch.zeros(1, SR), torch.zeros(1, SR), SR)
    finally:
        metrics._visqol_api.cache_clear()
    assert notes.INSTALL_HINT.startswith("note F1 needs the [eval] extra")


@pytest.mark.slow
def test_visqol_prefers_the_original_to_a_noisy_copy():
    pytest.importorskip("visqol", reason="ViSQOL needs the [eval] extra (make install)")
    music = torch.from_numpy(chorale())[None]  # [1, N]
    noisy = music + 0.05 * torch.randn(music.shape, generator=torch.Generator().manual_seed(0))
    same, worse = metrics.visqol(music, music, SR), metrics.visqol(music, noisy, SR)
    assert 1.0 <= worse < same <= 5.0


def test_visqol_leaves_torch_on_the_threads_it_was_given(monkeypatch):
    """numba's OpenMP layer (visqol-python's kernels) shares torch's libgomp and sets it to every core: a
    one-thread evaluation that had transcribed a 10 s clip ran torch on two threads after its first ViSQOL
    call. Here a stand-in for visqol-python does what numba did, on success and on failure."""

    class Api:
        def measure_from_arrays(self, ref, est, rate):
            torch.set_num_threads(2)
            if not np.any(ref):
                raise ValueError("silent reference")
            return type("Result", (), {"moslqo": 4.0})()

    monkeypatch.setattr(metrics, "_visqol_api", Api)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = 0.1 * torch.randn(1, SR, generator=torch.Generator().manual_seed(0))
        assert metrics.visqol(x, x, SR) == 4.0
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError):
            metrics.visqol(torch.zeros(1, SR), x, SR)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_key_from_events_weighs_pitch_classes_by_duration():
    """The captions' rule on transcribed notes: a C major scale whose tonic triad is held reads as C major,
    the same notes a fifth up as G major; held A-C-E with passing notes reads as A minor or its relative."""
    from musiclm.evaluation.notes import key_from_events

    def events(pitches, lengths):
        onsets = np.cumsum([0.0] + list(lengths[:-1]))
        return NoteEvents(onsets, onsets + np.array(lengths), np.array(pitches))

    scale, lengths = [60, 62, 64, 65, 67, 69, 71, 72], [2.0, 0.25, 2.0, 0.25, 2.0, 0.25, 0.25, 2.0]
    assert key_from_events(events(scale, lengths))[:2] == ("C", "major")
    assert key_from_events(events([p + 7 for p in scale], lengths))[:2] == ("G", "major")
    minor = key_from_events(events([57, 59, 60, 62, 64, 65, 68, 69], [2.0, 0.25, 2.0, 0.25, 2.0, 0.25, 0.5, 2.0]))
    assert minor[:2] == ("A", "minor")


def test_key_heard_from_a_rendered_chorale(extra):
    """The chorale (C major cadence) and the same a whole tone up, through basic-pitch."""
    from musiclm.evaluation.notes import estimate_key_from_notes

    assert estimate_key_from_notes(chorale(), SR)[:2] == ("C", "major")
    assert estimate_key_from_notes(chorale(shift=2), SR)[:2] == ("D", "major")
