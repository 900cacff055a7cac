"""Sampling codec tokens from the LM: KV-cached decoding, classifier-free guidance, continuation, long form.

One window of T frames is S = T + K - 1 delayed steps (`musiclm.lm.delay`). A `target` grid [B, K, S]
holds what is already known: prompt codes, the special token at empty delay cells, and -1 where the model
must choose. Columns fully known (the audio prompt) are prefilled in one call; then each step samples
column s, keeps the known cells, and feeds the column back at position s + 1. Guide codes (the first G
codebooks of a render of the notes, `musiclm.notes.guide`; not to be confused with `guide()`, the CFG formula)
are known cells too, so the model writes the finer codebooks hearing the coarse ones, as in training.

Classifier-free guidance (Ho & Salimans 2022) runs as one doubled batch [conditional; null condition].
`guide` states it on logits; the decode step applies it to the normed hidden states instead, before the
output heads: the same numbers, since the heads are linear, for half the largest matmul of a step.
With notes and a separate `note_cfg`, the batch is tripled [text + notes; text alone; null] and the two
conditions get their own scales (the compositional form of Brooks et al. 2023, InstructPix2Pix §3.2.1):
null + cfg (text - null) + note_cfg (text+notes - text). note_cfg = cfg is the doubled batch exactly.

Audio longer than the model's window is generated window by window, each new window continuing from the
last frames of the previous one (MusicGen's "extend" generation), so positions never exceed what the
model was trained on. Note features (a note-conditioned model) slide with the window: a window starting at
frame t0 gets notes[t0 : t0 + length] at its positions 0.., silent past its end, as a training crop does;
the unconditional half of the guided batch gets none.

Precision: on CUDA the steps run under bf16 autocast with a bf16 KV cache; on a CPU with native bf16
(AVX512-BF16 / AMX) only the KV cache and attention are bf16 (half the bytes read; ~1.4x faster at batch
8), the matmuls stay fp32. `amp_dtype=None` keeps everything fp32.

Nothing in the decode loop reads a device value on the host (no `.item()`, no tensor-valued `if`), so CUDA
runs without synchronisation; buffers are allocated once per window, never grown per step.

Randomness is per row: each batch row has its own generator, and each window draws its uniform numbers
[K, S] from it up front, so a row's tokens depend on its own seed and caption, never on which other rows
share its batch (`generate "calm piano" --seed 7` alone or beside other prompts gives the same codes).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from musiclm.errors import MusicLMError
from musiclm.lm.delay import apply_delay, undo_delay


@dataclass
class SamplingParams:
    temperature: float = 1.0  # 0 → greedy
    top_k: int = 250  # 0 → off
    top_p: float = 0.0  # 0 → off
    cfg: float = 3.0  # guidance coefficient; 1 → the conditional model alone (no doubled batch)
    note_cfg: float | None = None  # guidance on the notes given the text; None → cfg (the doubled batch)

    def check(self) -> None:
        # `not x >= 0` also catches NaN, which every comparison answers False
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise MusicLMError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise MusicLMError(f"top-k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 <= self.top_p <= 1:
            raise MusicLMError(f"top-p must be in [0, 1] (0 = off), got {self.top_p}")
        if not (self.cfg >= 0 and math.isfinite(self.cfg)):
            raise MusicLMError(f"cfg must be a finite number >= 0 (1 = no guidance), got {self.cfg}")
        if self.note_cfg is not None and not (self.note_cfg >= 0 and math.isfinite(self.note_cfg)):
            raise MusicLMError(f"note cfg must be a finite number >= 0, got {self.note_cfg}")


def guide(logits: Tensor, cfg: float | tuple[float, float]) -> Tensor:
    """logits [2B, ...] = [conditional; unconditional] → [B, ...]: uncond + cfg * (cond - uncond).

    cfg a pair (text cfg, note cfg): logits [3B, ...] = [text + notes; text alone; unconditional] →
    uncond + cfg (text - uncond) + note_cfg (text+notes - text)."""
    if isinstance(cfg, tuple):
        full, text, uncond = logits.chunk(3)
        return uncond + cfg[0] * (text - uncond) + cfg[1] * (full - text)
    cond, uncond = logits.chunk(2)
    return uncond + cfg * (cond - uncond)


def filter_logits(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    """logits [..., card] with everything outside the top-k / nucleus (Holtzman et al. 2020) set to -inf."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, _nucleus(sorted_logits, top_p))
    return logits


