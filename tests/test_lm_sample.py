"""Sampling: guidance, seeds, continuation, windowed long form, batch independence, CUDA."""

from __future__ import annotations

import pytest
import torch
from test_lm_model import text_batch, tiny_lm

from musiclm.errors import MusicLMError
from musiclm.lm import apply_delay, undo_delay
from musiclm.lm.sample import SamplingParams, draw, filter_logits, generate_codes, guide, plan_windows, sample_next

pytestmark = pytest.mark.usefixtures("one_thread")

GREEDY = SamplingParams(temperature=0.0, cfg=1.0)


def reference_greedy(model, ids, mask, n_frames: int) -> torch.Tensor:
    """Greedy decoding by re-running the full forward on the growing sequence: no cache, no guidance."""
    K, special = model.n_q, model.special_id
    valid = apply_delay(torch.zeros(ids.shape[0], K, n_frames, dtype=torch.long), -1) >= 0
    out = torch.full(valid.shape, special)
    with torch.no_grad():
        for s in range(out.shape[-1]):
            nxt = model(out[..., : s + 1], ids, mask)[:, :, s].argmax(-1)
            out[:, :, s] = torch.where(valid[:, :, s], nxt, special)
    return undo_delay(out)


def test_greedy_sampler_equals_uncached_reference():
    model = tiny_lm()
    ids, mask = text_batch()
    codes = generate_codes(model, ids, mask, 9, GREEDY, amp_dtype=None)  # fp32 throughout, on any CPU
    assert codes.shape == (2, 4, 9)
    assert torch.equal(codes, reference_greedy(model, ids, mask, 9))


def test_guidance_with_coefficient_one_is_the_conditional_model():
    model = tiny_lm()
    ids, mask = text_batch()
    codes = apply_delay(torch.randint(0, 32, (2, 4, 6)), model.special_id)
    with torch.no_grad():
        memory, memory_mask = model.encode_text(ids, mask)
        null, null_mask = model.null_condition(memory, memory_mask)
        doubled = model.new_cache(torch.cat([memory, null]), torch.cat([memory_mask, null_mask]), 4)
        single = model.new_cache(memory, memory_mask, 4)
        tokens = torch.cat([torch.full((2, 4, 1), model.special_id), codes[..., :3]], dim=-1)
        both = model.decode_step(tokens.repeat(2, 1, 1), doubled, torch.arange(4), 4)
        cond = model.decode_step(tokens, single, torch.arange(4), 4)
        torch.testing.assert_close(guide(both, 1.0), cond, atol=1e-6, rtol=1e-6)
        assert not torch.allclose(guide(both, 3.0), cond)
        # the decode step guides the hidden states before the (linear) heads: the same logits
        fresh = model.new_cache(torch.cat([memory, null]), torch.cat([memory_mask, null_mask]), 4)
        inside = model.decode_step(tokens.repeat(2, 1, 1), fresh, torch.arange(4), 4, cfg=3.0)
        torch.testing.assert_close(inside, guide(both, 3.0), atol=1e-5, rtol=1e-5)
    # through the whole sampler: cfg 1 (no doubled batch) and cfg 1 + ε (doubled) choose the same tokens
    a = generate_codes(model, ids, mask, 8, SamplingParams(temperature=0, cfg=1.0))
    b = generate_codes(model, ids, mask, 8, SamplingParams(temperature=0, cfg=1.0 + 1e-7))
    assert torch.equal(a, b)


