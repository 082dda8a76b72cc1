# Each target is one command a person could type; the venv is made on first use.
PY ?= python3.11
VENV = .venv
BIN = $(VENV)/bin

.PHONY: run serve test demo reset-auth bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,postgres]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/python app.py

serve: $(VENV)/.installed
	$(BIN)/python app.py --waitress

# The suite twice: on SQLite files, then on a throwaway PostgreSQL server.
test: $(VENV)/.installed
	$(BIN)/python -m pytest
	scripts/with-postgres.sh $(BIN)/python -m pytest

demo: $(VENV)/.installed
	$(BIN)/flask --app lb demo-data

reset-auth: $(VENV)/.installed
	$(BIN)/flask --app lb reset-auth

bench: $(VENV)/.installed
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info
