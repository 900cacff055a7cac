"""The text-conditioned music LM: delayed codec tokens + caption → next-step logits for K codebooks.

    codes [B, K, S] (delayed) --shift right, BOS--> embed: sum of K embeddings [B, S, D]
        + sinusoidal positions --N pre-norm blocks (self-attn, cross-attn to text, FFN)--> LayerNorm
        --K heads--> logits [B, K, S, card]

Training (`forward`): logits[:, k, s] is the distribution of codes[:, k, s] given codes[:, :, :s] and the
text; cross-entropy over `valid_mask(codes)` (real codes, not the special token). Generation
(`musiclm.lm.sample`): `new_cache` then `decode_step` at explicit positions; `generate` runs captions →
audio (`musiclm.lm.generation`). Condition dropout (the text replaced by the null condition: an all-masked
memory, i.e. zeros) trains the unconditional model that classifier-free guidance needs (Ho & Salimans 2022;
MusicGen §2.4).

Notes (optional, `note_features` F > 0): per-frame note features at the codec frame rate
(`musiclm.notes.features`: piano roll [T, 48], or the audio chroma in columns 0:12) go through a centred
Conv1d (kernel 5, no bias) and are added to the input embeddings, position s getting frame s: under the
delay pattern input position s predicts frame s of codebook 0. MusicGen-melody (Copet et al. 2023 §2.4)
conditions on a chromagram prepended to the sequence; our clips come with exactly aligned notes, so a
per-frame addition puts each frame's notes where its tokens are predicted, and the ±2-frame kernel gives a
small look-ahead that helps onsets (the notes are known in advance). All-zero notes are exactly "no notes"
(no bias): what note dropout and the unconditional half of classifier-free guidance see.

With `note_presence`, a learned vector is added at every position of a row whose window holds any note
feature, so "no notes" (text alone) and "notes that rest" are different inputs. It did not by itself stop
text alone falling silent (checkpoints/README.md, stage 5): that came from training crops running into clips'
silent tails (`musiclm.training.token_dataset.trim_trailing_silence`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musiclm.errors import MusicLMError
from musiclm.lm.generation import GenerationOptions, generate_audio
from musiclm.lm.sample import guide
from musiclm.nn.transformer import Block, CachedStep, KVCache, padding_attn_mask, sinusoidal_embedding
from musiclm.text.encoder import TextConfig, build_text_encoder

NOTE_KERNEL = 5  # frames of the note projection, centred: 2 frames of look-ahead


@dataclass
class LMConfig:
    name: str = "musiclm-lm"
    n_q: int = 4  # K codebooks modelled (a prefix of the codec's)
    card: int = 1024  # codebook size; the special token (BOS / empty delay cell) is id `card`
    dim: int = 256  # D
    n_layers: int = 6
    n_heads: int = 8
    ffn_dim: int = 1024
    activation: str = "gelu"
    dropout: float = 0.0
    condition_dropout: float = 0.1  # training: probability a caption (and its notes) become the null condition
    note_features: int = 0  # F per-frame note features (48: `piano_roll_features`); 0: text only
    note_presence: bool = False  # a learned "notes are given" vector (see the module docstring)
    note_dropout: float = 0.3  # training data: share of examples whose notes are zeros (text alone still works)
    chroma_share: float = 0.3  # of the examples keeping notes, share given the audio chroma only (`--melody`)
    token_noise: float = 0.0  # training: share of input tokens replaced by random codes (`corrupt_inputs`)
    max_frames: int = 500  # generation window in frames (the training clip length); longer → windowed
    frame_rate: float = 50.0  # of the codec the LM was trained on (checked on load)
    sample_rate: int = 24000
    codec: str | None = None  # codec directory, relative to the model directory (e.g. "../codec")
    text: TextConfig = field(default_factory=TextConfig)
    # sampling defaults the model ships with (MusicGen's: top-k 250, CFG 3)
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg: float = 3.0
    note_cfg: float | None = None  # guidance on the notes given the text (None: cfg over both together)


class MusicLM(nn.Module):
    def __init__(self, config: LMConfig, tokenizer=None, codec=None):
        super().__init__()
        self.config = config
        K, card, D = config.n_q, config.card, config.dim
        # K embedding tables of card + 1 rows stored as one, summed by embedding_bag in one kernel
        self.embed = nn.Embedding(K * (card + 1), D)
        self.register_buffer("embed_offsets", torch.arange(0, K * (card + 1), card + 1), persistent=False)
        self.blocks = nn.ModuleList(
            Block(
                D,
                config.n_heads,
                config.ffn_dim,
                i,
                causal=True,
                cross=True,
                dropout=config.dropout,
                activation=config.activation,
            )
            for i in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(D)
        self.heads = nn.Linear(D, K * card, bias=False)  # K heads fused: one matmul per step
        self.text_encoder = build_text_encoder(config.text)
        # MusicGen's enc_to_dec_proj: a biased projection when the text width differs from the LM's
        self.text_proj = nn.Linear(config.text.dim, D) if config.text.dim != D else nn.Identity()
        # notes [B, S, F] → [B, S, D], frames s-2..s+2 for position s; no bias, so zeros add nothing
        self.note_proj = (
            nn.Conv1d(config.note_features, D, NOTE_KERNEL, padding=NOTE_KERNEL // 2, bias=False)
            if config.note_features > 0
            else None
        )
        self.note_presence = None
        if config.note_features > 0 and config.note_presence:
            self.add_note_presence()
        self.tokenizer = tokenizer
        # The codec is deliberately not a submodule: its weights are not the LM's (never trained, never
        # saved in model.safetensors, not in the optimizer); `generate` moves it to the LM's device.
        object.__setattr__(self, "codec", codec)
        # the token space the weights are trained on (`Codec.fingerprint`): set by attach_codec and by loading
        self.codec_fingerprint: str | None = codec.fingerprint() if codec is not None else None
        self.apply(self._init_weights)
        if self.note_proj is not None:
            nn.init.normal_(self.note_proj.weight, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    # ---- facts ---------------------------------------------------------------------------------------
    @property
    def n_q(self) -> int:
        return self.config.n_q

    @property
    def card(self) -> int:
        return self.config.card

    @property
    def special_id(self) -> int:
        """The BOS / empty-delay-cell token (one extra embedding row per codebook)."""
        return self.config.card

    @property
    def device(self) -> torch.device:
        return self.heads.weight.device

    def valid_mask(self, codes: Tensor) -> Tensor:
        """codes [B, K, S] delayed → [B, K, S] bool: positions that hold a real code (count in the loss)."""
        return codes != self.special_id

    # ---- text ----------------------------------------------------------------------------------------
    def encode_text(self, ids: Tensor, mask: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """ids, mask [B, L] → (memory [B, L, D] zero at masked positions, mask [B, L]).

        In training mode each caption is dropped to the null condition with probability
        `condition_dropout` (or where `keep` [B, 1] is False), so the same weights also learn the
        unconditional model.
        """
        if keep is None and self.training:
            keep = self._condition_keep(ids.shape[0], ids.device)
        if keep is not None:
            mask = mask & keep
        memory = self.text_proj(self.text_encoder(ids, mask))
        return memory * mask[..., None].to(memory.dtype), mask

    def _condition_keep(self, B: int, device: torch.device) -> Tensor | None:
        """Training: [B, 1] bool, False where condition dropout fires (None when it is off)."""
        if self.config.condition_dropout <= 0:
            return None
        return torch.rand(B, 1, device=device) >= self.config.condition_dropout

    @staticmethod
    def null_condition(memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The unconditional input: zeros, nothing to attend to (what condition dropout trains)."""
        return torch.zeros_like(memory), torch.zeros_like(mask)

    # ---- notes ---------------------------------------------------------------------------------------
    def check_notes(self, notes: Tensor) -> None:
        """Refuse notes this model cannot take (MusicLMError): a text-only model, or F ≠ note_features."""
        n_features = self.config.note_features
        if n_features == 0:
            raise MusicLMError("this model is text-only (note_features 0): it cannot be conditioned on notes")
        if notes.dim() != 3 or notes.shape[-1] != n_features:
            raise MusicLMError(
                f"expected notes [B, T, {n_features}] (note features per frame), got {list(notes.shape)}"
            )

    def add_note_presence(self) -> None:
        """Give the model its "notes are given" vector, zero so that an existing model's outputs do not change
        until it is trained (fine-tuning a model saved without one: `lm.note_presence: true` with init_from)."""
        if self.config.note_features == 0:
            raise MusicLMError("note_presence needs a note-conditioned model (note_features > 0)")
        self.config = replace(self.config, note_presence=True)
        self.note_presence = nn.Parameter(torch.zeros(self.config.dim, device=self.device))

    def embed_notes(self, notes: Tensor, steps: int) -> Tensor:
        """notes [B, T, F] (T <= steps frames; missing frames are silent) → [B, steps, D] added to the inputs."""
        self.check_notes(notes)
        assert notes.shape[1] <= steps, f"{notes.shape[1]} frames of notes for {steps} steps"
        x = notes.to(device=self.device, dtype=self.note_proj.weight.dtype).transpose(1, 2)  # [B, F, T]
        x = F.pad(x, (0, steps - notes.shape[1]))  # zeros past the clip, as in training
        out = self.note_proj(x).transpose(1, 2)  # [B, steps, D]
        if self.note_presence is not None:
            given = x.flatten(1).ne(0).any(1)  # [B]: any note feature in the window
            out = out + given[:, None, None].to(out.dtype) * self.note_presence.to(out.dtype)
        return out

    # ---- training ------------------------------------------------------------------------------------
    def _embed(self, tokens: Tensor) -> Tensor:
        """tokens [B, K, S] (ids in 0..card) → [B, S, D]: the K codebook embeddings summed."""
        B, K, S = tokens.shape
        flat = (tokens + self.embed_offsets[None, :, None]).permute(0, 2, 1).reshape(B * S, K)
        return F.embedding_bag(flat, self.embed.weight, mode="sum").view(B, S, -1)

    def _logits(self, x: Tensor) -> Tensor:
        """x [B, S, D] → [B, K, S, card]."""
        B, S, _ = x.shape
        return self.heads(self.norm(x)).view(B, S, self.n_q, self.card).permute(0, 2, 1, 3)

    def forward(self, codes: Tensor, text_ids: Tensor, text_mask: Tensor, notes: Tensor | None = None) -> Tensor:
        """codes [B, K, S] delayed (special id at empty cells / padding), text ids/mask [B, L], notes
        [B, T, F] (T <= S frames, frame s at position s; None or zeros: no notes) → logits [B, K, S, card];
        logits[:, k, s] predicts codes[:, k, s] (the shift is done here). In training, condition dropout
        removes a row's text and notes together."""
        assert codes.dim() == 3 and codes.shape[1] == self.n_q, f"expected [B, {self.n_q}, S] codes"
        B, K, S = codes.shape
        keep = self._condition_keep(B, codes.device) if self.training else None
        memory, memory_mask = self.encode_text(text_ids, text_mask, keep)
        inputs = torch.cat([codes.new_full((B, K, 1), self.special_id), codes[..., :-1]], dim=-1)
        if self.training and self.config.token_noise > 0:
            inputs = self.corrupt_inputs(inputs)
        x = self._embed(inputs) + sinusoidal_embedding(torch.arange(S, device=codes.device), self.config.dim).to(
            self.embed.weight.dtype
        )
        if notes is not None:
            note_emb = self.embed_notes(notes, S)
            x = x + (note_emb if keep is None else note_emb * keep[..., None].to(note_emb.dtype))
        for block in self.blocks:
            x = block(x, memory, memory_mask)
        return self._logits(x)

    def corrupt_inputs(self, inputs: Tensor) -> Tensor:
        """Training: replace a `token_noise` share of the real input codes by random codes (targets unchanged).

        A model trained on true context only learns to trust it over its conditions, and at generation its
        own mistakes then carry on (exposure bias; Bengio et al. 2015, scheduled sampling). With part of the
        context unreliable, the notes and text become the sources that predict the next frame."""
        noisy = torch.rand(inputs.shape, device=inputs.device) < self.config.token_noise
        noisy &= inputs != self.special_id
        return torch.where(noisy, torch.randint_like(inputs, self.card), inputs)

    def loss(self, logits: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-entropy over valid positions → (mean over codebooks, per-codebook [K])."""
        valid = self.valid_mask(codes)  # [B, K, S]
        ce = F.cross_entropy(
            logits.float().reshape(-1, self.card), codes.clamp(max=self.card - 1).reshape(-1), reduction="none"
        ).view_as(codes)
        per_q = (ce * valid).sum(dim=(0, 2)) / valid.sum(dim=(0, 2)).clamp(min=1)
        return per_q.mean(), per_q

    # ---- generation ----------------------------------------------------------------------------------
    def new_cache(
        self,
        memory: Tensor,
        memory_mask: Tensor,
        max_steps: int,
        dtype: torch.dtype | None = None,
        notes: Tensor | None = None,
    ) -> KVCache:
        """A cache for one generation window of `max_steps` positions; projects the text k/v once, and the
        window's notes [B, T, F] (T <= max_steps frames, frame 0 = position 0) once.

        memory [B, L, D], memory_mask [B, L], notes (already doubled for classifier-free guidance: the
        unconditional half has zero notes)."""
        c = self.config
        dtype = dtype or self.heads.weight.dtype
        cache = KVCache(c.n_layers, memory.shape[0], c.n_heads, c.dim // c.n_heads, max_steps, dtype, memory.device)
        for block in self.blocks:
            k, v = block.cross_attn.project_memory(memory)
            cache.cross_k.append(k.to(dtype).contiguous())
            cache.cross_v.append(v.to(dtype).contiguous())
        allowed = padding_attn_mask(memory_mask)  # [B, 1, 1, L] bool
        if not bool(allowed.all()):  # one host read per window, never per step
            cache.cross_mask = torch.zeros(allowed.shape, dtype=dtype, device=memory.device).masked_fill(
                ~allowed, float("-inf")
            )
        # weights laid out for the decode loop's matmuls, per window (~10 ms, so never stale after training);
        # a CPU copy only while it is small (~8 % faster at batch 8 for the default model; for a 3B MusicGen
        # it would double the memory)
        packed = memory.device.type == "cpu" and sum(p.numel() for p in self.blocks.parameters()) < 64_000_000
        cache.weights = [block.decode_weights(packed) for block in self.blocks]
        cache.heads = self.heads.weight.t().contiguous() if packed else self.heads.weight.t()
        # in the parameters' dtype: the embeddings it is added to are not autocast
        cache.pos_emb = sinusoidal_embedding(torch.arange(max_steps, device=memory.device), c.dim).to(
            self.embed.weight.dtype
        )
        if notes is not None:
            cache.notes = self.embed_notes(notes, max_steps).to(self.embed.weight.dtype)  # [B, max_steps, D]
        return cache

    def decode_step(
        self,
        tokens: Tensor,
        cache: KVCache,
        input_pos: Tensor,
        kv_len: int | None,
        cfg: float | tuple[float, float] | None = None,
    ) -> Tensor:
        """tokens [B, K, S_in] at positions input_pos [S_in] → logits [B, K, card] of the last position.

        kv_len: positions filled after this call (eager, reads cache[:kv_len]); None: static shapes.
        cfg: the batch is [conditional; unconditional] (2B rows) → guided logits [B, K, card], combined
        before the heads: heads(u + cfg (c - u)) = heads(u) + cfg (heads(c) - heads(u)) as they are linear.
        cfg (text, note) scales: the batch is [text + notes; text; unconditional] (3B rows; `guide`)."""
        step = CachedStep.make(cache, input_pos, kv_len)
        x = self._embed(tokens) + cache.pos_emb.index_select(0, input_pos)  # [B, S_in, D]
        if cache.notes is not None:
            x = x + cache.notes.index_select(1, input_pos)
        B, K, S_in = tokens.shape
        if S_in == 1:  # the decode loop: 2-D activations through `Block.decode_one`
            x = x.view(B, -1)
            for block in self.blocks:
                x = block.decode_one(x, step)
        else:
            for block in self.blocks:
                x = block(x, step=step)
            x = x[:, -1]
        h = self.norm(x)  # [B, D]
        if cfg is not None:
            h = guide(h, cfg)  # the same formula as on logits, one matmul earlier
        return torch.mm(h, cache.heads).view(h.shape[0], K, self.card)

    @torch.no_grad()
    def generate(
        self,
        texts: list[str] | str,
        options: GenerationOptions | None = None,
        prompt_wav: Tensor | None = None,
        notes: Tensor | None = None,
        guide: Tensor | None = None,
        **changes,
    ) -> Tensor:
        """Captions (+ notes) → wav [B, C, N] at the codec's sample rate, N = duration * sample_rate.

        `options` (`GenerationOptions`; its fields may also be given by name, as in
        `model.generate(["calm piano"], duration=8, seed=1)`): duration counts the whole output, including
        `prompt_wav` [B or 1, C, N0] (continuation), which comes back unchanged up to the codec's
        reconstruction. Unset sampling options take the model's defaults (config.cfg, temperature, top_k,
        top_p). A caption's audio depends on its text and the seed only, not on the other captions beside
        it (`musiclm.lm.generation`); same seed → same audio on one device.

        `notes` [B or 1, T, F]: note features per codec frame from the start of the output (the prompt's
        frames included), F = config.note_features; shorter than the duration → silent after, longer → cut.
        Guidance contrasts text + notes with neither. A text-only model refuses notes (MusicLMError).
        `guide` [B or 1, G, T]: codes of the first G codebooks, kept as given (`musiclm.notes.guide`).
        """
        options = replace(options or GenerationOptions(), **changes)
        return generate_audio(self, texts, options, prompt_wav, notes, guide)

    # ---- checkpoints (musiclm.lm.pretrained) ---------------------------------------------------------
    def save_pretrained(
        self,
        directory,
        codec_path: str | None = None,
        dtype: torch.dtype = torch.float32,
        codec_fingerprint: str | None = None,
    ):
        from musiclm.lm.pretrained import save_pretrained

        return save_pretrained(self, directory, codec_path, dtype, codec_fingerprint)

    @classmethod
    def from_pretrained(cls, path=None, map_location: str = "cpu", load_codec: bool = True) -> MusicLM:
        """None → the shipped model; a directory saved by `save_pretrained`; or a transformers MusicGen
        directory (decoder + T5 + EnCodec). A missing or invalid directory raises MusicLMError."""
        from musiclm.lm.pretrained import from_pretrained

        return from_pretrained(path, map_location=map_location, load_codec=load_codec)
