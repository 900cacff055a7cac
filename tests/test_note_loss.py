"""basic-pitch run in torch (training.transcriber) and the note-posterior loss built on it."""

import numpy as np
import pytest
import torch

pytest.importorskip("basic_pitch", reason="the note loss needs the [eval] extra and basic-pitch (make install)")
pytest.importorskip("onnx", reason="the note loss needs the [eval] extra (make install)")
onnxruntime = pytest.importorskip("onnxruntime", reason="the note loss needs the [eval] extra (make install)")

from musiclm.training.losses import NotePosteriorLoss  # noqa: E402
from musiclm.training.transcriber import SAMPLE_RATE, WINDOW_SAMPLES, BasicPitch, _onnx_model_path  # noqa: E402


@pytest.fixture(scope="module")
def transcriber():
    return BasicPitch()


def _tone(hz: float, seconds: float, rate: int, decay: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t) * np.exp(-decay * t)).astype(np.float32)


def test_the_torch_graph_hears_what_onnxruntime_hears(transcriber):
    """Every output of the ONNX graph run op by op in torch equals onnxruntime's, on a chord and on noise."""
    chord = _tone(440.0, 2.0, SAMPLE_RATE)[:WINDOW_SAMPLES] + _tone(554.37, 2.0, SAMPLE_RATE)[:WINDOW_SAMPLES]
    noise = np.random.default_rng(0).normal(0, 0.1, WINDOW_SAMPLES).astype(np.float32)
    audio = np.stack([chord, noise])
    session = onnxruntime.InferenceSession(_onnx_model_path(), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    expected = dict(zip(names, session.run(None, {session.get_inputs()[0].name: audio[..., None]}), strict=True))
    heard = transcriber(torch.from_numpy(audio))
    for index, name in enumerate(("contour", "note", "onset")):
        reference = torch.from_numpy(expected[f"StatefulPartitionedCall:{index}"])
        assert torch.allclose(getattr(heard, name), reference, atol=1e-4), name
    # the chord's notes: A4 (MIDI 69) and C#5 (73) are the loudest note bins, 88 bins from A0 (21)
    loudest = set((heard.note[0].amax(dim=0).topk(2).indices + 21).tolist())
    assert loudest == {69, 73}


def test_note_loss_is_zero_at_a_match_and_grows_with_a_wrong_note():
    loss = NotePosteriorLoss(24_000)
    a4 = torch.from_numpy(_tone(440.0, 1.0, 24_000)).repeat(4, 1, 1)  # [4, 1, 24000]: 4 s joined
    c5 = torch.from_numpy(_tone(523.25, 1.0, 24_000)).repeat(4, 1, 1)
    a4_with_octave = a4 + 0.5 * torch.from_numpy(_tone(880.0, 1.0, 24_000, decay=0.5)).repeat(4, 1, 1)
    assert loss(a4, a4).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(c5, a4).item() > loss(a4_with_octave, a4).item() > 1e-4


def test_note_loss_sends_gradient_to_the_audio_and_refuses_short_batches():
    loss = NotePosteriorLoss(24_000)
    reference = torch.from_numpy(_tone(440.0, 1.0, 24_000)).repeat(2, 1, 1)  # 2 s → one 43,844-sample window
    output = (0.05 * torch.randn(2, 1, 24_000)).requires_grad_(True)
    loss(output, reference).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert loss.windows(reference).shape == (1, WINDOW_SAMPLES)
    with pytest.raises(ValueError, match="note loss needs"):
        loss(reference[:1], reference[:1])
