import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny ops on a busy 2-core machine run far faster on one thread than fighting over two (a 50x gap for
    small convolutions). A test module asks for it with `pytestmark = pytest.mark.usefixtures("one_thread")`;
    module scope, so the module's own module-scoped fixtures run on one thread too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_codec():
    """A randomly initialised codec small enough for any test (hop 8, 4 codebooks of 64)."""
    from musiclm.codec import Codec, CodecConfig, SEANetConfig

    torch.manual_seed(0)
    config = CodecConfig(
        name="tiny-test",
        sample_rate=8000,
        seanet=SEANetConfig(n_filters=4, dimension=16, ratios=(4, 2)),
        n_q=4,
        card=64,
        bandwidths=(6.0, 12.0, 24.0),
    )
    return Codec(config).eval()


def _tiny_config(backbone: str):
    from musiclm.codec import CodecConfig, SEANetConfig
    from musiclm.codec.framenet import FrameNetConfig

    return CodecConfig(
        name=f"tiny-{backbone}",
        sample_rate=8000,
        backbone="frame" if backbone.startswith("frame") else "seanet",
        seanet=SEANetConfig(
            n_filters=4, dimension=16, ratios=(4, 2), activation="snake" if backbone == "snake" else "elu"
        ),
        frame=FrameNetConfig(
            dimension=16,
            hop_length=8,
            width=16,
            encoder_layers=2,
            decoder_layers=2,
            heterodyne=backbone == "frame-het",
            vocoder_phase_hz=1000.0 if backbone == "frame-voc" else 0.0,
        ),
        n_q=4,
        card=64,
        bandwidths=(6.0, 12.0, 24.0),
    )


@pytest.fixture(params=["seanet", "snake", "frame", "frame-het", "frame-voc"])
def any_tiny_codec(request):
    """The tiny codec with each backbone/activation: SEANet (EnCodec), SEANet with Snake (DAC), frame-domain
    ConvNeXt + iSTFT head (Vocos). Same hop (8), rate and codebooks, so the same invariants apply."""
    from musiclm.codec import Codec

    torch.manual_seed(0)
    return Codec(_tiny_config(request.param)).eval()