def test_same_seed_same_tokens_different_seed_different():
    model = tiny_lm()
    ids, mask = text_batch()
    params = SamplingParams(temperature=1.0, top_k=16, top_p=0.95, cfg=3.0)
    a = generate_codes(model, ids, mask, 12, params, seed=7)
    b = generate_codes(model, ids, mask, 12, params, seed=7)
    c = generate_codes(model, ids, mask, 12, params, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() < model.card


def test_top_k_one_is_greedy_and_filters_keep_the_best():
    model = tiny_lm()
    ids, mask = text_batch()
    greedy = generate_codes(model, ids, mask, 8, SamplingParams(temperature=0, cfg=2.0))
    top1 = generate_codes(model, ids, mask, 8, SamplingParams(temperature=1.5, top_k=1, cfg=2.0), seed=3)
    assert torch.equal(greedy, top1)
    logits = torch.randn(3, 4, 50)
    kept = filter_logits(logits, top_k=5, top_p=0.0).isfinite()
    assert (kept.sum(-1) == 5).all()
    nucleus = filter_logits(logits, top_k=0, top_p=0.5)
    assert torch.equal(nucleus.argmax(-1), logits.argmax(-1))
    mass = (logits.softmax(-1) * nucleus.isfinite()).sum(-1)
    assert (mass >= 0.5).all()


def test_bf16_cache_attention_stays_close_to_fp32():
    """The CPU default where the cores have native bf16: keys/values and attention in bf16, the rest fp32."""
    model = tiny_lm()
    ids, mask = text_batch()
    tokens = torch.cat([torch.full((2, 4, 1), model.special_id), torch.randint(0, 32, (2, 4, 5))], dim=-1)
    with torch.no_grad():
        memory, memory_mask = model.encode_text(ids, mask)
        logits = {}
        for dtype in (torch.float32, torch.bfloat16):
            cache = model.new_cache(memory, memory_mask, 6, dtype=dtype)
            first = model.decode_step(tokens[..., :4], cache, torch.arange(4), 4)
            steps = [model.decode_step(tokens[..., s : s + 1], cache, torch.tensor([s]), s + 1) for s in (4, 5)]
            logits[dtype] = torch.stack([first, *steps])
            assert cache.k.dtype == dtype and logits[dtype].dtype == torch.float32
    scale = logits[torch.float32].abs().max()
    error = (logits[torch.bfloat16] - logits[torch.float32]).abs().max()
    assert 0 < error < 0.02 * scale  # not the same numbers, and close


def test_draws_follow_the_distribution_and_never_pick_excluded_tokens():
    generator = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05, 0.0])
    n = 40_000
    u = torch.rand(n, 1, generator=generator)
    counts = torch.bincount(draw(probs.expand(n, -1), u)[:, 0], minlength=6).double()
    expected = probs.double() * n
    assert counts[probs == 0].sum() == 0
    chi2 = ((counts - expected)[probs > 0] ** 2 / expected[probs > 0]).sum()
    assert chi2 < 16.3  # 3 degrees of freedom, p = 0.001
    # through top-k (unsorted) and temperature: tokens outside the k best never appear, frequencies match
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 3.0, -5.0]).expand(n, 1, -1)
    params = SamplingParams(temperature=0.7, top_k=3, top_p=0.0, cfg=1.0)
    u = torch.rand(n, 1, 1, generator=generator)
    counts = torch.bincount(sample_next(logits, params, u).flatten(), minlength=6).double()
    want = torch.zeros(6, dtype=torch.double)
    want[[0, 1, 4]] = torch.tensor([2.0, 1.0, 3.0], dtype=torch.double).div(0.7).softmax(0) * n
    assert counts[[2, 3, 5]].sum() == 0
    assert (((counts - want)[[0, 1, 4]] ** 2) / want[[0, 1, 4]]).sum() < 13.8  # 2 d.o.f., p = 0.001


def test_continuation_keeps_the_prompt():
    model = tiny_lm()
    ids, mask = text_batch()
    prompt = torch.randint(0, 32, (1, 4, 7))
    codes = generate_codes(model, ids, mask, 15, SamplingParams(top_k=8), seed=1, prompt=prompt)
    assert codes.shape == (2, 4, 15)
    assert torch.equal(codes[..., :7], prompt.expand(2, -1, -1))
    with pytest.raises(MusicLMError, match="not shorter"):
        generate_codes(model, ids, mask, 7, prompt=prompt)


def test_batch_members_do_not_influence_each_other():
    model = tiny_lm()
    ids, mask = text_batch()
    both = generate_codes(model, ids, mask, 8, SamplingParams(temperature=0, cfg=3.0))
    for i in range(2):
        alone = generate_codes(model, ids[i : i + 1], mask[i : i + 1], 8, SamplingParams(temperature=0, cfg=3.0))
        assert torch.equal(both[i : i + 1], alone)


def test_plan_windows_covers_the_length_within_the_window():
    for n, prompt, window, stride in [(100, 0, 24, 12), (50, 30, 24, 8), (24, 0, 24, 12), (25, 23, 24, 1)]:
        plan = plan_windows(n, prompt, window, stride)
        assert all(w.length <= window and w.keep < w.length for w in plan)
        assert prompt + sum(w.length - w.keep for w in plan) == n


