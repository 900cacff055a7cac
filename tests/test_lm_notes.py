"""The note-conditioned LM: notes reach the frames they describe, survive the KV cache, windows and guidance;
shards carry them aligned with the codes; training batches drop or reduce them at the configured rates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from symusic import Note, Score, Tempo, Track
from test_lm_model import text_batch, tiny_lm

from musiclm.data.manifest import write_manifest
from musiclm.data.shards import TokenShards, tokenize_manifest
from musiclm.errors import MusicLMError
from musiclm.lm import apply_delay
from musiclm.lm.sample import SamplingParams, generate_codes
from musiclm.notes.features import chroma_features, piano_roll_features
from musiclm.notes.midi import save_midi
from musiclm.training.token_dataset import FixedBatches, NoteViews, TokenCrops, TokenItem, chroma_one_hot

pytestmark = pytest.mark.usefixtures("one_thread")

F = 48
GREEDY = SamplingParams(temperature=0.0, cfg=1.0)


def note_lm(seed: int = 0, **kw):
    return tiny_lm(seed, note_features=F, **kw)  # card 32, K 4, max_frames 24


def random_notes(B: int, T: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, T, F, generator=g) > 0.8).float()


# ---- the model --------------------------------------------------------------------------------------
def test_notes_change_the_logits_and_zeros_are_no_notes():
    model = note_lm()
    ids, mask = text_batch()
    codes = apply_delay(torch.randint(0, 32, (2, 4, 10)), model.special_id)
    with torch.no_grad():
        plain = model(codes, ids, mask)
        zeros = model(codes, ids, mask, torch.zeros(2, 10, F))
        with_notes = model(codes, ids, mask, random_notes(2, 10))
        other = model(codes, ids, mask, random_notes(2, 10, seed=1))
    assert torch.equal(plain, zeros)  # no bias: silence is exactly the null input
    assert not torch.allclose(plain, with_notes, atol=1e-3)
    assert not torch.allclose(with_notes, other, atol=1e-3)


def test_notes_of_frame_s_reach_position_s_with_two_frames_of_look_ahead():
    model = note_lm()
    ids, mask = text_batch()
    codes = apply_delay(torch.randint(0, 32, (2, 4, 12)), model.special_id)  # S = 15
    notes = random_notes(2, 12)
    changed = notes.clone()
    changed[:, 8] = 1 - changed[:, 8]  # frame 8 only
    with torch.no_grad():
        a, b = model(codes, ids, mask, notes), model(codes, ids, mask, changed)
    torch.testing.assert_close(a[:, :, :6], b[:, :, :6], atol=0, rtol=0)  # positions < 8 - 2 never see it
    for s in (6, 7, 8):  # the kernel's look-ahead, and the frame itself
        assert not torch.allclose(a[:, :, s], b[:, :, s], atol=1e-4)


def test_cached_steps_with_notes_equal_full_forward():
    model = note_lm()
    ids, mask = text_batch()
    T = 10
    codes = apply_delay(torch.randint(0, 32, (2, 4, T)), model.special_id)
    S = codes.shape[-1]
    notes = random_notes(2, T)  # shorter than S: the delay tail is silent, as in training
    inputs = torch.cat([torch.full((2, 4, 1), model.special_id), codes[..., :-1]], dim=-1)
    with torch.no_grad():
        full = model(codes, ids, mask, notes)
        memory, memory_mask = model.encode_text(ids, mask)
        cache = model.new_cache(memory, memory_mask, S, notes=notes)
        steps = [model.decode_step(inputs[..., s : s + 1], cache, torch.tensor([s]), s + 1) for s in range(S)]
        torch.testing.assert_close(torch.stack(steps, dim=2), full, atol=1e-5, rtol=1e-5)
        cache = model.new_cache(memory, memory_mask, S, notes=notes)  # prefill of 5, then a step
        torch.testing.assert_close(
            model.decode_step(inputs[..., :5], cache, torch.arange(5), 5), full[:, :, 4], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(
            model.decode_step(inputs[..., 5:6], cache, torch.tensor([5]), 6), full[:, :, 5], atol=1e-5, rtol=1e-5
        )


# ---- generation -------------------------------------------------------------------------------------
def test_generation_with_notes_is_seeded_and_differs_from_text_only():
    model = note_lm()
    ids, mask = text_batch()
    notes = random_notes(1, 20)  # one melody for both captions
    params = SamplingParams(top_k=8, cfg=3.0)
    a, b = (generate_codes(model, ids, mask, 20, params, seed=3, notes=notes) for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, generate_codes(model, ids, mask, 20, params, seed=3))
    # no notes and silent notes are the same condition; cfg 0 is the unconditional half alone: it has no notes
    assert torch.equal(
        generate_codes(model, ids, mask, 20, params, seed=3),
        generate_codes(model, ids, mask, 20, params, seed=3, notes=torch.zeros(2, 20, F)),
    )
    uncond = SamplingParams(top_k=8, cfg=0.0)
    assert torch.equal(
        generate_codes(model, ids, mask, 20, uncond, seed=3, notes=notes),
        generate_codes(model, ids, mask, 20, uncond, seed=3),
    )


def test_token_noise_corrupts_training_inputs_only():
    model = note_lm(token_noise=0.5)
    ids, mask = text_batch()
    codes = apply_delay(torch.randint(0, 32, (2, 4, 10)), model.special_id)
    inputs = torch.cat([codes.new_full((2, 4, 1), model.special_id), codes[..., :-1]], dim=-1)
    torch.manual_seed(0)
    noisy = model.corrupt_inputs(inputs)
    changed = noisy != inputs
    real = inputs != model.special_id
    assert not changed[~real].any()  # BOS and empty delay cells stay
    assert 0.3 < changed[real].float().mean() < 0.6  # half replaced, a few by the code they had
    assert noisy[real].max() < 32
    model.eval()  # evaluation and generation see the true context
    with torch.no_grad():
        assert torch.equal(model(codes, ids, mask), model(codes, ids, mask))


def test_separate_note_guidance_runs_three_conditions():
    """null + cfg (text - null) + note_cfg (text+notes - text): note_cfg 0 is text-guided generation without
    notes, note_cfg = cfg the doubled batch, and a larger note_cfg moves the tokens."""
    model = note_lm()
    ids, mask = text_batch()
    notes = random_notes(2, 20)
    text_only = generate_codes(model, ids, mask, 20, SamplingParams(top_k=8, cfg=3.0), seed=3)
    no_note_guidance = SamplingParams(top_k=8, cfg=3.0, note_cfg=0.0)
    assert torch.equal(text_only, generate_codes(model, ids, mask, 20, no_note_guidance, seed=3, notes=notes))
    joint = generate_codes(model, ids, mask, 20, SamplingParams(temperature=0, cfg=3.0), notes=notes)
    split = SamplingParams(temperature=0, cfg=3.0, note_cfg=3.0 + 1e-6)  # the tripled batch, same formula
    assert torch.equal(joint, generate_codes(model, ids, mask, 20, split, notes=notes))
    strong = SamplingParams(temperature=0, cfg=3.0, note_cfg=12.0)
    assert not torch.equal(joint, generate_codes(model, ids, mask, 20, strong, notes=notes))
    with pytest.raises(MusicLMError, match="note cfg"):
        SamplingParams(note_cfg=float("nan")).check()


def test_notes_slide_with_the_window_past_max_frames():
    model = note_lm()  # max_frames 24
    ids, mask = text_batch()
    notes = random_notes(2, 70)  # longer than the 60 frames asked: cut
    long = generate_codes(model, ids, mask, 60, GREEDY, stride=12, notes=notes)
    assert long.shape == (2, 4, 60)
    assert torch.equal(long[..., :24], generate_codes(model, ids, mask, 24, GREEDY, notes=notes[:, :24]))
    # the second window continues frames 12:24 and sees the notes of frames 12:36
    second = generate_codes(model, ids, mask, 24, GREEDY, prompt=long[..., 12:24], notes=notes[:, 12:36])
    assert torch.equal(long[..., 12:36], second)
    assert not torch.equal(second, generate_codes(model, ids, mask, 24, GREEDY, prompt=long[..., 12:24]))
    # short notes are padded with silence
    short = generate_codes(model, ids, mask, 30, GREEDY, notes=notes[:, :10])
    padded = torch.cat([notes[:, :10], torch.zeros(2, 20, F)], dim=1)
    assert torch.equal(short, generate_codes(model, ids, mask, 30, GREEDY, notes=padded))


def test_a_text_only_model_refuses_notes_in_one_line():
    model = tiny_lm()
    ids, mask = text_batch()
    for call in (
        lambda: generate_codes(model, ids, mask, 8, GREEDY, notes=random_notes(2, 8)),
        lambda: model(apply_delay(torch.zeros(2, 4, 8, dtype=torch.long), 32), ids, mask, random_notes(2, 8)),
    ):
        with pytest.raises(MusicLMError, match="text-only") as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(MusicLMError, match="note features per frame"):
        generate_codes(note_lm(), ids, mask, 8, GREEDY, notes=torch.zeros(2, 8, 12))


def test_note_config_round_trips_and_old_configs_load_text_only(tmp_path):
    from test_lm_model import train_tokenizer

    from musiclm.lm import MusicLM

    model = note_lm()
    model.tokenizer = train_tokenizer(tmp_path)
    model.save_pretrained(tmp_path / "notes")
    loaded = MusicLM.from_pretrained(tmp_path / "notes", load_codec=False)
    assert loaded.config == model.config and loaded.config.note_features == F
    assert torch.equal(loaded.note_proj.weight, model.note_proj.weight)
    text_only = tiny_lm()
    text_only.tokenizer = model.tokenizer
    text_only.save_pretrained(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in ("note_features", "note_dropout", "chroma_share"):
        del meta[key]  # a config.json from before the notes
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    old = MusicLM.from_pretrained(tmp_path / "old", load_codec=False)
    assert old.config.note_features == 0 and old.note_proj is None


def test_note_presence_tells_resting_notes_from_no_notes_and_round_trips(tmp_path):
    from test_lm_model import train_tokenizer

    from musiclm.lm import MusicLM

    model = note_lm()
    ids, mask = text_batch()
    codes = apply_delay(torch.randint(0, 32, (2, 4, 10)), model.special_id)
    notes = torch.zeros(2, 10, F)
    notes[0, 9, 0] = 1.0  # row 0: notes given, resting until the last frame; row 1: no notes
    with torch.no_grad():
        before = model(codes, ids, mask, notes)
        model.add_note_presence()  # zero: an existing model is unchanged until trained
        torch.testing.assert_close(model(codes, ids, mask, notes), before, atol=0, rtol=0)
        model.note_presence.normal_()
        after = model(codes, ids, mask, notes)
        plain = model(codes, ids, mask)
    # the vector reaches every position of the row with notes, even the resting ones, and only that row
    assert not torch.allclose(after[0, :, :5], before[0, :, :5], atol=1e-3)
    torch.testing.assert_close(after[1], plain[1], atol=0, rtol=0)
    model.tokenizer = train_tokenizer(tmp_path)
    model.save_pretrained(tmp_path / "presence")
    loaded = MusicLM.from_pretrained(tmp_path / "presence", load_codec=False)
    assert loaded.config.note_presence and torch.equal(loaded.note_presence, model.note_presence)
    with pytest.raises(MusicLMError, match="needs a note-conditioned model"):
        tiny_lm().add_note_presence()


# ---- shards -----------------------------------------------------------------------------------------
def _score(pitches) -> Score:
    score = Score(480)
    score.tempos.append(Tempo(0, qpm=120.0))
    track = Track("melody", 40, False)  # a violin: GM family 5
    for i, pitch in enumerate(pitches):
        track.notes.append(Note(i * 120, 120, pitch, 80))  # sixteenths: 0.125 s each
    score.tracks.append(track)
    return score


@pytest.fixture
def note_corpus(tmp_path):
    """Three 0.5 s clips at 8 kHz: two with a MIDI file, one without."""
    rows = []
    for i in range(3):
        t = np.arange(4000) / 8000
        sf.write(tmp_path / f"c{i}.wav", (0.3 * np.sin(2 * np.pi * 440 * 2 ** (i / 12) * t)).astype(np.float32), 8000)
        row = {"id": f"c{i}", "path": f"c{i}.wav", "duration": 0.5, "split": "train", "piece": f"p{i}"}
        row.update(sample_rate=8000, channels=1)
        row.update(caption=f"clip {i}", fields={}, source="synth")
        if i < 2:
            save_midi(_score([60 + i, 64, 67, 72]), tmp_path / f"c{i}.mid")
            row["midi"] = f"c{i}.mid"
        rows.append(row)
    write_manifest(tmp_path / "m.jsonl", rows)
    return tmp_path / "m.jsonl"


def test_tokenize_stores_notes_and_chroma_aligned_with_the_codes(note_corpus, tiny_codec, tmp_path):
    from musiclm.audio import load_audio

    codec_dir = tiny_codec.save_pretrained(tmp_path / "codec")
    summary = tokenize_manifest(note_corpus, codec_dir, tmp_path / "shards", progress=False, shard_frames=600)
    assert summary["clips"] == 3 and summary["clips_with_notes"] == 2
    shards = TokenShards(tmp_path / "shards")
    assert shards.meta["version"] == 2
    for item in shards:
        T = item["codes"].shape[-1]
        wav, _ = load_audio(note_corpus.parent / f"{item['id']}.wav", sample_rate=8000, channels=1)
        chroma = chroma_features(wav, 8000, tiny_codec.frame_rate, T)
        assert item["chroma"].dtype == torch.int8 and item["chroma"].shape == (T,)
        assert torch.equal(chroma_one_hot(item["chroma"]), chroma)
        if item["id"] == "c2":
            assert item["notes"] is None
            continue
        expected = piano_roll_features(note_corpus.parent / f"{item['id']}.mid", tiny_codec.frame_rate, T)
        assert item["notes"].shape == (T, F) and torch.equal(item["notes"].float(), expected)
        assert item["notes"][:, 32 + 5].all()  # the violin sounds throughout


def test_version_1_shards_still_load_and_resume_upgrades(note_corpus, tiny_codec, tmp_path):
    from safetensors.torch import load_file, save_file

    codec_dir = tiny_codec.save_pretrained(tmp_path / "codec")
    out = tmp_path / "shards"
    tokenize_manifest(note_corpus, codec_dir, out, progress=False, max_clips=2)
    # turn it into what version 1 wrote: no note tensors, no flags, version 1
    meta = json.loads((out / "meta.json").read_text())
    meta["version"] = 1
    del meta["note_features"]
    (out / "meta.json").write_text(json.dumps(meta))
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    for row in rows:
        del row["notes"], row["chroma"]
    (out / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    shard = out / rows[0]["shard"]
    tensors = load_file(shard)
    save_file({k: tensors[k] for k in ("codes", "offsets")}, shard)

    old = TokenShards(out)
    assert len(old) == 2 and all(x["notes"] is None and x["chroma"] is None for x in old)
    tokenize_manifest(note_corpus, codec_dir, out, progress=False)  # continues in version 2
    new = TokenShards(out)
    assert new.meta["version"] == 2 and len(new) == 3
    assert [x["chroma"] is not None for x in new] == [False, False, True]
    meta["version"] = 3
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(MusicLMError, match="unsupported shard format"):
        TokenShards(out)


# ---- training batches -------------------------------------------------------------------------------
class _Tokenizer:
    def encode(self, texts, max_len):
        return torch.ones(len(texts), 3, dtype=torch.long), torch.ones(len(texts), 3, dtype=torch.bool)


def note_items(n: int = 4, T: int = 60) -> list[TokenItem]:
    """Items whose codebook 0 holds the pitch class of the frame, as do the notes and (shifted) the chroma."""
    items = []
    for i in range(n):
        pc = (torch.arange(T) * (i + 1)) % 12
        notes = torch.zeros(T, F, dtype=torch.uint8)
        notes[torch.arange(T), pc] = 1
        notes[:, 40] = 1  # a family column: only the MIDI view has it
        chroma = ((pc + 1) % 12).to(torch.int8)  # differs from the MIDI, to tell the views apart
        items.append(TokenItem(pc.repeat(4, 1).to(torch.int16), "x", f"i{i}", notes, chroma))
    return items


def test_batches_crop_notes_with_the_codes_and_draw_views_at_the_rates():
    views = NoteViews(F, dropout=0.3, chroma_share=0.4)
    crops = TokenCrops(note_items(), 25, 8, seed=1, rank=0, tokenizer=_Tokenizer(), max_len=3, pad=32, note_views=views)
    assert torch.equal(crops[7]["notes"], crops[7]["notes"])  # a pure function of the step
    counts = {"none": 0, "chroma": 0, "notes": 0}
    for step in range(150):
        batch = crops[step]
        assert batch["notes"].shape == (8, 25, F)
        for codes, notes in zip(batch["codes"], batch["notes"], strict=True):
            if not notes.any():
                counts["none"] += 1
            elif notes[:, 40].all():
                counts["notes"] += 1
                assert torch.equal(notes[:, :12].argmax(-1), codes[0])  # same crop start as the codes
            else:
                counts["chroma"] += 1
                assert not notes[:, 12:].any()
                assert torch.equal(notes[:, :12].argmax(-1), (codes[0] + 1) % 12)
    n = sum(counts.values())
    assert abs(counts["none"] / n - 0.3) < 0.05
    assert abs(counts["chroma"] / n - 0.7 * 0.4) < 0.05
    # a text-only LM gets the same crops, without notes
    plain = TokenCrops(note_items(), 25, 8, seed=1, rank=0, tokenizer=_Tokenizer(), max_len=3, pad=32)
    assert "notes" not in plain[3] and torch.equal(plain[3]["codes"], crops[3]["codes"])
    val = FixedBatches(note_items(), 70, 2, 2, _Tokenizer(), 3, 32, note_features=F)[0]
    assert val["notes"].shape == val["notes_chroma"].shape == (2, 70, F) and not val["notes"][:, 60:].any()


def test_a_note_lm_learns_tokens_the_notes_determine():
    torch.manual_seed(0)
    model = note_lm(card=16, condition_dropout=0.0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids, mask = torch.ones(8, 3, dtype=torch.long), torch.ones(8, 3, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)

    def batch():
        pc = torch.randint(0, 12, (8, 16), generator=g)  # random pitch classes: unpredictable without notes
        notes = torch.nn.functional.one_hot(pc, F).float()
        return apply_delay(pc[:, None].repeat(1, 4, 1), model.special_id), notes

    for _ in range(150):
        codes, notes = batch()
        loss, _ = model.loss(model(codes, ids, mask, notes), codes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    codes, notes = batch()
    with torch.no_grad():
        with_notes = model.loss(model(codes, ids, mask, notes), codes)[1][0]  # codebook 0: the notes alone
        without = model.loss(model(codes, ids, mask), codes)[1][0]
    assert without > 2.0 and with_notes < 1.0, (float(with_notes), float(without))


def test_training_items_keep_only_a_short_silent_tail():
    from musiclm.training.token_dataset import trim_trailing_silence

    def item(chroma, with_notes=True):
        T = len(chroma)
        codes = torch.arange(4 * T, dtype=torch.int16).view(4, T)
        notes = torch.ones(T, F, dtype=torch.uint8) if with_notes else None
        return TokenItem(codes, "x", "id", notes, torch.tensor(chroma, dtype=torch.int8))

    tail = item([3, 3, -1, 5, 5] + [-1] * 20)  # an inner rest stays; 20 silent frames at the end become 2
    whole = item([0, 1, 2, 3])
    silent = item([-1] * 6)
    no_chroma = TokenItem(torch.zeros(4, 9, dtype=torch.int16), "y", "id2")
    out = trim_trailing_silence([tail, whole, silent, no_chroma], keep_frames=2)
    assert [len(i.codes[0]) for i in out] == [7, 4, 9]  # the silent-throughout item is dropped
    assert torch.equal(out[0].codes, tail.codes[:, :7]) and out[0].notes.shape == (7, F)
    assert out[0].chroma.tolist() == [3, 3, -1, 5, 5, -1, -1]
    assert out[1] is whole and out[2] is no_chroma
