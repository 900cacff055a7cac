"""Evaluation building blocks: Fréchet distance, embeddings, perplexity, adherence scoring, Opus, speed."""

import math
import re

import numpy as np
import pytest
import torch

from musiclm.errors import MusicLMError
from musiclm.evaluation.adherence import Estimators, Probe, default_probes, evaluate_adherence, score
from musiclm.evaluation.embedding import FEATURE_DIM, embed_clips, feature_embedding
from musiclm.evaluation.fad import diversity, frechet_distance
from musiclm.evaluation.perplexity import PerplexityAccumulator, codebook_perplexity

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 16000


# ---- Fréchet distance and diversity ----------------------------------------------------------------------
def test_frechet_distance_zero_on_same_set_and_grows_with_shift():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    fds = [frechet_distance(x, x + shift) for shift in (0.5, 1.0, 2.0)]
    # A mean shift s in every one of D dims adds exactly D * s^2.
    for shift, fd in zip((0.5, 1.0, 2.0), fds, strict=True):
        assert fd == pytest.approx(8 * shift**2, rel=1e-6)
    assert frechet_distance(x, 3.0 * x) > frechet_distance(x, 1.5 * x) > 0.1  # a covariance change counts


def test_frechet_distance_rejects_bad_input():
    with pytest.raises(MusicLMError):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(MusicLMError):
        frechet_distance(np.zeros((5, 4)), np.zeros((5, 3)))


def test_diversity_is_mean_pairwise_distance():
    pts = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert diversity(pts) == pytest.approx((5 + 0 + 5) / 3)
    assert diversity(np.ones((4, 3))) == 0.0


def _tone(freq, seconds=1.0, sr=SR, amp=0.3):
    t = torch.arange(int(seconds * sr)) / sr
    return (amp * torch.sin(2 * math.pi * freq * t))[None]


def test_feature_embedding_separates_sounds_and_fd_of_audio_sets():
    emb = feature_embedding(_tone(440), SR)
    assert emb.shape == (FEATURE_DIM,) and np.isfinite(emb).all()
    # Same audio at another sample rate embeds nearly the same (everything goes through 16 kHz).
    emb24 = feature_embedding(_tone(440, sr=24000), 24000)
    other = feature_embedding(_tone(880), SR)
    assert np.linalg.norm(emb - emb24) < 0.2 * np.linalg.norm(emb - other)
    low = embed_clips([(_tone(f), SR) for f in (200, 210, 220, 230)])
    low2 = embed_clips([(_tone(f), SR) for f in (205, 215, 225, 235)])
    high = embed_clips([(_tone(f), SR) for f in (1600, 1680, 1760, 1840)])
    assert frechet_distance(low, low2) < frechet_distance(low, high)


# ---- perplexity --------------------------------------------------------------------------------------------
def test_perplexity_uniform_equals_card_and_confident_is_one():
    B, K, S, card = 2, 3, 5, 16
    targets = torch.randint(0, card, (B, K, S))
    assert codebook_perplexity(torch.zeros(B, K, S, card), targets) == pytest.approx([card] * K)
    confident = torch.nn.functional.one_hot(targets, card).float() * 100
    assert codebook_perplexity(confident, targets) == pytest.approx([1.0] * K, abs=1e-6)


def test_perplexity_mask_and_accumulation_match_one_batch():
    torch.manual_seed(0)
    logits, targets = torch.randn(4, 2, 6, 8), torch.randint(0, 8, (4, 2, 6))
    targets[:, 1, :2] = -1  # padding positions (delay pattern) are not counted
    whole = codebook_perplexity(logits, targets)
    acc = PerplexityAccumulator()
    acc.update(logits[:2], targets[:2])
    acc.update(logits[2:], targets[2:])
    assert acc.perplexity() == pytest.approx(whole)
    ce = torch.nn.functional.cross_entropy(logits[:, 1, 2:].reshape(-1, 8), targets[:, 1, 2:].reshape(-1))
    assert whole[1] == pytest.approx(math.exp(ce.item()), rel=1e-5)
    with pytest.raises(MusicLMError):
        codebook_perplexity(logits, targets[..., :3])


# ---- control adherence -------------------------------------------------------------------------------------
NOTE_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
BRIGHT_WORDS = ("tin whistle", "xylophone", "music box", "recorder")