def test_sliding_window_generates_past_the_context():
    model = tiny_lm()  # max_frames 24
    ids, mask = text_batch()
    long = generate_codes(model, ids, mask, 60, GREEDY, stride=12)
    assert long.shape == (2, 4, 60)
    # the first window is an ordinary generation; every later one continues the last 12 frames
    assert torch.equal(long[..., :24], generate_codes(model, ids, mask, 24, GREEDY))
    second = generate_codes(model, ids, mask, 24, GREEDY, prompt=long[..., 12:24])
    assert torch.equal(long[..., 12:36], second)
    sampled = [generate_codes(model, ids, mask, 60, SamplingParams(top_k=8), seed=5) for _ in range(2)]
    assert torch.equal(*sampled)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_sampling_is_deterministic_and_close_to_fp32():
    model = tiny_lm().cuda()
    ids, mask = text_batch()
    params = SamplingParams(top_k=8, cfg=3.0)
    a = generate_codes(model, ids, mask, 40, params, seed=3)
    b = generate_codes(model, ids, mask, 40, params, seed=3)
    assert a.is_cuda and torch.equal(a, b)
    fp32 = generate_codes(model, ids, mask, 10, GREEDY, amp_dtype=None)
    assert torch.equal(fp32.cpu(), generate_codes(model.cpu(), ids, mask, 10, GREEDY, amp_dtype=None))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_decode_loop_never_synchronises_with_the_host():
    """Host syncs per window are allowed (the cross-attention mask check), none per step: a longer generation
    must not synchronise more often than a shorter one. The warm-up runs at the longest length, so one-time
    lazy set-up (CUDA context, a kernel's workspace sized by the longest key/value length) is not counted;
    on failure the message names the Python line of each synchronising call."""
    import warnings

    model = tiny_lm().cuda()
    ids, mask = text_batch()
    params = SamplingParams(top_k=8, top_p=0.9, cfg=3.0)
    lengths = (6, 20)  # one window each (tiny_lm's max_frames is 24)
    generate_codes(model, ids, mask, max(lengths), params, seed=0)  # warm-up
    syncs = []
    for n_frames in lengths:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                generate_codes(model, ids, mask, n_frames, params, seed=0)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs.append([f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)])
    # Only our calls count: on the H200 (torch 2.11) torch's own cuda/__init__.py synchronised once in the
    # first measured run and never again, a one-time lazy call inside torch, not the decode loop.
    ours = [[s for s in run if "/torch/" not in s] for run in syncs]
    assert len(ours[0]) == len(ours[1]), syncs


def test_soft_distributions_match_the_draws_and_keep_given_codes():
    model = tiny_lm()  # max_frames 24: 40 frames take two windows
    ids, mask = text_batch()
    params = SamplingParams(temperature=1.0, top_k=8, cfg=3.0)
    guide_codes = torch.randint(0, 32, (1, 2, 40))
    soft: dict = {}
    codes = generate_codes(model, ids, mask, 40, params, seed=4, guide=guide_codes, stride=12, soft=soft)
    # asking for the distributions changes no draw
    assert torch.equal(codes, generate_codes(model, ids, mask, 40, params, seed=4, guide=guide_codes, stride=12))
    candidates, probs = soft["candidates"], soft["probs"]
    assert candidates.shape == probs.shape == (2, 4, 40, 8)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 40))
    # every drawn code is among its cell's candidates with mass > 0; the given codebooks carry all mass
    drawn = candidates == codes[..., None]
    assert bool(drawn.any(-1).all()) and bool((probs * drawn).sum(-1).gt(0).all())
    assert torch.equal(candidates[:, :2, :, 0], guide_codes.expand(2, -1, -1))
    assert bool((probs[:, :2, :, 0] == 1).all())
    # the model was unsure somewhere in the codebooks it wrote
    assert bool((probs[:, 2:].max(-1).values < 0.99).any())
    # greedy: all mass on the argmax, which is the code drawn
    greedy: dict = {}
    codes = generate_codes(model, ids, mask, 10, GREEDY, soft=greedy)
    assert torch.equal(greedy["candidates"][..., 0], codes) and bool((greedy["probs"][..., 0] == 1).all())


def test_soft_latent_is_the_draws_latent_where_sure_and_the_mean_where_not(tiny_codec):
    from musiclm.lm.generation import soft_latent

    codec = tiny_codec
    codes = torch.randint(0, codec.card, (1, 3, 5))
    sure = {"candidates": codes[..., None].repeat(1, 1, 1, 4), "probs": torch.tensor([1.0, 0, 0, 0]).repeat(1, 3, 5, 1)}
    torch.testing.assert_close(soft_latent(codec, sure), codec.quantizer.decode(codes))
    # half the mass on each of two codes in codebook 2: the latent sits halfway between their embeddings
    other = (codes[:, 2] + 1) % codec.card
    unsure = {k: v.clone() for k, v in sure.items()}
    unsure["candidates"][:, 2, :, 1] = other
    unsure["probs"][:, 2, :, :2] = 0.5
    alternative = codes.clone()
    alternative[:, 2] = other
    halfway = (codec.quantizer.decode(codes) + codec.quantizer.decode(alternative)) / 2
    torch.testing.assert_close(soft_latent(codec, unsure), halfway)
