# Each target is one command a person could type; the venv is made on first use.
PY ?= python3.11
VENV = .venv
BIN = $(VENV)/bin
FUZZ_EXAMPLES ?= 500

.DEFAULT_GOAL := help
.PHONY: help lock run serve test test-sqlite test-postgres fuzz codex-cli ai-sdk chromium demo reset-auth bench bench-proxy bench-cache bench-prune soak crash clean

help:  ## list the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

# Through constraints.txt: the exact versions that were tested, whatever the registry serves later.
$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[test,postgres]'
	touch $@

lock:  ## regenerate constraints.txt, the exact versions make installs, from a fresh venv
	scripts/lock.sh

run: $(VENV)/.installed  ## set up and serve on http://127.0.0.1:2455 (development server, SQLite in ./data)
	$(BIN)/python app.py

serve: $(VENV)/.installed  ## the same under waitress (production)
	$(BIN)/python app.py --waitress

test: test-sqlite test-postgres  ## set up and run the whole suite on SQLite, then on PostgreSQL

test-sqlite: $(VENV)/.installed  ## the suite on SQLite files only
	CHROMIUM="$$(scripts/chromium.sh)" CODEX_CLI="$$(scripts/codex-cli.sh)" AI_SDK="$$(scripts/ai-sdk.sh)" $(BIN)/python -m pytest

test-postgres: $(VENV)/.installed  ## the suite on a throwaway PostgreSQL server (Debian's postgresql)
	CHROMIUM="$$(scripts/chromium.sh)" CODEX_CLI="$$(scripts/codex-cli.sh)" AI_SDK="$$(scripts/ai-sdk.sh)" scripts/with-postgres.sh $(BIN)/python -m pytest

fuzz: $(VENV)/.installed  ## the schemathesis fuzzing, FUZZ_EXAMPLES=500 cases per operation, on SQLite then PostgreSQL
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/test_fuzz.py && FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) scripts/with-postgres.sh $(BIN)/python -m pytest tests/test_fuzz.py

codex-cli:  ## install the pinned Codex CLI (npm) into ~/.cache/codex-lb, once per version; print its path
	scripts/codex-cli.sh

ai-sdk:  ## install the pinned AI SDK (npm: ai, @ai-sdk/openai) into ~/.cache/codex-lb, once per version; print its path
	scripts/ai-sdk.sh

chromium:  ## install Debian's chromium for the browser tests (as root) when missing; print its path
	scripts/chromium.sh

demo: $(VENV)/.installed  ## load demo accounts and 5,000 request logs
	$(BIN)/flask --app lb demo-data

reset-auth: $(VENV)/.installed  ## recovery: remove the dashboard password, TOTP and every session
	$(BIN)/flask --app lb reset-auth

bench: $(VENV)/.installed  ## benchmark the real server at 10k, 100k and 1M logs (BENCH_ARGS=...)
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

bench-proxy: $(VENV)/.installed  ## the proxy vs the fake upstream called directly: added latency, req/s, long streams (BENCH_ARGS=...)
	$(BIN)/python bench/proxy_bench.py $(BENCH_ARGS)

bench-cache: $(VENV)/.installed  ## prompt-cache hits through the proxy vs a perfect pin: 50 conversations x 20 turns, 4 runs (BENCH_ARGS=...)
	$(BIN)/python bench/cache_bench.py $(BENCH_ARGS)

bench-prune: $(VENV)/.installed  ## prune 1M request logs while proxied streams and ingest run: write lock, first-byte p99 (BENCH_ARGS=...)
	$(BIN)/python bench/prune_bench.py $(BENCH_ARGS)

soak: $(VENV)/.installed  ## 60 s of proxied streams, ingest writers and dashboard readers on the real server (SOAK_ARGS=...)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

crash: $(VENV)/.installed  ## kill -9 the server under that load and restart it, 10 times; check nothing is lost (CRASH_ARGS=...)
	$(BIN)/python bench/crash.py $(CRASH_ARGS)

clean:  ## remove the venv
	rm -rf $(VENV) *.egg-info