def synth_for(text: str, seconds: float = 6.0, obey: bool = True) -> torch.Tensor:
    """Audio that does (obey=True) or ignores (obey=False) what `text` asks: clicks at the requested BPM, a
    tonic triad in the requested mode, a high or low register. Returns [N] at SR."""
    bpm = float(re.search(r"(\d+) BPM", text).group(1)) if obey else 100.0
    m = re.search(r"in ([A-G]) (major|minor)", text)
    tonic, mode = (NOTE_PC[m.group(1)], m.group(2)) if obey else (0, "major")
    bright = obey and any(w in text for w in BRIGHT_WORDS)
    n = int(seconds * SR)
    t = torch.arange(n) / SR
    base = 60 + tonic + (24 if bright else -12)  # MIDI note of the tonic
    notes = [base, base + (4 if mode == "major" else 3), base + 7]
    tone = sum(torch.sin(2 * math.pi * 440 * 2 ** ((p - 69) / 12) * t) for p in notes) / 3
    env = torch.zeros(n)
    period = int(SR * 60 / bpm)
    for start in range(0, n, period):  # a decaying note at every beat: onsets at the tempo
        seg = min(period, n - start)
        env[start : start + seg] = torch.exp(-torch.arange(seg) / (0.08 * SR))
    return 0.5 * tone * env


def stub_generate(obey):
    def generate_fn(texts, cfg, seed):
        follow = obey(cfg)
        return torch.stack([synth_for(t, obey=follow)[None] for t in texts]), SR  # [B, 1, N]

    return generate_fn


@pytest.fixture(scope="module")
def estimators():
    pytest.importorskip("musiclm.data.analysis")
    return Estimators.default()


@pytest.mark.slow
def test_adherence_detects_met_and_unmet_requests(estimators):
    probes = default_probes()
    # Guided: does what it is asked; unguided (cfg=1): ignores the prompt (same audio for every text).
    results = evaluate_adherence(stub_generate(lambda cfg: cfg > 1), cfg=3.0, probes=probes, estimators=estimators)
    guided = {s.control: s for s in results[3.0]}
    unguided = {s.control: s for s in results[1.0]}
    assert set(guided) == {"tempo", "mode", "brightness"}
    for s in guided.values():
        assert s.rate == 1.0, (s.control, s.detail)
        assert s.p_value < 0.1
    assert guided["mode"].detail["tonic right"] >= 0.75
    assert guided["tempo"].detail["mean fast"] > guided["tempo"].detail["mean slow"]
    for s in unguided.values():  # identical audio for both prompts of a pair: ties count half, no better
        assert s.rate <= 0.5, (s.control, s.rate)
        assert s.p_value > 0.3


def test_score_counts_ties_half_and_reversals_as_unmet():
    rows = []
    for pair, (slow, fast) in enumerate([(60.0, 140.0), (140.0, 60.0), (100.0, 100.0), (70.0, 90.0)]):
        rows += [
            {"probe": Probe("tempo", pair, "x", "slow"), "value": slow},
            {"probe": Probe("tempo", pair, "y", "fast"), "value": fast},
        ]
    rows += [
        {"probe": Probe("mode", 0, "a", "major", "D"), "value": ("D", "major", 0.3)},
        {"probe": Probe("mode", 0, "b", "minor", "D"), "value": ("F", "major", 0.3)},
    ]
    scores = {s.control: s for s in score(rows)}
    assert scores["tempo"].n == 4 and scores["tempo"].met == 2.5  # 2 met, 1 reversed, 1 tie
    assert scores["mode"].rate == 0.5 and scores["mode"].detail["tonic right"] == 0.5


def test_adherence_rejects_wrong_batch_from_generator(estimators):
    def bad(texts, cfg, seed):
        return torch.zeros(1, 1, SR), SR

    with pytest.raises(MusicLMError, match="returned"):
        evaluate_adherence(bad, probes=default_probes()[:2], estimators=estimators, compare_unguided=False)


def test_more_seeds_give_more_pairs_each_drawn_with_its_own_seed(estimators):
    probes = [p for p in default_probes() if p.control == "tempo"][:4]  # two slow/fast pairs
    seen = []

    def generate_fn(texts, cfg, seed):
        seen.append(seed)
        return torch.stack([synth_for(t, seconds=3.0)[None] for t in texts]), SR

    once = evaluate_adherence(generate_fn, probes=probes, estimators=estimators, compare_unguided=False)[3.0]
    seen.clear()
    thrice = evaluate_adherence(generate_fn, probes=probes, estimators=estimators, compare_unguided=False, seeds=3)
    assert once[0].n == 2 and thrice[3.0][0].n == 6 and thrice[3.0][0].rate == 1.0
    assert sorted(set(seen)) == [0, 1, 2]
    with pytest.raises(MusicLMError, match="seeds"):
        evaluate_adherence(generate_fn, probes=probes, estimators=estimators, seeds=0)


