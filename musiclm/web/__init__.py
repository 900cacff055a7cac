"""`musiclm serve`: a local studio page to make, hear and compress music in a browser.

    uploads.py  what a dropped file is (audio, .mlc, MIDI) and the size limit: no gradio, no torch
    studio.py   the jobs the page runs, through the Python API (musiclm.generate, musiclm.compress): no gradio
    page.py     the Gradio page: widgets, and errors turned into messages on the page
    server.py   launch on loopback, no telemetry, no share links; one job at a time

Layers call downward only: commands/serve.py → server → page → studio → the API. Gradio is the optional
`[web]` extra; nothing outside this package imports it, and this `__init__` imports nothing.
"""
