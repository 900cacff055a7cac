"""Start the studio page: on loopback unless told otherwise, no share link, one job at a time, uploads capped."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from musiclm.errors import MusicLMError
from musiclm.web.studio import Studio
from musiclm.web.uploads import MB

QUEUE_SIZE = 16  # jobs waiting beyond this are refused with a message, not held forever


def start(studio: Studio, host: str = "127.0.0.1", port: int = 7860):
    """Launch the page without blocking → (the Gradio Blocks, its local URL). `page.close()` stops it."""
    try:
        from musiclm.web.page import build_page
    except ImportError as e:
        raise MusicLMError(f"the studio needs the [web] extra: pip install 'musiclm[web]' ({e})") from None
    from musiclm.evaluation.opus import ffmpeg_available

    page = build_page(studio, opus=ffmpeg_available())
    page.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    try:
        _, url, _ = page.launch(
            server_name=host,
            server_port=port,
            share=False,
            prevent_thread_lock=True,
            quiet=True,
            show_error=True,
            max_file_size=int(studio.max_upload_mb * MB),  # refused by the page before it is sent
            allowed_paths=[str(studio.work_dir)],
            footer_links=[],
            ssr_mode=False,
            pwa=False,
            mcp_server=False,
        )
    except OSError:  # gradio's message names its own environment variables, not our flags
        why = "in use, or not an address of this machine"
        raise MusicLMError(f"cannot listen on {host}:{port} ({why}); pass another --port or --host") from None
    return page, url


def serve(studio: Studio, host: str, port: int, announce: Callable[[str], None] = print) -> None:
    """Load the models, start the page, announce its URL, and serve until interrupted (Ctrl-C, or SIGTERM:
    both close the page and remove the studio's work folder)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    studio.load()
    page, url = start(studio, host, port)
    announce(url)
    try:
        while True:
            time.sleep(3600)
    finally:
        page.close()
        studio.close()


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt  # unwinds `serve` through its cleanup; the CLI reports it in one line
