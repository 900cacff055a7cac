"""Our Codec loads an original `encodec` package checkpoint (.th) and computes what that package computes.

Needs the `encodec` package, which imports torchaudio and so lives in its own venv (`make test-reference`).
The model is `EncodecModel.encodec_model_24khz(pretrained=False)`: the full 24 kHz architecture with random
weights (no download), saved with torch.save exactly as the published encodec_24khz-d7cc33bc.th is.
"""

from __future__ import annotations

import pytest
import torch

from musiclm.codec import Codec

encodec = pytest.importorskip("encodec")

# encodec builds its convs with the deprecated torch.nn.utils.weight_norm
pytestmark = [pytest.mark.reference, pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")]

LENGTHS = (1, 1601, 4807)  # odd lengths: reflect padding on short input, extra padding, final trim


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machines share 2 cores: extra intra-op threads only spin (10x slower measured here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@torch.no_grad()
def _fill_codebooks(model) -> None:
    """k-means init leaves untrained codebooks at zero (every code 0). Draw each from a Gaussian fitted to the
    residual it quantizes, so entries are distinct and every codebook matters."""
    gen = torch.Generator().manual_seed(1)
    residual = model.encoder(0.1 * torch.randn(1, 1, 24000, generator=gen))
    residual = residual.transpose(1, 2).reshape(-1, residual.shape[1])  # [M, D]
    for layer in model.quantizer.vq.layers:
        book = layer._codebook
        book.embed.copy_(residual.mean(0) + residual.std(0) * torch.randn(book.embed.shape, generator=gen))
        book.embed_avg.copy_(book.embed)
        book.cluster_size.fill_(1.0)
        book.inited.fill_(1.0)
        residual = residual - book.decode(book.encode(residual))


@pytest.fixture(scope="module")
def reference_and_ours(tmp_path_factory):
    torch.manual_seed(0)
    model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    _fill_codebooks(model)
    path = tmp_path_factory.mktemp("encodec") / "encodec_24khz-random.th"
    torch.save(model.state_dict(), path)
    return model.eval(), Codec.from_pretrained(path)


def test_architecture_matches(reference_and_ours):
    ref, codec = reference_and_ours
    seanet = codec.config.seanet
    assert not codec.training
    assert (codec.sample_rate, codec.channels) == (ref.sample_rate, ref.channels) == (24000, 1)
    assert codec.frame_rate == ref.frame_rate == 75
    assert codec.bandwidths == tuple(ref.target_bandwidths) == (1.5, 3.0, 6.0, 12.0, 24.0)
    assert (codec.config.n_q, codec.card) == (ref.quantizer.n_q, ref.quantizer.bins) == (32, 1024)
    assert list(seanet.ratios) == list(reversed(ref.encoder.ratios)) == [8, 5, 4, 2]
    assert (seanet.n_filters, seanet.dimension, seanet.n_residual_layers) == (
        ref.encoder.n_filters,
        ref.encoder.dimension,
        ref.encoder.n_residual_layers,
    )
    assert seanet.causal and not seanet.true_skip and seanet.lstm == 2
    assert sum(p.numel() for p in codec.parameters()) == sum(p.numel() for p in ref.parameters())


def test_codes_and_audio_match(reference_and_ours):
    ref, codec = reference_and_ours
    gen = torch.Generator().manual_seed(2)
    worst = 0.0
    for length in LENGTHS:
        wav = 0.1 * torch.randn(2, 1, length, generator=gen)
        for bandwidth in ref.target_bandwidths:
            ref.set_target_bandwidth(bandwidth)
            codec.set_bandwidth(bandwidth)
            with torch.no_grad():
                frames = ref.encode(wav)  # one (codes [B, K, T], scale None) frame: no segments at 24 kHz
                ref_audio = ref.decode(frames)
            codes = codec.encode(wav)
            assert torch.equal(codes, frames[0][0]), f"codes differ at {bandwidth} kbps, {length} samples"
            audio = codec.decode(codes)
            assert audio.shape == ref_audio.shape
            worst = max(worst, float((audio - ref_audio).abs().max()))
        with torch.no_grad():  # both forward passes trim the reconstruction back to the input length
            assert codec(wav)[0].shape == ref(wav).shape == wav.shape
    print(f"max |ours - encodec| decoded audio: {worst:.3g}")
    assert worst < 1e-4
