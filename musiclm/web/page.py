"""The studio page (Gradio Blocks): a Generate tab and a Compress tab over one `Studio`.

Handlers only move values between widgets and `Studio`; a MusicLMError becomes `gr.Error` (a message on the
page) and the server goes on serving. Every event shares one concurrency slot ("model"), so one job at a
time touches the model, whichever tab started it.
"""

from __future__ import annotations

import functools
import logging
import os

# Before gradio is imported: no usage analytics, no version check, no Hugging Face telemetry.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import gradio as gr  # noqa: E402

from musiclm.errors import MusicLMError  # noqa: E402
from musiclm.web.studio import RANDOM, Studio  # noqa: E402

log = logging.getLogger(__name__)
MODEL_SLOT = "model"  # the concurrency id every event shares

INTRO = """# musiclm studio
Text → music with the model in this folder, and the same codec as an audio compressor. Everything runs on
this machine; nothing is sent anywhere."""

CSS = """
#gen-info, #compress-info { min-height: 2.5em; }
footer { display: none !important; }
"""


def _page_errors(fn):
    """MusicLMError → gr.Error with its one line; anything else is logged and shown as unexpected."""

    @functools.wraps(fn)  # keeps the signature: gradio finds gr.Progress in it
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MusicLMError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as e:
            log.exception("studio job failed")
            raise gr.Error(f"unexpected error ({type(e).__name__}: {e}); the server log has the details") from None

    return wrapped


def build_page(studio: Studio, opus: bool) -> gr.Blocks:
    """The page over `studio`; `opus`: show an Opus player (ffmpeg with libopus is installed)."""
    defaults = studio.sampling_defaults()
    bandwidths = studio.bandwidths()
    takes_notes = studio.takes_notes()

    @_page_errors
    def on_generate(prompt, duration, seed, cfg, temperature, melody, progress=gr.Progress(track_tqdm=True)):
        progress(0, desc="generating")
        job = studio.generate(prompt, duration, seed, cfg, temperature, melody, progress=True)
        for note in job.notes:
            gr.Warning(note)
        files = [str(job.wav)] + ([str(job.midi)] if job.midi else [])
        speed = job.seconds / job.elapsed if job.elapsed > 0 else float("inf")
        info = (
            f"**seed {job.seed}** · {job.seconds:.1f} s of audio in {job.elapsed:.1f} s ({speed:.1f}x real time)"
            + "".join(f"\n\n{note}" for note in job.notes)
        )
        return str(job.wav), str(job.spectrogram), files, info, str(job.seed)

    @_page_errors
    def on_compress(path, bandwidth):
        if not path:
            raise MusicLMError("drop an audio file (to compress) or an .mlc file (to decode) first")
        from musiclm.web.uploads import MLC, upload_kind

        if upload_kind(path, ("audio", MLC), studio.max_upload_mb) == MLC:
            job = studio.decompress(path)
            info = f"decoded {job.seconds:.1f} s ({job.kbps:.2f} kbps on disk) in {job.elapsed:.1f} s"
            return str(job.wav), info, None, str(job.wav), None, str(job.spectrogram)
        job = studio.compress(path, float(bandwidth))
        info = (
            f"**{job.mlc.name}**: {job.size:,} bytes for {job.seconds:.1f} s · **{job.kbps:.2f} kbps** real "
            f"({job.nominal_kbps:g} nominal: {job.streams} channel(s) × {float(bandwidth):g}) · "
            f"compressed in {job.elapsed:.1f} s"
        )
        if job.opus_kbps is not None:
            info += f" · Opus at the same rate spent {job.opus_kbps:.2f} kbps"
        opus_wav = str(job.opus) if job.opus else None
        return str(job.mlc), info, str(job.original), str(job.decoded), opus_wav, str(job.spectrogram)

    with gr.Blocks(title="musiclm studio", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(INTRO)
        with gr.Tab("Generate", id="generate"):
            with gr.Row():
                with gr.Column(scale=2):
                    prompt = gr.Textbox(
                        label="prompt", placeholder="calm piano in C major, slow", lines=2, elem_id="prompt"
                    )
                    with gr.Row():
                        duration = gr.Slider(0.5, 30, value=8, step=0.5, label="duration (s)", elem_id="duration")
                        seed = gr.Textbox(value=RANDOM, label=f"seed (a number, or '{RANDOM}')", elem_id="seed")
                    with gr.Row():
                        cfg = gr.Slider(1, 10, value=defaults["cfg"], step=0.5, label="guidance (cfg; 1 = off)")
                        temperature = gr.Slider(
                            0, 2, value=defaults["temperature"], step=0.05, label="temperature (0 = greedy)"
                        )
                    melody = gr.File(
                        label="melody (MIDI or audio)"
                        + ("" if takes_notes else ": not used, this model plays from text alone"),
                        file_types=[".mid", ".midi", ".wav", ".flac", ".ogg", ".mp3"],
                        type="filepath",
                        elem_id="melody",
                    )
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                        reuse = gr.Button("Reuse last seed", elem_id="reuse-seed")
                        fresh = gr.Button("Random seed")
                with gr.Column(scale=3):
                    info = gr.Markdown(elem_id="gen-info")
                    audio = gr.Audio(
                        label="result", type="filepath", interactive=False, elem_id="gen-audio", buttons=["download"]
                    )
                    spectrogram = gr.Image(type="filepath", interactive=False, show_label=False, buttons=["fullscreen"])
                    downloads = gr.File(label="downloads", file_count="multiple", interactive=False)
            last_seed = gr.State(RANDOM)
            inputs = [prompt, duration, seed, cfg, temperature, melody]
            outputs = [audio, spectrogram, downloads, info, last_seed]
            for trigger in (go.click, prompt.submit):
                trigger(on_generate, inputs, outputs, concurrency_limit=1, concurrency_id=MODEL_SLOT)
            reuse.click(lambda s: s, last_seed, seed, queue=False)
            fresh.click(lambda: RANDOM, None, seed, queue=False)

        with gr.Tab("Compress", id="compress"):
            with gr.Row():
                with gr.Column(scale=2):
                    source = gr.File(
                        label=f"audio to compress, or an .mlc to decode (up to {studio.max_upload_mb:g} MB)",
                        type="filepath",
                        elem_id="compress-in",
                    )
                    default_bw = 6.0 if 6.0 in bandwidths else max(bandwidths)
                    bandwidth = gr.Dropdown(bandwidths, value=default_bw, label="kbps per channel")
                    again = gr.Button("Compress / decode", variant="primary", elem_id="compress-btn")
                    result = gr.File(label="download", interactive=False, elem_id="compress-out")
                    stats = gr.Markdown(elem_id="compress-info")
                with gr.Column(scale=3):
                    with gr.Row():
                        player = functools.partial(gr.Audio, type="filepath", interactive=False, buttons=["download"])
                        original = player(label="original")
                        decoded = player(label=".mlc decoded", elem_id="mlc-audio")
                        opus_audio = player(label="Opus, same bitrate", visible=opus)
                    compare = gr.Image(type="filepath", interactive=False, show_label=False, buttons=["fullscreen"])
            outputs = [result, stats, original, decoded, opus_audio, compare]
            for trigger in (source.upload, again.click):
                trigger(on_compress, [source, bandwidth], outputs, concurrency_limit=1, concurrency_id=MODEL_SLOT)
    return page