# ---- Opus baseline and speed -------------------------------------------------------------------------------
def test_opus_roundtrip_keeps_length_and_tracks_bitrate():
    from musiclm.evaluation.opus import ffmpeg_available, opus_roundtrip

    if not ffmpeg_available():
        pytest.skip("ffmpeg with libopus not installed")
    x = _tone(440, seconds=1.0, sr=24000)
    low, low_kbps = opus_roundtrip(x, 24000, 6)
    high, high_kbps = opus_roundtrip(x, 24000, 32)
    assert low.shape == x.shape and high.shape == x.shape
    assert low_kbps < high_kbps
    err = [float(((x - y) ** 2).mean() / (x**2).mean()) for y in (low, high)]
    assert err[1] < 0.1  # decoded audio is aligned with the input, not shifted
    # constant bitrate: a tone takes as many bits as noise (VBR would spend far fewer on the tone)
    noise = 0.3 * torch.randn(1, 24000, generator=torch.Generator().manual_seed(0))
    _, noise_kbps = opus_roundtrip(noise, 24000, 12)
    _, tone_kbps = opus_roundtrip(0.01 * x, 24000, 12)
    assert tone_kbps == pytest.approx(noise_kbps, rel=0.02)


def test_codec_speed_measures_positive_rates_and_restores_threads(tiny_codec):
    from musiclm.evaluation.speed import measure_codec

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        row = measure_codec(tiny_codec, seconds=0.5, threads=1, repeats=1)
        assert torch.get_num_threads() == 2  # the caller's setting is back after measuring on one thread
    finally:
        torch.set_num_threads(before)
    assert row.threads == 1 and row.seconds == 0.5 and row.peak_memory_mb is None  # CPU: no in-process peak
    assert row.encode_x_realtime > 0 and row.decode_x_realtime > 0


def test_lm_perplexity_matches_the_training_loss(tmp_path):
    """Teacher-forced perplexity of a tiny random LM equals exp(its own per-codebook loss), skipping the
    delay pattern's empty cells; a random model is near uniform (perplexity near card)."""
    from test_lm_model import tiny_lm, train_tokenizer

    from musiclm.evaluation.lm_perplexity import lm_score_batch

    model = tiny_lm()
    model.tokenizer = train_tokenizer(tmp_path)
    codes = torch.randint(0, model.card, (3, model.n_q + 2, 10))  # extra codebooks are ignored
    texts = ["calm piano in c major, slow", "a fast folk tune", "slow string quartet in d minor"]
    logits, targets, mask = lm_score_batch(model, codes, texts)
    assert not mask.all() and (targets[~mask] == -1).all()
    ppl = codebook_perplexity(logits, targets, mask)
    from musiclm.lm import apply_delay

    _, per_q = model.loss(logits, apply_delay(codes[:, : model.n_q], model.special_id))
    assert ppl == pytest.approx(torch.exp(per_q).tolist(), rel=1e-4)
    assert all(0.5 * model.card < p < 2 * model.card for p in ppl)


def test_estimator_ceiling_on_labelled_clips(estimators):
    from musiclm.evaluation.adherence import estimator_ceiling

    labels = [("C", "major", 60), ("D", "minor", 144), ("G", "major", 140), ("A", "minor", 64)]
    clips = [(synth_for(f"a piece in {k} {m}, {b} BPM").numpy(), SR, {"mode": m, "bpm": b}) for k, m, b in labels]
    scores = {s.control: s for s in estimator_ceiling(clips, estimators)}
    assert scores["mode"].n == 4 and scores["mode"].rate == 1.0
    assert scores["tempo"].n == 4 and scores["tempo"].rate == 1.0  # the 4 pairs with a 1.5x BPM ratio
    flipped = [
        (x, sr, {"mode": "minor" if f["mode"] == "major" else "major", "bpm": 200 - f["bpm"]}) for x, sr, f in clips
    ]
    assert all(s.rate == 0.0 for s in estimator_ceiling(flipped, estimators))


