"""Notes heard in audio: transcription with basic-pitch, and note F1 between a reference and a reconstruction.

Envelope metrics (log-mel, MS-STFT) and even ViSQOL rated a codec that kept the spectral envelope but lost phase
and harmonics as good while no note survived it (shared/NOTES.md, "Quality metrics that hear notes"). Note F1
asks instead whether a transcriber hears the same notes in both signals:

    wav [C, N] --mono, 22050 Hz--> basic-pitch --> NoteEvents (onset s, offset s, MIDI pitch) --+
                                                                                               +--> mir_eval F1
    est [C, N] --mono, 22050 Hz--> basic-pitch --> NoteEvents --------------------------------+

- Transcriber: basic-pitch 0.4.0 (Bittner et al., ICASSP 2022), the ICASSP 2022 model that ships inside its
  wheel, run as ONNX through onnxruntime (no tensorflow), with basic-pitch's default thresholds (onset 0.5,
  frame 0.3, notes of at least 127.7 ms, melodia trick on).
- Score: `mir_eval.transcription.precision_recall_f1_overlap` (MIREX note tracking): a reference and an
  estimated note match when their onsets are within 50 ms and their pitches within 50 cents; offsets are
  ignored (`offset_ratio=None`), since a decaying note's end is where the transcriber stops hearing it.
- Edge cases: no notes in either signal → F1 1.0 (nothing was lost or invented); notes in only one → 0.0.

Needs the `[eval]` extra plus `pip install --no-deps basic-pitch==0.4.0` (`make install` does both); the
imports happen inside the functions, so `import musiclm.evaluation.notes` works without them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from musiclm.errors import MusicLMError

ONSET_TOLERANCE_S = 0.05
PITCH_TOLERANCE_CENTS = 50.0
INSTALL_HINT = (
    "note F1 needs the [eval] extra: make install, or pip install 'musiclm[eval]' "
    "and then pip install --no-deps basic-pitch==0.4.0"
)
# basic-pitch's `inference.predict` defaults, restated because we call the steps below it on an array
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.3
MIN_NOTE_MS = 127.70
OVERLAP_FRAMES = 30  # model frames shared by neighbouring 2 s windows (`inference.run_inference`)


@dataclass(frozen=True)
class NoteEvents:
    """Notes of one signal, sorted by onset then pitch."""

    onsets: np.ndarray  # [M] seconds
    offsets: np.ndarray  # [M] seconds
    pitches: np.ndarray  # [M] MIDI note numbers (int)

    def __len__(self) -> int:
        return len(self.pitches)

    @property
    def intervals(self) -> np.ndarray:  # [M, 2] (onset, offset) seconds, as mir_eval takes them
        return np.stack([self.onsets, self.offsets], axis=-1).reshape(-1, 2)

    @property
    def pitches_hz(self) -> np.ndarray:  # [M]
        return 440.0 * 2.0 ** ((self.pitches.astype(np.float64) - 69.0) / 12.0)


@contextlib.contextmanager
def _quiet_import():
    """basic_pitch's __init__ logs a warning for each backend it lacks (tensorflow, coreml, tflite) through
    `logging.warning`, which would also install a stderr handler on the root logger: keep both away."""
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
        root.removeHandler(guard)


def _backend():
    """→ (basic_pitch package, its inference module, its note_creation module, librosa), or MusicLMError."""
    try:
        with _quiet_import():
            import basic_pitch
            import basic_pitch.note_creation
            import librosa
            import onnxruntime  # noqa: F401  (basic_pitch only looks for it: fail here, not at Model())
            from basic_pitch import inference
    except ImportError as e:
        raise MusicLMError(f"{INSTALL_HINT} ({e})") from None
    return basic_pitch, inference, basic_pitch.note_creation, librosa


@functools.lru_cache(maxsize=1)
def _model():
    basic_pitch, inference, _, _ = _backend()
    import onnxruntime

    path = str(basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx))
    model = inference.Model(path)
    assert model.model_type == inference.Model.MODEL_TYPES.ONNX, f"basic-pitch loaded {model.model_type}, not ONNX"
    # One thread instead of onnxruntime's default (every core): 0.20 s instead of 0.31 s per 10 s clip on a
    # busy 2-core machine, and the other cores stay with torch. `Model.predict` only calls `.run` on it.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    model.model = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return model


def _mono(wav: np.ndarray | Tensor) -> np.ndarray:
    """[N] or [C, N] → float32 [N] (channel mean)."""
    x = wav.detach().float().cpu().numpy() if isinstance(wav, Tensor) else np.asarray(wav, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if x.ndim != 1:
        raise ValueError(f"expected audio [N] or [C, N], got shape {list(x.shape)}")
    if x.size == 0:
        raise ValueError("cannot transcribe empty audio")
    return x


def transcribe(wav: np.ndarray | Tensor, sample_rate: int) -> NoteEvents:
    """Notes heard by basic-pitch in wav [N] or [C, N] (channels are mixed to mono)."""
    _, inference, note_creation, librosa = _backend()
    from basic_pitch.constants import AUDIO_N_SAMPLES, AUDIO_SAMPLE_RATE, FFT_HOP

    # `inference.run_inference` without its file read: librosa.load(sr=22050, mono=True) resamples with
    # librosa.resample's default (soxr_hq), so the model sees what it would see from a file.
    audio = librosa.resample(_mono(wav), orig_sr=sample_rate, target_sr=AUDIO_SAMPLE_RATE)
    overlap = OVERLAP_FRAMES * FFT_HOP
    audio_padded = np.concatenate([np.zeros(overlap // 2, dtype=np.float32), audio.astype(np.float32)])
    model = _model()
    output: dict[str, list[np.ndarray]] = {"note": [], "onset": [], "contour": []}
    for window, _ in inference.window_audio_file(audio_padded, AUDIO_N_SAMPLES - overlap):
        for key, value in model.predict(window[None]).items():  # window [1, AUDIO_N_SAMPLES, 1]
            output[key].append(value)
    frames = {k: inference.unwrap_output(np.concatenate(v), len(audio), OVERLAP_FRAMES) for k, v in output.items()}
    # Silence makes basic-pitch rescale its onset estimate by 0 / 0; the NaNs pass no threshold (no notes).
    with np.errstate(divide="ignore", invalid="ignore"):
        _, events = note_creation.model_output_to_notes(
            frames,
            onset_thresh=ONSET_THRESHOLD,
            frame_thresh=FRAME_THRESHOLD,
            min_note_len=int(np.round(MIN_NOTE_MS / 1000 * (AUDIO_SAMPLE_RATE / FFT_HOP))),
            include_pitch_bends=False,  # bends do not change which notes are found, and note F1 ignores them
        )
    events = sorted((float(on), float(off), int(pitch)) for on, off, pitch, *_ in events)
    table = np.array(events, dtype=np.float64).reshape(-1, 3)
    return NoteEvents(table[:, 0], table[:, 1], table[:, 2].astype(np.int64))


def key_from_events(events: NoteEvents) -> tuple[str, str, float]:
    """(tonic, mode, confidence) of transcribed notes: Krumhansl-Schmuckler over their duration-weighted
    pitch classes, the rule the corpus's captions take their key from (musiclm.data.synth), so the estimate
    and the label differ only by what the transcription misses. The chroma estimator
    (`musiclm.data.analysis.estimate_key`) reads harmonics as pitch classes: on reference renders it agreed
    with their labels for 67 % of held-out clips (eval/eval_melody.py, 2026-11-30)."""
    from musiclm.data.analysis import key_from_chroma

    weights = np.zeros(12)
    np.add.at(weights, events.pitches % 12, np.maximum(events.offsets - events.onsets, 0.0))
    return key_from_chroma(weights)


def estimate_key_from_notes(wav: np.ndarray | Tensor, sample_rate: int) -> tuple[str, str, float]:
    """The key of the notes basic-pitch hears in wav (see `key_from_events`)."""
    return key_from_events(transcribe(wav, sample_rate))


def note_scores_from_events(ref: NoteEvents, est: NoteEvents) -> tuple[float, float, float]:
    """(precision, recall, F1) of est's notes against ref's (onset within 50 ms, pitch within 50 cents, offsets
    ignored). Precision falls with notes est adds (a partial heard as its own note, a held note heard again),
    recall with notes it loses. Both empty: all 1.0; est empty: precision 1.0 (nothing false), recall 0.0;
    ref empty: precision 0.0, recall 1.0 (nothing to miss); F1 0.0 in either."""
    if len(ref) == 0 or len(est) == 0:
        both = float(len(ref) == len(est))
        return (1.0 if len(est) == 0 else 0.0), (1.0 if len(ref) == 0 else 0.0), both
    try:
        from mir_eval.transcription import precision_recall_f1_overlap
    except ImportError as e:
        raise MusicLMError(f"{INSTALL_HINT} ({e})") from None
    # mir_eval refuses zero-length intervals; basic-pitch's shortest notes are 11 frames, so this never bites
    # real output, only hand-made events.
    precision, recall, f1, _ = precision_recall_f1_overlap(
        ref.intervals,
        ref.pitches_hz,
        est.intervals,
        est.pitches_hz,
        onset_tolerance=ONSET_TOLERANCE_S,
        pitch_tolerance=PITCH_TOLERANCE_CENTS,
        offset_ratio=None,
    )
    return float(precision), float(recall), float(f1)


def note_f1_from_events(ref: NoteEvents, est: NoteEvents) -> float:
    """Note F1 of est against ref (`note_scores_from_events`); 1.0 when both have no notes, 0.0 when only
    one has none."""
    return note_scores_from_events(ref, est)[2]


def note_f1(ref_wav: np.ndarray | Tensor, est_wav: np.ndarray | Tensor, sample_rate: int) -> float:
    """Transcribe both signals ([N] or [C, N] at `sample_rate`) and return the note F1 of est against ref.
    To score several estimates against one reference, transcribe it once and use `note_f1_from_events`."""
    return note_f1_from_events(transcribe(ref_wav, sample_rate), transcribe(est_wav, sample_rate))
