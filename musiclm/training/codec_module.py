"""LightningModule that trains the codec (EnCodec recipe, Défossez et al. 2022, §3.3–3.4).

One training step, for a batch wav [B, C, N]:

1. quantizer dropout: n_q drawn uniformly from the bandwidths (SoundStream §3.3), so every prefix decodes;
2. x̂, q = codec(wav, n_q); losses on x̂: time L1, multi-scale mel, multi-scale STFT and, after a warm-up,
   hinge adversarial + feature matching from a multi-scale STFT discriminator;
3. the gradients of those losses w.r.t. x̂ are combined (weighted sum, or EnCodec's balancer) and pushed
   through the model in ONE backward together with the commitment loss and the discriminator's loss on
   x̂.detach() (so DDP sees one backward per forward);
4. generator and discriminator gradients are clipped separately; one Adam step over both parameter groups
   (manual optimisation with one optimizer keeps `global_step` = generator steps).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from musiclm.codec import Codec
from musiclm.config import to_dict
from musiclm.dsp import lowpass
from musiclm.errors import MusicLMError
from musiclm.evaluation.tones import codec_roundtrip, sine_band_lost_share
from musiclm.training.audio_dataset import (
    AudioFile,
    CropBatches,
    StepSampler,
    fixed_clips,
    load_file_list,
    read_manifests,
    save_file_list,
)
from musiclm.training.balancer import Balancer
from musiclm.training.config import CodecTrainConfig
from musiclm.training.discriminator import MultiScaleSTFTDiscriminator
from musiclm.training.latent_targets import LatentTargets, latent_distance
from musiclm.training.losses import (
    CompressedComplexSTFTLoss,
    MultiScaleCQTLoss,
    MultiScaleMelLoss,
    MultiScaleSTFTLoss,
    NotePosteriorLoss,
    OnsetFluxLoss,
    SpectralConvergenceLoss,
    SpectralDeltaLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from musiclm.training.runner import lr_scheduler


class CodecModule(pl.LightningModule):
    def __init__(
        self, config: CodecTrainConfig, train_files: list[AudioFile] | None = None, sample_clips: Tensor | None = None
    ):
        super().__init__()
        self.config = config
        self.config_dict = to_dict(config)
        self.train_files = train_files or []
        self.sample_clips = sample_clips  # [S, C, N] fixed held-out audio for the periodic samples
        self.automatic_optimization = False
        self.codec = Codec(config.codec)
        loss = config.loss
        self.mel_loss = MultiScaleMelLoss(config.codec.sample_rate, loss.mel_n_ffts, loss.mel_bins)
        self.stft_loss = MultiScaleSTFTLoss(loss.stft_n_ffts)
        self.cqt_loss = MultiScaleCQTLoss(config.codec.sample_rate, loss.cqt_n_ffts) if loss.cqt > 0 else None
        self.convergence_loss = SpectralConvergenceLoss(loss.stft_n_ffts) if loss.convergence > 0 else None
        self.onset_loss = OnsetFluxLoss(config.codec.sample_rate, loss.onset_n_ffts) if loss.onset > 0 else None
        self.delta_loss = SpectralDeltaLoss(loss.delta_n_ffts) if loss.delta > 0 else None
        self.note_loss = NotePosteriorLoss(config.codec.sample_rate) if loss.notes > 0 else None
        self.complex_loss = (
            CompressedComplexSTFTLoss(
                loss.complex_n_ffts, sample_rate=config.codec.sample_rate, phase_cutoff_hz=loss.phase_cutoff_hz
            )
            if loss.complex_stft > 0
            else None
        )
        self.discriminator = (
            MultiScaleSTFTDiscriminator(
                loss.disc_n_ffts, config.codec.channels, loss.disc_filters, loss.disc_compress, loss.disc_bf16
            )
            if loss.adversarial
            else None
        )
        weights = {"l1": loss.l1, "mel": loss.mel, "stft": loss.stft}
        if self.cqt_loss is not None:
            weights["cqt"] = loss.cqt
        if self.complex_loss is not None:
            weights["complex"] = loss.complex_stft
        if self.convergence_loss is not None:
            weights["convergence"] = loss.convergence
        if self.onset_loss is not None:
            weights["onset"] = loss.onset
        if self.delta_loss is not None:
            weights["delta"] = loss.delta
        if self.note_loss is not None:
            weights["notes"] = loss.notes
        if loss.adversarial:
            weights.update(adv=loss.adv, feat=loss.feat)
        self.balancer = Balancer(weights, balance=loss.balancer, ema=loss.balancer_ema)
        # n_q per bandwidth, e.g. 1.5/3/6/12 kbps at 50 Hz × 10 bits → 3/6/12/24 codebooks
        from_bandwidths = {config.codec.n_q_for_bandwidth(bw) for bw in config.codec.bandwidths}
        self.n_qs = sorted(from_bandwidths | set(config.extra_n_qs))
        if not 0 < self.n_qs[0] <= self.n_qs[-1] <= config.codec.n_q:
            raise MusicLMError(f"extra_n_qs must lie in 1..{config.codec.n_q} (codec.n_q), got {config.extra_n_qs}")
        self.has_unused_parameters = loss.adversarial and loss.adv_warmup_steps > loss.disc_warmup_steps
        if config.freeze_encoder and config.freeze_decoder:
            raise MusicLMError("freeze_encoder and freeze_decoder leave nothing to train; set one of them")
        if config.freeze_decoder and not config.freeze_codebooks:
            # codebooks moving under a fixed decoder would change what each code sounds like
            raise MusicLMError("freeze_decoder needs freeze_codebooks: true (each code keeps its sound)")
        if (loss.latent > 0) != bool(config.data.latent_targets):
            raise MusicLMError("loss.latent and data.latent_targets go together: set both or neither")
        if loss.latent > 0 and not config.freeze_decoder:
            raise MusicLMError("loss.latent needs freeze_decoder: true (the targets were searched through it)")
        self.latent_targets: LatentTargets | None = None  # loaded by build_codec_module, after init_from
        if config.freeze_encoder:
            self.codec.encoder.requires_grad_(False)
        if config.freeze_decoder:
            self.codec.decoder.requires_grad_(False)

    # ---- data ---------------------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        d, c = self.config.data, self.config.codec
        dataset = CropBatches(
            self.train_files,
            c.sample_rate,
            c.channels,
            d.segment_seconds,
            d.batch_size,
            self.config.trainer.seed,
            self.global_rank,
            tuple(d.gain_db),
            d.manifest_weights,
            d.tone_melody_share,
        )
        workers = self.config.trainer.num_workers
        # The sampler reads global_step when iteration starts, i.e. after a checkpoint was restored.
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=StepSampler(lambda: self.global_step),
            num_workers=workers,
            prefetch_factor=2 if workers else None,
            persistent_workers=False,
        )

    # ---- optimisation ---------------------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.config.optim
        groups = [{"params": [p for p in self.codec.parameters() if p.requires_grad], "name": "generator"}]
        if self.discriminator is not None:
            d_lr = self.config.loss.disc_lr or o.lr
            groups.append({"params": list(self.discriminator.parameters()), "name": "discriminator", "lr": d_lr})
        optimizer = torch.optim.Adam(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        scheduler = lr_scheduler(optimizer, o, self.config.trainer.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def sample_n_q(self, step: int) -> int:
        """Quantizer dropout: a bandwidth drawn from (seed, step), identical across a resume."""
        rng = np.random.default_rng([self.config.trainer.seed, step, 7])
        return int(self.n_qs[rng.integers(len(self.n_qs))])

    def adversarial_active(self, step: int) -> bool:
        """Whether the generator hears the discriminator (adversarial + feature-matching terms) at `step`."""
        return self.discriminator is not None and step >= self.config.loss.adv_warmup_steps

    def discriminator_learns(self, step: int) -> bool:
        """Whether the discriminator takes a step: from `disc_warmup_steps` before the generator hears it."""
        loss = self.config.loss
        return self.discriminator is not None and step >= loss.adv_warmup_steps - loss.disc_warmup_steps

    def reconstruction_losses(self, recon: Tensor, wav: Tensor) -> dict[str, Tensor]:
        """Every reconstruction loss with a weight above 0, by name (not the adversarial terms). A loss at
        weight 0 is not computed: the unused STFT term alone cost ~15 % of a CPU step."""
        loss_config, sr = self.config.loss, self.config.codec.sample_rate
        cutoff = loss_config.phase_cutoff_hz
        # the waveform term sees only the band whose phase is asked for (LossConfig.phase_cutoff_hz)
        wave_out, wave_ref = (lowpass(recon, sr, cutoff), lowpass(wav, sr, cutoff)) if cutoff > 0 else (recon, wav)
        losses = {}
        if loss_config.l1 > 0:
            losses["l1"] = torch.nn.functional.l1_loss(wave_out.float(), wave_ref.float())
        if loss_config.mel > 0:
            losses["mel"] = self.mel_loss(recon, wav)
        if loss_config.stft > 0:
            losses["stft"] = self.stft_loss(recon, wav)
        if self.cqt_loss is not None:
            losses["cqt"] = self.cqt_loss(recon, wav)
        if self.complex_loss is not None:
            losses["complex"] = self.complex_loss(recon, wav)
        if self.convergence_loss is not None:
            losses["convergence"] = self.convergence_loss(recon, wav)
        if self.onset_loss is not None:
            losses["onset"] = self.onset_loss(recon, wav)
        if self.delta_loss is not None:
            losses["delta"] = self.delta_loss(recon, wav)
        if self.note_loss is not None:
            losses["notes"] = self.note_loss(recon, wav)
        return losses

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        wav = batch  # [B, C, N]
        step = self.global_step
        n_q = self.sample_n_q(step)
        # Lightning sets train mode each epoch; frozen codebooks take no EMA step and replace no dead codes
        if self.config.freeze_encoder:
            self.codec.encoder.eval()
        if self.config.freeze_encoder or self.config.freeze_codebooks:
            self.codec.quantizer.eval()
        recon, q = self.codec(wav, n_q)  # [B, C, N]
        losses = self.reconstruction_losses(recon, wav)
        d_loss = None
        if self.discriminator_learns(step):  # before adv_warmup_steps it learns while the generator hears nothing
            real_logits, real_feats = self.discriminator(wav)
            if self.adversarial_active(step):
                fake_logits, fake_feats = self.discriminator(recon)
                losses["adv"] = generator_adversarial_loss(fake_logits)
                losses["feat"] = feature_matching_loss(real_feats, fake_feats)
            detached_logits, _ = self.discriminator(recon.detach())
            d_loss = discriminator_loss(real_logits, detached_logits)

        grad, norms = self.balancer(losses, recon)  # ∂(combined loss)/∂x̂, [B, C, N]
        # Surrogate whose gradient is exactly the combined one: Σ x̂ · g (g held constant) + λ_w ℓ_w (+ L_d).
        surrogate = (recon * grad.detach()).sum() + self.config.loss.commit * q.commit_loss
        if self.latent_targets is not None:
            target_wav, target_latent = (t.to(wav.device) for t in self.latent_targets.batch(step))
            latent_loss = latent_distance(self.codec._encode_latent(target_wav, 0), target_latent)
            surrogate = surrogate + self.config.loss.latent * latent_loss
            losses["latent"] = latent_loss  # logged beside the others; it is not in the balancer
        if d_loss is not None:
            surrogate = surrogate + d_loss

        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(surrogate)
        clip = self.config.optim.grad_clip
        g_norm = _clip(self.codec.parameters(), clip)
        if d_loss is not None:
            _clip(self.discriminator.parameters(), clip)
        opt.step()
        self.lr_schedulers().step()  # manual optimisation: Lightning leaves the schedule to us

        logs = {f"train/{k}": v.detach() for k, v in losses.items()}
        logs.update({f"grad_norm/{k}": v for k, v in norms.items()})
        logs.update(
            {
                "train/commit": q.commit_loss.detach(),
                "train/n_q": float(n_q),
                "train/grad_norm": g_norm,
                "train/lr": opt.param_groups[0]["lr"],
            }
        )
        if d_loss is not None:
            logs["train/disc"] = d_loss.detach()
        self.log_dict(logs, prog_bar=False, sync_dist=False)
        if "mel" in losses:
            self.log("mel", losses["mel"].detach(), prog_bar=True, logger=False)
        return surrogate.detach()

    # ---- samples -----------------------------------------------------------------------------------------
    def make_samples(self) -> tuple[dict[str, Tensor], dict[str, float]]:
        """Held-out clips decoded at every bandwidth: {name: wav [C, N]} and metrics per bandwidth: log-mel
        distance, and with the [eval] extra the ones that hear notes (note F1, SI-SNR, chroma agreement), so
        their trend against steps is in metrics.csv (issue 11: envelope distances alone rewarded noise); for
        a mono codec also the share of off-grid steady sines lost in their band (`sine_band_lost_share`)."""
        if self.sample_clips is None or len(self.sample_clips) == 0:
            return {}, {}
        from musiclm.evaluation import metrics as quality

        clips = self.sample_clips.to(self.device)
        sr = self.config.codec.sample_rate
        samples, metrics = {}, {}
        ref_notes = _transcribe_or_none(clips, sr)
        for i, clip in enumerate(clips):
            samples[f"clip{i}_original"] = clip
        for bw in self.config.codec.bandwidths:
            n_q = self.config.codec.n_q_for_bandwidth(bw)
            recon, _ = self.codec(clips, n_q)
            metrics[f"val/mel_{bw:g}kbps"] = float(self.mel_loss(recon, clips))
            metrics[f"val/si_snr_{bw:g}kbps"] = float(quality.si_snr(clips.cpu(), recon.cpu()).mean())
            metrics[f"val/chroma_{bw:g}kbps"] = float(quality.chroma_agreement(clips.cpu(), recon.cpu(), sr).mean())
            if ref_notes is not None:
                from musiclm.evaluation.notes import note_scores_from_events, transcribe

                scores = [
                    note_scores_from_events(r, transcribe(e, sr)) for r, e in zip(ref_notes, recon.cpu(), strict=True)
                ]
                # precision beside F1: the codec loses F1 to notes it adds as much as to notes it drops
                for j, name in enumerate(("note_precision", "note_recall", "note_f1")):
                    metrics[f"val/{name}_{bw:g}kbps"] = sum(score[j] for score in scores) / len(scores)
            for i, r in enumerate(recon):
                samples[f"clip{i}_{bw:g}kbps"] = r
            if self.config.codec.channels == 1:
                roundtrip = codec_roundtrip(self.codec, n_q)
                metrics[f"val/sines_lost_{bw:g}kbps"] = sine_band_lost_share(roundtrip, sr)
        return samples, metrics

    # ---- export -----------------------------------------------------------------------------------------
    def export(self, directory, state_dict: dict[str, Tensor] | None = None) -> None:
        """Write the codec as `config.json` + `model.safetensors` (a full state dict may be passed in, e.g.
        gathered from FSDP shards)."""
        if state_dict is None:
            codec = self.codec
        else:
            codec = Codec(self.config.codec)
            prefix = "codec."
            codec.load_state_dict({k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)})
        codec.save_pretrained(directory)


def _transcribe_or_none(clips: Tensor, sample_rate: int):
    """basic-pitch transcriptions of clips [S, C, N], or None without the [eval] extra (then no note F1)."""
    try:
        from musiclm.evaluation.notes import transcribe

        return [transcribe(clip.cpu(), sample_rate) for clip in clips]
    except MusicLMError:
        return None


def _clip(params, max_norm: float) -> float:
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))


def build_codec_module(config: CodecTrainConfig, run_dir: Path, reuse_files: bool) -> CodecModule:
    """Resolve the training files once per run (RUN_DIR/files.json; a resume reuses it even if the manifests
    have grown since) and load the fixed sample clips."""
    d, c = config.data, config.codec
    files_json = run_dir / "files.json"
    if reuse_files and files_json.is_file():
        files = load_file_list(files_json)
    else:
        files = read_manifests(d.manifests, d.split, d.min_duration)
        if not files:
            raise MusicLMError(f"no rows with split {d.split!r} in {d.manifests}")
        save_file_list(files, files_json)
    # Held-out clips alternate between the manifests (e.g. real recordings and rendered MIDI), so the logged
    # note F1 / SI-SNR follow both kinds of music.
    per_manifest = [read_manifests([m], d.sample_split) for m in d.manifests] if d.num_samples > 0 else []
    held_out = [f for group in itertools.zip_longest(*per_manifest) for f in group if f is not None]
    clips = fixed_clips(held_out or files, c.sample_rate, c.channels, d.sample_seconds, d.num_samples)
    module = CodecModule(config, files, clips)
    if config.init_from:
        start = Codec.from_pretrained(config.init_from)
        ours, theirs = to_dict(config.codec), to_dict(start.config)
        ours.pop("name"), theirs.pop("name")
        widen = _adds_magnitude_input(ours, theirs)
        if widen:  # an architecture change init_from bridges: the encoder gains magnitude input
            theirs["frame"]["magnitude_input"] = True
        transients = _adds_transient_input(ours, theirs)
        if transients:  # and another: the encoder gains short-window input, which starts at zero
            theirs["frame"]["transient_input"] = ours["frame"]["transient_input"]
        deeper = _adds_decoder_layers(ours, theirs)
        if deeper:  # and the decoder gains blocks, which start as the identity (FrameDecoder.deepen_state)
            theirs["frame"]["decoder_layers"] = ours["frame"]["decoder_layers"]
        head_mlp = _adds_head_hidden(ours, theirs)
        if head_mlp:  # the other: the decoder gains a head MLP, which starts at zero (FrameNetConfig.head_hidden)
            theirs["frame"]["head_hidden"] = ours["frame"]["head_hidden"]
        for path in RETUNABLE_FIELDS:  # no weights depend on these, so a run may set them afresh
            _copy_field(ours, theirs, path)
        if ours != theirs:
            diff = sorted(k for k in ours if ours[k] != theirs.get(k))
            raise MusicLMError(f"init_from {config.init_from}: its codec config differs in {diff}")
        state = start.state_dict()  # weights and EMA codebook statistics
        if widen:
            state = module.codec.encoder.widen_with_magnitude_input(state, prefix="encoder.")
        if transients:
            state = module.codec.encoder.widen_with_transient_input(state, prefix="encoder.")
        if deeper:
            state = module.codec.decoder.deepen_state(state, prefix="decoder.")
        if head_mlp:  # the new MLP keeps its fresh (zero-output) weights
            state.update({k: v for k, v in module.codec.state_dict().items() if ".proj_mlp." in k})
        module.codec.load_state_dict(state)
    if d.latent_targets:
        module.latent_targets = LatentTargets(
            d.latent_targets, module.codec.sound_fingerprint(), d.latent_batch_size, config.trainer.seed
        )
    return module


# Codec settings that change no weight's shape or meaning-at-load: a run started with init_from may set them
# anew (e.g. lift Vocos' 1e2 magnitude clip, or switch on vocoder phase above a frequency).
RETUNABLE_FIELDS = (
    ("frame", "max_magnitude"),
    ("frame", "vocoder_phase_hz"),
    ("frame", "magnitude_grad_floor"),
    ("ema_decay",),
    ("dead_code_threshold",),
    ("kmeans_iters",),
)


def _copy_field(ours: dict, theirs: dict, path: tuple[str, ...]) -> None:
    """theirs[path] = ours[path] where both configs have the enclosing section."""
    *parents, key = path
    for name in parents:
        ours, theirs = ours.get(name), theirs.get(name)
        if not isinstance(ours, dict) or not isinstance(theirs, dict):
            return
    if key in ours:
        theirs[key] = ours[key]


def _adds_head_hidden(ours: dict, theirs: dict) -> bool:
    """True when a frame codec is started from one whose decoder had no head MLP."""
    return (
        ours.get("backbone") == "frame"
        and ours["frame"].get("head_hidden", 0) > 0
        and not theirs.get("frame", {}).get("head_hidden", 0)
    )


def _adds_decoder_layers(ours: dict, theirs: dict) -> bool:
    """True when a frame codec is started from one whose decoder had fewer blocks."""
    return (
        ours.get("backbone") == "frame"
        and "frame" in theirs
        and ours["frame"].get("decoder_layers", 0) > theirs["frame"].get("decoder_layers", 0)
    )


def _adds_transient_input(ours: dict, theirs: dict) -> bool:
    """True when a frame codec is started from one whose encoder lacked transient input."""
    return (
        ours.get("backbone") == "frame"
        and ours["frame"].get("transient_input", 0) > 0
        and not theirs.get("frame", {}).get("transient_input", 0)
    )


def _adds_magnitude_input(ours: dict, theirs: dict) -> bool:
    """True when a frame codec is started from one whose encoder lacked magnitude input."""
    return (
        ours.get("backbone") == "frame"
        and ours["frame"].get("magnitude_input", False)
        and not theirs.get("frame", {}).get("magnitude_input", False)
    )