def sample_next(logits: Tensor, params: SamplingParams, u: Tensor | None) -> Tensor:
    """logits [B, K, card], u [B, K, 1] uniform in [0, 1) (None when greedy) → tokens [B, K]. With top-k only
    the k candidates are kept (unsorted unless top-p needs the order: a sorted top-k costs ~2x); then one
    draw per codebook by inverse CDF."""
    if params.temperature == 0:
        return logits.argmax(-1)
    assert u is not None, "sampling needs uniform numbers"
    if 0 < params.top_k < logits.shape[-1]:
        values, candidates = torch.topk(logits, params.top_k, dim=-1, sorted=0 < params.top_p < 1)  # [B, K, k]
        probs = _nucleus(values / params.temperature, params.top_p).softmax(-1)
        return candidates.gather(-1, draw(probs, u))[..., 0]
    probs = filter_logits(logits / params.temperature, 0, params.top_p).softmax(-1)
    return draw(probs, u)[..., 0]


def draw(probs: Tensor, u: Tensor) -> Tensor:
    """One categorical draw per row of probs [..., n] with u [..., 1] uniform in [0, 1) → indices [..., 1], by
    inverse CDF: one uniform number per row (an exponential race needs n) and no host synchronisation on
    CUDA (`multinomial` syncs). `right=True` never lands on a zero-probability entry while u < total; u
    rounding up to the total (~1e-7 of draws) falls back to the most likely entry."""
    cdf = probs.cumsum(-1)
    index = torch.searchsorted(cdf, u.to(cdf.dtype) * cdf[..., -1:], right=True)
    return torch.where(index < probs.shape[-1], index, probs.argmax(-1, keepdim=True))


SOFT_WIDTH = 64  # candidates kept per cell for `soft` when top-k is off: the tail beyond carries ~no mass


def soft_width(params: SamplingParams, card: int) -> int:
    """Candidates kept per cell by `draw_distribution`: top-k's, or the SOFT_WIDTH most likely when it is off."""
    return params.top_k if 0 < params.top_k < card else min(SOFT_WIDTH, card)


def draw_distribution(logits: Tensor, params: SamplingParams) -> tuple[Tensor, Tensor]:
    """logits [B, K, card] → (candidates [B, K, c], probs [B, K, c]): the distribution `sample_next` draws
    each code from (the same top-k, nucleus and temperature; greedy: all mass on the argmax), over its
    c = `soft_width` candidates."""
    values, candidates = torch.topk(
        logits, soft_width(params, logits.shape[-1]), dim=-1
    )  # sorted: the nucleus needs the order
    if params.temperature == 0:
        return candidates, _one_hot_first(candidates)
    return candidates, _nucleus(values / params.temperature, params.top_p).softmax(-1)


def _undo_delay_last(delayed: Tensor) -> Tensor:
    """delayed [B, K, S, c] → [B, K, T, c], `undo_delay` on each of the c slices."""
    B, K, S, c = delayed.shape
    flat = undo_delay(delayed.permute(0, 3, 1, 2).reshape(B * c, K, S))
    return flat.reshape(B, c, K, -1).permute(0, 2, 3, 1)


def _nucleus(sorted_logits: Tensor, top_p: float) -> Tensor:
    """Top-p on logits already sorted in descending order."""
    if not 0 < top_p < 1:
        return sorted_logits
    probs = sorted_logits.softmax(-1)
    # drop a token once the mass before it already exceeds p; the most likely token always stays
    return sorted_logits.masked_fill(probs.cumsum(-1) - probs > top_p, float("-inf"))


@dataclass
class Window:
    keep: int  # frames known at the start (prompt, or the tail of the previous window)
    length: int  # frames in the window


def plan_windows(n_frames: int, prompt_frames: int, window: int, stride: int) -> list[Window]:
    """Windows that extend `prompt_frames` to `n_frames`, each at most `window` frames long; after the first,
    each keeps `window - stride` frames of context and adds up to `stride` new ones."""
    if not 0 < stride <= window:
        raise MusicLMError(f"stride must be in [1, {window}] frames, got {stride}")
    plan, total = [], prompt_frames
    while total < n_frames:
        keep = min(total, window - stride) if plan or total > window - 1 else total
        length = min(window, keep + n_frames - total)
        plan.append(Window(keep, length))
        total += length - keep
    return plan


