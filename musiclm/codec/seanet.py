"""SEANet convolutional encoder/decoder, as in EnCodec (Défossez et al. 2022, §3.1).

The module tree mirrors the original `encodec` package (a `model` Sequential of SConv1d / residual blocks /
SLSTM), so official weights map onto it key by key (see `musiclm.codec.interop`).
Padding follows EnCodec: the input is padded so every frame is complete and `decode(encode(x))`
can be trimmed back to exactly the input length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


@dataclass
class SEANetConfig:
    channels: int = 1  # audio channels C
    dimension: int = 128  # latent width D
    n_filters: int = 32
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # decoder order; the encoder uses them reversed
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    causal: bool = False
    pad_mode: str = "reflect"
    true_skip: bool = True
    compress: int = 2
    lstm: int = 0  # LSTM layers at the bottleneck (EnCodec uses 2)
    norm: str = "weight_norm"  # "weight_norm" or "none"
    # "elu" (EnCodec) or "snake" (x + sin²(αx)/α with a learned α per channel; DAC, Kumar et al. 2023, §3.1:
    # a periodic inductive bias for audio, the largest single gain in DAC's ablations)
    activation: str = "elu"
    trim_right_ratio: float = 1.0

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)


def _norm(module: nn.Module, norm: str) -> nn.Module:
    if norm == "weight_norm":
        return weight_norm(module)
    if norm == "none":
        return module
    raise ValueError(f"unsupported norm {norm!r}; use 'weight_norm' or 'none'")


class Snake1d(nn.Module):
    """snake(x) = x + sin²(αx) / α, α per channel (Ziyin et al. 2020; DAC §3.1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def _activation(cfg: SEANetConfig, channels: int) -> nn.Module:
    if cfg.activation == "elu":
        return nn.ELU()
    if cfg.activation == "snake":
        return Snake1d(channels)
    raise ValueError(f"unsupported activation {cfg.activation!r}; use 'elu' or 'snake'")


def _extra_padding(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Right padding so the last window is complete (EnCodec `get_extra_padding_for_conv1d`)."""
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal_length - length


def _pad1d(x: Tensor, left: int, right: int, mode: str) -> Tensor:
    """Reflect padding that also works when the input is shorter than the padding."""
    if mode == "reflect":
        length = x.shape[-1]
        max_pad = max(left, right)
        extra = max_pad - length + 1 if length <= max_pad else 0
        if extra:
            x = F.pad(x, (0, extra))
        padded = F.pad(x, (left, right), mode="reflect")
        return padded[..., : padded.shape[-1] - extra]
    return F.pad(x, (left, right), mode=mode)


class NormConv1d(nn.Module):
    def __init__(self, *args, norm: str = "weight_norm", **kwargs):
        super().__init__()
        self.conv = _norm(nn.Conv1d(*args, **kwargs), norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class NormConvTranspose1d(nn.Module):
    def __init__(self, *args, norm: str = "weight_norm", **kwargs):
        super().__init__()
        self.convtr = _norm(nn.ConvTranspose1d(*args, **kwargs), norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.convtr(x)


class SConv1d(nn.Module):
    """Conv1d with EnCodec's asymmetric or causal padding."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
        norm: str = "weight_norm",
        pad_mode: str = "reflect",
    ):
        super().__init__()
        self.conv = NormConv1d(in_ch, out_ch, kernel_size, stride, dilation=dilation, norm=norm)
        self.causal = causal
        self.pad_mode = pad_mode
        self.stride = stride
        self.effective_kernel = (kernel_size - 1) * dilation + 1

    def forward(self, x: Tensor) -> Tensor:  # [B, C, N] -> [B, C', ceil(N / stride)]
        padding_total = self.effective_kernel - self.stride
        extra = _extra_padding(x.shape[-1], self.effective_kernel, self.stride, padding_total)
        if self.causal:
            x = _pad1d(x, padding_total, extra, self.pad_mode)
        else:
            right = padding_total // 2
            x = _pad1d(x, padding_total - right, right + extra, self.pad_mode)
        return self.conv(x)


class SConvTranspose1d(nn.Module):
    """ConvTranspose1d that trims the padding SConv1d added, so lengths stay multiples of the stride."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        causal: bool = False,
        norm: str = "weight_norm",
        trim_right_ratio: float = 1.0,
    ):
        super().__init__()
        self.convtr = NormConvTranspose1d(in_ch, out_ch, kernel_size, stride, norm=norm)
        self.causal = causal
        self.trim_right_ratio = trim_right_ratio
        self.padding_total = kernel_size - stride

    def forward(self, x: Tensor) -> Tensor:  # [B, C, T] -> [B, C', T * stride]
        y = self.convtr(x)
        if self.causal:
            right = math.ceil(self.padding_total * self.trim_right_ratio)
        else:
            right = self.padding_total // 2
        left = self.padding_total - right
        return y[..., left : y.shape[-1] - right]


class SEANetResnetBlock(nn.Module):
    def __init__(self, dim: int, kernel_sizes: tuple[int, int], dilations: tuple[int, int], cfg: SEANetConfig):
        super().__init__()
        hidden = dim // cfg.compress
        block: list[nn.Module] = []
        for i, (kernel_size, dilation) in enumerate(zip(kernel_sizes, dilations, strict=False)):
            in_ch = dim if i == 0 else hidden
            out_ch = dim if i == len(kernel_sizes) - 1 else hidden
            block += [
                _activation(cfg, in_ch),
                SConv1d(
                    in_ch,
                    out_ch,
                    kernel_size,
                    dilation=dilation,
                    causal=cfg.causal,
                    norm=cfg.norm,
                    pad_mode=cfg.pad_mode,
                ),
            ]
        self.block = nn.Sequential(*block)
        self.shortcut: nn.Module = (
            nn.Identity()
            if cfg.true_skip
            else SConv1d(dim, dim, 1, causal=cfg.causal, norm=cfg.norm, pad_mode=cfg.pad_mode)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)


class SLSTM(nn.Module):
    """LSTM over time with a skip connection; takes and returns [B, D, T]."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: Tensor) -> Tensor:
        seq = x.permute(2, 0, 1)  # [T, B, D]
        y, _ = self.lstm(seq)
        return (y + seq).permute(1, 2, 0)


class SEANetEncoder(nn.Module):
    """wav [B, C, N] -> latent [B, D, T] with T = ceil(N / hop_length)."""

    def __init__(self, cfg: SEANetConfig):
        super().__init__()
        mult = 1
        conv = dict(causal=cfg.causal, norm=cfg.norm, pad_mode=cfg.pad_mode)
        layers: list[nn.Module] = [SConv1d(cfg.channels, cfg.n_filters, cfg.kernel_size, **conv)]
        for ratio in reversed(cfg.ratios):
            dim = mult * cfg.n_filters
            for j in range(cfg.n_residual_layers):
                layers.append(SEANetResnetBlock(dim, (cfg.residual_kernel_size, 1), (cfg.dilation_base**j, 1), cfg))
            layers += [_activation(cfg, dim), SConv1d(dim, dim * 2, ratio * 2, stride=ratio, **conv)]
            mult *= 2
        if cfg.lstm:
            layers.append(SLSTM(mult * cfg.n_filters, cfg.lstm))
        layers += [
            _activation(cfg, mult * cfg.n_filters),
            SConv1d(mult * cfg.n_filters, cfg.dimension, cfg.last_kernel_size, **conv),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, wav: Tensor) -> Tensor:
        return self.model(wav)


class SEANetDecoder(nn.Module):
    """latent [B, D, T] -> wav [B, C, T * hop_length]."""

    def __init__(self, cfg: SEANetConfig):
        super().__init__()
        mult = 2 ** len(cfg.ratios)
        conv = dict(causal=cfg.causal, norm=cfg.norm, pad_mode=cfg.pad_mode)
        layers: list[nn.Module] = [SConv1d(cfg.dimension, mult * cfg.n_filters, cfg.kernel_size, **conv)]
        if cfg.lstm:
            layers.append(SLSTM(mult * cfg.n_filters, cfg.lstm))
        for ratio in cfg.ratios:
            dim = mult * cfg.n_filters
            layers += [
                _activation(cfg, dim),
                SConvTranspose1d(
                    dim,
                    dim // 2,
                    ratio * 2,
                    stride=ratio,
                    causal=cfg.causal,
                    norm=cfg.norm,
                    trim_right_ratio=cfg.trim_right_ratio,
                ),
            ]
            for j in range(cfg.n_residual_layers):
                dilations = (cfg.dilation_base**j, 1)
                layers.append(SEANetResnetBlock(dim // 2, (cfg.residual_kernel_size, 1), dilations, cfg))
            mult //= 2
        layers += [_activation(cfg, cfg.n_filters), SConv1d(cfg.n_filters, cfg.channels, cfg.last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)

    def forward(self, latent: Tensor) -> Tensor:
        return self.model(latent)
