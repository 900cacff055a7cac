"""A frame-domain encoder/decoder: STFT → ConvNeXt at the frame rate → latent → ConvNeXt → iSTFT head.

    wav [B, C, N] --STFT (hop = codec hop)--> [B, 2·C·F, T] --ConvNeXt × L--> latent [B, D, T]
    latent [B, D, T] --ConvNeXt × L--> [B, 2·C·F', T·u] --(magnitude, phase) → iSTFT--> wav [B, C, T·hop]

Vocos (Siuzdak 2023, §3): every layer runs at the frame rate and the waveform comes from an inverse STFT, so
no layer runs at the sample rate. Measured here (shared/NOTES.md): ~3x cheaper per training step than
SEANet-32 on a CPU and ~53x real time to decode. The head predicts log-magnitude and phase per bin
(Vocos §3.2: phase as an angle through cos/sin, which keeps it on the unit circle); with `upsample` u > 1 the
decoder's last blocks run at u times the frame rate and the head's hop is hop / u (finer time resolution
for onsets).

The encoder sees the complex STFT with power-law compressed magnitude (|X|^0.3 · e^{i∠X}, as in speech
enhancement front-ends) so loud and quiet partials both reach the first layer at a usable scale, and the
phase is there for the encoder to keep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class FrameNetConfig:
    channels: int = 1  # audio channels C
    dimension: int = 128  # latent width D
    hop_length: int = 480  # samples per frame (24 kHz / 480 = 50 frames/s)
    window_hops: int = 4  # STFT window = window_hops × hop (75 % overlap, Vocos)
    width: int = 256  # ConvNeXt width
    encoder_layers: int = 8
    decoder_layers: int = 8
    upsample: int = 1  # decoder's head runs at upsample × frame rate (hop / upsample)
    kernel_size: int = 7
    compress: float = 0.3  # encoder input magnitude exponent
    # "magphase": log-magnitude + phase angle per bin (Vocos §3.2); "complex": real and imaginary parts
    # directly. Without a discriminator, regression on the complex spectrum has no phase wrapping to fight and
    # starts from silence (exp(0) = 1 starts the magnitude head at a full-band noise floor).
    head: str = "magphase"
    # The encoder also sees the compressed magnitude |X|^c of each bin, which does not rotate with phase. From
    # real and imaginary parts alone the first layer (linear) cannot tell a steady partial's energy from its
    # phase: the shipped encoder mapped steady sines near 400 Hz and from ~1 kHz up to near-silence
    # (eval/codec_tones.py), the "notes from C5 up are lost" of eval/codec_diagnose.py. Speech-enhancement
    # front-ends feed magnitude beside the complex parts for this reason.
    magnitude_input: bool = False
    # The encoder also sees this many short-window magnitude spectra per frame (windows of 2·hop/n, hop/n
    # apart: 5 ms at n = 4), stacked as extra input features; 0: none. Its STFT window spans 4 hops (80 ms),
    # so where in a frame a note starts is written only in the phases of 961 bins, which its first (linear)
    # layer must decode; the encoder smeared attacks that the frozen decoder plays when a fitted latent asks
    # (eval/codec_onsets.py). Onset detectors read short windows for this reason (Bello et al. 2005, §2).
    transient_input: int = 0
    # Phase measured against each bin's centre frequency (the phase vocoder's heterodyned phase, Dolson 1986)
    # instead of torch.stft's frame-local phase. Frame-local, a steady partial at bin k's centre turns by
    # 2π·k/window_hops a frame, a different fast rotation per bin that a convolution (which does not know
    # the absolute frame index) must reproduce from the codes: the shipped codec learned it only for the
    # equal-tempered pitches of its training notes and passes steady sines only there (a comb above ~250 Hz;
    # eval/codec_tones.py). Heterodyned, a steady partial at any frequency turns slowly, by 2π·(f - f_k)·hop/sr.
    # Encoder and iSTFT head both take `frame_offset`, the absolute index of their first frame.
    heterodyne: bool = False
    # Ceiling of the magphase head's magnitude per bin (Vocos clips at 1e2 for early stability). At n_fft 1920
    # a sine of amplitude a peaks at a·480 in its bin, so 1e2 clips any partial louder than ~0.21 (-13.6 dBFS):
    # the shipped codec plays a 0.3-amplitude sine 6.7 dB quiet. New recipes raise it (configs/codec/*.yaml).
    max_magnitude: float = 1e2
    # From this frequency up, the head does not use a learned phase: it propagates phase from the magnitudes it
    # predicts, as a phase-locked vocoder does (Laroche & Dolson 1999: each spectral peak advances by its
    # instantaneous frequency, read from the log-magnitude's parabola around the peak, and the bins around a
    # peak are locked to it). Why: a learned frame-local phase is coherent only at the pitches the training
    # notes used (the comb of eval/codec_tones.py --sweep, from ~250 Hz up), and the phase-aware losses then
    # push every other partial to silence. Propagated phase is coherent for a steady partial at any frequency;
    # the codes carry magnitudes only up there. 0: learned phase in every bin. Train with loss.phase_cutoff_hz
    # at the same frequency (the waveform and complex terms would fight a phase nobody predicts). Chunked
    # decoding restarts the propagation at each chunk: bins above this frequency are not sample-identical to a
    # one-shot decode (their phase is free; their magnitudes are).
    vocoder_phase_hz: float = 0.0
    # Hidden width of a residual MLP beside the decoder's last projection (0: none). That projection maps each
    # frame's `width` features linearly onto 2·(n_fft/2 + 1) log-magnitudes and phases (1,922 at n_fft 1920
    # from 256): a rank-`width` readout, where Vocos reads 513 bins from 512. The MLP's output layer starts at
    # zero, so a decoder that gains it starts as the one it came from (init_from bridges it).
    head_hidden: int = 0
    # Training only (the forward pass is unchanged): the gradient of the magphase head's exp(log-magnitude) is
    # floored at this magnitude. Through exp, a bin the decoder has once made silent (~4e-5) passes ~1e-4 of a
    # live bin's gradient back to the latent: measured 2026-11-30 (eval/codec_latent_fit.py), the shipped
    # decoder plays a 1,047 Hz sine from a fitted latent (Adam, whose steps ignore gradient scale, or SGD at
    # 1e4x the learning rate a 523 Hz sine needs), while its encoder, trained among live notes, never leaves
    # the silent latent. 0: plain exp.
    magnitude_grad_floor: float = 0.0


class ConvNeXtBlock(nn.Module):
    """Depthwise conv → LayerNorm → pointwise MLP (3× width, GELU) → layer scale → residual (ConvNeXt,
    Liu et al. 2022, §2; the 1-D form Vocos uses)."""

    def __init__(self, dim: int, kernel_size: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 3 * dim)
        self.pwconv2 = nn.Linear(3 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:  # [B, D, T]
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class ConvNeXtStack(nn.Module):
    def __init__(
        self, in_dim: int, width: int, out_dim: int, layers: int, kernel_size: int, proj_hidden: int = 0
    ) -> None:
        super().__init__()
        self.embed = nn.Conv1d(in_dim, width, kernel_size, padding=kernel_size // 2)
        self.norm_in = nn.LayerNorm(width, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(width, kernel_size, 1.0 / max(layers, 1)) for _ in range(layers))
        self.norm_out = nn.LayerNorm(width, eps=1e-6)
        self.proj = nn.Linear(width, out_dim)
        self.proj_mlp = None
        if proj_hidden > 0:  # FrameNetConfig.head_hidden: zero output layer, so it starts as the plain projection
            self.proj_mlp = nn.Sequential(nn.Linear(width, proj_hidden), nn.GELU(), nn.Linear(proj_hidden, out_dim))
            nn.init.zeros_(self.proj_mlp[2].weight), nn.init.zeros_(self.proj_mlp[2].bias)

    def forward(self, x: Tensor) -> Tensor:  # [B, in_dim, T] -> [B, out_dim, T]
        x = self.norm_in(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        z = self.norm_out(x.transpose(1, 2))
        out = self.proj(z) if self.proj_mlp is None else self.proj(z) + self.proj_mlp(z)
        return out.transpose(1, 2)


def heterodyne_rotation(bins: int, frames: int, window_hops: int, frame_offset: int, sign: int) -> Tensor:
    """[bins, frames] complex: exp(sign · 2πi · k · t / window_hops), t = frame_offset + 0..frames-1, bin k's
    centre-frequency rotation over a hop (hop / n_fft = 1 / window_hops). Computed from (k·t) mod window_hops,
    so it is exact at any offset."""
    k = torch.arange(bins)[:, None]
    t = torch.arange(frame_offset, frame_offset + frames)[None, :]
    angle = (sign * 2 * math.pi / window_hops) * torch.remainder(k * t, window_hops).float()
    return torch.polar(torch.ones_like(angle), angle)


def vocoder_phase(
    log_mag: Tensor,
    hop: int,
    n_fft: int,
    known: Tensor | None = None,
    frame_offset: int = 0,
    prominence_nats: float = 1.5,
    lobe_bins: int = 3,
) -> Tensor:
    """Phase for a magnitude-only spectrogram by peak-locked propagation (Laroche & Dolson 1999, identity
    phase locking). log_mag [B, F, T] (frame-local framing as torch.stft, frames `hop` apart) → phase [B, F, T].

    Per frame, a partial is a bin above both neighbours that stands `prominence_nats` (1.5 ≈ 13 dB) above the
    mean log-magnitude of the 17 bins around it. Its frequency comes from the parabola through its
    log-magnitude and its neighbours' (the bin offset δ); its phase advances from the previous frame's by
    hop · 2π(k + δ)/n_fft; the bins of its main lobe (±`lobe_bins`) take its phase minus π per bin of distance
    (a Hann-windowed partial's bins alternate in sign around the frame centre). Every other bin is noise and
    gets a pseudo-random phase drawn from (bin, absolute frame) — locking the noise floor's chance peaks
    would turn it into steady whistles. The first frame's partials start from zero phase, or the propagation
    continues `known` [B, F, m], the phases of the first m frames decoded before (chunked decoding,
    `PhaseTrack`; `frame_offset` is the absolute index of the first frame). Not differentiable."""
    with torch.no_grad():
        B, F_, T = log_mag.shape
        # frame-major [B, T, F]: the searches along bins run over contiguous memory, and the recurrence reads
        # one frame at a time
        L = log_mag.float().transpose(1, 2).contiguous()
        bins = torch.arange(F_, device=L.device, dtype=torch.int32)
        left, mid, right = L[..., :-2], L[..., 1:-1], L[..., 2:]
        local_mean = F.avg_pool1d(L.reshape(B * T, 1, F_), 17, stride=1, padding=8, count_include_pad=False)
        local_mean = local_mean.reshape(B, T, F_)
        prominent = (mid > left) & (mid >= right) & (mid > local_mean[..., 1:-1] + prominence_nats)
        is_peak = F.pad(prominent, (1, 1))  # [B, T, F]; the edge bins are never peaks
        curvature = (left - 2 * mid + right).clamp(max=-1e-6)
        delta = F.pad((0.5 * (left - right) / curvature).clamp(-0.5, 0.5), (1, 1))
        advance = hop * 2 * math.pi * (bins + delta) / n_fft  # [B, T, F] at peak bins
        # nearest peak to every bin, all frames at once: the last peak at or below it, the first at or above it
        big = F_ * 4
        index = bins.expand(B, T, F_)
        below = torch.where(is_peak, index, -big).cummax(dim=-1).values
        above = torch.where(is_peak, index, 2 * big).flip(-1).cummin(dim=-1).values.flip(-1)
        owner = torch.where(index - below <= above - index, below, above)
        in_lobe = (index - owner).abs() <= lobe_bins
        owner = owner.clamp(0, F_ - 1).long()
        offset = -math.pi * (index - owner).float()
        # noise phase: a fixed hash of (bin, absolute frame), so chunked and one-shot decoding agree
        frames = torch.arange(frame_offset, frame_offset + T, device=L.device, dtype=torch.float64) % 65536
        seed = torch.sin(frames[:, None] * 78.233 + bins[None, :].double() * 12.9898) * 43758.5453
        noise = (2 * math.pi * torch.frac(seed.abs()) - math.pi).float()  # [T, F]
        out = torch.empty(B, T, F_, device=L.device)
        first = 0
        if known is not None and known.shape[-1]:
            first = min(known.shape[-1], T)
            out[:, :first] = known[..., :first].transpose(1, 2).float()
        propagate = _propagate_numpy if L.device.type == "cpu" else _propagate_torch
        propagate(out, first, advance.gather(2, owner), owner, offset, in_lobe, noise)
        return out.transpose(1, 2).to(log_mag.dtype)


def _propagate_torch(
    out: Tensor, first: int, advance: Tensor, owner: Tensor, offset: Tensor, in_lobe: Tensor, noise: Tensor
) -> None:
    """vocoder_phase's recurrence, frame by frame, in place on out [B, T, F] from frame `first` (the frames
    before hold known phases): each bin takes its owning peak's previous phase advanced by the peak's
    frequency (`advance` [B, T, F], gathered at the owner) plus its lobe offset, or the noise phase [T, F]."""
    prev = out[:, first - 1] if first else torch.zeros_like(out[:, 0])
    for t in range(first, out.shape[1]):  # only the recurrence is sequential
        locked = prev.gather(1, owner[:, t]) + advance[:, t] + offset[:, t]
        locked = torch.remainder(locked + math.pi, 2 * math.pi) - math.pi
        prev = torch.where(in_lobe[:, t], locked, noise[None, t])
        out[:, t] = prev


def _propagate_numpy(
    out: Tensor, first: int, advance: Tensor, owner: Tensor, offset: Tensor, in_lobe: Tensor, noise: Tensor
) -> None:
    """`_propagate_torch` on the CPU with numpy's lighter per-call overhead on these one-frame slices; the
    same float32 operations in the same order, so the same phases to the bit (tests/test_codec_backbones.py)."""
    B, T, F_ = out.shape
    frame_major = lambda x: x.transpose(0, 1).reshape(x.shape[1], B * F_).numpy()  # noqa: E731  [T, B * F]
    flat_owner = frame_major(owner + F_ * torch.arange(B)[:, None, None])
    advance, offset, in_lobe = frame_major(advance), frame_major(offset), frame_major(in_lobe)
    noise = np.tile(noise.numpy(), (1, B))  # [T, B * F]
    phases = frame_major(out)  # a copy where B > 1
    prev = phases[first - 1] if first else np.zeros(B * F_, np.float32)
    pi, two_pi = np.float32(math.pi), np.float32(2 * math.pi)
    for t in range(first, T):
        locked = prev[flat_owner[t]] + advance[t] + offset[t]
        locked = np.remainder(locked + pi, two_pi) - pi
        prev = np.where(in_lobe[t], locked, noise[t])
        phases[t] = prev
    out[:, first:] = torch.from_numpy(phases[first:]).reshape(-1, B, F_).transpose(0, 1)


class PhaseTrack:
    """The vocoder phases of the frames a chunked decode has kept so far, by absolute head frame, so the next
    chunk continues them: with overlap-discard (musiclm.codec.streaming) a chunk's window reaches back into
    frames already kept, and taking their phases (instead of propagating afresh) makes the streamed output
    equal the one-shot output. `upsample`: head frames per codec frame."""

    def __init__(self, upsample: int = 1):
        self.upsample = upsample
        self.start = 0
        self.phase: Tensor | None = None  # [B, F, n], head frames start .. start + n - 1

    def known_from(self, frame: int, frames: int) -> Tensor | None:
        """Recorded phases for head frames frame, frame + 1, … (as many as recorded in a row, ≤ frames)."""
        if self.phase is None or not self.start <= frame < self.start + self.phase.shape[-1]:
            return None
        return self.phase[..., frame - self.start : frame - self.start + frames]

    def record(self, frame: int, phase: Tensor) -> None:
        """Phases [B, F, n] of head frames from `frame` on (they replace any recorded from there on)."""
        if self.phase is not None and self.start <= frame <= self.start + self.phase.shape[-1]:
            phase = torch.cat([self.phase[..., : frame - self.start], phase], dim=-1)
            frame = self.start
        self.start, self.phase = frame, phase

    def keep_before(self, codec_frame: int, history: int = 256) -> None:
        """Forget what is not final (frames from `codec_frame` on: the right context of the chunk just
        decoded) and all but the last `history` codec frames before it."""
        if self.phase is None:
            return
        end = min(codec_frame * self.upsample - self.start, self.phase.shape[-1])
        begin = max(0, end - history * self.upsample)
        self.phase = self.phase[..., begin:end] if end > 0 else None
        self.start += begin


def same_framed_stft(wav: Tensor, n_fft: int, hop: int, window: Tensor) -> Tensor:
    """wav [B, C, N] → complex STFT [B·C, F, ceil(N / hop)] with "same" framing: frame t is centred on
    samples [t·hop, (t+1)·hop) (the encoder's input and the iSTFT head's synthesis framing)."""
    B, C, _ = wav.shape
    x = _pad_to_frames(wav, hop).reshape(B * C, -1)
    pad = (n_fft - hop) // 2
    return torch.stft(F.pad(x, (pad, pad)), n_fft, hop, n_fft, window, center=False, return_complex=True)


def _pad_to_frames(wav: Tensor, hop: int) -> Tensor:
    extra = -wav.shape[-1] % hop
    return F.pad(wav, (0, extra)) if extra else wav


class FrameEncoder(nn.Module):
    """wav [B, C, N] -> latent [B, D, T], T = ceil(N / hop_length)."""

    def __init__(self, cfg: FrameNetConfig):
        super().__init__()
        self.cfg = cfg
        self.n_fft = cfg.window_hops * cfg.hop_length
        self.bins = self.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.features_per_bin = 3 if cfg.magnitude_input else 2
        if cfg.transient_input:
            if cfg.hop_length % cfg.transient_input:
                raise ValueError(f"transient_input {cfg.transient_input} must divide hop_length {cfg.hop_length}")
            self.short_hop = cfg.hop_length // cfg.transient_input
            self.short_fft = 2 * self.short_hop
            self.register_buffer("short_window", torch.hann_window(self.short_fft), persistent=False)
        self.transient_features = (
            cfg.channels * cfg.transient_input * (self.short_fft // 2 + 1 if cfg.transient_input else 0)
        )
        self.net = ConvNeXtStack(
            self.features_per_bin * cfg.channels * self.bins + self.transient_features,
            cfg.width,
            cfg.dimension,
            cfg.encoder_layers,
            cfg.kernel_size,
        )

    def forward(self, wav: Tensor, frame_offset: int = 0) -> Tensor:
        """`frame_offset`: absolute index of the first frame (used with `heterodyne`, for chunked encoding)."""
        B, C, _ = wav.shape
        hop = self.cfg.hop_length
        spec = same_framed_stft(wav, self.n_fft, hop, self.window)
        if self.cfg.heterodyne:
            rot = heterodyne_rotation(self.bins, spec.shape[-1], self.cfg.window_hops, frame_offset, -1)
            spec = spec * rot.to(spec.device)
        mag = spec.abs().clamp(min=1e-7)
        spec = spec * mag.pow(self.cfg.compress - 1.0)
        parts = [spec.real, spec.imag] + ([mag.pow(self.cfg.compress)] if self.cfg.magnitude_input else [])
        feats = torch.cat(parts, dim=1)  # [B*C, 2F or 3F, T]
        feats = feats.reshape(B, C * self.features_per_bin * self.bins, -1)
        if self.cfg.transient_input:
            feats = torch.cat([feats, self.transients(wav, feats.shape[-1])], dim=1)
        return self.net(feats)

    def transients(self, wav: Tensor, frames: int) -> Tensor:
        """wav [B, C, N] → compressed short-window magnitudes [B, C·n·F_short, frames]: for each frame, its n
        sub-frames' spectra side by side (FrameNetConfig.transient_input)."""
        B, C, _ = wav.shape
        n = self.cfg.transient_input
        short = same_framed_stft(
            _pad_to_frames(wav, self.cfg.hop_length), self.short_fft, self.short_hop, self.short_window
        )
        mag = short.abs().clamp(min=1e-7).pow(self.cfg.compress)  # [B·C, F_s, n·frames]
        mag = mag.reshape(B * C, mag.shape[1], frames, n).permute(0, 3, 1, 2)  # [B·C, n, F_s, frames]
        return mag.reshape(B, -1, frames)

    def widen_with_transient_input(self, state: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
        """A state dict saved without transient input, made loadable into this encoder: the new input weights
        start at zero, so the encoder computes what it computed before (as `widen_with_magnitude_input`)."""
        if not self.cfg.transient_input:
            raise ValueError("this encoder has no transient input to widen for")
        key = f"{prefix}net.embed.weight"
        old = state[key]  # [width, inputs, kernel]
        zeros = old.new_zeros(old.shape[0], self.transient_features, old.shape[2])
        return {**state, key: torch.cat([old, zeros], dim=1)}

    def widen_with_magnitude_input(self, state: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
        """A state dict saved without magnitude input, made loadable into this encoder: the magnitude
        channels' input weights start at zero, so the encoder computes exactly what it computed before and
        training (`init_from`) starts from the old model. Returns a new dict; other keys are shared."""
        if not self.cfg.magnitude_input:
            raise ValueError("this encoder has no magnitude input to widen for")
        key = f"{prefix}net.embed.weight"
        old = state[key]  # [width, C·2·F, kernel]
        width, _, kernel = old.shape
        per_channel = old.reshape(width, self.cfg.channels, 2, self.bins, kernel)
        zeros = per_channel.new_zeros(width, self.cfg.channels, 1, self.bins, kernel)
        widened = torch.cat([per_channel, zeros], dim=2).reshape(width, -1, kernel)
        return {**state, key: widened}


class _ExpWithGradFloor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, floor: float) -> Tensor:
        y = x.exp()
        ctx.save_for_backward(y)
        ctx.floor = floor
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (y,) = ctx.saved_tensors
        return grad * y.clamp(min=ctx.floor), None


def exp_with_grad_floor(x: Tensor, floor: float) -> Tensor:
    """exp(x), whose gradient is max(exp(x), floor) (FrameNetConfig.magnitude_grad_floor); plain exp at 0."""
    return _ExpWithGradFloor.apply(x, floor) if floor > 0 else x.exp()


class ISTFTHead(nn.Module):
    """[B, C·2F, T] (log-magnitude, phase) → wav [B, C, T·hop]: inverse STFT with "same" padding by overlap-add
    and division by the summed squared window (Vocos `ISTFT(padding="same")`)."""

    def __init__(
        self,
        n_fft: int,
        hop: int,
        channels: int,
        kind: str = "magphase",
        heterodyne: bool = False,
        max_magnitude: float = 1e2,
        vocoder_from_bin: int | None = None,
        magnitude_grad_floor: float = 0.0,
    ):
        super().__init__()
        if kind not in ("magphase", "complex"):
            raise ValueError(f"unsupported iSTFT head {kind!r}; use 'magphase' or 'complex'")
        if vocoder_from_bin is not None and (kind != "magphase" or heterodyne):
            raise ValueError("vocoder phase needs the plain magphase head (no heterodyne)")
        self.vocoder_from_bin = vocoder_from_bin
        if heterodyne and n_fft % hop:
            raise ValueError(f"a heterodyned head needs n_fft ({n_fft}) to be a multiple of the hop ({hop})")
        self.n_fft, self.hop, self.channels, self.kind = n_fft, hop, channels, kind
        self.heterodyne, self.max_log_magnitude = heterodyne, math.log(max_magnitude)
        self.magnitude_grad_floor = magnitude_grad_floor
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def analyze(self, wav: Tensor) -> Tensor:
        """wav [B, C, N] → complex STFT [B·C, F, T] framed as this head synthesises (frame t centred on
        samples [t·hop, (t+1)·hop)): the spectrum that, fed back as magnitude and phase, returns `wav`."""
        return same_framed_stft(wav, self.n_fft, self.hop, self.window)

    def forward(self, x: Tensor, frame_offset: int = 0, phase_track: PhaseTrack | None = None) -> Tensor:
        """`frame_offset`: absolute index of the first frame (at the head's hop), used with `heterodyne` and
        with `phase_track` (vocoder phase carried across the chunks of a chunked decode)."""
        B, _, T = x.shape
        bins = self.n_fft // 2 + 1
        x = x.reshape(B * self.channels, 2, bins, T)
        if self.kind == "complex":
            spec = torch.complex(x[:, 0], x[:, 1])
        else:
            # exp of a clamped log-magnitude: Vocos clips the magnitude at 1e2 to keep early training stable
            log_mag = x[:, 0].clamp(max=self.max_log_magnitude)
            mag = exp_with_grad_floor(log_mag, self.magnitude_grad_floor) if self.training else torch.exp(log_mag)
            phase = x[:, 1]
            if self.vocoder_from_bin is not None:
                k = self.vocoder_from_bin
                known = phase_track.known_from(frame_offset, T) if phase_track is not None else None
                propagated = vocoder_phase(log_mag.detach(), self.hop, self.n_fft, known, frame_offset)
                if phase_track is not None:
                    phase_track.record(frame_offset, propagated)
                phase = torch.cat([phase[:, :k], propagated[:, k:]], dim=1)
            spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        if self.heterodyne:  # back from each bin's centre-frequency reference to frame-local phase
            spec = spec * heterodyne_rotation(bins, T, self.n_fft // self.hop, frame_offset, 1).to(spec.device)
        frames = torch.fft.irfft(spec, self.n_fft, dim=1) * self.window[None, :, None]  # [B*C, n_fft, T]
        out_len = (T - 1) * self.hop + self.n_fft
        wav = F.fold(frames, (1, out_len), (1, self.n_fft), stride=(1, self.hop))[:, 0, 0]
        env = F.fold(
            self.window.square()[None, :, None].expand(1, -1, T), (1, out_len), (1, self.n_fft), stride=(1, self.hop)
        )[0, 0, 0]
        pad = (self.n_fft - self.hop) // 2
        wav = wav[:, pad : out_len - pad] / env[pad : out_len - pad].clamp(min=1e-11)
        return wav.reshape(B, self.channels, -1)


class FrameDecoder(nn.Module):
    """latent [B, D, T] -> wav [B, C, T * hop_length] (`sample_rate` places `vocoder_phase_hz` on the bins)."""

    def __init__(self, cfg: FrameNetConfig, sample_rate: int = 24000):
        super().__init__()
        if cfg.hop_length % cfg.upsample:
            raise ValueError(f"hop_length {cfg.hop_length} is not divisible by upsample {cfg.upsample}")
        self.cfg = cfg
        head_hop = cfg.hop_length // cfg.upsample
        n_fft = cfg.window_hops * head_hop
        bins = n_fft // 2 + 1
        out = 2 * cfg.channels * bins
        if cfg.upsample == 1:
            self.net = ConvNeXtStack(
                cfg.dimension, cfg.width, out, cfg.decoder_layers, cfg.kernel_size, cfg.head_hidden
            )
            self.up = None
        else:
            # half the blocks at the frame rate, a learned upsampling, the rest at the head's rate
            first = cfg.decoder_layers // 2
            self.net = ConvNeXtStack(cfg.dimension, cfg.width, cfg.width, first, cfg.kernel_size)
            self.up = nn.ConvTranspose1d(
                cfg.width, cfg.width, 2 * cfg.upsample, cfg.upsample, padding=cfg.upsample // 2
            )
            self.net2 = ConvNeXtStack(
                cfg.width, cfg.width, out, cfg.decoder_layers - first, cfg.kernel_size, cfg.head_hidden
            )
        vocoder_from_bin = math.ceil(cfg.vocoder_phase_hz * n_fft / sample_rate) if cfg.vocoder_phase_hz > 0 else None
        self.head = ISTFTHead(
            n_fft,
            head_hop,
            cfg.channels,
            cfg.head,
            cfg.heterodyne,
            cfg.max_magnitude,
            vocoder_from_bin,
            cfg.magnitude_grad_floor,
        )

    def deepen_state(self, state: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
        """A state dict saved with fewer decoder blocks, made loadable into this decoder: the extra blocks
        come after the saved ones with their layer scale (gamma) at zero, so each starts as the identity
        and the decoder sounds exactly as before until they train (ReZero, Bachlechner et al. 2021, §3).
        Returns a new dict; the saved keys are shared."""
        if self.up is not None:
            raise ValueError("only a decoder without upsampling (one stack) can be deepened")
        fresh = {f"{prefix}{k}": v for k, v in self.state_dict().items()}
        blocks = f"{prefix}net.blocks."
        added = {k: v.clone() for k, v in fresh.items() if k.startswith(blocks) and k not in state}
        if not added:
            raise ValueError("the saved decoder already has every block")
        for key, value in added.items():
            if key.endswith(".gamma"):
                value.zero_()
        return {**state, **added}

    def spectrum(self, latent: Tensor) -> Tensor:
        """latent [B, D, T] → the head's input [B, C·2F, T·upsample] (what `head` turns into audio)."""
        T = latent.shape[-1]
        x = self.net(latent)
        if self.up is not None:
            x = self.net2(self.up(x)[..., : T * self.cfg.upsample])
        return x

    def forward(self, latent: Tensor, frame_offset: int = 0, phase_track: PhaseTrack | None = None) -> Tensor:
        """`frame_offset`: absolute index of the first latent frame (used with `heterodyne`, `phase_track`)."""
        return self.head(self.spectrum(latent), frame_offset * self.cfg.upsample, phase_track)

    def new_phase_track(self) -> PhaseTrack | None:
        """A PhaseTrack for a chunked decode when this decoder propagates phase (None otherwise)."""
        return PhaseTrack(self.cfg.upsample) if self.head.vocoder_from_bin is not None else None
