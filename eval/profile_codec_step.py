"""Where a codec training step spends its time: its parts timed alone (codec forward, the reconstruction
losses together, `CodecModule.reconstruction_losses`, one discriminator pass, a whole step), then the top
operators of whole steps from torch.profiler. No data needed: the batch is synthetic (harmonic tones in noise).

    .venv/bin/python eval/profile_codec_step.py configs/codec/frame_gan_gpu.yaml [--batch 32] [--seconds 2]

Written after the first GPU run (2026-11-30, H200): the decoder-only adversarial recipe ran 1.3 steps/s and
the reconstruction-only one 4.5, three runs sharing the chip, at 100 % utilisation.
"""

from __future__ import annotations

import argparse
import time

import torch

from musiclm.training.codec_module import CodecModule
from musiclm.training.config import CodecTrainConfig, load_train_config
from musiclm.training.losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss


def synthetic_batch(batch: int, samples: int, sample_rate: int, device: torch.device) -> torch.Tensor:
    t = torch.arange(samples, device=device) / sample_rate
    f0 = 110.0 * 2 ** (torch.randint(0, 36, (batch, 1, 1), device=device) / 12)
    tones = sum(torch.sin(2 * torch.pi * k * f0 * t) / k for k in range(1, 6))
    return 0.1 * tones + 0.01 * torch.randn(batch, 1, samples, device=device)


def timed(label: str, fn, device: torch.device, repeats: int = 3):
    out = fn()  # warm-up (cuDNN plans, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(f"{label:<34} {(time.perf_counter() - start) / repeats * 1000:9.1f} ms")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--batch", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--seconds", type=float, default=None, help="default: the recipe's segment")
    parser.add_argument("--steps", type=int, default=3, help="whole steps under the profiler")
    parser.add_argument("--no-discriminator", action="store_true", help="the recipe without its adversarial terms")
    args = parser.parse_args(argv)
    config = load_train_config(CodecTrainConfig, args.config)
    if args.no_discriminator:
        config.loss.adversarial = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    module = CodecModule(config).to(device)
    if config.freeze_encoder:
        module.codec.encoder.eval()
        module.codec.quantizer.eval()
    batch = args.batch or config.data.batch_size
    seconds = args.seconds or config.data.segment_seconds
    sr = config.codec.sample_rate
    wav = synthetic_batch(batch, int(seconds * sr), sr, device)
    n_q = max(module.n_qs)
    print(f"device {device}, batch {batch} x {seconds} s, n_q {n_q}")

    recon, _ = timed("codec forward", lambda: module.codec(wav, n_q), device)
    timed("reconstruction losses (all)", lambda: module.reconstruction_losses(recon, wav), device)
    disc = module.discriminator
    if disc is not None:
        timed("discriminator (one pass)", lambda: disc(wav), device)

    def whole_step():  # as training_step: losses (+ adversarial), balancer, one backward
        module.zero_grad(set_to_none=True)
        recon, q = module.codec(wav, n_q)
        terms = module.reconstruction_losses(recon, wav)
        d_loss = 0.0
        if disc is not None:
            real_logits, real_feats = disc(wav)
            fake_logits, fake_feats = disc(recon)
            terms["adv"] = generator_adversarial_loss(fake_logits)
            terms["feat"] = feature_matching_loss(real_feats, fake_feats)
            d_loss = discriminator_loss(real_logits, disc(recon.detach())[0])
        grad, _ = module.balancer(terms, recon)
        ((recon * grad.detach()).sum() + q.commit_loss + d_loss).backward()

    timed("whole step", whole_step, device, repeats=2)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.steps):
            whole_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=18, max_name_column_width=48))
    if device.type == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
