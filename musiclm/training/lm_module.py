"""LightningModule that trains the text-to-music LM over token shards (MusicGen recipe, Copet et al. 2023).

A step: codes [B, K, T] (random crops, padding = special id) → apply_delay → [B, K, S] → MusicLM forward
with the caption (condition dropout inside the model, §2.4) → cross-entropy over the valid delayed
positions (real codes, not the special/padding token), averaged over codebooks. AdamW with a linear
warm-up and cosine decay; Lightning clips gradients and runs bf16 on CUDA. Validation reports perplexity
per codebook on fixed held-out crops.

A note-conditioned LM (`note_features` > 0) also gets notes [B, T, F] in each batch (dropped or reduced to
the audio chroma per example by `TokenCrops`); validation then scores the same crops three ways, so the gain
from the notes shows in metrics.csv: val/ce with the MIDI notes, val/ce_chroma with the chroma view only,
val/ce_no_notes with none (the text-only model inside it).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from musiclm.config import to_dict
from musiclm.errors import MusicLMError
from musiclm.lm import MusicLM, apply_delay
from musiclm.training.audio_dataset import StepSampler
from musiclm.training.config import LMTrainConfig
from musiclm.training.runner import adamw_with_decay_groups
from musiclm.training.token_dataset import FixedBatches, NoteViews, TokenCrops, TokenItem

# validation views of a note LM: metric suffix → batch key of its notes (None: without notes)
VAL_VIEWS = {"": "notes", "_chroma": "notes_chroma", "_no_notes": None}


class LMModule(pl.LightningModule):
    def __init__(
        self,
        config: LMTrainConfig,
        model: MusicLM,
        train_items: list[TokenItem],
        val_items: list[TokenItem] | None = None,
        codec_dir: str | None = None,
    ):
        super().__init__()
        self.config = config
        self.config_dict = to_dict(config)
        self.model = model
        self.train_items, self.val_items = train_items, val_items or []
        self.codec_dir = codec_dir
        self._val_sums: Tensor | None = None  # [views, 2, K] per codebook: Σ CE·count, Σ count

    # ---- data ---------------------------------------------------------------------------------------------
    def _tokens_args(self) -> tuple:
        return self.model.tokenizer, self.model.config.text.max_len, self.model.special_id

    def train_dataloader(self) -> DataLoader:
        d = self.config.data
        dataset = TokenCrops(
            self.train_items,
            d.frames,
            d.batch_size,
            self.config.trainer.seed,
            self.global_rank,
            *self._tokens_args(),
            note_views=NoteViews.of(self.model.config),
        )
        # The sampler reads global_step when iteration starts, i.e. after a checkpoint was restored.
        return DataLoader(dataset, batch_size=None, sampler=StepSampler(lambda: self.global_step), num_workers=0)

    def val_dataloader(self) -> DataLoader:
        d = self.config.data
        return DataLoader(
            FixedBatches(
                self.val_items,
                d.frames,
                d.batch_size,
                d.val_batches,
                *self._tokens_args(),
                note_features=self.model.config.note_features,
            ),
            batch_size=None,
        )

    def _val_views(self) -> dict[str, str | None]:
        return VAL_VIEWS if self.model.config.note_features > 0 else {"": None}

    # ---- steps --------------------------------------------------------------------------------------------
    def _loss(self, batch: dict[str, Tensor], notes_key: str | None = "notes") -> tuple[Tensor, Tensor, Tensor]:
        codes = apply_delay(batch["codes"], self.model.special_id)  # [B, K, S]
        notes = batch.get(notes_key) if notes_key else None  # [B, T, F] or None
        logits = self.model(codes, batch["text_ids"], batch["text_mask"], notes)  # [B, K, S, card]
        loss, per_q = self.model.loss(logits, codes)
        counts = self.model.valid_mask(codes).sum(dim=(0, 2))  # [K]
        return loss, per_q, counts

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, per_q, _ = self._loss(batch)
        logs = {"train/loss": loss.detach(), "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"]}
        logs.update({f"train/ce_k{k}": v.detach() for k, v in enumerate(per_q)})
        self.log_dict(logs)
        self.log("loss", loss.detach(), prog_bar=True, logger=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        views = len(self._val_views())
        self._val_sums = torch.zeros(views, 2, self.model.n_q, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        for v, key in enumerate(self._val_views().values()):
            _, per_q, counts = self._loss(batch, key)
            self._val_sums[v, 0] += per_q.double() * counts
            self._val_sums[v, 1] += counts

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        logs = {}
        for v, suffix in enumerate(self._val_views()):
            ce = sums[v, 0] / sums[v, 1].clamp(min=1)  # [K], token-weighted over the validation set
            if not suffix:
                logs.update({f"val/ppl_k{k}": math.exp(float(c)) for k, c in enumerate(ce)})
            logs[f"val/ce{suffix}"] = float(ce.mean())
            logs[f"val/ppl{suffix}"] = math.exp(float(ce.mean()))
        self.log_dict(logs, sync_dist=False, rank_zero_only=True)

    # ---- optimisation -------------------------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.config.optim
        return adamw_with_decay_groups(self.model, o, self.config.trainer.max_steps)

    # ---- samples and export -------------------------------------------------------------------------------
    def make_samples(self) -> tuple[dict[str, Tensor], dict[str, float]]:
        """Audio from the configured prompts (needs the codec); {name: wav [C, N]}."""
        d = self.config.data
        if not d.sample_prompts or not self.codec_dir:
            return {}, {}
        if getattr(self.model, "codec", None) is None:
            from musiclm.lm.pretrained import attach_codec

            attach_codec(self.model, Path(self.codec_dir))
        wav = self.model.generate(d.sample_prompts, duration=d.sample_seconds, seed=0)  # [B, C, N]
        return {f"prompt{i}": w for i, w in enumerate(wav)}, {}

    def export(self, directory, state_dict: dict[str, Tensor] | None = None) -> None:
        """MusicLM.save_pretrained: config.json + model.safetensors + tokenizer.model (+ codec link)."""
        model = self.model
        if state_dict is not None:
            model = MusicLM(self.model.config, tokenizer=self.model.tokenizer)
            prefix = "model."
            model.load_state_dict({k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)})
        codec = os.path.relpath(Path(self.codec_dir).resolve(), Path(directory).resolve()) if self.codec_dir else None
        config = model.config
        model.save_pretrained(directory, codec_path=codec, codec_fingerprint=self.model.codec_fingerprint)
        model.config = config  # save_pretrained rewrites `codec` relative to the directory; keep ours


def check_compatible(model: MusicLM, items: list[TokenItem]) -> None:
    top = max(int(it.codes.max()) for it in items)
    if top >= model.card:
        raise MusicLMError(f"the shards hold code {top}, but the LM has {model.card} entries per codebook")
    if model.config.note_features > 0 and not any(it.notes is not None or it.chroma is not None for it in items):
        raise MusicLMError(
            "the LM is note-conditioned (note_features > 0) but the shards hold no note features: "
            "tokenize a manifest with 'midi' paths (musiclm data tokenize, shard format v2)"
        )