@pytest.mark.slow
def test_shard_perplexity_scores_held_out_tokens_of_the_models_codec(tmp_path):
    from test_report import _tiny_lm_dir, _write_manifest

    from musiclm.codec import Codec
    from musiclm.data.shards import tokenize_manifest
    from musiclm.evaluation.lm_perplexity import shard_perplexity
    from musiclm.lm import MusicLM

    manifest = _write_manifest(tmp_path / "data")
    model = MusicLM.from_pretrained(_tiny_lm_dir(tmp_path))
    tokenize_manifest(manifest, tmp_path / "lm_codec", tmp_path / "shards", progress=False)
    ppl, where = shard_perplexity(model, tmp_path / "shards")
    assert "2 test-split clips" in where
    assert len(ppl) == model.n_q and all(0.5 * model.card < p < 2 * model.card for p in ppl)
    # the same tokens under the null condition: other numbers (the text is used); another clip's caption is
    # the same sentence in this manifest, so nothing changes
    unconditional, _ = shard_perplexity(model, tmp_path / "shards", captions="none")
    assert len(unconditional) == model.n_q and unconditional != ppl
    assert shard_perplexity(model, tmp_path / "shards", captions="other")[0] == ppl
    with pytest.raises(MusicLMError, match="captions must be"):
        shard_perplexity(model, tmp_path / "shards", captions="wrong")
    other = Codec.from_pretrained(tmp_path / "lm_codec")
    with torch.no_grad():
        next(other.encoder.parameters()).add_(1.0)  # another codec: its tokens mean something else
    object.__setattr__(model, "codec", other)
    with pytest.raises(MusicLMError, match="shards were made with codec"):
        shard_perplexity(model, tmp_path / "shards")


# ---- held tones through a codec --------------------------------------------------------------------------
class _FakeCodec:
    """encode = the waveform itself, decode = it scaled by `gain` above `cutoff_hz` (a codec that loses
    high notes loses their energy)."""

    sample_rate = 16000

    def __init__(self, cutoff_hz: float, gain: float):
        self.cutoff_hz, self.gain = cutoff_hz, gain

    def encode(self, wav, n_q=None):
        return wav

    def decode(self, codes, length=None):
        spec = torch.fft.rfft(codes)
        freqs = torch.fft.rfftfreq(codes.shape[-1], 1 / self.sample_rate)
        spec[..., freqs > self.cutoff_hz] *= self.gain
        return torch.fft.irfft(spec, codes.shape[-1])[..., :length]


def test_a_noise_wash_at_the_right_level_keeps_the_level_but_loses_the_band():
    """A "codec" that returns white noise at the input's RMS passes the total-level test and fails the band."""
    from musiclm.evaluation.tones import lost_share, tone_levels

    rng = np.random.default_rng(0)

    def wash(x: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal(len(x)).astype(np.float32)
        return noise * float(np.sqrt(np.mean(x**2)) / np.sqrt(np.mean(noise**2)))

    levels = tone_levels(wash, 16000, [60, 72, 84], kinds=("sine",))
    assert lost_share(levels) == 0.0
    assert lost_share(levels, band=True) == 1.0 and all(lv.band_db < -15 for lv in levels)


def test_tone_levels_find_the_pitches_a_codec_loses():
    from musiclm.evaluation.tones import codec_roundtrip, lost_share, make_tone, tone_levels

    pitches = [48, 60, 72, 84]  # C3 .. C6: 131, 262, 523, 1047 Hz
    identity = tone_levels(codec_roundtrip(_FakeCodec(cutoff_hz=8000, gain=1.0)), 16000, pitches)
    assert all(abs(lv.level_db) < 0.01 for lv in identity) and lost_share(identity) == 0.0
    lossy = tone_levels(codec_roundtrip(_FakeCodec(700, 0.01)), 16000, pitches, kinds=("sine",))
    assert [lv.pitch for lv in lossy if lv.level_db < -6] == [84]  # C6's fundamental is above the cut
    harmonic = tone_levels(codec_roundtrip(_FakeCodec(700, 0.01)), 16000, pitches, kinds=("harmonic",))
    assert [lv.level_db < -6 for lv in harmonic] == [False, False, False, True]
    assert -6 < harmonic[2].level_db < -0.5  # C5 keeps its fundamental, loses its upper partials
    assert all(abs(lv.band_db) < 0.01 for lv in identity) and lost_share(identity, band=True) == 0.0
    # the validation probe: quarter-tone-off sines every 3 semitones; the 6 above the 700 Hz cut are lost
    from musiclm.evaluation.tones import OFF_GRID_PITCHES, sine_band_lost_share

    assert sum(p > 77 for p in OFF_GRID_PITCHES) == 6  # 700 Hz is MIDI 77.0
    assert sine_band_lost_share(codec_roundtrip(_FakeCodec(700, 0.01)), 16000) == 6 / 20
    assert sine_band_lost_share(codec_roundtrip(_FakeCodec(8000, 1.0)), 16000) == 0.0
    tone = make_tone("vibrato", 69, 16000)
    assert tone.dtype == np.float32 and abs(np.abs(tone).max() - 0.1) < 1e-6
    with pytest.raises(ValueError, match="unknown tone kind"):
        make_tone("square", 60, 16000)
