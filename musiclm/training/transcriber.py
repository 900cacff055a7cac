"""basic-pitch's note transcriber (Bittner et al. 2022, "A Lightweight Instrument-Agnostic Model for
Polyphonic Note Transcription"), run in torch so that its posteriorgrams can be differentiated.

The evaluation transcribes with the same network through onnxruntime (`musiclm.evaluation.notes`); here its
ONNX graph, shipped inside the `basic-pitch` wheel, is executed op by op with torch functions, so a decoder
can be trained to make audio in which the transcriber hears the reference's notes (`loss.notes`). The graph
is static (fixed 43,844-sample windows, 172 frames); only the ops it uses are implemented, each as ONNX
specifies it, and `TorchONNXGraph` refuses a graph with any other op. The weights stay frozen.

Needs the evaluation extra (`pip install -e .[eval]`: basic-pitch and onnx); torch alone does the maths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MusicLMError

WINDOW_SAMPLES = 43_844  # basic_pitch.constants.AUDIO_N_SAMPLES: 2 s at 22,050 Hz minus one hop
SAMPLE_RATE = 22_050
FRAMES_PER_WINDOW = 172


@dataclass(frozen=True)
class Posteriorgrams:
    """Per-frame probabilities, each (batch, 172 frames, bins)."""

    contour: Tensor  # 264 bins: 3 per semitone from A0
    note: Tensor  # 88 semitones from A0
    onset: Tensor  # 88


def _onnx_model_path() -> str:
    try:
        import basic_pitch
    except ImportError as error:  # pragma: no cover - the eval extra is part of `make install`
        raise MusicLMError(f"the note loss needs basic-pitch: pip install -e '.[eval]' ({error})") from None
    return str(basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx))


def _ints(value) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _pad(x: Tensor, pads: list[int], mode: str) -> Tensor:
    """ONNX Pad: pads = [begin_0 .. begin_n, end_0 .. end_n]; torch wants (last dim first) pairs."""
    rank = x.dim()
    begins, ends = pads[:rank], pads[rank:]
    torch_pads: list[int] = []
    for axis in reversed(range(rank)):
        torch_pads += [begins[axis], ends[axis]]
    if mode == "reflect":
        # torch reflects only trailing dims: move each padded axis last, reflect it, move it back.
        for axis in range(rank):
            if begins[axis] or ends[axis]:
                moved = x.movedim(axis, -1)
                flat = F.pad(moved.reshape(1, -1, moved.shape[-1]), [begins[axis], ends[axis]], mode="reflect")
                x = flat.reshape(*moved.shape[:-1], flat.shape[-1]).movedim(-1, axis)
        return x
    return F.pad(x, torch_pads, mode="constant", value=0.0)


def _slice(x: Tensor, starts: list[int], ends: list[int], axes: list[int]) -> Tensor:
    index = [slice(None)] * x.dim()
    for start, end, axis in zip(starts, ends, axes, strict=True):
        size = x.shape[axis]
        end = min(end, size) if end >= 0 else end
        index[axis] = slice(start, end)
    return x[tuple(index)]


def _reshape(x: Tensor, shape: list[int]) -> Tensor:
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]  # ONNX: 0 copies the input's dim
    return x.reshape(shape)


def _reduce(fn: Callable, x: Tensor, attrs: dict, axes_input=None) -> Tensor:
    axes = attrs.get("axes") if axes_input is None else _ints(axes_input)
    keep = bool(attrs.get("keepdims", 1))
    if axes is None:
        axes = list(range(x.dim()))
    for axis in sorted((a % x.dim() for a in axes), reverse=True):
        x = fn(x, axis, keep)
    return x


def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, attrs: dict) -> Tensor:
    pads = attrs.get("pads", [0, 0, 0, 0])  # 2-D only: [top, left, bottom, right]
    if any(pads):
        x = F.pad(x, [pads[1], pads[3], pads[0], pads[2]])  # F.pad: (left, right, top, bottom)
    return F.conv2d(
        x,
        weight,
        bias,
        stride=attrs.get("strides", 1),
        dilation=attrs.get("dilations", 1),
        groups=attrs.get("group", 1),
    )


class TorchONNXGraph(nn.Module):
    """A static ONNX graph run op by op in torch (frozen constants, differentiable in its input)."""

    _OPS = {
        "Reshape",
        "Unsqueeze",
        "Conv",
        "Pad",
        "Transpose",
        "Concat",
        "Slice",
        "Neg",
        "Mul",
        "Cast",
        "Relu",
        "Sigmoid",
        "Add",
        "ReduceSum",
        "Sqrt",
        "Log",
        "ReduceMin",
        "Shape",
        "Sub",
        "ReduceMax",
        "Div",
        "Equal",
        "Where",
    }

    def __init__(self, path: str):
        super().__init__()
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError as error:  # pragma: no cover
            raise MusicLMError(f"the note loss needs onnx: pip install -e '.[eval]' ({error})") from None
        graph = onnx.load(path).graph
        unknown = sorted({node.op_type for node in graph.node} - self._OPS)
        if unknown:
            raise MusicLMError(f"{path}: ONNX ops not implemented here: {', '.join(unknown)}")
        self.input_name = graph.input[0].name
        self.output_names = [output.name for output in graph.output]
        self.nodes = [
            (
                node.op_type,
                list(node.input),
                list(node.output),
                {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute},
            )
            for node in graph.node
        ]
        self._constant_names: dict[str, str] = {}
        for index, tensor in enumerate(graph.initializer):
            array = numpy_helper.to_array(tensor)
            name = f"c{index}"
            self._constant_names[tensor.name] = name
            value = torch.from_numpy(array.copy())
            self.register_buffer(name, value.float() if value.is_floating_point() else value, persistent=False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        values: dict[str, Tensor] = {self.input_name: x}
        for onnx_name, buffer_name in self._constant_names.items():
            values[onnx_name] = getattr(self, buffer_name)
        for op, inputs, outputs, attrs in self.nodes:
            args = [values[name] if name else None for name in inputs]
            values[outputs[0]] = self._run(op, args, attrs)
        return {name: values[name] for name in self.output_names}

    @staticmethod
    def _run(op: str, args: list, attrs: dict) -> Tensor:
        x = args[0]
        if op == "Reshape":
            return _reshape(x, _ints(args[1].cpu()))
        if op == "Unsqueeze":
            axes = _ints(args[1].cpu()) if len(args) > 1 else attrs["axes"]
            for axis in sorted(a % (x.dim() + len(axes)) for a in axes):
                x = x.unsqueeze(axis)
            return x
        if op == "Conv":
            return _conv(x, args[1], args[2] if len(args) > 2 else None, attrs)
        if op == "Pad":
            mode = attrs.get("mode", b"constant")
            return _pad(x, _ints(args[1].cpu()), mode.decode() if isinstance(mode, bytes) else mode)
        if op == "Transpose":
            return x.permute(attrs["perm"])
        if op == "Concat":
            return torch.cat([a.to(args[0].dtype) for a in args], dim=attrs["axis"])
        if op == "Slice":
            axes = _ints(args[3].cpu()) if len(args) > 3 else list(range(len(_ints(args[1].cpu()))))
            return _slice(x, _ints(args[1].cpu()), _ints(args[2].cpu()), axes)
        if op == "Shape":
            return torch.tensor(x.shape, dtype=torch.int64)
        if op == "Cast":
            return x.float() if attrs["to"] == 1 else x.to(torch.int64 if attrs["to"] == 7 else torch.int32)
        if op == "Where":
            return torch.where(args[0], args[1].to(args[2].dtype), args[2])
        if op in ("ReduceSum", "ReduceMin", "ReduceMax"):
            fn = {
                "ReduceSum": lambda t, a, k: t.sum(a, keepdim=k),
                "ReduceMin": lambda t, a, k: t.amin(a, keepdim=k),
                "ReduceMax": lambda t, a, k: t.amax(a, keepdim=k),
            }[op]
            return _reduce(fn, x, attrs, args[1] if len(args) > 1 else None)
        unary = {"Neg": torch.neg, "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Sqrt": torch.sqrt, "Log": torch.log}
        if op in unary:
            return unary[op](x)
        binary = {"Mul": torch.mul, "Add": torch.add, "Sub": torch.sub, "Div": torch.div, "Equal": torch.eq}
        return binary[op](x, args[1])


class BasicPitch(nn.Module):
    """basic-pitch's network, frozen: audio windows (batch, 43,844) at 22,050 Hz → `Posteriorgrams`."""

    def __init__(self, path: str | None = None):
        super().__init__()
        self.graph = TorchONNXGraph(path or _onnx_model_path())
        self.requires_grad_(False)
        self.eval()

    def forward(self, audio: Tensor) -> Posteriorgrams:
        if audio.shape[-1] != WINDOW_SAMPLES:
            raise ValueError(f"basic-pitch takes windows of {WINDOW_SAMPLES} samples, got {audio.shape[-1]}")
        outputs = self.graph(audio.reshape(-1, WINDOW_SAMPLES, 1))
        # The exported graph's names: :0 contour (264 bins), :1 note (88), :2 onset (88); shapes checked.
        contour, note, onset = (outputs[f"StatefulPartitionedCall:{i}"] for i in range(3))
        assert contour.shape[-1] == 264 and note.shape[-1] == onset.shape[-1] == 88
        return Posteriorgrams(contour=contour, note=note, onset=onset)
