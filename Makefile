# All set-up lives here: `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
REF_VENV ?= .venv-ref
TORCH_CPU := torch==2.13.0
BASIC_PITCH := basic-pitch==0.4.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE := offline
export PYTHONDONTWRITEBYTECODE := 1
# numpy's BLAS threads fight torch's on 2 cores (a 166x166 matmul took 2000x longer under load)
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: install system-deps test test-fast test-reference demo lint format bench report corpus recorded clean

install: $(VENV)/.installed

# torch first from the local CPU wheel, so the package's torch range never pulls a CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_CPU)
	$(PY) -m pip install -q -e '.[dev,eval,web]'
	@# basic-pitch's own requirements pull tensorflow on Linux: its ONNX model needs only the [eval] extra
	$(PY) -m pip install -q --no-deps $(BASIC_PITCH)
	@# a torchaudio built for another torch breaks `import transformers` audio models: never keep one here
	-$(PY) -m pip uninstall -q -y torchaudio 2>/dev/null
	touch $@

# FluidSynth + a GM soundfont render the corpus; ffmpeg is the Opus baseline; chromium checks the report and,
# with chromium-driver, drives the studio page (tests/test_serve.py).
system-deps:
	@missing=""; \
	command -v fluidsynth >/dev/null || missing="$$missing fluidsynth"; \
	test -f /usr/share/sounds/sf2/FluidR3_GM.sf2 || missing="$$missing fluid-soundfont-gm"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "warning: could not install$$missing; tests that need them will skip"; \
	fi

test: install system-deps
	$(PY) -m pytest -q -m "not reference"

test-fast: install
	$(PY) -m pytest -q -m "not slow and not reference"

# The original `encodec` package needs torchaudio, which only loads beside torch 2.9.1: its own venv.
$(REF_VENV)/.installed: pyproject.toml
	test -x $(REF_VENV)/bin/python || python3 -m venv $(REF_VENV)
	$(REF_VENV)/bin/pip install -q torch==2.9.1 'torchaudio==2.9.*' encodec
	$(REF_VENV)/bin/pip install -q -e '.[dev]'
	touch $@

test-reference: $(REF_VENV)/.installed
	$(REF_VENV)/bin/python -m pytest -q -m reference

demo: install
	mkdir -p demo
	$(VENV)/bin/musiclm generate --force --duration 8 --seed 1 -o demo/piano_calm.wav --midi-out demo/piano_calm.mid "calm piano in C major, slow"
	$(VENV)/bin/musiclm generate --force --duration 8 --seed 2 -o demo/strings_minor.wav --midi-out demo/strings_minor.mid "a slow, melancholic string ensemble in D minor"
	$(VENV)/bin/musiclm generate --force --duration 8 --seed 3 -o demo/fast_folk.wav --midi-out demo/fast_folk.mid "a fast, bright folk tune on flute in G major"
	@echo "demo files written to demo/ (each WAV beside the MIDI plan it was played from)"

lint: install
	$(VENV)/bin/ruff check musiclm tests eval train tokenizer
	$(VENV)/bin/ruff format --check musiclm tests eval train tokenizer

format: install
	$(VENV)/bin/ruff format musiclm tests eval train tokenizer
	$(VENV)/bin/ruff check --fix musiclm tests eval train tokenizer

bench: install system-deps
	$(PY) eval/bench_codec.py
	$(PY) eval/bench_lm.py

# A 10-minute captioned corpus rendered from the music21 corpus (grow it with a larger MINUTES).
MINUTES ?= 10
corpus: install system-deps
	$(VENV)/bin/musiclm data synth --out data/synth-v2 --minutes $(MINUTES)

# Real recorded music from freely licensed Debian packages, 24 kHz mono, split by track (test = held out).
recorded: install system-deps
	$(PY) train/fetch_recorded_music.py --out data/recorded

# Static HTML report of the shipped models: tables, spectrograms, audio players, training curves.
report: install system-deps
	$(VENV)/bin/musiclm eval report --out outputs/report --force

clean:
	rm -rf $(VENV) $(REF_VENV) *.egg-info .pytest_cache demo