def row_generators(seed: int | Sequence[int | None] | None, batch: int, device: torch.device) -> list[torch.Generator]:
    """One generator per batch row: `seed` for every row, or one seed per row (None: fresh entropy)."""
    seeds = [seed] * batch if seed is None or isinstance(seed, int) else list(seed)
    if len(seeds) != batch:
        raise MusicLMError(f"{len(seeds)} seeds for {batch} captions")
    generators = []
    for s in seeds:
        generator = torch.Generator(device=device)
        if s is None:
            generator.seed()
        elif 0 <= s < 2**64:
            generator.manual_seed(s)
        else:
            raise MusicLMError(f"seed must be in [0, 2**64), got {s}")
        generators.append(generator)
    return generators


def reduced_cache_dtype(device: torch.device, amp_dtype: torch.dtype | None) -> torch.dtype | None:
    """The KV cache's dtype when not the weights': `amp_dtype` on CUDA; on CPU bf16 only where the cores
    compute it natively (AVX512-BF16 / AMX), as emulated bf16 attention is slower than fp32."""
    if amp_dtype is None:
        return None
    if device.type == "cuda":
        return amp_dtype
    if device.type == "cpu" and amp_dtype == torch.bfloat16 and torch.cpu._is_avx512_bf16_supported():
        return torch.bfloat16
    return None


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    if device.type == "cuda" and amp_dtype is not None:
        return torch.autocast("cuda", dtype=amp_dtype)
    return contextlib.nullcontext()


@torch.inference_mode()
def generate_codes(
    model,
    text_ids: Tensor,
    text_mask: Tensor,
    n_frames: int,
    params: SamplingParams | None = None,
    seed: int | Sequence[int | None] | None = None,
    prompt: Tensor | None = None,
    window: int | None = None,
    stride: int | None = None,
    progress: bool = False,
    compile: bool = False,
    amp_dtype: torch.dtype | None = torch.bfloat16,
    threads: int | None = 1,
    notes: Tensor | None = None,
    guide: Tensor | None = None,
    soft: dict | None = None,
) -> Tensor:
    """Captions (ids/mask [B, L]) → codes [B, K, n_frames]; with `prompt` codes [B or 1, >=K, Tp] the
    output starts with the prompt. `seed`: one for every row, or one per row (a row's codes depend only on
    its own seed and caption). `window`/`stride` in frames (default: config.max_frames and half of it).
    On CUDA the steps run under `amp_dtype` autocast; `compile` compiles the single-step decode.
    On CPU the decode loop runs on `threads` intra-op threads (None: torch's current setting).
    `notes` [B or 1, T, F]: note features of frames 0..T-1 of the output (prompt included); frames past T
    are silent, frames past n_frames ignored. None: text only (a text-only model refuses notes).
    `guide` [B or 1, G, T] (G <= K): codes of codebooks 0..G-1 for frames 0..T-1, kept as given (a render
    of the notes, `musiclm.notes.guide`); the model writes the finer codebooks and any frame past T.
    `soft` (a dict, filled in): "candidates" and "probs" [B, K, n_frames, c], the distribution each code was
    drawn from (`draw_distribution`; all mass on the code where it was given), for a decoder that wants the
    expected embedding rather than the draw (`musiclm.lm.generation.soft_latent`)."""
    params = params or SamplingParams(
        model.config.temperature, model.config.top_k, model.config.top_p, model.config.cfg
    )
    params.check()
    device, K = model.device, model.n_q
    B = text_ids.shape[0]
    if n_frames < 1:
        raise MusicLMError(f"need at least one frame to generate, got {n_frames}")
    if prompt is None:
        prompt = torch.zeros((B, K, 0), dtype=torch.long, device=device)
    prompt = prompt[:, :K].to(device=device, dtype=torch.long)
    if prompt.shape[1] != K:
        raise MusicLMError(f"prompt has {prompt.shape[1]} codebooks, the model needs {K}")
    if prompt.shape[0] not in (1, B):
        raise MusicLMError(f"prompt batch {prompt.shape[0]} does not match {B} captions")
    prompt = prompt.expand(B, -1, -1)
    if prompt.shape[-1] >= n_frames:
        raise MusicLMError(
            f"the prompt ({prompt.shape[-1]} frames) is not shorter than the requested "
            f"length ({n_frames} frames): nothing to generate"
        )
    if notes is not None:
        model.check_notes(notes)
        if notes.shape[0] not in (1, B):
            raise MusicLMError(f"notes batch {notes.shape[0]} does not match {B} captions")
        notes = notes[:, :n_frames].to(device=device, dtype=torch.float32).expand(B, -1, -1)
        notes = torch.nn.functional.pad(notes, (0, 0, 0, n_frames - notes.shape[1]))  # [B, n_frames, F]
    if guide is not None:
        if guide.dim() != 3 or guide.shape[0] not in (1, B) or not 0 < guide.shape[1] <= K:
            raise MusicLMError(f"guide codes must be [1 or {B}, 1..{K}, T], got {list(guide.shape)}")
        guide = guide[..., :n_frames].to(device=device, dtype=torch.long).expand(B, -1, -1)
        if bool(((guide < 0) | (guide >= model.special_id)).any()):
            raise MusicLMError(f"guide codes must be in [0, {model.special_id})")
    window = window or model.config.max_frames
    stride = stride or max(1, window // 2)
    plan = plan_windows(n_frames, prompt.shape[-1], window, stride)

    generators = row_generators(seed, B, device)
    # the notes get their own scale only when one is asked for and differs (else the doubled batch)
    split = notes is not None and params.note_cfg is not None and params.note_cfg != params.cfg
    guided = params.cfg != 1.0 or split
    copies = 3 if split else 2 if guided else 1  # batch rows per caption: [text + notes; (text;) null]
    cache_dtype = reduced_cache_dtype(device, amp_dtype)
    step_fn = _compiled_step(model) if compile else model.decode_step
    with _autocast(device, amp_dtype), _cpu_threads(device, threads):
        memory, memory_mask = model.encode_text(text_ids.to(device), text_mask.to(device))
        if guided:
            null, null_mask = model.null_condition(memory, memory_mask)
            memory = torch.cat([memory] * (copies - 1) + [null])
            memory_mask = torch.cat([memory_mask] * (copies - 1) + [null_mask])
        codes = prompt
        width = soft_width(params, model.card) if soft is not None else 0
        candidates = prompt[..., None].expand(-1, -1, -1, width)  # [B, K, T, c]: known codes, all mass on slot 0
        probs = _one_hot_first(candidates)
        steps = sum(w.length + K - 1 - w.keep for w in plan)
        with tqdm(total=steps, unit="step", desc="generating", disable=not progress, leave=True) as bar:
            for w in plan:
                start = codes.shape[-1] - w.keep  # the window's first frame in the output
                window_notes = None
                if notes is not None:
                    window_notes = notes[:, start : start + w.length]
                    if guided:  # only the first copy hears the notes
                        silent = torch.zeros_like(window_notes)
                        window_notes = torch.cat([window_notes] + [silent] * (copies - 1))
                new = _generate_window(
                    model,
                    memory,
                    memory_mask,
                    codes[..., start:],
                    w.length,
                    params,
                    generators,
                    (params.cfg, params.note_cfg) if split else params.cfg if guided else None,
                    step_fn,
                    compile,
                    cache_dtype,
                    bar,
                    window_notes,
                    None if guide is None else guide[..., start : start + w.length],
                    width,
                )
                if width:
                    new, (new_candidates, new_probs) = new
                    candidates = torch.cat([candidates, new_candidates[:, :, w.keep :]], dim=2)
                    probs = torch.cat([probs, new_probs[:, :, w.keep :]], dim=2)
                codes = torch.cat([codes, new[..., w.keep :]], dim=-1)
    if soft is not None:
        soft["candidates"], soft["probs"] = candidates, probs
    return codes


def _one_hot_first(candidates: Tensor) -> Tensor:
    """probs [..., c] with all mass on slot 0, shaped like candidates."""
    probs = torch.zeros(candidates.shape, device=candidates.device)
    probs[..., :1] = 1.0
    return probs


@contextlib.contextmanager
def _cpu_threads(device: torch.device, threads: int | None):
    """One decode step is ~40 small ops per layer on a few rows: splitting each across cores costs a barrier
    per op, more than it saves, and on a shared machine a barrier can wait for a descheduled thread (measured
    on the project's busy 2-core machines: 66 steps/s on one thread, 2-18 on two, d256 x 6 layers)."""
    if device.type != "cpu" or threads is None or threads == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _compiled_step(model):
    # static shapes (kv_len None: the whole cache under a mask), so one graph serves every position
    if getattr(model, "_compiled_decode_step", None) is None:
        object.__setattr__(model, "_compiled_decode_step", torch.compile(model.decode_step, dynamic=False))
    return model._compiled_decode_step


def _generate_window(
    model,
    memory: Tensor,
    memory_mask: Tensor,
    prompt: Tensor,
    n_frames: int,
    params: SamplingParams,
    generators: list[torch.Generator],
    cfg: float | tuple[float, float] | None,
    step_fn,
    static: bool,
    cache_dtype: torch.dtype | None,
    bar,
    notes: Tensor | None = None,
    guide: Tensor | None = None,
    soft_width: int = 0,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """One window: prompt [B, K, Tp] (Tp < n_frames) → codes [B, K, n_frames] starting with the prompt;
    with soft_width c > 0 also (candidates, probs) [B, K, n_frames, c] (`generate_codes`'s `soft`);
    notes [B (2B or 3B guided), n_frames, F] of the window's frames or None; guide [B, G, <=n_frames]: codes
    of the first G codebooks, kept where the prompt does not already fix them. cfg: None (no guidance), a
    scale (the doubled batch) or (text, note) scales (the tripled batch; `guide`)."""
    B, K, Tp = prompt.shape
    special, device = model.special_id, memory.device
    S = n_frames + K - 1
    frames = prompt.new_full((B, K, n_frames), -1)
    if guide is not None:
        frames[:, : guide.shape[1], : guide.shape[-1]] = guide
    frames[..., :Tp] = prompt
    target = apply_delay(frames, special)  # [B, K, S]: known codes, special cells, -1 to sample
    out = target.clone()
    if soft_width:  # known cells (and special ones, dropped by undo_delay): all mass on the cell's own id
        soft_candidates = out.clamp(min=0)[..., None].repeat(1, 1, 1, soft_width)  # [B, K, S, c]
        soft_probs = _one_hot_first(soft_candidates)
    cache = model.new_cache(memory, memory_mask, S, dtype=cache_dtype, notes=notes)
    # every row draws K * S numbers per window from its own generator, whatever it samples or keeps
    uniforms = None
    if params.temperature > 0:
        uniforms = torch.stack([torch.rand((K, S), generator=g, device=device) for g in generators])  # [B, K, S]
    positions = torch.arange(S, device=device)

    # prefill: BOS and the Tp fully known columns (column s is complete iff s < Tp) → logits of column Tp
    first = torch.cat([out.new_full((B, K, 1), special), out[..., :Tp]], dim=-1)
    copies = memory.shape[0] // B
    logits = model.decode_step(first.repeat(copies, 1, 1), cache, positions[: Tp + 1], Tp + 1, cfg)
    step_in = out.new_empty((memory.shape[0], K, 1))
    pos = positions[:1].clone()
    for s in range(Tp, S):
        known = target[:, :, s]
        u = None if uniforms is None else uniforms[:, :, s : s + 1]  # [B, K, 1]
        nxt = torch.where(known >= 0, known, sample_next(logits.float(), params, u))
        out[:, :, s] = nxt
        if soft_width:
            chosen = known < 0  # [B, K]
            cand, pr = draw_distribution(logits.float(), params)
            soft_candidates[:, :, s] = torch.where(chosen[..., None], cand, soft_candidates[:, :, s])
            soft_probs[:, :, s] = torch.where(chosen[..., None], pr, soft_probs[:, :, s])
        bar.update(1)
        if s + 1 == S:
            break
        step_in[..., 0] = nxt.repeat(copies, 1)
        pos.fill_(s + 1)
        logits = step_fn(step_in, cache, pos, None if static else s + 2, cfg)
    if soft_width:
        return undo_delay(out), (_undo_delay_last(soft_candidates), _undo_delay_last(soft_probs))
    return undo_delay(out)
